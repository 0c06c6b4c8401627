//! The session table: every request written to an issuer link and not yet answered,
//! keyed by (link, switch STAN, other configured match fields). The entry holds what the
//! waiting request needs back (the reply sender, its start instant and deadline, the
//! terminal's original STAN and RRN for the log). Entries leave the table exactly once:
//! by the reply that matches them, by the deadline, or when their link is lost. No guard
//! is ever held across `.await`. Lives in `src/issuer/` alone.
//!
//! One table per issuer. When the issuer's match key has field 11 (the default, `["11"]`),
//! the switch STAN the connector allocates itself picks a slot in a fixed array (`slots`):
//! insert, reply match, deadline and link loss each take one slot by an atomic state CAS,
//! with no lock and no allocation; the STAN allocator skips a STAN whose slot is busy
//! (`busy`). Other key fields are compared by hash before the CAS and exactly after it (a
//! hash collision hands the reply over as one of an unexpected kind: the waiting side
//! checks its echoed fields). A key without field 11 keeps a `DashMap` (short sharded
//! locks), as does a table made with `new` (the bench's baseline).
//! May import: crate::iso, crate::issuer::slots.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use tokio::sync::oneshot;

use super::slots::{self, Slots};
use crate::iso::Message;

/// What matches a reply to its request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub link: u32,
    /// Field 11 (the switch's STAN) when it is part of the match key, else 0.
    pub stan: u32,
    /// The other match fields' raw bytes, each followed by 0xFF; empty for the default key.
    pub extra: Bytes,
}

/// The fields that make a key; field 11 is kept apart so the default key allocates nothing.
#[derive(Debug, Clone)]
pub struct MatchKey {
    with_stan: bool,
    others: Vec<usize>,
}

impl MatchKey {
    pub fn new(fields: &[usize]) -> MatchKey {
        MatchKey {
            with_stan: fields.contains(&11),
            others: fields.iter().copied().filter(|&n| n != 11).collect(),
        }
    }

    /// Whether field `n` is part of the key.
    pub fn reads(&self, n: usize) -> bool {
        if n == 11 { self.with_stan } else { self.others.contains(&n) }
    }

    /// The key `msg` has once written on `link` with switch STAN `stan` in field 11; the
    /// other key fields are read from `msg` as they are (see `reads` for field 37).
    pub fn of_written(&self, link: u32, msg: &Message, stan: u32) -> Option<Key> {
        let stan = if self.with_stan { stan } else { 0 };
        Some(Key { link, stan, extra: self.extra(msg)? })
    }

    fn extra(&self, msg: &Message) -> Option<Bytes> {
        if self.others.is_empty() {
            return Some(Bytes::new());
        }
        let mut b = BytesMut::with_capacity(32);
        for &n in &self.others {
            b.extend_from_slice(msg.raw(n)?);
            b.extend_from_slice(&[0xFF]);
        }
        Some(b.freeze())
    }

    /// The key of `msg` on `link`; `None` when a key field is missing.
    pub fn of(&self, link: u32, msg: &Message) -> Option<Key> {
        let stan = if self.with_stan { u32::try_from(msg.number(11)?).ok()? } else { 0 };
        let extra = self.extra(msg)?;
        Some(Key { link, stan, extra })
    }
}

/// One request waiting for its reply.
#[derive(Debug)]
pub struct Pending {
    /// Boxed so that the reply moves as a pointer from the reader to the request.
    pub reply: oneshot::Sender<Box<Message>>,
    pub sent: Instant,
    pub deadline: Instant,
    /// The reply's MTI (request MTI + 10, a repeat's origin digit brought back).
    pub reply_mti: [u8; 4],
    /// The terminal's own STAN and RRN (the reply to the terminal restores them from
    /// its request; these name the transaction in logs).
    pub terminal_stan: Option<u32>,
    pub terminal_rrn: Option<[u8; 12]>,
}

/// A multiply-rotate hasher for `Key`s. Keys are made by the switch (its own link ids and
/// STANs; the issuer's reply only looks one up), so the table needs no defence against
/// chosen collisions, and SipHash showed up in profiles of every request.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // Folded so that the high bits (which pick a shard) depend on every input bit.
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(SEED);
    }
}

type KeyHash = std::hash::BuildHasherDefault<KeyHasher>;

/// What a request keeps to take its own entry back (deadline, failed write): its key,
/// and with slots the slot and generation it was given (`slots::Ticket`, the same idea one
/// layer down, so the two share the name).
#[derive(Debug, Clone)]
pub struct Ticket {
    key: Key,
    slot: Option<slots::Ticket>,
}

impl Ticket {
    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn into_key(self) -> Key {
        self.key
    }
}

/// A slot's entry: the request's `Pending` and its key's other fields, checked exactly
/// once the slot is won (the slot compares their hash). Boxed, and only for keys that have
/// other fields, so that a slot fits two cache lines.
#[derive(Debug)]
struct Entry {
    pending: Pending,
    extra: Option<Box<Bytes>>,
}

/// One issuer's waiting requests (see the module doc for slots and map).
#[derive(Debug, Default)]
pub struct SessionTable {
    slots: Option<Slots<Entry>>,
    map: DashMap<Key, Pending, KeyHash>,
}

/// Slots per request the issuer may have in flight: room enough that the STAN allocator,
/// moving on sequentially, rarely meets a slot still busy.
const SLOTS_PER_REQUEST: usize = 4;
/// In flight beyond the admission window: stored reversals and echoes pass it.
const OUTSIDE_WINDOW: usize = 1024;

impl SessionTable {
    /// A table of one sharded map, whatever the key (the baseline the bench compares).
    pub fn new() -> SessionTable {
        SessionTable { slots: None, map: DashMap::with_capacity_and_hasher(1024, KeyHash::default()) }
    }

    /// The table for an issuer matching replies by `key` with at most `window` requests
    /// in flight (all its links): slots when the key has field 11, else a map.
    pub fn for_key(key: &MatchKey, window: usize) -> SessionTable {
        if !key.with_stan {
            return SessionTable::new();
        }
        let n = window.saturating_add(OUTSIDE_WINDOW).saturating_mul(SLOTS_PER_REQUEST);
        SessionTable { slots: Some(Slots::new(n)), map: DashMap::with_hasher(KeyHash::default()) }
    }

    fn tag(extra: &[u8]) -> u64 {
        use std::hash::Hasher;
        if extra.is_empty() {
            return 0;
        }
        let mut h = KeyHasher::default();
        h.write(extra);
        h.finish()
    }

    pub fn contains(&self, key: &Key) -> bool {
        match &self.slots {
            Some(s) => s.contains(key.stan, key.link),
            None => self.map.contains_key(key),
        }
    }

    /// Whether switch STAN `stan` cannot be used now (its slot holds another request):
    /// the STAN allocator moves on without encoding a message for it.
    pub fn busy(&self, stan: u32) -> bool {
        self.slots.as_ref().is_some_and(|s| s.busy(stan))
    }

    /// Insert unless the key (or, with slots, its STAN's slot) is already in flight (then
    /// the entry comes back).
    pub fn insert(&self, key: Key, p: Pending) -> Result<Ticket, Pending> {
        if let Some(s) = &self.slots {
            let extra = (!key.extra.is_empty()).then(|| Box::new(key.extra.clone()));
            let entry = Entry { pending: p, extra };
            return match s.insert(key.stan, key.link, Self::tag(&key.extra), entry) {
                Ok(t) => Ok(Ticket { key, slot: Some(t) }),
                Err(e) => Err(e.pending),
            };
        }
        match self.map.entry(key) {
            dashmap::Entry::Occupied(_) => Err(p),
            dashmap::Entry::Vacant(v) => {
                let key = v.key().clone();
                v.insert(p);
                Ok(Ticket { key, slot: None })
            }
        }
    }

    /// Take the entry a reply matches by key, with whether the reply's `mti` is the one
    /// expected. A reply of another MTI is handed over all the same (keys are unique in
    /// flight, whatever the MTI): the waiting side refuses it (see `verify`), rather than
    /// leaving its request to time out.
    pub fn take_reply(&self, key: &Key, mti: &[u8]) -> Option<(Pending, bool)> {
        if let Some(s) = &self.slots {
            let e = s.take_reply(key.stan, key.link, Self::tag(&key.extra))?;
            let extra = e.extra.as_deref().map_or(&[][..], |b| &b[..]);
            let expected = e.pending.reply_mti == mti && extra == &key.extra[..];
            return Some((e.pending, expected));
        }
        self.map.remove(key).map(|(_, p)| {
            let expected = p.reply_mti == mti;
            (p, expected)
        })
    }

    /// Take a request's own entry whatever its state (deadline, failed write); `None`
    /// when it already left (its reply won, or its link was lost).
    pub fn take(&self, ticket: &Ticket) -> Option<Pending> {
        match (&self.slots, ticket.slot) {
            (Some(s), Some(t)) => s.take(t).map(|e| e.pending),
            _ => self.map.remove(&ticket.key).map(|(_, p)| p),
        }
    }

    /// Drop every entry of a lost link; their waiters see the sender dropped. Returns how many.
    pub fn purge_link(&self, link: u32) -> usize {
        let lost = |p: &Pending| {
            let rrn = p.terminal_rrn.as_ref().and_then(|r| std::str::from_utf8(r).ok());
            tracing::info!(
                link,
                terminal_stan = p.terminal_stan,
                terminal_rrn = rrn,
                "request lost with its link"
            );
        };
        let mut n = self.slots.as_ref().map_or(0, |s| s.purge_link(link, |e| lost(&e.pending)));
        self.map.retain(|k, p| {
            let keep = k.link != link;
            if !keep {
                n += 1;
                lost(p);
            }
            keep
        });
        n
    }

    /// Entries in the table (with slots, a scan: not for the request path).
    pub fn len(&self) -> usize {
        self.slots.as_ref().map_or(0, Slots::len) + self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;

    #[test]
    fn the_key_of_a_request_as_written_is_the_key_of_its_reply() {
        let s = shipped("iso87ascii").unwrap();
        let mut req = Message::new(s, "0200").unwrap();
        req.set(11, "000123").unwrap().set(41, "TERM0001").unwrap();
        for fields in [&[11][..], &[11, 41][..], &[41][..]] {
            let mk = MatchKey::new(fields);
            let mut written = req.clone();
            written.set(11, "004567").unwrap();
            assert_eq!(mk.of_written(3, &req, 4567), mk.of(3, &written), "{fields:?}");
            assert!(!mk.reads(37));
        }
        assert!(MatchKey::new(&[11, 37]).reads(37));
    }

    #[test]
    fn a_slot_takes_two_cache_lines() {
        assert_eq!(std::mem::size_of::<super::super::slots::Slot<Entry>>(), 128);
    }

    #[test]
    fn slots_match_by_stan_link_and_the_other_fields_and_leave_once() {
        let table = SessionTable::for_key(&MatchKey::new(&[11, 41]), 16);
        let pending = || {
            let (reply, _) = oneshot::channel();
            let now = Instant::now();
            Pending {
                reply,
                sent: now,
                deadline: now,
                reply_mti: *b"0210",
                terminal_stan: None,
                terminal_rrn: None,
            }
        };
        let key = |link, stan, extra: &'static [u8]| Key { link, stan, extra: Bytes::from_static(extra) };
        let t = table.insert(key(1, 7, b"T1\xFF"), pending()).unwrap();
        assert!(table.busy(7) && table.contains(&key(1, 7, b"")));
        assert!(table.insert(key(2, 7, b"T1\xFF"), pending()).is_err(), "one request a slot");
        assert!(table.take_reply(&key(2, 7, b"T1\xFF"), b"0210").is_none(), "another link");
        assert!(table.take_reply(&key(1, 7, b"T2\xFF"), b"0210").is_none(), "another terminal");
        let (_, expected) = table.take_reply(&key(1, 7, b"T1\xFF"), b"0210").unwrap();
        assert!(expected);
        assert!(table.take(&t).is_none(), "left once");
        let t = table.insert(key(1, 7, b"T1\xFF"), pending()).unwrap();
        let (_, expected) = table.take_reply(&key(1, 7, b"T1\xFF"), b"0230").unwrap();
        assert!(!expected, "another MTI is handed over, flagged");
        assert!(table.take(&t).is_none() && table.is_empty());
        table.insert(key(1, 8, b""), pending()).unwrap();
        table.insert(key(2, 9, b""), pending()).unwrap();
        assert_eq!((table.purge_link(1), table.len()), (1, 1));
    }

    #[test]
    fn keys_spread_over_the_hash() {
        use std::hash::BuildHasher;
        let h = KeyHash::default();
        let mut seen = std::collections::HashSet::new();
        for stan in 1..=1000u32 {
            seen.insert(h.hash_one(Key { link: 0, stan, extra: Bytes::new() }) >> 56);
        }
        // The top byte picks among the table's shards: it must vary with the STAN.
        assert!(seen.len() > 100, "{}", seen.len());
    }
}
