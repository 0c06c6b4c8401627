//! What an issuer owes the acquirer for stand-in: the advices (0120/0220) of approvals the
//! switch made on its behalf, waiting in store-and-forward for its acknowledgement, and
//! their amount, the exposure. Advices travel through the same durable queue as reversals
//! (`saf`): stored before the terminal hears 00, written 0120 then repeated 0121 with
//! backoff, removed on the issuer's 0130.
//!
//! The book is the exposure as the switch counts it: the store's pending advices when the
//! worker starts (`seed`), plus each advice stored since, less each one acknowledged. Until
//! it is seeded no exposure can be reserved, so a stand-in right after a restart cannot
//! exceed the cap by the advices the previous run left. `try_reserve` is a compare-and-swap:
//! concurrent approvals never take the exposure past the cap.
//! May import: crate::metrics.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use metrics::Gauge;

use crate::metrics as m;

/// One issuer's stand-in advices and exposure.
#[derive(Debug)]
pub struct Book {
    /// Minor units approved in stand-in (or reserved for an approval being made) and not
    /// yet acknowledged.
    exposure: AtomicI64,
    /// Advices stored and not yet acknowledged.
    depth: AtomicI64,
    seeded: AtomicBool,
    exposure_gauge: Gauge,
    depth_gauge: Gauge,
}

impl Book {
    pub fn new(issuer: &str) -> Book {
        let exposure_gauge = metrics::gauge!(m::STANDIN_EXPOSURE, "issuer" => issuer.to_string());
        let depth_gauge = metrics::gauge!(m::ADVICE_DEPTH, "issuer" => issuer.to_string());
        exposure_gauge.set(0.0);
        depth_gauge.set(0.0);
        Book {
            exposure: AtomicI64::new(0),
            depth: AtomicI64::new(0),
            seeded: AtomicBool::new(false),
            exposure_gauge,
            depth_gauge,
        }
    }

    /// The pending advices found in the store at start: from now on reservations are taken.
    pub fn seed(&self, count: u64, amount: i64) {
        self.exposure.fetch_add(amount, Ordering::SeqCst);
        self.depth.fetch_add(i64::try_from(count).unwrap_or(i64::MAX), Ordering::SeqCst);
        self.seeded.store(true, Ordering::SeqCst);
        self.publish();
    }

    pub fn is_seeded(&self) -> bool {
        self.seeded.load(Ordering::SeqCst)
    }

    /// Reserve `amount` of exposure when the total stays within `cap`; `false` (nothing
    /// reserved) when it would not, or before the book is seeded.
    pub fn try_reserve(&self, amount: i64, cap: i64) -> bool {
        if !self.is_seeded() || amount < 0 {
            return false;
        }
        let mut now = self.exposure.load(Ordering::SeqCst);
        loop {
            let Some(next) = now.checked_add(amount).filter(|n| *n <= cap) else { return false };
            match self.exposure.compare_exchange_weak(now, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    self.publish();
                    return true;
                }
                Err(seen) => now = seen,
            }
        }
    }

    /// Give back a reservation whose approval was not made.
    pub fn release(&self, amount: i64) {
        self.exposure.fetch_sub(amount, Ordering::SeqCst);
        self.publish();
    }

    /// An advice was stored (its amount was reserved before).
    pub fn stored(&self) {
        self.depth.fetch_add(1, Ordering::SeqCst);
        self.publish();
    }

    /// An advice left the queue (acknowledged, withdrawn or expired): its amount is no
    /// longer owed.
    pub fn done(&self, amount: i64) {
        self.depth.fetch_sub(1, Ordering::SeqCst);
        self.exposure.fetch_sub(amount, Ordering::SeqCst);
        self.publish();
    }

    /// Exposure now, minor units.
    pub fn exposure(&self) -> i64 {
        self.exposure.load(Ordering::SeqCst)
    }

    /// Advices waiting for the issuer.
    pub fn depth(&self) -> i64 {
        self.depth.load(Ordering::SeqCst)
    }

    fn publish(&self) {
        self.exposure_gauge.set(self.exposure() as f64);
        self.depth_gauge.set(self.depth() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_reserved_before_the_seed_and_the_cap_holds() {
        let b = Book::new("t");
        assert!(!b.try_reserve(10, 1000), "unseeded");
        b.seed(2, 600);
        assert_eq!((b.exposure(), b.depth()), (600, 2));
        assert!(b.try_reserve(400, 1000));
        assert!(!b.try_reserve(1, 1000), "at the cap");
        b.stored();
        b.done(600);
        assert_eq!((b.exposure(), b.depth()), (400, 2));
        b.release(400);
        assert_eq!(b.exposure(), 0);
        assert!(!b.try_reserve(-5, 1000));
    }

    #[test]
    fn racing_reservations_never_pass_the_cap() {
        let b = std::sync::Arc::new(Book::new("race"));
        b.seed(0, 0);
        let won: i64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let b = b.clone();
                    s.spawn(move || (0..500).filter(|_| b.try_reserve(7, 10_000)).count() as i64)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(won, 10_000 / 7, "exactly as many as fit");
        assert_eq!(b.exposure(), won * 7);
    }
}
