//! Logging: `tracing` events to stderr, filtered by `RUST_LOG` (default `info`), as text
//! (colour only when stderr is a terminal: a file or a journal gets no escape codes) or as
//! one JSON object per line for log shippers (`--log-format json`). Log
//! lines never carry a PAN, track data or PIN block: callers log messages through
//! `Message`'s masking `Debug` or log no field values at all. Events that a peer can
//! repeat at will (a connection dropped, a frame that does not decode) go through a
//! [`Throttle`], so that an attack or a churning estate costs a line per interval, not a
//! line per connection.
//! May import: nothing.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured only when stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`).
    Json,
}

/// Install the stderr subscriber as text; harmless if one is already installed.
pub fn init() {
    init_with(LogFormat::Text);
}

/// Install the stderr subscriber in `format`; harmless if one is already installed.
pub fn init_with(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => fmt.json().with_current_span(false).try_init(),
    };
}

/// How often a throttled event is logged at most (after its first occurrence).
pub const THROTTLE_INTERVAL: Duration = Duration::from_secs(10);

/// Aggregates one repeated log event: the first occurrence is logged as it comes, then
/// at most one per interval, carrying how many were left out since the line before.
/// One `static` per call site; lock-free (two atomics), so it costs nothing on a busy
/// path. Occurrences after the last line are reported by the next one, whenever it comes.
///
/// ```
/// use isoswitch::telemetry::Throttle;
/// static DROPPED: Throttle = Throttle::new(isoswitch::telemetry::THROTTLE_INTERVAL);
/// if let Some(suppressed) = DROPPED.hit() {
///     tracing::info!(suppressed, "terminal connection dropped");
/// }
/// ```
#[derive(Debug)]
pub struct Throttle {
    interval_ms: u64,
    /// Milliseconds since [`epoch`] of the last line, plus one (0: never logged).
    last: AtomicU64,
    suppressed: AtomicU64,
}

/// The process-wide origin of the throttles' clocks.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Throttle {
    pub const fn new(interval: Duration) -> Throttle {
        Throttle {
            interval_ms: interval.as_millis() as u64,
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// One occurrence now: `Some(n)` when it is to be logged (`n` occurrences were left
    /// out since the last line), `None` when it is only counted.
    pub fn hit(&self) -> Option<u64> {
        let now = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        self.hit_at(now)
    }

    /// [`hit`](Self::hit) at `now_ms` (milliseconds on any monotonic clock).
    pub fn hit_at(&self, now_ms: u64) -> Option<u64> {
        let stamp = now_ms.saturating_add(1);
        let last = self.last.load(Ordering::Acquire);
        let due = last == 0 || stamp.saturating_sub(last) >= self.interval_ms;
        // Of several threads due at once, one logs; the others are counted.
        if due && self.last.compare_exchange(last, stamp, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::AcqRel);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_then_one_per_interval_with_the_count() {
        let t = Throttle::new(Duration::from_secs(10));
        // (time ms, expected answer)
        let steps: &[(u64, Option<u64>)] = &[
            (0, Some(0)),
            (1, None),
            (5_000, None),
            (9_999, None),
            (10_000, Some(3)),
            (10_001, None),
            (19_999, None),
            (60_000, Some(2)),
            (60_000, None),
            (70_000, Some(1)),
        ];
        for (i, (at, want)) in steps.iter().enumerate() {
            assert_eq!(t.hit_at(*at), *want, "step {i} at {at} ms");
        }
    }

    #[test]
    fn many_threads_log_once_per_interval() {
        let t = std::sync::Arc::new(Throttle::new(Duration::from_secs(3600)));
        let logged: u64 = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || (0..1000).filter(|_| t.hit().is_some()).count() as u64)
            })
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(logged, 1);
        assert_eq!(t.suppressed.load(Ordering::Relaxed), 3999);
    }
}
