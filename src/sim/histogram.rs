//! Latency histograms of the simulators, on the `hdrhistogram` crate: values from 1 ns to
//! 2^36 ns (about 69 s) at two significant digits, so any recorded value is reported
//! within 1 % of itself (exactly below 256 ns). Larger values count at the top of the
//! range and are reported as the exact maximum, which is kept beside the histogram.
//! Recording is an index computation and an increment; one histogram per connection,
//! merged at the end, its counts (about 32 KiB) allocated at the first record.
//! May import: nothing.

use hdrhistogram::Histogram;

/// The highest value tracked apart (2^36 ns); larger ones share its bucket.
const HIGH: u64 = 1 << 36;
/// Significant decimal digits kept of every value.
const SIGFIG: u8 = 2;

/// Latencies in nanoseconds.
#[derive(Clone, Default)]
pub struct LatencyHistogram {
    /// `None` until the first value: a connection that never measured costs nothing.
    counts: Option<Histogram<u64>>,
    max: u64,
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("total", &self.count())
            .field("p50", &self.quantile(0.5))
            .field("max", &self.max)
            .finish()
    }
}

fn empty() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (1 ≤ low, 2·low ≤ high, sigfig ≤ 5).
    Histogram::new_with_bounds(1, HIGH, SIGFIG).unwrap_or_else(|e| unreachable!("histogram bounds: {e}"))
}

impl LatencyHistogram {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record one latency in nanoseconds.
    #[inline]
    pub fn record(&mut self, nanos: u64) {
        self.counts.get_or_insert_with(empty).saturating_record(nanos);
        self.max = self.max.max(nanos);
    }

    /// Add another histogram's counts to this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        let Some(o) = &other.counts else { return };
        let h = self.counts.get_or_insert_with(empty);
        // Both have the same bounds, so the addition fits; were it refused, the values
        // are added one bucket at a time.
        if h.add(o).is_err() {
            for v in o.iter_recorded() {
                h.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.max = self.max.max(other.max);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.counts.as_ref().map_or(0, Histogram::len)
    }

    /// Largest recorded value, exact.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.0..=1.0): the top of the bucket holding the
    /// `ceil(q * count)`-th smallest value, never above the exact maximum; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let Some(h) = self.counts.as_ref().filter(|h| !h.is_empty()) else { return 0 };
        // hdrhistogram answers the bottom of the bucket for q = 0 and the top for any
        // other: the top is asked for every quantile, as the reports have always shown.
        let v = h.value_at_quantile(q.clamp(f64::MIN_POSITIVE, 1.0));
        if v >= HIGH { self.max } else { v.min(self.max) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_reported_within_one_percent() {
        for v in (0u64..5_000).chain((5_000..HIGH).step_by(9_999_991)).chain([HIGH - 1]) {
            let mut h = LatencyHistogram::new();
            h.record(v);
            h.record(u64::MAX / 4);
            let got = h.quantile(0.5);
            assert!(got >= v, "{v} reported as {got}, below itself");
            let err = (got - v) as f64 / v.max(1) as f64;
            assert!(err <= 0.01, "{v} reported as {got}: {err}");
            if v < 256 {
                assert_eq!(got, v, "exact below 256 ns");
            }
        }
    }

    #[test]
    fn quantiles() {
        let mut h = LatencyHistogram::new();
        assert_eq!((h.quantile(0.5), h.count()), (0, 0));
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.01, "{p50}");
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.01, "{p99}");
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert_eq!(h.max(), 1_000_000);
        let mut g = LatencyHistogram::new();
        g.record(5);
        g.merge(&h);
        g.merge(&LatencyHistogram::new());
        assert_eq!(g.count(), 1001);
        assert_eq!(g.quantile(0.0), 5);
        assert!(g.quantile(0.001) < 1_100, "{}", g.quantile(0.001));
        // Beyond the range: counted at its top, reported as the exact maximum.
        g.record(u64::MAX / 2);
        assert_eq!(g.quantile(1.0), u64::MAX / 2);
        assert_eq!(g.quantile(0.5), h.quantile(0.5));
    }
}
