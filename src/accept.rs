//! Accepting connections without spinning, shared by every listener (terminals, admin API,
//! metrics). When `accept` fails (out of descriptors: EMFILE/ENFILE, or out of memory),
//! the pending connection stays in the kernel's queue and the listener stays readable, so
//! a loop that retries at once burns a core and starves the connections already open.
//! [`Backoff`] sleeps instead, with a delay that grows to a cap, and logs one WARN when an
//! episode starts and one INFO line with its count and length when it ends. At the limit,
//! episodes flap (a connection closes, one is accepted, the next accept fails again):
//! their lines are throttled like any repeated event, with the counts carried over.
//! May import: crate::telemetry.

use std::time::{Duration, Instant};

use metrics::Counter;

use crate::telemetry::{THROTTLE_INTERVAL, Throttle};

/// First pause after a failed accept.
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between two attempts: the bound on how late a listener resumes once
/// descriptors are free again.
pub const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// The accept-error state of one listener.
#[derive(Debug)]
pub struct Backoff {
    /// The listener's name in log lines (`terminal`, `admin`, `metrics`).
    listener: &'static str,
    errors: Counter,
    /// Failures in the current episode (0: none going on).
    failures: u64,
    started: Option<Instant>,
    delay: Duration,
    /// Failures of the episodes ended since the last "recovered" line.
    unreported: u64,
    starts: Throttle,
    ends: Throttle,
}

impl Backoff {
    /// `errors` counts every failed accept.
    pub fn new(listener: &'static str, errors: Counter) -> Backoff {
        Backoff {
            listener,
            errors,
            failures: 0,
            started: None,
            delay: BACKOFF_MIN,
            unreported: 0,
            starts: Throttle::new(THROTTLE_INTERVAL),
            ends: Throttle::new(THROTTLE_INTERVAL),
        }
    }

    /// An accept failed: note it, log the start of an episode, and pause.
    pub async fn failed(&mut self, e: &std::io::Error) {
        tokio::time::sleep(self.note(e)).await;
    }

    /// Note a failure; the pause to take before the next attempt.
    fn note(&mut self, e: &std::io::Error) -> Duration {
        self.errors.increment(1);
        if self.failures == 0 {
            if let Some(suppressed) = self.starts.hit() {
                tracing::warn!(listener = self.listener, error = %e, suppressed,
                    "accept failing (out of descriptors?); backing off until it succeeds");
            }
            self.started = Some(Instant::now());
        }
        self.failures = self.failures.saturating_add(1);
        let pause = self.delay;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        pause
    }

    /// An accept succeeded: end the episode, if one was going on, with its count.
    pub fn accepted(&mut self) {
        if self.failures == 0 {
            return;
        }
        let ms = self.started.map_or(0, |t| t.elapsed().as_millis() as u64);
        self.unreported = self.unreported.saturating_add(self.failures);
        if self.ends.hit().is_some() {
            tracing::info!(listener = self.listener, failures = self.unreported, ms, "accept recovered");
            self.unreported = 0;
        }
        self.failures = 0;
        self.started = None;
        self.delay = BACKOFF_MIN;
    }

    /// The pause the next failure would take.
    pub fn next_delay(&self) -> Duration {
        self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_grows_to_its_cap_and_resets_on_success() {
        let mut b = Backoff::new("test", Counter::noop());
        let e = std::io::Error::from_raw_os_error(24);
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(b.note(&e).as_millis());
        }
        assert_eq!(seen, vec![10, 20, 40, 80, 160, 320, 500, 500]);
        assert_eq!(b.failures, 8);
        b.accepted();
        assert_eq!((b.failures, b.next_delay()), (0, BACKOFF_MIN));
    }
}
