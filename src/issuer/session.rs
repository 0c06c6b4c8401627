//! The session table: every request written to an issuer link and not yet answered,
//! keyed by (link, switch STAN, other configured match fields). The entry holds what the
//! waiting request needs back (the reply sender, its start instant and deadline, the
//! terminal's original STAN and RRN for the log). Entries leave the table exactly once:
//! by the reply that matches them, by the deadline, or when their link is lost. No guard
//! is ever held across `.await`. Lives in `src/issuer/` alone. May import: the codec.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use tokio::sync::oneshot;

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

/// All issuers' waiting requests.
#[derive(Debug, Default)]
pub struct SessionTable {
    map: DashMap<Key, Pending, KeyHash>,
}

impl SessionTable {
    pub fn new() -> SessionTable {
        SessionTable { map: DashMap::with_capacity_and_hasher(1024, KeyHash::default()) }
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.map.contains_key(key)
    }

    /// Insert unless the key is already in flight (then the entry comes back).
    pub fn insert(&self, key: Key, p: Pending) -> Result<(), Pending> {
        match self.map.entry(key) {
            dashmap::Entry::Occupied(_) => Err(p),
            dashmap::Entry::Vacant(v) => {
                v.insert(p);
                Ok(())
            }
        }
    }

    /// Take the entry a reply matches by key, with whether the reply's `mti` is the one
    /// expected. A reply of another MTI is handed over all the same (keys are unique in
    /// flight, whatever the MTI): the waiting side refuses it (see `verify`), rather than
    /// leaving its request to time out.
    pub fn take_reply(&self, key: &Key, mti: &[u8]) -> Option<(Pending, bool)> {
        self.map.remove(key).map(|(_, p)| {
            let expected = p.reply_mti == mti;
            (p, expected)
        })
    }

    /// Take an entry whatever its state (deadline, failed write).
    pub fn take(&self, key: &Key) -> Option<Pending> {
        self.map.remove(key).map(|(_, p)| p)
    }

    /// Drop every entry of a lost link; their waiters see the sender dropped. Returns how many.
    pub fn purge_link(&self, link: u32) -> usize {
        let mut n = 0;
        self.map.retain(|k, p| {
            let keep = k.link != link;
            if !keep {
                n += 1;
                let rrn = p.terminal_rrn.as_ref().and_then(|r| std::str::from_utf8(r).ok());
                tracing::info!(
                    link,
                    terminal_stan = p.terminal_stan,
                    terminal_rrn = rrn,
                    "request lost with its link"
                );
            }
            keep
        });
        n
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
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
