//! The memory of timed-out requests: the keys of requests whose deadline passed (with
//! what each stood for) are kept for a while and up to a count, so that a reply arriving
//! after its request gave up is told apart from one that matches nothing the switch sent.
//! One per issuer, shared by its links.
//! May import: crate::issuer::session.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::session::Key;

/// What a timed-out key stood for, so that its late reply is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Late {
    /// A financial request whose reversal (this field 90) is already queued.
    Original { field90: String },
    /// A reversal write (this store id) whose 0410 came too late: it still acknowledges.
    Reversal { id: i64 },
}

/// Keys of timed-out requests, remembered for a while and up to a count.
#[derive(Debug)]
pub struct LateMemory {
    ttl: Duration,
    cap: usize,
    inner: Mutex<(LateMap, VecDeque<(Instant, Key)>)>,
}

type LateMap = HashMap<Key, (Instant, Late)>;

impl LateMemory {
    pub fn new(ttl: Duration, cap: usize) -> LateMemory {
        LateMemory { ttl, cap: cap.max(1), inner: Mutex::new((HashMap::new(), VecDeque::new())) }
    }

    pub fn remember(&self, key: Key, late: Late, now: Instant) {
        let Ok(mut g) = self.inner.lock() else { return };
        let (map, order) = &mut *g;
        Self::expire(map, order, now, self.ttl);
        while map.len() >= self.cap {
            match order.pop_front() {
                Some((_, k)) => {
                    map.remove(&k);
                }
                None => break,
            }
        }
        order.push_back((now, key.clone()));
        map.insert(key, (now, late));
    }

    /// The entry of a late reply's key, taken (a second late reply matches nothing).
    pub fn take(&self, key: &Key, now: Instant) -> Option<Late> {
        let Ok(mut g) = self.inner.lock() else { return None };
        let (map, order) = &mut *g;
        Self::expire(map, order, now, self.ttl);
        map.remove(key).map(|(_, l)| l)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |g| g.0.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expire(map: &mut LateMap, order: &mut VecDeque<(Instant, Key)>, now: Instant, ttl: Duration) {
        while let Some((at, _)) = order.front() {
            if now.duration_since(*at) < ttl {
                break;
            }
            if let Some((at, k)) = order.pop_front() {
                // A key re-remembered later keeps its newer entry.
                if map.get(&k).is_some_and(|(t, _)| *t == at) {
                    map.remove(&k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn key(stan: u32) -> Key {
        Key { link: 0, stan, extra: Bytes::new() }
    }

    #[test]
    fn late_memory_is_bounded_in_time_and_count() {
        let t0 = Instant::now();
        let mem = LateMemory::new(Duration::from_secs(10), 3);
        for s in 1..=4 {
            mem.remember(key(s), Late::Reversal { id: i64::from(s) }, t0);
        }
        assert_eq!(mem.len(), 3, "the oldest leaves at the cap");
        assert_eq!(mem.take(&key(1), t0), None);
        assert_eq!(mem.take(&key(2), t0), Some(Late::Reversal { id: 2 }));
        assert_eq!(mem.take(&key(2), t0), None, "taken once");
        assert_eq!(mem.take(&key(3), t0 + Duration::from_secs(11)), None, "expired");
        assert!(mem.is_empty());
    }
}
