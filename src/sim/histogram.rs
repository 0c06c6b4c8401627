//! A small log-linear latency histogram in the manner of HDR histograms: exact below 128
//! nanoseconds, then 64 buckets per power of two, so any recorded value is reported
//! within 1.6 % of itself, up to about 69 s (larger values count in the last bucket; the
//! maximum stays exact). Recording is an index computation and an increment; one
//! histogram per connection, merged at the end, its 16 KiB taken at the first record.
//! Imports std only.

/// Sub-buckets per power of two (2^6).
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values below this are their own bucket.
const LINEAR: u64 = 2 * SUB;
/// Values from 2^36 ns (about 69 s) on share the last bucket.
const TOP_BITS: u32 = 36;
/// The last bucket is the first one of 2^36 ns.
const BUCKETS: usize = ((TOP_BITS - SUB_BITS) as usize * SUB as usize) + SUB as usize + 1;

/// Latencies in nanoseconds.
#[derive(Clone, Default)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("total", &self.total)
            .field("p50", &self.quantile(0.5))
            .field("max", &self.max)
            .finish()
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    if v >= 1 << TOP_BITS {
        return BUCKETS - 1;
    }
    let exp = 63 - v.leading_zeros();
    let shift = exp - SUB_BITS;
    let mantissa = v >> shift; // in SUB..2*SUB
    (shift as usize) * SUB as usize + mantissa as usize
}

/// The highest value that lands in bucket `i`.
fn highest(i: usize) -> u64 {
    if i + 1 >= BUCKETS {
        return u64::MAX;
    }
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let shift = i / SUB - 1;
    let mantissa = i % SUB + SUB;
    ((mantissa + 1) << shift) - 1
}

impl LatencyHistogram {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record one latency in nanoseconds.
    #[inline]
    pub fn record(&mut self, nanos: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        if let Some(c) = self.counts.get_mut(index(nanos)) {
            *c += 1;
        }
        self.total += 1;
        self.max = self.max.max(nanos);
    }

    /// Add another histogram's counts to this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest recorded value, exact.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.0..=1.0): the top of the bucket holding the
    /// `ceil(q * count)`-th smallest value, never above the exact maximum; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return highest(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_precise() {
        let mut prev = 0usize;
        for v in (0u64..100_000).chain([(1 << TOP_BITS) - 1]) {
            let i = index(v);
            assert!(i < BUCKETS);
            assert!(i == prev || i == prev + 1 || v > 100_000, "jump at {v}");
            assert!(highest(i) >= v, "{v} above its bucket top {}", highest(i));
            let err = (highest(i) - v) as f64 / (v.max(1)) as f64;
            assert!(err <= 1.0 / 64.0 + 1e-9, "{v}: {err}");
            prev = i;
        }
    }

    #[test]
    fn quantiles() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.5), 0);
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.02, "{p50}");
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.02, "{p99}");
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert_eq!(h.max(), 1_000_000);
        let mut g = LatencyHistogram::new();
        g.record(5);
        g.merge(&h);
        assert_eq!(g.count(), 1001);
        assert_eq!(g.quantile(0.0), 5);
        // Beyond the range: counted in the last bucket, reported as the exact maximum.
        g.record(u64::MAX / 2);
        assert_eq!(g.quantile(1.0), u64::MAX / 2);
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }
}
