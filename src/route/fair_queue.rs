//! One priority class's waiting requests, fair between their sources (terminal
//! connections): a FIFO per source, the sources served round robin, one request a turn.
//! A source that pipelines hundreds of requests therefore waits behind its own backlog,
//! not in front of a terminal that sends one at a time; and when the class is full or
//! late, the request to give up is the newest of the source with the most waiting.
//! Pure; used by `sched` only.
//!
//! Positions are what the scheduler's wait estimates count: under round robin a request
//! that is its source's k-th waits behind at most k requests of every other source (fewer
//! when that source has fewer), so `position(source)` of a new request is
//! `sum over the other sources of min(q_s, k) + k`, with k = its source's count + 1.
//! May import: nothing.

use std::collections::{HashMap, VecDeque};

/// A request waiting, with the latest time it may still be sent.
#[derive(Debug)]
pub(super) struct Entry<T> {
    pub req: T,
    pub deadline: u64,
}

/// The waiting requests of one class.
#[derive(Debug)]
pub(super) struct FairQueue<T> {
    len: usize,
    /// Sources with requests waiting, the next to serve first; each appears once.
    ring: VecDeque<u64>,
    by_source: HashMap<u64, VecDeque<Entry<T>>>,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        FairQueue { len: 0, ring: VecDeque::new(), by_source: HashMap::new() }
    }
}

impl<T> FairQueue<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Requests of `source` waiting.
    pub fn count(&self, source: u64) -> usize {
        self.by_source.get(&source).map_or(0, VecDeque::len)
    }

    /// How many requests would be served before a new one of `source`, itself included.
    pub fn position(&self, source: u64) -> usize {
        let k = self.count(source).saturating_add(1);
        let others: usize =
            self.by_source.iter().filter(|(s, _)| **s != source).map(|(_, q)| q.len().min(k)).sum();
        others.saturating_add(k)
    }

    pub fn push(&mut self, source: u64, e: Entry<T>) {
        let q = self.by_source.entry(source).or_default();
        if q.is_empty() {
            self.ring.push_back(source);
        }
        q.push_back(e);
        self.len = self.len.saturating_add(1);
    }

    /// The next request in round-robin order.
    pub fn pop(&mut self) -> Option<Entry<T>> {
        let source = self.ring.pop_front()?;
        let q = self.by_source.get_mut(&source)?;
        let e = q.pop_front();
        if q.is_empty() {
            self.by_source.remove(&source);
        } else {
            self.ring.push_back(source);
        }
        if e.is_some() {
            self.len = self.len.saturating_sub(1);
        }
        e
    }

    /// The source with the most requests waiting, and how many.
    pub fn heaviest(&self) -> Option<(u64, usize)> {
        self.by_source.iter().map(|(s, q)| (*s, q.len())).max_by_key(|&(s, n)| (n, std::cmp::Reverse(s)))
    }

    /// The deadline of `source`'s newest request.
    pub fn newest_deadline(&self, source: u64) -> Option<u64> {
        self.by_source.get(&source)?.back().map(|e| e.deadline)
    }

    /// Take `source`'s newest request (to shed it).
    pub fn pop_newest(&mut self, source: u64) -> Option<Entry<T>> {
        let q = self.by_source.get_mut(&source)?;
        let e = q.pop_back();
        if q.is_empty() {
            self.by_source.remove(&source);
            self.ring.retain(|s| *s != source);
        }
        if e.is_some() {
            self.len = self.len.saturating_sub(1);
        }
        e
    }

    /// Whether any request's deadline is before `now`.
    pub fn any_before(&self, now: u64) -> bool {
        self.by_source.values().any(|q| q.iter().any(|e| e.deadline < now))
    }

    /// Remove every request whose deadline is before `now`, handing each to `out`.
    pub fn remove_before(&mut self, now: u64, mut out: impl FnMut(T)) {
        let mut removed = 0usize;
        for q in self.by_source.values_mut() {
            let mut keep = VecDeque::with_capacity(q.len());
            for e in q.drain(..) {
                if e.deadline < now {
                    removed = removed.saturating_add(1);
                    out(e.req);
                } else {
                    keep.push_back(e);
                }
            }
            *q = keep;
        }
        self.by_source.retain(|_, q| !q.is_empty());
        let by_source = &self.by_source;
        self.ring.retain(|s| by_source.contains_key(s));
        self.len = self.len.saturating_sub(removed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(deadline: u64) -> Entry<u64> {
        Entry { req: deadline, deadline }
    }

    #[test]
    fn sources_are_served_in_turn_and_positions_count_the_turns_ahead() {
        let mut q = FairQueue::default();
        for d in 0..5 {
            q.push(7, e(d));
        }
        q.push(9, e(100));
        // A new request of source 9 is its second: one of 9 and two of 7 go first.
        assert_eq!(q.position(9), 2 + 2);
        assert_eq!(q.position(8), 2 + 1);
        assert_eq!(q.position(7), 1 + 6);
        assert_eq!(q.heaviest(), Some((7, 5)));
        let order: Vec<u64> = std::iter::from_fn(|| q.pop().map(|e| e.req)).collect();
        assert_eq!(order, vec![0, 100, 1, 2, 3, 4]);
        assert!(q.is_empty() && q.by_source.is_empty() && q.ring.is_empty());
    }

    #[test]
    fn the_newest_of_a_source_and_the_late_ones_leave_cleanly() {
        let mut q = FairQueue::default();
        q.push(1, e(10));
        q.push(1, e(20));
        q.push(2, e(5));
        assert_eq!(q.newest_deadline(1), Some(20));
        assert_eq!(q.pop_newest(1).map(|e| e.req), Some(20));
        assert_eq!(q.pop_newest(2).map(|e| e.req), Some(5));
        assert_eq!((q.len(), q.ring.len()), (1, 1));
        q.push(3, e(1));
        assert!(q.any_before(2) && !q.any_before(1));
        let mut gone = Vec::new();
        q.remove_before(11, |r| gone.push(r));
        assert_eq!((gone.len(), q.len()), (2, 0));
        assert!(q.ring.is_empty() && q.pop().is_none());
    }
}
