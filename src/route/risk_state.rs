//! The counters behind the stateful risk rules, owned by the caller (one per switch) and
//! shared by reference: per-card daily totals and request frequency, per-terminal
//! frequency, and recently seen (terminal, STAN, transmission time) keys for duplicates.
//!
//! - **Keys**: a card is known by a keyed hash of its PAN, with six random 64-bit keys
//!   drawn when the state is created (`std`'s `RandomState`), so no PAN is stored and an
//!   attacker who does not know the keys cannot choose PANs that collide or crowd one
//!   bucket: the PAN's bytes, read as four zero-padded words, are keyed and folded in pairs
//!   by 128-bit multiplication, then folded with the length (two multiplications deep,
//!   where SipHash took most of the counters' time); input longer than 32 bytes, never a
//!   PAN, falls back to SipHash. A terminal is known by its id (up to 8 characters
//!   packed into a `u64`, as the registry does; terminal ids are not secret) run through a
//!   bijective mixer together with a second random key: distinct terminals keep distinct
//!   keys, and an attacker who does not know the key cannot choose ids that crowd one
//!   bucket. A longer id falls back to SipHash. The duplicate key mixes STAN and
//!   transmission time into the keyed terminal key. The keys die with the process; these
//!   counters are not persisted.
//! - **Speed**: 16 shards, each behind a spin lock (on its own cache lines; released by a
//!   plain store, where a `Mutex` takes a second locked instruction, and yielding the
//!   thread while it waits) over open-addressed tables (`open_table`) of entries that hold
//!   their already keyed and scrambled `u64` key, so the tables do not hash again. A card's
//!   or a terminal's entry is one aligned cache line (key and counters), and a lookup
//!   usually touches only that line. One decision locks at most two shards (the
//!   terminal's: duplicates and terminal frequency; the card's: frequency and daily
//!   total), holds each for well under a microsecond, and looks each key up once.
//! - **Sliding windows** are 8 sub-windows per key (a ring of counters): a frequency limit
//!   counts the requests of the last 8/8 to 7/8 of the window, an approximation that errs by
//!   at most one sub-window.
//! - **Duplicates**: a map from key to the sub-window it was seen in; when the shard's
//!   clock enters a new sub-window, the keys whose sub-window fell out of the duplicate
//!   window are removed in one pass over the map.
//! - **Bounds**: each shard holds at most 1/16 of the configured `max_cards`,
//!   `max_terminals` and `max_duplicates` entries. When a map is full, stale entries (whose
//!   window and day have passed) are swept, at most once per sub-window; if it is still full
//!   the request is let through untracked and `saturated()` counts it (fail open: the limits
//!   protect the issuer, they do not decide availability).
//! - Reversals, advices of them and network traffic are never counted; the daily total
//!   counts the amounts of purchases and pre-auths that pass (the issuer's answer is not yet
//!   known; a later reversal does not give the amount back).
//!
//! May import: crate::iso, crate::rc, crate::route::decision, crate::route::open_table,
//! crate::route::registry, crate::route::risk, crate::time.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use spin::mutex::{SpinMutex, SpinMutexGuard};
use spin::relax::Yield;

use super::decision::{Decision, Reason};
use super::open_table::{Keyed, OpenTable};
use super::risk::{Frequency, RiskRules};
use crate::rc::ResponseCode;
use crate::time::UnixMs;

const SHARDS: usize = 16;
const SUB: u64 = 8;

/// A ring of 8 counters covering one window.
#[derive(Debug, Clone, Copy, Default)]
struct Ring {
    counts: [u32; SUB as usize],
    /// The newest sub-window index written.
    slot: u64,
}

impl Ring {
    /// Count one request in sub-window `slot` and return the total of the window: the
    /// sub-windows after the newest one written, up to `slot`, are emptied first (all of
    /// them when a whole window has passed); an older `slot` (the clock went back) counts
    /// in the newest sub-window. The eight counters are read once, rebuilt lane by lane
    /// without a store at a computed index, summed and written back once: no load waits
    /// on a store just made to the same line.
    #[inline]
    fn count(&mut self, slot: u64) -> u64 {
        let old = self.slot;
        let cur = slot.max(old);
        let gap = (cur - old).min(SUB) as u32;
        let first = (old.wrapping_add(1) % SUB) as u32;
        let now = (cur % SUB) as u32;
        let mut next = self.counts;
        let mut total = 0u64;
        for (j, c) in (0u32..).zip(next.iter_mut()) {
            // Lanes `first`, `first + 1`, ... (mod 8): the `gap` sub-windows entered.
            let entered = j.wrapping_sub(first) & (SUB as u32 - 1);
            let kept = if entered < gap { 0 } else { *c };
            *c = if j == now { kept.saturating_add(1) } else { kept };
            total += u64::from(*c);
        }
        self.counts = next;
        self.slot = cur;
        total
    }
}

/// One card's counters with its key: one cache line.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Card {
    key: u64,
    day: i64,
    spent: u64,
    freq: Ring,
}

/// One terminal's counters with its key, on a cache line of its own.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Term {
    key: u64,
    freq: Ring,
}

/// A duplicate key and the sub-window it was seen in.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    key: u64,
    slot: u64,
}

impl Keyed for Card {
    fn key(&self) -> u64 {
        self.key
    }
    fn keyed(key: u64) -> Self {
        Card { key, ..Card::default() }
    }
}

impl Keyed for Term {
    fn key(&self) -> u64 {
        self.key
    }
    fn keyed(key: u64) -> Self {
        Term { key, ..Term::default() }
    }
}

impl Keyed for Seen {
    fn key(&self) -> u64 {
        self.key
    }
    fn keyed(key: u64) -> Self {
        Seen { key, slot: 0 }
    }
}

#[derive(Default)]
struct Shard {
    cards: OpenTable<Card>,
    terminals: OpenTable<Term>,
    dups: OpenTable<Seen>,
    dup_swept: u64,
    terminals_swept: u64,
    cards_swept: (i64, u64),
}

/// A shard's lock on cache lines of its own, so that threads working on different shards
/// do not invalidate each other's lines.
#[repr(align(128))]
#[derive(Default)]
struct Padded(SpinMutex<Shard, Yield>);

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
    /// Local day number (see `crate::time::UnixMs::day_number`).
    pub day: i64,
}

/// Counters for frequency, daily amount and duplicate rules.
pub struct RiskState {
    /// SipHash key for PANs (and over-long terminal ids).
    key: RandomState,
    /// Key of the terminal mixer.
    seed: u64,
    /// Keys of the card hash.
    card_seeds: [u64; 6],
    shards: Box<[Padded]>,
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

fn sub_slot(now: UnixMs, window_ms: u64) -> u64 {
    now.0 / (window_ms / SUB).max(1)
}

impl RiskState {
    pub fn new() -> RiskState {
        let key = RandomState::new();
        // A second, independent key for the terminal mixer, drawn from the same source.
        let seed = RandomState::new().hash_one(0x7465_726d_696e_616c_u64);
        RiskState {
            card_seeds: std::array::from_fn(|i| key.hash_one(0x6361_7264_0000_0000_u64 | i as u64)),
            key,
            seed,
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
            saturated: AtomicU64::new(0),
        }
    }

    /// Requests let through untracked because a bound was reached.
    pub fn saturated(&self) -> u64 {
        self.saturated.load(Ordering::Relaxed)
    }

    fn lock(&self, index: usize) -> Option<SpinMutexGuard<'_, Shard, Yield>> {
        Some(self.shards.get(index)?.0.lock())
    }

    /// The keyed key of a terminal id.
    fn terminal_key(&self, id: &[u8]) -> u64 {
        match super::registry::terminal_key(id) {
            Some(packed) => mix(packed ^ self.seed),
            None => self.key.hash_one(id),
        }
    }

    /// The keyed hash of a card number: its bytes read as four little-endian words (zero
    /// padded), each keyed and folded in pairs by 128-bit multiplication, then folded with
    /// the length. Longer input (never a PAN) goes to SipHash.
    fn card_key(&self, pan: &[u8]) -> u64 {
        let Some(w) = overlapped_words(pan).or_else(|| padded_words(pan)) else {
            return self.key.hash_one(pan);
        };
        let k = &self.card_seeds;
        let a = fold(w[0] ^ k[0], w[1] ^ k[1]);
        let b = fold(w[2] ^ k[2], w[3] ^ k[3]);
        fold(a ^ k[4] ^ pan.len() as u64, b ^ k[5])
    }

    /// Check and count one request; `Some(decline)` stops it.
    pub fn check(&self, rules: &RiskRules, f: &Facts<'_>, now: UnixMs) -> Option<Decision> {
        let daily = f.card_daily_max.filter(|_| f.debits);
        let term_key = (rules.duplicate_window_ms > 0 || rules.terminal_frequency.is_some())
            .then(|| self.terminal_key(f.terminal));
        let card_key = (rules.card_frequency.is_some() || daily.is_some()).then(|| self.card_key(f.pan));
        let dup_key = term_key.and_then(|k| self.dup_key(rules, f, k));
        let (ts, cs) = (term_key.map(shard_index), card_key.map(shard_index));
        // Both shards are locked up front, in index order (so two requests never wait on
        // each other crosswise), and once when they are the same: a locked instruction
        // fences memory, so taking the second lock between the lookups would keep their
        // cache misses from overlapping.
        let first = match (ts, cs) {
            (Some(t), Some(c)) => Some(t.min(c)),
            (t, c) => t.or(c),
        };
        let second = match (ts, cs) {
            (Some(t), Some(c)) if t != c => Some(t.max(c)),
            _ => None,
        };
        let mut g1 = first.and_then(|i| self.lock(i));
        let mut g2 = second.and_then(|i| self.lock(i));
        if let (Some(k), Some(sh)) = (term_key, pick(&mut g1, &mut g2, first, ts))
            && let Some(d) = self.check_terminal(sh, rules, k, dup_key, now)
        {
            return Some(d);
        }
        match (card_key, pick(&mut g1, &mut g2, first, cs)) {
            (Some(k), Some(sh)) => self.check_card(sh, rules, f, daily, k, now),
            _ => None,
        }
    }

    /// The duplicate key of a request (terminal, STAN and transmission time), when the
    /// duplicate rule is on and the request has both fields. Computed before any lock is
    /// taken, so that the lookups under the locks follow one another closely.
    fn dup_key(&self, rules: &RiskRules, f: &Facts<'_>, term_key: u64) -> Option<u64> {
        if rules.duplicate_window_ms == 0 {
            return None;
        }
        let (Some(stan), Some(t)) = (f.stan, f.transmission_time) else {
            return None;
        };
        let digits = |v: u64, s: &[u8]| {
            s.iter().fold(v, |v, &d| v.wrapping_mul(10).wrapping_add(u64::from(d.wrapping_sub(b'0'))))
        };
        // The first eight characters in one word when they are digits (the same number).
        let time = match t.split_at_checked(8) {
            Some((head, rest)) => {
                crate::iso::eight_digits(head).map_or_else(|| digits(0, t), |v| digits(v, rest))
            }
            None => digits(0, t),
        };
        // Derived from the keyed terminal key with a cheap mixer: forging a collision
        // needs the secret key.
        Some(mix(term_key ^ mix((u64::from(stan) << 40) ^ time)))
    }

    fn check_terminal(
        &self,
        sh: &mut Shard,
        rules: &RiskRules,
        term_key: u64,
        dup_key: Option<u64>,
        now: UnixMs,
    ) -> Option<Decision> {
        if let Some(key) = dup_key {
            let slot = sub_slot(now, rules.duplicate_window_ms);
            if let Ok(seen) = sh.dups.find_mut(key) {
                if seen.slot + SUB > slot {
                    return Some(Decision::decline(ResponseCode::DUPLICATE, Reason::Duplicate));
                }
                // Seen before the window: forgotten, and counted again from now.
                seen.slot = slot;
            } else if self.room_for_dup(sh, rules.max_duplicates / SHARDS, slot) {
                if let Some(seen) = sh.dups.insert_new(key) {
                    seen.slot = slot;
                }
            } else {
                self.saturated.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(freq) = rules.terminal_frequency {
            let slot = sub_slot(now, freq.window_ms);
            if let Ok(t) = sh.terminals.find_mut(term_key) {
                return over(&mut t.freq, freq, slot)
                    .then(|| Decision::decline(ResponseCode::FREQUENCY_LIMIT, Reason::TerminalFrequency));
            }
            let cap = rules.max_terminals / SHARDS;
            if sh.terminals.len() >= cap {
                if sh.terminals_swept < slot {
                    sh.terminals_swept = slot;
                    sh.terminals.retain(|t| t.freq.slot + SUB > slot);
                }
                if sh.terminals.len() >= cap {
                    self.saturated.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
            if let Some(t) = sh.terminals.insert_new(term_key)
                && over(&mut t.freq, freq, slot)
            {
                return Some(Decision::decline(ResponseCode::FREQUENCY_LIMIT, Reason::TerminalFrequency));
            }
        }
        None
    }

    /// Whether a new duplicate key may go in. Keys older than the window are dropped, in one
    /// pass, only when the map would otherwise grow (and at most once per sub-window when it
    /// is at its bound): a sweep leaves it at most half full or lets it grow, so that sweeps
    /// cost a bounded number of steps per request.
    fn room_for_dup(&self, sh: &mut Shard, cap: usize, slot: u64) -> bool {
        let len = sh.dups.len();
        if len < cap && len < sh.dups.capacity() {
            return true;
        }
        if len < cap || sh.dup_swept != slot {
            sh.dup_swept = slot;
            sh.dups.retain(|d| d.slot + SUB > slot);
            let live = sh.dups.len();
            // Still more than half full: grow now, so that the next sweep is as many
            // requests away as this one's map holds.
            if live < cap && live * 2 > sh.dups.capacity() {
                sh.dups.reserve(live.min(cap - live));
            }
        }
        sh.dups.len() < cap
    }

    fn check_card(
        &self,
        sh: &mut Shard,
        rules: &RiskRules,
        f: &Facts<'_>,
        daily: Option<u64>,
        card_key: u64,
        now: UnixMs,
    ) -> Option<Decision> {
        let slot = rules.card_frequency.map_or(0, |fr| sub_slot(now, fr.window_ms));
        let card = match sh.cards.find_mut(card_key) {
            Ok(card) => card,
            Err(_) => {
                let cap = rules.max_cards / SHARDS;
                if sh.cards.len() >= cap {
                    if sh.cards_swept != (f.day, slot) {
                        sh.cards_swept = (f.day, slot);
                        let windowed = rules.card_frequency.is_some();
                        sh.cards.retain(|c| c.day == f.day || (windowed && c.freq.slot + SUB > slot));
                    }
                    if sh.cards.len() >= cap {
                        self.saturated.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                }
                sh.cards.insert_new(card_key)?
            }
        };
        if let Some(freq) = rules.card_frequency
            && over(&mut card.freq, freq, slot)
        {
            return Some(Decision::decline(ResponseCode::FREQUENCY_LIMIT, Reason::CardFrequency));
        }
        if let Some(max) = daily {
            if card.day != f.day {
                card.day = f.day;
                card.spent = 0;
            }
            let after = card.spent.saturating_add(f.amount);
            if after > max {
                return Some(Decision::decline(ResponseCode::AMOUNT_LIMIT, Reason::DailyAmountLimit));
            }
            card.spent = after;
        }
        None
    }
}

/// Up to 32 bytes as four little-endian words, zero padded (`None` when longer).
fn padded_words(b: &[u8]) -> Option<[u64; 4]> {
    let mut buf = [0u8; 32];
    buf.get_mut(..b.len())?.copy_from_slice(b);
    let (words, _) = buf.as_chunks::<8>();
    Some(std::array::from_fn(|i| words.get(i).copied().map_or(0, u64::from_le_bytes)))
}

/// `padded_words` of 9 to 24 bytes (every PAN) by overlapping loads, without a copy of a
/// variable length: the last word is loaded ending at the last byte and shifted down past
/// the bytes the word before it already holds.
fn overlapped_words(b: &[u8]) -> Option<[u64; 4]> {
    let n = b.len();
    let word = |from: usize| b.get(from..from + 8)?.try_into().ok().map(u64::from_le_bytes);
    let tail = |full: usize| word(n - 8).map(|w| w >> (8 * (full - n)));
    match n {
        9..=16 => Some([word(0)?, tail(16)?, 0, 0]),
        17..=24 => Some([word(0)?, word(8)?, tail(24)?, 0]),
        _ => None,
    }
}

/// The shard `index` of the guards `g1` (which holds shard `first`) and `g2`.
fn pick<'a>(
    g1: &'a mut Option<SpinMutexGuard<'_, Shard, Yield>>,
    g2: &'a mut Option<SpinMutexGuard<'_, Shard, Yield>>,
    first: Option<usize>,
    index: Option<usize>,
) -> Option<&'a mut Shard> {
    let index = index?;
    if Some(index) == first { g1.as_deref_mut() } else { g2.as_deref_mut() }
}

/// The shard of a key: middle bits, as the maps use the low bits for buckets and the top 7
/// as tags.
fn shard_index(key: u64) -> usize {
    (key >> 32) as usize % SHARDS
}

/// The 128-bit product of `a` and `b`, its halves folded together.
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// SplitMix64's finaliser: a bijective scramble of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Count one request in `ring`; true when it makes the window exceed the limit (the
/// refused request still counts: retrying does not reset the window).
#[inline]
fn over(ring: &mut Ring, freq: Frequency, slot: u64) -> bool {
    ring.count(slot) > u64::from(freq.count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_loads_read_the_words_a_padded_copy_does() {
        let bytes: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37).wrapping_add(0x31)).collect();
        for n in 0..=40 {
            let b = &bytes[..n];
            match overlapped_words(b) {
                Some(w) => assert_eq!(Some(w), padded_words(b), "{n}"),
                None => assert!(!(9..=24).contains(&n), "{n}"),
            }
            assert_eq!(padded_words(b).is_some(), n <= 32, "{n}");
        }
    }

    #[test]
    fn keys_tell_inputs_apart() {
        let s = RiskState::new();
        assert_ne!(s.card_key(b"0123456789012"), s.card_key(b"123456789012"));
        assert_ne!(s.card_key(b"4111111111111"), s.card_key(b"4111111111111\0"));
        assert_ne!(s.card_key(b"4111111111111111"), s.card_key(b"4111111111111112"));
        assert_eq!(s.card_key(b"4111111111111111"), s.card_key(b"4111111111111111"));
        // Over-long or non-digit input still gets a key.
        assert_ne!(s.card_key(b"41111111111111111111"), s.card_key(b"4111111111111111111x"));
        assert_eq!(s.terminal_key(b"T1"), s.terminal_key(b"T1      "));
        assert_ne!(s.terminal_key(b"T1"), s.terminal_key(b"T2"));
        assert_ne!(s.terminal_key(b"TERMINAL1"), s.terminal_key(b"TERMINAL2"));
        // Another state, other keys.
        assert_ne!(RiskState::new().terminal_key(b"T1"), s.terminal_key(b"T1"));
    }

    /// The ring as it was first written (advance, add, sum): `Ring::count` must agree.
    #[derive(Default)]
    struct Model {
        counts: [u32; 8],
        slot: u64,
    }

    impl Model {
        fn count(&mut self, slot: u64) -> u64 {
            if slot > self.slot {
                let gap = slot - self.slot;
                if gap >= SUB {
                    self.counts = [0; 8];
                } else {
                    for k in 1..=gap {
                        self.counts[((self.slot + k) % SUB) as usize] = 0;
                    }
                }
                self.slot = slot;
            }
            let c = &mut self.counts[(self.slot % SUB) as usize];
            *c = c.saturating_add(1);
            self.counts.iter().map(|&c| u64::from(c)).sum()
        }
    }

    #[test]
    fn ring_counts_the_sliding_window_like_the_model() {
        let (mut ring, mut model) = (Ring::default(), Model::default());
        // Steps of 0 to 11 sub-windows, now and then one back (a clock that went back).
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut slot = 1_000u64;
        for i in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let step = x % 16;
            slot = match step {
                12..=14 => slot,
                15 => slot.saturating_sub(1 + (x >> 8) % 3),
                s => slot + s,
            };
            assert_eq!(ring.count(slot), model.count(slot), "step {i} at slot {slot}");
            assert_eq!((ring.counts, ring.slot), (model.counts, model.slot), "step {i}");
        }
        // Exact sums at the edges: a full window forgets everything, seven sub-windows keep
        // the newest one.
        let mut r = Ring::default();
        for _ in 0..5 {
            r.count(100);
        }
        assert_eq!(r.count(107), 6);
        assert_eq!(r.count(108), 2);
        assert_eq!(r.count(116), 1);
        let mut full = Ring { counts: [u32::MAX; 8], slot: 7 };
        assert_eq!(full.count(7), 8 * u64::from(u32::MAX));
    }

    #[test]
    fn card_and_terminal_entries_fill_one_cache_line() {
        assert_eq!((std::mem::size_of::<Card>(), std::mem::align_of::<Card>()), (64, 64));
        assert_eq!((std::mem::size_of::<Term>(), std::mem::align_of::<Term>()), (64, 64));
    }

    #[test]
    fn stale_duplicate_keys_make_room_and_are_forgotten() {
        let rules = RiskRules { duplicate_window_ms: 8_000, max_duplicates: 16 * 16, ..RiskRules::default() };
        let s = RiskState::new();
        let facts = |stan: u32, time: &'static [u8]| Facts {
            terminal: b"T1",
            pan: b"4111111111111111",
            amount: 1,
            stan: Some(stan),
            transmission_time: Some(time),
            card_daily_max: None,
            debits: false,
            day: 0,
        };
        // One new key a second for three hours: at most 8 are live, the maps stay small and
        // nothing goes untracked.
        for k in 0..10_800u32 {
            assert_eq!(s.check(&rules, &facts(k, b"1124100000"), UnixMs(u64::from(k) * 1_000)), None, "{k}");
        }
        assert_eq!(s.saturated(), 0);
        let held: usize = s.shards.iter().map(|p| p.0.lock().dups.capacity()).sum();
        assert!(held <= 16 * 28, "{held}");
        // Within the window a key is a duplicate; once the window has passed it is new.
        let t = UnixMs(100_000_000);
        assert_eq!(s.check(&rules, &facts(1, b"1124100001"), t), None);
        let dup = Some(Decision::decline(ResponseCode::DUPLICATE, Reason::Duplicate));
        assert_eq!(s.check(&rules, &facts(1, b"1124100001"), UnixMs(t.0 + 6_000)), dup);
        assert_eq!(s.check(&rules, &facts(1, b"1124100001"), UnixMs(t.0 + 9_000)), None);
        assert_eq!(s.check(&rules, &facts(1, b"1124100001"), UnixMs(t.0 + 10_000)), dup);
    }
}
