//! One terminal transaction, one authorisation: retransmissions and ISO repeats (0201,
//! 0221, 0401, ...) are recognised by their terminal key — terminal, STAN, the MTI class
//! and the date-time (field 7, or the UnionPay-style batch 60.2; see
//! `journal::record::txn_key`) — and never forwarded twice:
//!
//! - a key never seen is `New`: the request goes on, and its answer is kept under the key;
//! - a key whose original is still in flight is `InFlight`: the repeat waits for the
//!   original's answer and gets it;
//! - a key answered within the window is `Answered`: the repeat gets the same response
//!   code, authorisation code and RRN at once;
//! - the same key with another amount is a different transaction reusing the key:
//!   `Conflict`, answered 94 (and journalled without the key, so it never shadows the
//!   original);
//! - where memory cannot prove a key new (after a restart whose journal held more keys
//!   than memory may keep, or once keys of the window had to be evicted), a miss is
//!   `Unsure`: the caller asks the journal before going on.
//!
//! The window is the business day by default (keys of an earlier business day are
//! forgotten), or a configured number of seconds. Keys live in two generations per shard,
//! each as long as the window: at each turn the older is cleared and its memory reused, so
//! a steady load allocates nothing. Memory is bounded: at most `capacity` keys (about 100
//! bytes each); past it the older generation is dropped early and misses become `Unsure`
//! until the window has passed what it held. At start the switch reloads the
//! day's keys from the journal (`load`). Nodes sharing a PostgreSQL journal see each
//! other's keys through the journal's claim instead (`handlers/forward.rs`).
//!
//! Locks: one of 64 shard mutexes per check and per answer, never held across an
//! `.await`; waiting happens on a `watch` channel of the original.
//! May import: crate::iso, crate::journal, crate::rc.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, hash_map};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::iso::Message;
use crate::journal::{TxnRecord, mti_class};
use crate::rc::ResponseCode;

const SHARDS: usize = 64;

/// What a terminal was answered: enough to answer a repeat the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub rc: ResponseCode,
    auth: [u8; 6],
    auth_len: u8,
    rrn: [u8; 12],
    has_rrn: bool,
}

impl Answer {
    pub fn new(rc: ResponseCode, auth: Option<&str>, rrn: Option<&str>) -> Answer {
        let mut a = Answer { rc, auth: [b' '; 6], auth_len: 0, rrn: [b'0'; 12], has_rrn: false };
        if let Some(code) = auth.map(str::as_bytes).filter(|c| c.len() <= 6) {
            a.auth[..code.len()].copy_from_slice(code);
            a.auth_len = code.len() as u8;
        }
        if let Some(r) = rrn.and_then(|r| <[u8; 12]>::try_from(r.as_bytes()).ok()) {
            a.rrn = r;
            a.has_rrn = true;
        }
        a
    }

    /// The answer a reply carries (fields 39, 38 and 37).
    pub fn of_reply(reply: &Message) -> Answer {
        let rc = reply.text(39).as_deref().and_then(ResponseCode::parse);
        Answer::new(
            rc.unwrap_or(ResponseCode::SYSTEM_MALFUNCTION),
            reply.text(38).as_deref(),
            reply.text(37).as_deref(),
        )
    }

    /// The answer a journal row records.
    pub fn of_row(row: &TxnRecord) -> Answer {
        let rc = row.rc.unwrap_or(ResponseCode::SYSTEM_MALFUNCTION);
        Answer::new(rc, row.auth_code.as_deref(), row.rrn.as_deref())
    }

    pub fn rc(&self) -> ResponseCode {
        self.rc
    }

    pub fn auth(&self) -> Option<&str> {
        let code = self.auth.get(..usize::from(self.auth_len))?;
        if code.is_empty() { None } else { std::str::from_utf8(code).ok() }
    }

    pub fn rrn(&self) -> Option<&str> {
        if self.has_rrn { std::str::from_utf8(&self.rrn).ok() } else { None }
    }
}

/// A request's terminal key, packed: no allocation per check. `h` is its hash, computed
/// once (keyed SipHash: terminals choose these bytes) and used for the shard and the map.
#[derive(Debug, Clone, Copy)]
struct Key {
    /// Field 41 without trailing spaces (a longer one: its hash in the first 8 bytes).
    terminal: [u8; 16],
    stan: u32,
    /// Field 7's ten digits, or 60.2's six with the top bit set.
    when: u64,
    class: [u8; 4],
    h: u64,
}

impl PartialEq for Key {
    fn eq(&self, o: &Key) -> bool {
        (self.terminal, self.stan, self.when, self.class) == (o.terminal, o.stan, o.when, o.class)
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.h);
    }
}

/// The hasher of the maps: a key's hash is already computed.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
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

type Map = HashMap<Key, Entry, BuildHasherDefault<Prehashed>>;

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Key {
    fn of(req: &Message, hasher: &RandomState) -> Option<Key> {
        let class = mti_class(req.mti_bytes())?;
        let when = match req.text(7) {
            Some(f7) => digits(&f7)?,
            None => digits(&crate::journal::batch_number(req)?)? | 1 << 63,
        };
        let stan = u32::try_from(digits(&req.text(11)?)?).ok()?;
        let tid = req.terminal_id()?;
        let tid = tid.trim_end().as_bytes();
        Some(Key::new(pack_terminal(tid, hasher), stan, when, class, hasher))
    }

    fn new(terminal: [u8; 16], stan: u32, when: u64, class: [u8; 4], hasher: &RandomState) -> Key {
        let h = hasher.hash_one((terminal, stan, when, class));
        Key { terminal, stan, when, class, h }
    }
}

enum State {
    /// The original is on its way; repeats subscribe (the channel is made by the first
    /// repeat: most originals have none).
    InFlight(Option<watch::Sender<Option<Answer>>>),
    Done(Answer),
}

struct Entry {
    /// Field 4 of the original (`u64::MAX` when it had none).
    amount: u64,
    /// Unix milliseconds the original arrived.
    at: i64,
    state: State,
}

impl Entry {
    /// What a request with this key and `amount` is, this key being in the window.
    fn seen(&mut self, amount: u64) -> Seen {
        if self.amount != amount {
            return Seen::Conflict;
        }
        match &mut self.state {
            State::Done(a) => Seen::Answered(*a),
            State::InFlight(Some(tx)) => Seen::InFlight(tx.subscribe()),
            State::InFlight(slot) => {
                let (tx, rx) = watch::channel(None);
                *slot = Some(tx);
                Seen::InFlight(rx)
            }
        }
    }
}

/// Keys in two generations: `cur` since `cur_since`, `prev` the one before. A generation
/// lasts a window (a business day, or the window's milliseconds), so `prev` holds every key
/// still in the window that `cur` does not; at each turn the older one is cleared and
/// reused, keeping its memory: a steady load allocates nothing.
#[derive(Default)]
struct Shard {
    cur: Map,
    prev: Map,
    cur_since: i64,
}

impl Shard {
    fn get_mut(&mut self, key: &Key) -> Option<&mut Entry> {
        match self.cur.get_mut(key) {
            Some(e) => Some(e),
            None if self.prev.is_empty() => None,
            None => self.prev.get_mut(key),
        }
    }

    fn remove(&mut self, key: &Key) {
        if self.cur.remove(key).is_none() {
            self.prev.remove(key);
        }
    }

    /// Start a new generation: the oldest keys are cleared (their memory kept for the new
    /// generation), but for those still in flight, which stay until answered.
    fn turn(&mut self, now: i64) {
        std::mem::swap(&mut self.cur, &mut self.prev);
        let in_flight: Vec<(Key, Entry)> =
            self.cur.drain().filter(|(_, e)| matches!(e.state, State::InFlight(_))).collect();
        self.cur.extend(in_flight);
        self.cur_since = now;
    }
}

/// How long a key is remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Until the business day (in the estate's offset from UTC, minutes) changes.
    BusinessDay {
        utc_offset_minutes: i32,
    },
    Millis(i64),
}

impl Window {
    fn day(offset: i32, at: i64) -> i64 {
        (at + i64::from(offset) * 60_000).div_euclid(86_400_000)
    }

    /// Whether a key seen at `at` is still remembered at `now`.
    fn holds(&self, at: i64, now: i64) -> bool {
        match *self {
            Window::BusinessDay { utc_offset_minutes } => {
                Window::day(utc_offset_minutes, at) == Window::day(utc_offset_minutes, now)
            }
            Window::Millis(ms) => now.saturating_sub(at) <= ms,
        }
    }

    /// When a key seen at `at` is forgotten.
    fn ends(&self, at: i64) -> i64 {
        match *self {
            Window::BusinessDay { utc_offset_minutes } => {
                let off = i64::from(utc_offset_minutes) * 60_000;
                (Window::day(utc_offset_minutes, at) + 1) * 86_400_000 - off
            }
            Window::Millis(ms) => at.saturating_add(ms).saturating_add(1),
        }
    }
}

/// What a request's key says.
pub enum Seen {
    New(Claim),
    /// Memory cannot prove the key new: ask the journal (`Claim` already holds the key
    /// in flight, so repeats arriving meanwhile wait for this one).
    Unsure(Claim),
    InFlight(watch::Receiver<Option<Answer>>),
    Answered(Answer),
    Conflict,
}

/// The registry of terminal keys.
pub struct Repeats {
    shards: Box<[Mutex<Shard>]>,
    window: Window,
    per_shard: usize,
    /// Until this Unix millisecond a miss is `Unsure` (keys of the window were evicted,
    /// or the journal held more than memory could reload).
    unsure_until: AtomicI64,
    hasher: RandomState,
}

impl std::fmt::Debug for Repeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repeats").field("window", &self.window).finish_non_exhaustive()
    }
}

impl Repeats {
    /// A registry remembering at most `capacity` keys for `window`.
    pub fn new(window: Window, capacity: usize) -> Arc<Repeats> {
        Arc::new(Repeats {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            window,
            per_shard: capacity.div_ceil(SHARDS).max(1),
            unsure_until: AtomicI64::new(i64::MIN),
            hasher: Default::default(),
        })
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, Shard> {
        let i = (key.h % SHARDS as u64) as usize;
        self.shards.get(i).unwrap_or(&self.shards[0]).lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Check `req` (arrived at `now`, Unix ms); `None` when it carries no terminal key
    /// (not a financial or reversal class, or lacking 7/60.2, 11 or 41).
    pub fn check(self: &Arc<Self>, req: &Message, now: i64) -> Option<Seen> {
        let key = Key::of(req, &self.hasher)?;
        let amount = req.amount().unwrap_or(u64::MAX);
        let fresh = Entry { amount, at: now, state: State::InFlight(None) };
        let mut guard = self.shard(&key);
        let shard = &mut *guard;
        if self.turns(shard, now) {
            // Rare (a new window, a full shard, the first key): the two-step path.
            if let Some(e) = shard.get_mut(&key)
                && self.window.holds(e.at, now)
            {
                return Some(e.seen(amount));
            }
            self.insert(shard, key, fresh, now);
        } else {
            // One probe of the current generation finds the key or the slot it goes in.
            match shard.cur.entry(key) {
                hash_map::Entry::Occupied(o) => {
                    let e = o.into_mut();
                    if self.window.holds(e.at, now) {
                        return Some(e.seen(amount));
                    }
                    *e = fresh;
                }
                hash_map::Entry::Vacant(v) => {
                    if let Some(e) = shard.prev.get_mut(&key)
                        && self.window.holds(e.at, now)
                    {
                        return Some(e.seen(amount));
                    }
                    v.insert(fresh);
                }
            }
        }
        drop(guard);
        let claim = Claim { repeats: self.clone(), key: Some(key) };
        Some(if now < self.unsure_until.load(Ordering::Relaxed) {
            Seen::Unsure(claim)
        } else {
            Seen::New(claim)
        })
    }

    /// Whether inserting into `shard` at `now` first sizes it or turns its generations:
    /// one of the three steps `insert` takes before it inserts is due.
    fn turns(&self, shard: &Shard, now: i64) -> bool {
        shard.cur.capacity() == 0 || self.new_generation(shard, now) || self.full(shard)
    }

    /// The current generation's window has passed, or the shard holds nothing yet.
    fn new_generation(&self, shard: &Shard, now: i64) -> bool {
        !self.window.holds(shard.cur_since, now) || shard.cur.is_empty() && shard.prev.is_empty()
    }

    /// The shard holds its share of keys.
    fn full(&self, shard: &Shard) -> bool {
        shard.cur.len() + shard.prev.len() >= self.per_shard
    }

    /// Insert into the current generation, turning generations when the window has moved
    /// on or the shard is full (then misses are unsure until the window has passed what
    /// was dropped).
    fn insert(&self, shard: &mut Shard, key: Key, entry: Entry, now: i64) {
        if shard.cur.capacity() == 0 {
            // Sized once for its share: growing by doubling would move every key it holds
            // each time, and touch fresh pages, on the request path.
            shard.cur.reserve(self.per_shard / 2);
        }
        if self.new_generation(shard, now) {
            if !shard.cur.is_empty() || !shard.prev.is_empty() {
                shard.turn(now);
            }
            shard.cur_since = now;
        }
        if self.full(shard) {
            // The turn drops the answered keys of `prev`: any still in the window makes
            // misses unsure until it would have left it.
            let dropped = shard
                .prev
                .values()
                .any(|e| matches!(e.state, State::Done(_)) && self.window.holds(e.at, now));
            if dropped {
                self.unsure_until.fetch_max(self.window.ends(now), Ordering::Relaxed);
            }
            shard.turn(now);
        }
        shard.cur.insert(key, entry);
    }

    fn finish(&self, key: &Key, answer: Option<Answer>) {
        let mut shard = self.shard(key);
        let Some(e) = shard.get_mut(key) else { return };
        let State::InFlight(tx) = &e.state else { return };
        if let Some(tx) = tx {
            let _ = tx.send(answer);
        }
        match answer {
            Some(a) => e.state = State::Done(a),
            // No answer left (its future was dropped): the key is free again.
            None => shard.remove(key),
        }
    }

    /// Remember the answers the journal holds (`rows`, from `Query::KeysOfDay`) as of
    /// `now`; when they are more than memory may keep, misses stay unsure for the window.
    pub fn load(&self, rows: &[TxnRecord], now: i64) -> usize {
        let mut n = 0;
        for row in rows {
            let Some(key) = key_of_row(row, &self.hasher) else { continue };
            if !self.window.holds(row.received_at.as_i64(), now) {
                continue;
            }
            let mut shard = self.shard(&key);
            let amount = u64::try_from(row.amount).unwrap_or(u64::MAX);
            let entry =
                Entry { amount, at: row.received_at.as_i64(), state: State::Done(Answer::of_row(row)) };
            self.insert(&mut shard, key, entry, now);
            n += 1;
        }
        n
    }

    /// Mark misses unsure until `until` (a start without the journal's keys).
    pub fn unsure_until(&self, until: i64) {
        self.unsure_until.fetch_max(until, Ordering::Relaxed);
    }

    /// When a key seen at `at` leaves the window.
    pub fn window_end(&self, at: i64) -> i64 {
        self.window.ends(at)
    }

    /// The earliest arrival still in the window at `now` (at most a week back).
    pub fn window_start(&self, now: i64) -> i64 {
        match self.window {
            Window::BusinessDay { .. } => now,
            Window::Millis(ms) => now.saturating_sub(ms.min(7 * 86_400_000)),
        }
    }
}

/// Field 41 without its trailing spaces, as a key holds it: up to 16 bytes as they are, a
/// longer one as its hash (marked in the last byte, which no terminal id of 16 or fewer
/// bytes padded with zeros can carry).
fn pack_terminal(tid: &[u8], hasher: &RandomState) -> [u8; 16] {
    let mut terminal = [0u8; 16];
    if tid.len() <= terminal.len() {
        terminal[..tid.len()].copy_from_slice(tid);
    } else {
        terminal[..8].copy_from_slice(&hasher.hash_one(tid).to_le_bytes());
        terminal[15] = 0xff;
    }
    terminal
}

/// A journal row's key, as `Key::of` packs a request's.
fn key_of_row(row: &TxnRecord, hasher: &RandomState) -> Option<Key> {
    let (class, when) = row.txn_key.as_deref()?.split_once(' ')?;
    let class: [u8; 4] = class.as_bytes().try_into().ok()?;
    let when = match when.strip_prefix('b') {
        Some(batch) => digits(batch)? | 1 << 63,
        None => digits(when)?,
    };
    let stan = u32::try_from(digits(&row.stan)?).ok()?;
    let tid = row.terminal_id.trim_end().as_bytes();
    Some(Key::new(pack_terminal(tid, hasher), stan, when, class, hasher))
}

/// A key this request holds in flight: `finish` it with the terminal's answer; dropped
/// unfinished, the key is released (repeats waiting for it hear `None`).
pub struct Claim {
    repeats: Arc<Repeats>,
    key: Option<Key>,
}

impl Claim {
    pub fn finish(mut self, answer: Answer) {
        if let Some(key) = self.key.take() {
            self.repeats.finish(&key, Some(answer));
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.repeats.finish(&key, None);
        }
    }
}

/// Wait for the answer of the original a repeat found in flight; `None` when the
/// original ended without one.
pub async fn answer_of(mut rx: watch::Receiver<Option<Answer>>) -> Option<Answer> {
    loop {
        if let Some(a) = *rx.borrow_and_update() {
            return Some(a);
        }
        rx.changed().await.ok()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;

    fn purchase(mti: &str, stan: &str, f7: &str, amount: u64) -> Message {
        let mut m = Message::new(shipped("iso87ascii").unwrap(), mti).unwrap();
        m.set(3, "000000").unwrap().set_number(4, amount).unwrap().set(7, f7).unwrap();
        m.set(11, stan).unwrap().set(41, "TERM0001").unwrap();
        m
    }

    const T: i64 = 1_795_479_740_000;

    #[test]
    fn a_key_is_new_then_in_flight_then_answered() {
        let r = Repeats::new(Window::BusinessDay { utc_offset_minutes: 480 }, 1000);
        let req = purchase("0200", "000001", "1124103000", 100);
        let Some(Seen::New(claim)) = r.check(&req, T) else { panic!("first sight is new") };
        let Some(Seen::InFlight(rx)) = r.check(&req, T + 1) else { panic!("in flight") };
        // An ISO repeat (0201) is the same transaction.
        assert!(matches!(
            r.check(&purchase("0201", "000001", "1124103000", 100), T + 2),
            Some(Seen::InFlight(_))
        ));
        claim.finish(Answer::new(ResponseCode::APPROVED, Some("AB1234"), Some("000000000042")));
        assert_eq!(
            *rx.borrow(),
            Some(Answer::new(ResponseCode::APPROVED, Some("AB1234"), Some("000000000042")))
        );
        let Some(Seen::Answered(a)) = r.check(&req, T + 3) else { panic!("answered") };
        assert_eq!(
            (a.rc(), a.auth(), a.rrn()),
            (ResponseCode::APPROVED, Some("AB1234"), Some("000000000042"))
        );
    }

    #[test]
    fn what_tells_transactions_apart() {
        let r = Repeats::new(Window::BusinessDay { utc_offset_minutes: 0 }, 1000);
        let Some(Seen::New(c)) = r.check(&purchase("0200", "000001", "1124103000", 100), T) else { panic!() };
        c.finish(Answer::new(ResponseCode::APPROVED, None, None));
        type Case<'a> = (&'a str, Message, &'a str);
        let cases: [Case<'_>; 5] = [
            ("same key, other amount", purchase("0200", "000001", "1124103000", 200), "conflict"),
            ("other STAN", purchase("0200", "000002", "1124103000", 100), "new"),
            ("other field 7", purchase("0200", "000001", "1124103001", 100), "new"),
            ("a reversal of it (other class)", purchase("0400", "000001", "1124103000", 100), "new"),
            ("an advice (other class)", purchase("0220", "000001", "1124103000", 100), "new"),
        ];
        for (name, m, want) in cases {
            let got = match r.check(&m, T + 5) {
                Some(Seen::New(_)) => "new",
                Some(Seen::Conflict) => "conflict",
                Some(Seen::Answered(_)) => "answered",
                Some(_) => "other",
                None => "none",
            };
            assert_eq!(got, want, "{name}");
        }
        // Network management carries no key.
        let mut echo = Message::new(shipped("iso87ascii").unwrap(), "0800").unwrap();
        echo.set(7, "1124103000").unwrap().set(11, "000001").unwrap().set(70, "301").unwrap();
        assert!(r.check(&echo, T).is_none());
        // Nor does a request without field 7 (it is answered 30 by the rules).
        let mut no7 = purchase("0200", "000009", "1124103000", 100);
        no7.remove(7);
        assert!(r.check(&no7, T).is_none());
    }

    #[test]
    fn a_dropped_claim_frees_the_key_and_tells_the_waiters() {
        let r = Repeats::new(Window::Millis(60_000), 1000);
        let req = purchase("0200", "000001", "1124103000", 100);
        let Some(Seen::New(claim)) = r.check(&req, T) else { panic!() };
        let Some(Seen::InFlight(rx)) = r.check(&req, T) else { panic!() };
        drop(claim);
        assert!(rx.has_changed().unwrap_or(true));
        assert!(matches!(r.check(&req, T), Some(Seen::New(_))));
    }

    #[test]
    fn the_window_ends_with_the_business_day_or_after_its_seconds() {
        let day = Repeats::new(Window::BusinessDay { utc_offset_minutes: 480 }, 1000);
        let req = purchase("0200", "000001", "1124103000", 100);
        // 2026-11-24 15:59:59 UTC is 23:59:59 in China; a second later is the next day.
        let before_midnight = 1_795_795_199_000;
        let Some(Seen::New(c)) = day.check(&req, before_midnight) else { panic!() };
        c.finish(Answer::new(ResponseCode::APPROVED, None, None));
        assert!(matches!(day.check(&req, before_midnight + 500), Some(Seen::Answered(_))));
        assert!(matches!(day.check(&req, before_midnight + 1_000), Some(Seen::New(_))));
        let secs = Repeats::new(Window::Millis(10_000), 1000);
        let Some(Seen::New(c)) = secs.check(&req, T) else { panic!() };
        c.finish(Answer::new(ResponseCode::DO_NOT_HONOUR, None, None));
        assert!(matches!(secs.check(&req, T + 10_000), Some(Seen::Answered(_))));
        assert!(matches!(secs.check(&req, T + 10_001), Some(Seen::New(_))));
    }

    #[test]
    fn past_its_bound_memory_evicts_and_misses_become_unsure() {
        let r = Repeats::new(Window::Millis(60_000), SHARDS);
        let mut claims = Vec::new();
        for stan in 1..=(SHARDS as u32 * 8) {
            let req = purchase("0200", &format!("{stan:06}"), "1124103000", 100);
            match r.check(&req, T) {
                Some(Seen::New(c)) | Some(Seen::Unsure(c)) => claims.push(c),
                _ => panic!("stan {stan}"),
            }
        }
        for c in claims {
            c.finish(Answer::new(ResponseCode::APPROVED, None, None));
        }
        // Answered keys were evicted past the bound: a fresh key can no longer be proved new.
        let fresh = purchase("0200", "999999", "1124103000", 100);
        assert!(matches!(r.check(&fresh, T + 1), Some(Seen::Unsure(_))));
        // Once the window has passed every evicted key, misses are new again.
        let later = purchase("0200", "999998", "1124103000", 100);
        assert!(matches!(r.check(&later, T + 60_002), Some(Seen::New(_))));
    }

    #[test]
    fn the_journal_s_keys_are_reloaded() {
        let r = Repeats::new(Window::BusinessDay { utc_offset_minutes: 0 }, 1000);
        let row = TxnRecord {
            terminal_id: "TERM0001".into(),
            stan: "000001".into(),
            amount: 100,
            received_at: crate::time::UnixMs::from_i64(T),
            rc: Some(ResponseCode::APPROVED),
            auth_code: Some("XY9876".into()),
            txn_key: Some("0200 1124103000".into()),
            ..TxnRecord::default()
        };
        assert_eq!(r.load(std::slice::from_ref(&row), T + 10), 1);
        let Some(Seen::Answered(a)) = r.check(&purchase("0200", "000001", "1124103000", 100), T + 20) else {
            panic!("reloaded key answers")
        };
        assert_eq!(a.auth(), Some("XY9876"));
        assert!(matches!(
            r.check(&purchase("0200", "000001", "1124103000", 999), T + 20),
            Some(Seen::Conflict)
        ));
    }
    #[test]
    fn an_answer_keeps_the_code_it_was_given() {
        // A three-digit action code (ISO 8583:1993) is repeated as it was answered.
        let action = ResponseCode::parse("000").unwrap();
        let row = TxnRecord { rc: Some(action), auth_code: Some("AB1234".into()), ..TxnRecord::default() };
        let a = Answer::of_row(&row);
        assert_eq!((a.rc().as_str(), a.auth()), ("000", Some("AB1234")));
        // A row without an outcome (a claim never completed) answers 96, never an approval.
        let pending = TxnRecord { rc: None, ..row };
        assert_eq!(Answer::of_row(&pending).rc(), ResponseCode::SYSTEM_MALFUNCTION);
    }
}
