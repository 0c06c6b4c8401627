//! Admission control in front of one issuer's in-flight window (all its links together):
//! the routing core's pure `Scheduler` behind a mutex, driven by a monotonic microsecond
//! clock (microseconds since the issuer was built). The mutex is never held across an
//! `.await` and nothing is sent on a channel while it is held.
//!
//! - Fast path: the window has room and nothing waits: one lock, `try_admit`, a `Slot`
//!   (an `Arc` clone). No allocation, no timer, no wakeup.
//! - Otherwise the request offers a oneshot sender to the scheduler and waits on the
//!   receiver: a freed slot arrives through it (`Grant::Go`), or its shedding
//!   (`Grant::Shed`). The waiter also arms one timer at its send-by time: when it fires
//!   the waiter runs `expire`, which sheds every request past its deadline (its own
//!   included) — so expiry needs no task of its own and costs nothing while nobody waits.
//! - A `Slot` frees its place when dropped (reply, timeout, link lost, or the terminal's
//!   future dropped): `complete` hands the place to the next waiter. A waiter that has
//!   gone returns the slot through the failed send; the next one is tried.
//! - Reversals and advices are never shed: when their queue is full, or when they have
//!   waited until their send-by time, they go past the window (`Admit::Overflow`).
//! - Each request names its source (the terminal connection it came on): the scheduler
//!   takes the sources of a class in turn, so a flooding connection waits behind its own
//!   backlog. Requests the scheduler sheds on the way (a full queue making room, an
//!   estimate turned late) are told at once, after the lock is released.
//!
//! May import: crate::metrics, crate::route::priority, crate::route::sched.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use tokio::sync::oneshot;

use crate::metrics as m;
use crate::route::Class;
use crate::route::priority::{QueueConfig, Weights};
use crate::route::sched::{Offer, Scheduler, Shed};

type Waiter = oneshot::Sender<Grant>;

/// What a waiting request hears.
pub(super) enum Grant {
    Go(Slot),
    Shed,
}

/// The answer to `Admission::admit`.
pub(super) enum Admit {
    /// Send it; the slot frees its place when dropped.
    Go(Slot),
    /// Answer 91 (already counted in `isoswitch_shed_total`).
    Shed,
    /// A reversal or advice that found its queue full or waited until its send-by time:
    /// send it past the window, never shed.
    Overflow,
}

/// One place in the issuer's window.
pub(super) struct Slot {
    adm: Option<Arc<Admission>>,
}

impl Slot {
    /// Forget the place without freeing it (its accounting moved elsewhere).
    fn disarm(mut self) {
        self.adm = None;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(a) = self.adm.take() {
            a.release();
        }
    }
}

/// Per-class metric handles, looked up once.
struct ClassMetrics {
    depth: Gauge,
    after_wait: Counter,
    shed: Counter,
    wait: Histogram,
}

/// Admission control of one issuer.
pub(super) struct Admission {
    sched: Mutex<Scheduler<Waiter>>,
    epoch: Instant,
    /// The sum of the issuer's link windows: the scheduler's window never exceeds it.
    links_window: usize,
    /// Expected issuer latency until the links measure it, in microseconds.
    latency_us: AtomicU64,
    classes: [ClassMetrics; 5],
    overflow: Counter,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").field("links_window", &self.links_window).finish_non_exhaustive()
    }
}

impl Admission {
    pub(super) fn new(
        issuer: &str,
        links_window: usize,
        queue: QueueConfig,
        weights: Weights,
    ) -> Arc<Admission> {
        let classes = Class::ALL.map(|c| {
            let (issuer, class) = (issuer.to_string(), c.name());
            ClassMetrics {
                depth: gauge!(m::ADMISSION_QUEUE_DEPTH, "issuer" => issuer.clone(), "class" => class),
                after_wait: counter!(m::ADMITTED_AFTER_WAIT_TOTAL, "issuer" => issuer, "class" => class),
                shed: counter!(m::SHED_TOTAL, "class" => class),
                wait: histogram!(m::ADMISSION_WAIT_SECONDS, "class" => class),
            }
        });
        for c in &classes {
            c.depth.set(0.0);
        }
        let links_window = links_window.max(1);
        Arc::new(Admission {
            sched: Mutex::new(Scheduler::new(Self::sized(queue, links_window), weights)),
            epoch: Instant::now(),
            links_window,
            latency_us: AtomicU64::new(queue.latency_us),
            classes,
            overflow: counter!(m::ADMISSION_OVERFLOW_TOTAL, "issuer" => issuer.to_string()),
        })
    }

    fn sized(mut queue: QueueConfig, links_window: usize) -> QueueConfig {
        queue.window = queue.window.min(links_window).max(1);
        queue
    }

    fn lock(&self) -> MutexGuard<'_, Scheduler<Waiter>> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn us_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Queue sizes and weights from the rules. The sizes are taken only while the issuer is
    /// idle (at start); later calls (a rules reload) change the weights alone.
    pub(super) fn configure(&self, queue: QueueConfig, weights: Weights) -> bool {
        self.latency_us.store(queue.latency_us, Ordering::Relaxed);
        let mut s = self.lock();
        if s.in_flight() == 0 && s.queued_total() == 0 {
            *s = Scheduler::new(Self::sized(queue, self.links_window), weights);
            true
        } else {
            s.set_weights(weights);
            false
        }
    }

    pub(super) fn set_weights(&self, weights: Weights) {
        self.lock().set_weights(weights);
    }

    /// The issuer latency to expect until a link has measured one.
    pub(super) fn expected_latency(&self) -> Duration {
        Duration::from_micros(self.latency_us.load(Ordering::Relaxed))
    }

    /// Requests in the window and waiting, by class (tests, admin).
    pub(super) fn snapshot(&self) -> (usize, [usize; 5]) {
        let s = self.lock();
        (s.in_flight(), Class::ALL.map(|c| s.queued(c)))
    }

    fn publish_depths(&self, s: &Scheduler<Waiter>) {
        for (c, cm) in Class::ALL.iter().zip(&self.classes) {
            cm.depth.set(s.queued(*c) as f64);
        }
    }

    fn class_metrics(&self, class: Class) -> Option<&ClassMetrics> {
        self.classes.get(class.index())
    }

    /// Wait for a place in the window; `send_by` is the latest time the request may still
    /// be written (its reply deadline less the issuer's expected latency).
    /// `source` names the terminal connection the request came on (fairness between them).
    pub(super) async fn admit(self: &Arc<Self>, class: Class, send_by: Instant, source: u64) -> Admit {
        let (offer, rx, shed) = {
            let mut s = self.lock();
            if s.try_admit() {
                return Admit::Go(Slot { adm: Some(self.clone()) });
            }
            let (tx, rx) = oneshot::channel();
            let offer = s.offer_from(tx, class, source, self.us_at(send_by), self.now_us());
            let shed = s.take_shed();
            if matches!(offer, Offer::Queued) || !shed.is_empty() {
                self.publish_depths(&s);
            }
            (offer, rx, shed)
        };
        tell_shed(shed);
        let queued = match offer {
            Offer::Queued => true,
            Offer::Admit(_) => return Admit::Go(Slot { adm: Some(self.clone()) }),
            Offer::Shed { .. } => false,
            Offer::StoreAndForward(_) => {
                self.overflow.increment(1);
                return Admit::Overflow;
            }
        };
        if !queued {
            return self.shed(class);
        }
        let queued_at = Instant::now();
        let mut rx = rx;
        // One millisecond past send-by: the scheduler sheds strictly after the deadline.
        let limit = send_by + Duration::from_millis(1);
        let grant = tokio::select! {
            biased;
            g = &mut rx => g.ok(),
            _ = tokio::time::sleep_until(limit.into()) => None,
        };
        let grant = match grant {
            Some(g) => Some(g),
            None => {
                self.expire();
                rx.try_recv().ok()
            }
        };
        match grant {
            Some(Grant::Go(slot)) => {
                if let Some(cm) = self.class_metrics(class) {
                    cm.after_wait.increment(1);
                    cm.wait.record(queued_at.elapsed().as_secs_f64());
                }
                Admit::Go(slot)
            }
            // Its queue entry, if still there, is skipped when it comes up: the send of
            // its grant fails and the place goes to the next waiter.
            _ if class == Class::Reversal => {
                self.overflow.increment(1);
                Admit::Overflow
            }
            _ => self.shed(class),
        }
    }

    fn shed(&self, class: Class) -> Admit {
        if let Some(cm) = self.class_metrics(class) {
            cm.shed.increment(1);
        }
        Admit::Shed
    }

    /// Shed every waiter past its deadline (and those the scheduler set aside).
    fn expire(&self) {
        let shed = {
            let mut s = self.lock();
            let shed = s.expire(self.now_us());
            if !shed.is_empty() {
                self.publish_depths(&s);
            }
            shed
        };
        tell_shed(shed);
    }

    /// One place left the window: hand it to the next waiter still there.
    fn release(self: Arc<Self>) {
        // Bounded by the number of waiters: each turn removes one from its queue.
        loop {
            let (next, shed) = {
                let mut s = self.lock();
                let waiting = s.queued_total() > 0;
                // The clock is read only when someone waits (the fast path reads none).
                let next = s.complete(if waiting { self.now_us() } else { 0 });
                let shed = s.take_shed();
                if waiting {
                    self.publish_depths(&s);
                }
                (next, shed)
            };
            tell_shed(shed);
            let Some((tx, _class)) = next else { return };
            match tx.send(Grant::Go(Slot { adm: Some(self.clone()) })) {
                Ok(()) => return,
                // The waiter has gone; the scheduler still counts the place as taken, so
                // the slot is forgotten here and `complete` frees it on the next turn.
                Err(Grant::Go(slot)) => slot.disarm(),
                Err(Grant::Shed) => return,
            }
        }
    }
}

/// Tell shed waiters (outside the lock); one that has gone is past caring.
fn tell_shed(shed: Vec<Shed<Waiter>>) {
    for sh in shed {
        let _ = sh.req.send(Grant::Shed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adm(window: usize) -> Arc<Admission> {
        let q = QueueConfig { window, bounds: [4, 2, 2, 2, 2], latency_us: 10_000 };
        Admission::new("t", 1_000, q, [16, 8, 6, 3, 1])
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_waiter_and_a_gone_waiter_is_skipped() {
        let a = adm(1);
        let far = Instant::now() + Duration::from_secs(5);
        let Admit::Go(first) = a.admit(Class::Ordinary, far, 0).await else { panic!("not admitted") };
        let a2 = a.clone();
        let gone = tokio::spawn(async move { a2.admit(Class::Ordinary, far, 1).await.is_go() });
        let a3 = a.clone();
        let waiting = tokio::spawn(async move { a3.admit(Class::Priority, far, 2).await.is_go() });
        for _ in 0..100 {
            if a.snapshot().1.iter().sum::<usize>() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(a.snapshot(), (1, [0, 0, 1, 1, 0]));
        gone.abort();
        let _ = gone.await;
        drop(first);
        assert!(waiting.await.unwrap(), "the waiting request got the slot");
        // The priority waiter held the slot and dropped it; the gone one was skipped.
        assert_eq!(a.snapshot(), (0, [0; 5]));
    }

    #[tokio::test]
    async fn a_wait_past_send_by_is_shed_and_a_reversal_goes_past_the_window() {
        let a = adm(1);
        let far = Instant::now() + Duration::from_secs(5);
        let Admit::Go(_held) = a.admit(Class::Ordinary, far, 0).await else { panic!("not admitted") };
        // The estimate (10 ms per slot) fits in 30 ms, but nothing frees the slot.
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(matches!(a.admit(Class::Ordinary, soon, 0).await, Admit::Shed));
        assert!(matches!(a.admit(Class::Reversal, soon, 0).await, Admit::Overflow));
        // Already past its send-by: shed at once, never queued.
        assert!(matches!(a.admit(Class::Batch, Instant::now(), 0).await, Admit::Shed));
        assert_eq!(a.snapshot().1, [1, 0, 0, 0, 0], "the reversal's stale entry stays until it comes up");
    }

    impl Admit {
        fn is_go(&self) -> bool {
            matches!(self, Admit::Go(_))
        }
    }
}
