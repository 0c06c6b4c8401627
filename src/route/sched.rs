//! Admission control in front of one issuer: a window of requests in flight, and behind it
//! one bounded queue per priority class served by smooth weighted round robin. Pure and
//! generic over the request type; time is a caller-supplied microsecond counter (virtual in
//! tests, a monotonic clock in the issuer connector).
//!
//! - `offer(req, class, deadline, now)`: admitted at once while the window has room and
//!   nothing waits; otherwise queued, unless its queue is full or its estimated wait would
//!   take it past `deadline` (the latest time it may still be sent; the connector passes
//!   its reply deadline minus the issuer's expected latency) — then it is shed with 91.
//! - Reversals (and advices, which share their class) are never shed: their queue has its
//!   own, larger bound, and a reversal that finds it full comes back as `StoreAndForward`,
//!   for the connector's durable queue. Their deadline is ignored.
//! - `complete(now)`: one request left the window (answered or timed out); returns the next
//!   request to send, if any. Requests found past their deadline on the way are set aside.
//! - `expire(now)`: sheds (91) every queued request past its deadline, plus those set aside.
//! - Estimated wait of a new request of class c with q requests of c ahead of it: under
//!   smooth WRR, c gets w_c of every W picks (W: the weights of the classes waiting, c
//!   included), spread evenly, so it is sent after about ceil((q+1) * W / w_c) freed slots
//!   (an estimate, not a bound: classes that start waiting later take their share too,
//!   which is why `complete` and `expire` still check deadlines); a slot frees every
//!   `interval` (issuer latency / window at first, then an average of the measured gaps
//!   between completions while busy). Lower classes have smaller weights, so their
//!   estimates cross their deadlines first: under overload the lowest classes are shed first.
//! - Memory is bounded: each queue by its bound, and the set-aside list by their sum.
//!
//! May import: this layer only.

use std::collections::VecDeque;

use super::decision::Rc;
use super::priority::{Class, QueueConfig, Weights};

/// The answer to `offer`.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer<T> {
    /// Send it now.
    Admit(T),
    /// Waiting; `complete` will hand it out (or `expire` shed it).
    Queued,
    /// Refused: answer the terminal with `rc` (91).
    Shed { rc: Rc, req: T },
    /// A reversal that found its queue full: keep it in the store-and-forward queue.
    StoreAndForward(T),
}

/// A request shed from a queue.
#[derive(Debug, PartialEq, Eq)]
pub struct Shed<T> {
    pub req: T,
    pub class: Class,
    pub rc: Rc,
}

#[derive(Debug)]
struct Entry<T> {
    req: T,
    deadline: u64,
}

/// Admission control for one issuer.
#[derive(Debug)]
pub struct Scheduler<T> {
    window: usize,
    in_flight: usize,
    bounds: [usize; 5],
    weights: Weights,
    queues: [VecDeque<Entry<T>>; 5],
    credit: [i64; 5],
    interval_us: u64,
    last_complete: Option<u64>,
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
        self.queues.get(class.index()).map_or(0, VecDeque::len)
    }

    /// Current estimate of the time between freed slots, in microseconds.
    pub fn interval_us(&self) -> u64 {
        self.interval_us
    }

    fn waiting(&self) -> bool {
        self.queues.iter().any(|q| !q.is_empty())
    }

    /// Estimated wait before a new request of `class` would be sent.
    pub fn estimate_us(&self, class: Class) -> u64 {
        let c = class.index();
        let w_c = u64::from(self.weights.get(c).copied().unwrap_or(1));
        let total: u64 = self
            .queues
            .iter()
            .zip(self.weights)
            .enumerate()
            .filter(|(i, (q, _))| *i == c || !q.is_empty())
            .map(|(_, (_, w))| u64::from(w))
            .sum();
        let ahead = self.queued(class) as u64 + 1;
        let slots = ahead.saturating_mul(total).div_ceil(w_c);
        slots.saturating_mul(self.interval_us)
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
        self.queues.iter().map(VecDeque::len).sum()
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// Offer one request (see the module doc).
    pub fn offer(&mut self, req: T, class: Class, deadline: u64, now: u64) -> Offer<T> {
        if self.in_flight < self.window && !self.waiting() {
            self.in_flight += 1;
            return Offer::Admit(req);
        }
        let c = class.index();
        let bound = self.bounds.get(c).copied().unwrap_or(0);
        let full = self.queued(class) >= bound;
        if class == Class::Reversal {
            if full {
                return Offer::StoreAndForward(req);
            }
        } else if full || now.saturating_add(self.estimate_us(class)) > deadline {
            return Offer::Shed { rc: Rc::ISSUER_UNAVAILABLE, req };
        }
        match self.queues.get_mut(c) {
            Some(q) => {
                q.push_back(Entry { req, deadline });
                Offer::Queued
            }
            None => Offer::Shed { rc: Rc::ISSUER_UNAVAILABLE, req },
        }
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
        while let Some(i) = self.pick() {
            let class = Class::ALL.get(i).copied().unwrap_or(Class::Batch);
            let Some(e) = self.queues.get_mut(i).and_then(VecDeque::pop_front) else { break };
            if class != Class::Reversal && e.deadline < now {
                self.set_aside.push(Shed { req: e.req, class, rc: Rc::ISSUER_UNAVAILABLE });
                continue;
            }
            self.in_flight += 1;
            return Some((e.req, class));
        }
        None
    }

    /// Shed every queued request past its deadline (never reversals).
    pub fn expire(&mut self, now: u64) -> Vec<Shed<T>> {
        let mut out = std::mem::take(&mut self.set_aside);
        for (i, q) in self.queues.iter_mut().enumerate().skip(1) {
            let class = Class::ALL.get(i).copied().unwrap_or(Class::Batch);
            if !q.iter().any(|e| e.deadline < now) {
                continue;
            }
            let mut keep = VecDeque::with_capacity(q.len());
            for e in q.drain(..) {
                if e.deadline < now {
                    out.push(Shed { req: e.req, class, rc: Rc::ISSUER_UNAVAILABLE });
                } else {
                    keep.push_back(e);
                }
            }
            *q = keep;
        }
        out
    }
}

#[cfg(test)]
#[path = "sched_tests.rs"]
mod tests;
