//! The counters behind the stateful risk rules, owned by the caller (one per switch) and
//! shared by reference: per-card daily totals and request frequency, per-terminal
//! frequency, and recently seen (terminal, STAN, transmission time) keys for duplicates.
//!
//! - **Keys** are keyed hashes: SipHash with a random key drawn when the state is created
//!   (`std`'s `RandomState`), so neither a PAN nor a terminal id is stored, and keys cannot be
//!   forged to collide. The duplicate key mixes STAN and transmission time into the keyed
//!   terminal hash. The key dies with the process; these counters are not persisted.
//! - **Speed**: 16 shards, each a `Mutex` over plain hash maps of `u64` keys (no rehashing of
//!   already random keys). One decision locks at most two shards, one at a time.
//! - **Sliding windows** are 8 sub-windows per key (a ring of counters): a frequency limit
//!   counts the requests of the last 8/8 to 7/8 of the window, an approximation that errs by
//!   at most one sub-window.
//! - **Duplicates**: a map from key to the sub-window it was seen in, plus a ring of 8
//!   key lists; when a sub-window falls out of the duplicate window its keys are removed.
//! - **Bounds**: each shard holds at most 1/16 of the configured `max_cards`,
//!   `max_terminals` and `max_duplicates` entries. When a map is full, stale entries (whose
//!   window and day have passed) are swept, at most once per sub-window; if it is still full
//!   the request is let through untracked and `saturated()` counts it (fail open: the limits
//!   protect the issuer, they do not decide availability).
//! - Reversals, advices of them and network traffic are never counted; the daily total
//!   counts the amounts of purchases and pre-auths that pass (the issuer's answer is not yet
//!   known; a later reversal does not give the amount back).
//!
//! May import: this layer only.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::clock::Now;
use super::decision::{Decision, Rc, Reason};
use super::risk::{Frequency, RiskRules};

const SHARDS: usize = 16;
const SUB: u64 = 8;

/// Identity hasher for keys that are already keyed hashes.
#[derive(Default)]
struct Ident(u64);

impl Hasher for Ident {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<Ident>>;

/// A ring of 8 counters covering one window.
#[derive(Debug, Clone, Copy, Default)]
struct Ring {
    counts: [u32; SUB as usize],
    /// The newest sub-window index written.
    slot: u64,
}

impl Ring {
    fn advance(&mut self, slot: u64) {
        if slot <= self.slot {
            return;
        }
        let gap = (slot - self.slot).min(SUB);
        for k in 1..=gap {
            if let Some(c) = self.counts.get_mut(((self.slot + k) % SUB) as usize) {
                *c = 0;
            }
        }
        self.slot = slot;
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    fn add(&mut self) {
        if let Some(c) = self.counts.get_mut((self.slot % SUB) as usize) {
            *c = c.saturating_add(1);
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Card {
    day: i64,
    spent: u64,
    freq: Ring,
}

#[derive(Default)]
struct Shard {
    cards: IdMap<Card>,
    terminals: IdMap<Ring>,
    dups: IdMap<u64>,
    dup_ring: [Vec<u64>; SUB as usize],
    dup_slot: u64,
    terminals_swept: u64,
    cards_swept: (i64, u64),
}

/// What the stateful rules need to know about one request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub terminal: &'a [u8],
    pub pan: &'a [u8],
    pub amount: u64,
    pub stan: Option<u32>,
    pub transmission_time: Option<&'a [u8]>,
    pub card_daily_max: Option<u64>,
    /// Count towards the card's daily total.
    pub debits: bool,
    /// Local day number (see `clock`).
    pub day: i64,
}

/// Counters for frequency, daily amount and duplicate rules.
pub struct RiskState {
    key: RandomState,
    shards: Box<[Mutex<Shard>]>,
    saturated: AtomicU64,
}

impl Default for RiskState {
    fn default() -> Self {
        RiskState::new()
    }
}

impl std::fmt::Debug for RiskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RiskState").field("saturated", &self.saturated()).finish_non_exhaustive()
    }
}

fn sub_slot(now: Now, window_ms: u64) -> u64 {
    now.0 / (window_ms / SUB).max(1)
}

impl RiskState {
    pub fn new() -> RiskState {
        RiskState {
            key: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            saturated: AtomicU64::new(0),
        }
    }

    /// Requests let through untracked because a bound was reached.
    pub fn saturated(&self) -> u64 {
        self.saturated.load(Ordering::Relaxed)
    }

    fn shard(&self, key: u64) -> Option<std::sync::MutexGuard<'_, Shard>> {
        // Middle bits: the maps use the low bits for buckets and the top 7 as tags.
        let s = self.shards.get((key >> 32) as usize % SHARDS)?;
        // A poisoned shard only means another thread panicked mid-update of counters;
        // the counters are still usable.
        Some(s.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Check and count one request; `Some(decline)` stops it.
    pub fn check(&self, rules: &RiskRules, f: &Facts<'_>, now: Now) -> Option<Decision> {
        if rules.duplicate_window_ms > 0 || rules.terminal_frequency.is_some() {
            let term_key = self.key.hash_one(f.terminal);
            if let Some(d) = self.check_terminal(rules, f, term_key, now) {
                return Some(d);
            }
        }
        self.check_card(rules, f, now)
    }

    fn check_terminal(&self, rules: &RiskRules, f: &Facts<'_>, term_key: u64, now: Now) -> Option<Decision> {
        let dup_key = match (rules.duplicate_window_ms, f.stan, f.transmission_time) {
            // Derived from the keyed terminal hash with a cheap mixer: forging a collision
            // needs the secret key, and one SipHash per request is saved.
            (w, Some(stan), Some(t)) if w > 0 => {
                let time = t
                    .iter()
                    .fold(0u64, |v, &d| v.wrapping_mul(10).wrapping_add(u64::from(d.wrapping_sub(b'0'))));
                Some(mix(term_key ^ mix((u64::from(stan) << 40) ^ time)))
            }
            _ => None,
        };
        if dup_key.is_none() && rules.terminal_frequency.is_none() {
            return None;
        }
        let mut shard = self.shard(term_key)?;
        let sh = &mut *shard;
        if let Some(key) = dup_key {
            let slot = sub_slot(now, rules.duplicate_window_ms);
            if slot > sh.dup_slot {
                let gap = (slot - sh.dup_slot).min(SUB);
                for k in 1..=gap {
                    if let Some(list) = sh.dup_ring.get_mut(((sh.dup_slot + k) % SUB) as usize) {
                        for old in list.drain(..) {
                            sh.dups.remove(&old);
                        }
                    }
                }
                sh.dup_slot = slot;
            }
            if sh.dups.contains_key(&key) {
                return Some(Decision::decline(Rc::DUPLICATE, Reason::Duplicate));
            }
            if sh.dups.len() < rules.max_duplicates / SHARDS {
                sh.dups.insert(key, slot);
                if let Some(list) = sh.dup_ring.get_mut((slot % SUB) as usize) {
                    list.push(key);
                }
            } else {
                self.saturated.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(freq) = rules.terminal_frequency {
            let slot = sub_slot(now, freq.window_ms);
            let cap = rules.max_terminals / SHARDS;
            if !sh.terminals.contains_key(&term_key) && sh.terminals.len() >= cap {
                if sh.terminals_swept < slot {
                    sh.terminals_swept = slot;
                    sh.terminals.retain(|_, r| r.slot + SUB > slot);
                }
                if sh.terminals.len() >= cap {
                    self.saturated.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
            let ring = sh.terminals.entry(term_key).or_default();
            if over(ring, freq, slot) {
                return Some(Decision::decline(Rc::FREQUENCY_LIMIT, Reason::TerminalFrequency));
            }
        }
        None
    }

    fn check_card(&self, rules: &RiskRules, f: &Facts<'_>, now: Now) -> Option<Decision> {
        let daily = f.card_daily_max.filter(|_| f.debits);
        if rules.card_frequency.is_none() && daily.is_none() {
            return None;
        }
        let card_key = self.key.hash_one(f.pan);
        let mut shard = self.shard(card_key)?;
        let sh = &mut *shard;
        let slot = rules.card_frequency.map_or(0, |fr| sub_slot(now, fr.window_ms));
        let cap = rules.max_cards / SHARDS;
        if !sh.cards.contains_key(&card_key) && sh.cards.len() >= cap {
            if sh.cards_swept != (f.day, slot) {
                sh.cards_swept = (f.day, slot);
                let windowed = rules.card_frequency.is_some();
                sh.cards.retain(|_, c| c.day == f.day || (windowed && c.freq.slot + SUB > slot));
            }
            if sh.cards.len() >= cap {
                self.saturated.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        let card = sh.cards.entry(card_key).or_default();
        if let Some(freq) = rules.card_frequency
            && over(&mut card.freq, freq, slot)
        {
            return Some(Decision::decline(Rc::FREQUENCY_LIMIT, Reason::CardFrequency));
        }
        if let Some(max) = daily {
            if card.day != f.day {
                card.day = f.day;
                card.spent = 0;
            }
            let after = card.spent.saturating_add(f.amount);
            if after > max {
                return Some(Decision::decline(Rc::AMOUNT_LIMIT, Reason::DailyAmountLimit));
            }
            card.spent = after;
        }
        None
    }
}

/// SplitMix64's finaliser: a bijective scramble of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Count one request in `ring`; true when it makes the window exceed the limit (the
/// refused request still counts: retrying does not reset the window).
fn over(ring: &mut Ring, freq: Frequency, slot: u64) -> bool {
    ring.advance(slot);
    ring.add();
    ring.total() > u64::from(freq.count)
}
