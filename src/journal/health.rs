//! Whether the journal can write, as one atomic flag the request path reads, and the state
//! machine behind it. The journal's writer thread is the only one that moves it: a failed
//! write (begin, insert or commit: a full disk, an I/O error, a lost PostgreSQL connection)
//! takes the journal down, a successful write or probe brings it back. While it is down the
//! writer refuses new rows without touching the store and probes it instead (see
//! `Journal::start`), and the acceptor declines new financial requests before they reach an
//! issuer: an approval that cannot be recorded must not be given.
//!
//! Each change of state is reported once (`Change`), with what happened meanwhile: the
//! writer logs one line per change instead of one per failed row. Pure: the caller passes
//! `now`.
//! May import: crate::journal::store.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::store::StoreError;

/// A change of the journal's state, to be logged once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Writes started failing; `reason` is the store's error (never row data).
    Down { reason: String },
    /// Writes succeed again after `down_for`; `declined` requests were declined and
    /// `reversals` reversals of unrecorded approvals queued meanwhile, `refused` rows not
    /// written.
    Up { down_for: Duration, declined: u64, reversals: u64, refused: u64 },
}

/// The journal's health, shared by its writer thread and the request path.
#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
    /// When the journal went down (only the writer thread touches it, on a change).
    since: Mutex<Option<Instant>>,
    declined: AtomicU64,
    reversals: AtomicU64,
    refused: AtomicU64,
    /// Unix milliseconds of the last per-write error logged (see `log_allowed`).
    last_log: AtomicI64,
}

/// Per-write errors are logged at most once in this many milliseconds.
const LOG_EVERY_MS: i64 = 10_000;

impl Default for Health {
    fn default() -> Self {
        Health {
            up: AtomicBool::new(true),
            since: Mutex::new(None),
            declined: AtomicU64::new(0),
            reversals: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_log: AtomicI64::new(i64::MIN),
        }
    }
}

impl Health {
    /// Whether the journal is writing: one atomic load, on every financial request.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// A write (or probe) failed with `e` at `now`: `Some` when this takes the journal down.
    pub fn write_failed(&self, e: &StoreError, now: Instant) -> Option<Change> {
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        if since.is_some() {
            return None;
        }
        *since = Some(now);
        self.declined.store(0, Ordering::Relaxed);
        self.reversals.store(0, Ordering::Relaxed);
        self.refused.store(0, Ordering::Relaxed);
        self.up.store(false, Ordering::Release);
        Some(Change::Down { reason: e.to_string() })
    }

    /// A write (or probe) committed at `now`: `Some` when this brings the journal back.
    pub fn write_ok(&self, now: Instant) -> Option<Change> {
        // The writer alone moves the state: while up, a commit costs no lock.
        if self.is_up() {
            return None;
        }
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        let went_down = since.take()?;
        self.up.store(true, Ordering::Release);
        Some(Change::Up {
            down_for: now.saturating_duration_since(went_down),
            declined: self.declined.swap(0, Ordering::Relaxed),
            reversals: self.reversals.swap(0, Ordering::Relaxed),
            refused: self.refused.swap(0, Ordering::Relaxed),
        })
    }

    /// A financial request was declined because the journal is down.
    pub fn declined(&self) {
        self.declined.fetch_add(1, Ordering::Relaxed);
    }

    /// An approval that could not be recorded was reversed with its issuer.
    pub fn reversal_queued(&self) {
        self.reversals.fetch_add(1, Ordering::Relaxed);
    }

    /// A row was refused unwritten because the journal is down.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a caller may log its own failed write at `now_ms` (Unix milliseconds): at
    /// most once per `LOG_EVERY_MS`, since the writer already logs each change of state.
    pub fn log_allowed(&self, now_ms: i64) -> bool {
        let last = self.last_log.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= LOG_EVERY_MS
            && self.last_log.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> StoreError {
        StoreError::Backend("database or disk is full".into())
    }

    #[test]
    fn one_change_per_transition_with_what_happened_meanwhile() {
        let h = Health::default();
        let t0 = Instant::now();
        assert!(h.is_up());
        assert_eq!(h.write_ok(t0), None, "up stays up: nothing to report");
        assert_eq!(
            h.write_failed(&full(), t0),
            Some(Change::Down { reason: "journal storage: database or disk is full".into() })
        );
        assert!(!h.is_up());
        for _ in 0..100 {
            assert_eq!(h.write_failed(&full(), t0), None, "a failure while down changes nothing");
        }
        for _ in 0..3 {
            h.declined();
        }
        h.reversal_queued();
        h.refused();
        h.refused();
        let back = h.write_ok(t0 + Duration::from_secs(2));
        assert_eq!(
            back,
            Some(Change::Up { down_for: Duration::from_secs(2), declined: 3, reversals: 1, refused: 2 })
        );
        assert!(h.is_up());
        assert_eq!(h.write_ok(t0 + Duration::from_secs(3)), None);
        // The next outage counts from zero.
        assert!(h.write_failed(&full(), t0 + Duration::from_secs(4)).is_some());
        h.declined();
        let again = h.write_ok(t0 + Duration::from_secs(5));
        assert_eq!(
            again,
            Some(Change::Up { down_for: Duration::from_secs(1), declined: 1, reversals: 0, refused: 0 })
        );
    }

    #[test]
    fn per_write_logs_are_rate_limited() {
        let h = Health::default();
        assert!(h.log_allowed(1_000_000));
        assert!(!h.log_allowed(1_000_001));
        assert!(!h.log_allowed(1_000_000 + LOG_EVERY_MS - 1));
        assert!(h.log_allowed(1_000_000 + LOG_EVERY_MS));
    }
}
