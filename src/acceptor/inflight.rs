//! Requests in flight per terminal and STAN on a listener, for every dialect: a terminal
//! that gives up on a request reverses it, and that reversal may overtake its original;
//! it then waits for the original's outcome (and for it alone) before it is matched in
//! the journal. Noting a request costs one lock of one of 16 shards and no allocation.
//! May import: crate::iso.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::iso::Message;

/// How long a reversal waits at most for its original to finish (the original is itself
/// bounded by its issuer deadline; this only guards against a deadline configured longer).
const WAIT_FOR_ORIGINAL: Duration = Duration::from_secs(60);

/// Requests in flight per (terminal, STAN) on a listener: a reversal that overtakes its
/// original (the terminal gave up first) waits for it, and for it alone. Noting a request
/// costs one lock of one of 16 shards and no allocation: the channel a reversal waits on
/// is made by the reversal.
#[derive(Default)]
pub struct InFlightTable {
    shards: [Mutex<HashMap<Key, Slot, std::hash::BuildHasherDefault<Fold>>>; 16],
    next: std::sync::atomic::AtomicU64,
}

/// A cheap hash for the in-flight map: it holds only requests in flight (bounded by the
/// connections' in-flight caps), so a terminal choosing colliding keys slows its own
/// listener's lookups at most, never grows anything.
#[derive(Default)]
struct Fold(u64);

impl std::hash::Hasher for Fold {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(w)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
}

/// Field 41 (trimmed, at most 16 bytes: a longer one is cut, which only makes a reversal
/// wait for a request that shares its first 16 bytes and STAN) and field 11.
type Key = ([u8; 16], u32);

struct Slot {
    /// Which request holds the slot (a retransmission may take it over).
    id: u64,
    /// Dropped when the request ends: a waiting reversal then goes on.
    done: Option<watch::Sender<()>>,
}

/// Held while a request is in flight; dropping it tells waiting reversals it is done.
pub struct InFlight {
    table: Arc<InFlightTable>,
    key: Key,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self.table.shard(&self.key);
        // A retransmission with the same key may have taken the slot since: it keeps it.
        if map.get(&self.key).is_some_and(|slot| slot.id == self.id) {
            map.remove(&self.key);
        }
    }
}

impl InFlightTable {
    fn shard(
        &self,
        key: &Key,
    ) -> std::sync::MutexGuard<'_, HashMap<Key, Slot, std::hash::BuildHasherDefault<Fold>>> {
        let i = (key.1 as usize ^ usize::from(key.0[key.0.len() - 1])) % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(req: &Message) -> Key {
        let mut tid = [0u8; 16];
        if let Some(t) = req.terminal_id() {
            let t = t.trim_end().as_bytes();
            let n = t.len().min(tid.len());
            tid[..n].copy_from_slice(&t[..n]);
        }
        (tid, req.stan().unwrap_or(u32::MAX))
    }

    /// Note `req` as in flight until the returned guard drops. Called when the request is
    /// read, before any later frame of its connection is: a reversal read after it finds it.
    pub fn start(self: &Arc<Self>, req: &Message) -> InFlight {
        let key = Self::key(req);
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.shard(&key).insert(key, Slot { id, done: None });
        InFlight { table: self.clone(), key, id }
    }

    /// Wait until the request with the terminal and STAN of `rev` is no longer in flight.
    pub async fn wait_for(&self, rev: &Message) {
        let key = Self::key(rev);
        let rx = self.shard(&key).get_mut(&key).map(|slot| match &slot.done {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(());
                slot.done = Some(tx);
                rx
            }
        });
        if let Some(mut rx) = rx {
            tracing::info!("reversal waits for its original, still in flight");
            // `changed` errs once the sender (the original's slot) is dropped.
            let _ =
                tokio::time::timeout(WAIT_FOR_ORIGINAL, async { while rx.changed().await.is_ok() {} }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;

    fn request(terminal: &str, stan: &str) -> Message {
        let mut m = Message::new(shipped("iso87ascii").unwrap(), "0200").unwrap();
        m.set(41, terminal).unwrap().set(11, stan).unwrap();
        m
    }

    async fn waits(table: &Arc<InFlightTable>, rev: &Message) -> bool {
        tokio::time::timeout(Duration::from_millis(50), table.wait_for(rev)).await.is_err()
    }

    #[tokio::test]
    async fn a_reversal_waits_for_its_own_original_until_it_ends() {
        let table = Arc::new(InFlightTable::default());
        let original = request("TERM0001", "000007");
        let guard = table.start(&original);
        assert!(!waits(&table, &request("TERM0002", "000007")).await, "another terminal's STAN");
        assert!(!waits(&table, &request("TERM0001", "000008")).await, "another STAN");
        let (t, rev) = (table.clone(), original.clone());
        let waiter = tokio::spawn(async move { t.wait_for(&rev).await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiter.is_finished(), "the original is still in flight");
        drop(guard);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.expect("ends with its original").unwrap();
        assert!(!waits(&table, &original).await, "nothing in flight any more");
    }

    #[tokio::test]
    async fn a_retransmission_keeps_the_slot_it_took_over() {
        let table = Arc::new(InFlightTable::default());
        let original = request("TERM0001", "000007");
        let first = table.start(&original);
        let second = table.start(&original);
        drop(first);
        assert!(waits(&table, &original).await, "the retransmission is still in flight");
        drop(second);
        assert!(!waits(&table, &original).await);
    }
}
