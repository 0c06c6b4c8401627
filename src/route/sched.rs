//! Admission control in front of one issuer: a window of requests in flight, and behind it
//! one bounded queue per priority class served by smooth weighted round robin; within a
//! class, the requests of each source (a terminal connection) wait in a FIFO of their own
//! and the sources take turns (`fair_queue`). Pure and generic over the request type; time
//! is a caller-supplied microsecond counter (virtual in tests, a monotonic clock in the
//! issuer connector).
//!
//! - `offer_from(req, class, source, deadline, now)`: admitted at once while the window has
//!   room and nothing waits; otherwise queued, unless its estimated wait would take it past
//!   `deadline` (the latest time it may still be sent; the connector passes its reply
//!   deadline minus the issuer's expected latency) — then it is shed with 91 at once. When
//!   its class's queue is full, the newest request of the source with the most waiting
//!   makes room for it (shed), unless that source is its own: one flooding connection
//!   cannot fill a queue and push the others' requests out. `offer` is one source.
//! - Shedding is immediate, whatever the class (reversals apart): whenever the estimates
//!   change (an offer, a completion), a class's last request in line — the newest of its
//!   heaviest source — is shed as soon as its estimated send time passes its deadline, and
//!   so on, rather than left to wait out its deadline. Those sheds are collected by
//!   `take_shed`, which the caller drains after each `offer` and `complete`.
//! - Reversals (and advices, which share their class) are never shed: their queue has its
//!   own, larger bound, and a reversal that finds it full comes back as `StoreAndForward`,
//!   for the connector's durable queue. Their deadline is ignored.
//! - `complete(now)`: one request left the window (answered or timed out); returns the next
//!   request to send, if any. Requests found past their deadline on the way are set aside.
//! - `expire(now)`: sheds (91) every queued request past its deadline, plus those set aside.
//! - Estimated wait of a request of class c at position p in its class (p requests of c
//!   served before it, itself included): under smooth WRR every other waiting class j gets
//!   w_j picks for every w_c of c, but no more than it has waiting, so it is sent after
//!   about p + sum_j min(q_j, ceil(p * w_j / w_c)) freed slots (an estimate, not a bound:
//!   classes that start waiting later take their share too, which is why estimates are
//!   revisited and `complete` and `expire` still check deadlines); a slot frees every
//!   `interval` (issuer latency / window at first, then an average of the measured gaps
//!   between completions while busy). Lower classes have smaller weights, so their
//!   estimates cross their deadlines first: under overload the lowest classes are shed first.
//! - Memory is bounded: each queue by its bound, and the set-aside list by their sum.
//!
//! May import: crate::rc, crate::route::fair_queue, crate::route::priority.

use super::fair_queue::{Entry, FairQueue};
use super::priority::{Class, QueueConfig, Weights};
use crate::rc::ResponseCode;

/// The answer to `offer`.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer<T> {
    /// Send it now.
    Admit(T),
    /// Waiting; `complete` will hand it out (or `expire` shed it).
    Queued,
    /// Refused: answer the terminal with `rc` (91).
    Shed { rc: ResponseCode, req: T },
    /// A reversal that found its queue full: keep it in the store-and-forward queue.
    StoreAndForward(T),
}

/// A request shed from a queue.
#[derive(Debug, PartialEq, Eq)]
pub struct Shed<T> {
    pub req: T,
    pub class: Class,
    pub rc: ResponseCode,
}

/// At most this many requests a class sheds per revisit of its estimates: a revisit runs
/// under the connector's lock, and the next offer or completion carries on.
const PRUNE_PER_CALL: usize = 64;

/// Admission control for one issuer.
#[derive(Debug)]
pub struct Scheduler<T> {
    window: usize,
    in_flight: usize,
    bounds: [usize; 5],
    weights: Weights,
    queues: [FairQueue<T>; 5],
    credit: [i64; 5],
    interval_us: u64,
    last_complete: Option<u64>,
    /// Per class, the measured time between two of its requests sent while it kept
    /// waiting (0: not measured since it last emptied), and when it last sent one.
    class_gap_us: [u64; 5],
    class_last: [Option<u64>; 5],
    set_aside: Vec<Shed<T>>,
}

impl<T> Scheduler<T> {
    pub fn new(cfg: QueueConfig, weights: Weights) -> Scheduler<T> {
        let window = cfg.window.max(1);
        Scheduler {
            window,
            in_flight: 0,
            bounds: cfg.bounds,
            weights: weights.map(|w| w.max(1)),
            queues: Default::default(),
            credit: [0; 5],
            interval_us: (cfg.latency_us / window as u64).max(1),
            last_complete: None,
            class_gap_us: [0; 5],
            class_last: [None; 5],
            set_aside: Vec::new(),
        }
    }

    /// New weights (a peak window opened or closed).
    pub fn set_weights(&mut self, weights: Weights) {
        self.weights = weights.map(|w| w.max(1));
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn queued(&self, class: Class) -> usize {
        self.queues.get(class.index()).map_or(0, FairQueue::len)
    }

    /// Current estimate of the time between freed slots, in microseconds.
    pub fn interval_us(&self) -> u64 {
        self.interval_us
    }

    fn waiting(&self) -> bool {
        self.queues.iter().any(|q| !q.is_empty())
    }

    /// Estimated wait before a new request of `class` (from source 0) would be sent.
    pub fn estimate_us(&self, class: Class) -> u64 {
        self.estimate_from_us(class, 0)
    }

    /// Estimated wait before a new request of `class` from `source` would be sent.
    pub fn estimate_from_us(&self, class: Class, source: u64) -> u64 {
        let position = self.queues.get(class.index()).map_or(1, |q| q.position(source));
        self.wait_us(class.index(), position)
    }

    /// Estimated wait of the request at `position` (1-based) of class `c`: the weights'
    /// estimate, or the class's measured pace when that is slower (the weights' estimate
    /// cannot see requests of higher classes that have not arrived yet, and under
    /// sustained overload they keep arriving: a low class is served slower than it says).
    fn wait_us(&self, c: usize, position: usize) -> u64 {
        let by_weights = self.slots(c, position).saturating_mul(self.interval_us);
        let gap = self.class_gap_us.get(c).copied().unwrap_or(0);
        by_weights.max(gap.saturating_mul(position as u64))
    }

    /// Freed slots before the request at `position` (1-based) of class `c` is sent.
    fn slots(&self, c: usize, position: usize) -> u64 {
        let p = position as u64;
        let w_c = u64::from(self.weights.get(c).copied().unwrap_or(1));
        let others: u64 = self
            .queues
            .iter()
            .zip(self.weights)
            .enumerate()
            .filter(|(j, _)| *j != c)
            .map(|(_, (q, w_j))| (q.len() as u64).min(p.saturating_mul(u64::from(w_j)).div_ceil(w_c)))
            .sum();
        p.saturating_add(others)
    }

    /// Shed, class by class (never reversals), the last requests in line whose estimated
    /// send time is past their deadline (see the module doc).
    fn prune(&mut self, now: u64) {
        for c in 1..self.queues.len() {
            for _ in 0..PRUNE_PER_CALL {
                let Some(q) = self.queues.get(c) else { break };
                let Some((source, _)) = q.heaviest() else { break };
                let Some(deadline) = q.newest_deadline(source) else { break };
                // The heaviest source's newest request is the class's last in line.
                let at = now.saturating_add(self.wait_us(c, q.len()));
                if at <= deadline {
                    break;
                }
                let Some(e) = self.queues.get_mut(c).and_then(|q| q.pop_newest(source)) else { break };
                let class = Class::ALL.get(c).copied().unwrap_or(Class::Batch);
                self.set_aside.push(Shed { req: e.req, class, rc: ResponseCode::ISSUER_UNAVAILABLE });
            }
        }
    }

    /// Requests shed since the last call, by `offer`, `complete` or a revisit of the
    /// estimates: the caller answers them 91. No allocation when there are none.
    pub fn take_shed(&mut self) -> Vec<Shed<T>> {
        std::mem::take(&mut self.set_aside)
    }

    /// The fast path of `offer`, for a caller that would rather not build its request
    /// (a waiter) before knowing it must wait: true and one more in flight when the window
    /// has room and nothing waits; false changes nothing (then `offer`).
    pub fn try_admit(&mut self) -> bool {
        if self.in_flight < self.window && !self.waiting() {
            self.in_flight += 1;
            return true;
        }
        false
    }

    /// Requests waiting, all classes.
    pub fn queued_total(&self) -> usize {
        self.queues.iter().map(FairQueue::len).sum()
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// Offer one request of source 0 (see `offer_from`).
    pub fn offer(&mut self, req: T, class: Class, deadline: u64, now: u64) -> Offer<T> {
        self.offer_from(req, class, 0, deadline, now)
    }

    /// Offer one request of `source` (see the module doc).
    pub fn offer_from(&mut self, req: T, class: Class, source: u64, deadline: u64, now: u64) -> Offer<T> {
        if self.in_flight < self.window && !self.waiting() {
            self.in_flight += 1;
            return Offer::Admit(req);
        }
        let c = class.index();
        if self.queued(class) == 0 {
            // Its queue emptied (sent, shed or expired): no backlog, so no pace to go by.
            self.forget_pace(c);
        }
        let bound = self.bounds.get(c).copied().unwrap_or(0);
        let full = self.queued(class) >= bound;
        if class == Class::Reversal {
            if full {
                return Offer::StoreAndForward(req);
            }
        } else {
            if now.saturating_add(self.estimate_from_us(class, source)) > deadline {
                return Offer::Shed { rc: ResponseCode::ISSUER_UNAVAILABLE, req };
            }
            if full && !self.make_room(c, source) {
                return Offer::Shed { rc: ResponseCode::ISSUER_UNAVAILABLE, req };
            }
        }
        match self.queues.get_mut(c) {
            Some(q) if bound > 0 => {
                q.push(source, Entry { req, deadline });
                // The newcomer may have slowed the other classes down.
                self.prune(now);
                Offer::Queued
            }
            _ => Offer::Shed { rc: ResponseCode::ISSUER_UNAVAILABLE, req },
        }
    }

    /// A full class `c` sheds the newest request of its heaviest source for one of
    /// `source`, when `source` (with its new request) would still have fewer waiting.
    fn make_room(&mut self, c: usize, source: u64) -> bool {
        let Some(q) = self.queues.get_mut(c) else { return false };
        let Some((heaviest, n)) = q.heaviest() else { return false };
        if heaviest == source || q.count(source).saturating_add(1) >= n {
            return false;
        }
        let Some(e) = q.pop_newest(heaviest) else { return false };
        let class = Class::ALL.get(c).copied().unwrap_or(Class::Batch);
        self.set_aside.push(Shed { req: e.req, class, rc: ResponseCode::ISSUER_UNAVAILABLE });
        true
    }

    /// Pick the next class by smooth weighted round robin among non-empty queues.
    fn pick(&mut self) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in 0..5 {
            let nonempty = self.queues.get(i).is_some_and(|q| !q.is_empty());
            let w = i64::from(self.weights.get(i).copied().unwrap_or(1));
            let Some(credit) = self.credit.get_mut(i) else { continue };
            if !nonempty {
                *credit = 0;
                continue;
            }
            *credit += w;
            total += w;
            let better = match best {
                None => true,
                Some(b) => self.credit.get(b) < self.credit.get(i),
            };
            if better {
                best = Some(i);
            }
        }
        if let Some(b) = best
            && let Some(c) = self.credit.get_mut(b)
        {
            *c -= total;
        }
        best
    }

    /// One request left the window; the next one to send, if any.
    pub fn complete(&mut self, now: u64) -> Option<(T, Class)> {
        if !self.waiting() {
            // The common case: nothing to hand out, no interval to measure.
            // (`pick` would reset every credit, all queues being empty.)
            self.credit = [0; 5];
            self.last_complete = None;
            self.in_flight = self.in_flight.saturating_sub(1);
            return None;
        }
        if let Some(last) = self.last_complete {
            let gap = now.saturating_sub(last);
            self.interval_us = (self.interval_us.saturating_mul(7).saturating_add(gap) / 8).max(1);
        }
        self.last_complete = Some(now);
        self.in_flight = self.in_flight.saturating_sub(1);
        let mut next = None;
        while let Some(i) = self.pick() {
            let class = Class::ALL.get(i).copied().unwrap_or(Class::Batch);
            let Some(e) = self.queues.get_mut(i).and_then(FairQueue::pop) else { break };
            if class != Class::Reversal && e.deadline < now {
                self.set_aside.push(Shed { req: e.req, class, rc: ResponseCode::ISSUER_UNAVAILABLE });
                continue;
            }
            self.in_flight += 1;
            self.class_sent(i, now);
            next = Some((e.req, class));
            break;
        }
        // The measured interval may have grown: revisit the estimates of those still waiting.
        self.prune(now);
        next
    }

    /// Class `c` sent a request: measure its pace while it keeps waiting.
    fn class_sent(&mut self, c: usize, now: u64) {
        let still_waiting = self.queues.get(c).is_some_and(|q| !q.is_empty());
        let slot = self.interval_us;
        let (Some(gap), Some(last)) = (self.class_gap_us.get_mut(c), self.class_last.get_mut(c)) else {
            return;
        };
        if let Some(l) = *last {
            let d = now.saturating_sub(l);
            // Seeded with one slot, not with the first gap: a first gap stretched by a
            // passing burst of a higher class (a few reversals) is no pace, and would shed
            // this class's queue for nothing.
            let from = if *gap == 0 { slot } else { *gap };
            *gap = (from.saturating_mul(7).saturating_add(d) / 8).max(1);
        }
        if still_waiting {
            *last = Some(now);
        } else {
            // A class that emptied has no backlog pace until it waits again: the weights
            // may have changed meanwhile (a peak window), and a stale pace would misjudge.
            (*gap, *last) = (0, None);
        }
    }

    fn forget_pace(&mut self, c: usize) {
        if let (Some(gap), Some(last)) = (self.class_gap_us.get_mut(c), self.class_last.get_mut(c)) {
            (*gap, *last) = (0, None);
        }
    }

    /// Shed every queued request past its deadline (never reversals), plus those set aside.
    pub fn expire(&mut self, now: u64) -> Vec<Shed<T>> {
        let mut out = std::mem::take(&mut self.set_aside);
        for (i, q) in self.queues.iter_mut().enumerate().skip(1) {
            let class = Class::ALL.get(i).copied().unwrap_or(Class::Batch);
            if q.any_before(now) {
                q.remove_before(now, |req| {
                    out.push(Shed { req, class, rc: ResponseCode::ISSUER_UNAVAILABLE })
                });
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "sched_tests.rs"]
mod tests;
