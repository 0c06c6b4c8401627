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

    /// The key of `msg` on `link`; `None` when a key field is missing.
    pub fn of(&self, link: u32, msg: &Message) -> Option<Key> {
        let stan = if self.with_stan { u32::try_from(msg.number(11)?).ok()? } else { 0 };
        let extra = if self.others.is_empty() {
            Bytes::new()
        } else {
            let mut b = BytesMut::with_capacity(32);
            for &n in &self.others {
                b.extend_from_slice(msg.raw(n)?);
                b.extend_from_slice(&[0xFF]);
            }
            b.freeze()
        };
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
    /// The reply's MTI (request MTI + 10); a reply of another class does not match.
    pub reply_mti: [u8; 4],
    /// The terminal's own STAN and RRN (the reply to the terminal restores them from
    /// its request; these name the transaction in logs).
    pub terminal_stan: Option<u32>,
    pub terminal_rrn: Option<[u8; 12]>,
}

/// All issuers' waiting requests.
#[derive(Debug, Default)]
pub struct SessionTable {
    map: DashMap<Key, Pending>,
}

impl SessionTable {
    pub fn new() -> SessionTable {
        SessionTable { map: DashMap::with_capacity(1024) }
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

    /// Take the entry a reply with `mti` matches.
    pub fn take_reply(&self, key: &Key, mti: &[u8]) -> Option<Pending> {
        self.map.remove_if(key, |_, p| p.reply_mti == mti).map(|(_, p)| p)
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
