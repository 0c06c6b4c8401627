//! Answers that leave after the deadline promised to the terminal (the issuer's
//! `deadline_ms`, counted from the request's arrival at the switch). The switch plans every
//! answer inside it (admission sheds early, the reply wait ends before the margin and the
//! commit reserve), so one that still leaves late means the plan failed: a journal commit
//! far slower than its recent average, a starved machine. Each is counted in
//! `isoswitch_late_answers_total`; the log gets one warning a second at most, with how many
//! and the latest by how much, never a line per request nor anything of the request.
//! May import: crate::metrics, crate::time.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use metrics::counter;

use crate::metrics as m;

/// How often at most the log hears of late answers.
const LOG_EVERY_MS: i64 = 1_000;

/// Late answers not logged yet, the largest lateness among them (microseconds), and when
/// the last warning was written (Unix milliseconds).
static UNLOGGED: AtomicU64 = AtomicU64::new(0);
static WORST_US: AtomicU64 = AtomicU64::new(0);
static LOGGED_AT: AtomicI64 = AtomicI64::new(0);

/// One answer left `by` after its deadline.
pub(super) fn answered_late(by: Duration) {
    counter!(m::LATE_ANSWERS_TOTAL).increment(1);
    UNLOGGED.fetch_add(1, Relaxed);
    WORST_US.fetch_max(u64::try_from(by.as_micros()).unwrap_or(u64::MAX), Relaxed);
    let (now, last) = (crate::time::now().as_i64(), LOGGED_AT.load(Relaxed));
    // One caller a second wins the right to log; the others only count.
    if now.saturating_sub(last) >= LOG_EVERY_MS
        && LOGGED_AT.compare_exchange(last, now, Relaxed, Relaxed).is_ok()
    {
        let answers = UNLOGGED.swap(0, Relaxed);
        let worst_ms = WORST_US.swap(0, Relaxed) / 1_000;
        tracing::warn!(
            answers,
            worst_ms,
            "answers left after the deadline promised to the terminal (since the last such warning; \
             all are counted in isoswitch_late_answers_total)"
        );
    }
}
