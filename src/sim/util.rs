//! Small helpers shared by the simulators: a fast non-cryptographic random generator
//! (jitter, shuffling), fixed-width decimal digits written without allocating, and the
//! UTC calendar fields that go into fields 7, 12 and 13. Imports std and `crate::civil`.
//! May import: crate::civil, crate::time.

use bytes::BytesMut;

/// SplitMix64: tiny, fast and good enough to pick jitter and shuffle replies. Never
/// used for anything secret.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n` is zero); the modulo bias is irrelevant here.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Fisher-Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A read buffer that starts small and grows while reads keep filling it, so that an
/// idle connection costs a few kilobytes and a busy one reads in large chunks.
pub(crate) struct ReadBuf {
    pub(crate) buf: BytesMut,
    chunk: usize,
    spare: usize,
}

impl ReadBuf {
    const SMALL: usize = 4 * 1024;
    const LARGE: usize = 64 * 1024;

    pub(crate) fn new() -> ReadBuf {
        ReadBuf { buf: BytesMut::with_capacity(Self::SMALL), chunk: Self::SMALL, spare: 0 }
    }

    /// Make room before a read.
    pub(crate) fn prepare(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < self.chunk / 2 {
            self.buf.reserve(self.chunk);
        }
        self.spare = self.buf.capacity() - self.buf.len();
        &mut self.buf
    }

    /// After a read of `n` bytes: a read that filled the room asks for more next time.
    pub(crate) fn filled(&mut self, n: usize) {
        if n >= self.spare {
            self.chunk = (self.chunk * 2).min(Self::LARGE);
        }
    }
}

/// `value` as exactly `N` decimal digits, zero-filled, keeping the low digits.
pub(crate) fn digits<const N: usize>(mut value: u64) -> [u8; N] {
    let mut out = [b'0'; N];
    for d in out.iter_mut().rev() {
        *d = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out
}

/// UTC calendar fields of one second, as the ISO 8583 date and time fields want them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Seconds since the Unix epoch this stamp was made from.
    pub(crate) unix: u64,
    /// YYMMDDhhmmss.
    pub(crate) full: [u8; 12],
}

impl Stamp {
    pub(crate) fn now() -> Stamp {
        Stamp::at(crate::time::now().secs())
    }

    pub(crate) fn at(unix: u64) -> Stamp {
        let days = unix / 86_400;
        let secs = unix % 86_400;
        let (y, m, d) = crate::civil::from_days(days as i64);
        let (y, m, d) = (y.rem_euclid(100) as u64, u64::from(m), u64::from(d));
        let v = y * 10_000_000_000
            + m * 100_000_000
            + d * 1_000_000
            + (secs / 3600) * 10_000
            + (secs % 3600 / 60) * 100
            + secs % 60;
        Stamp { unix, full: digits::<12>(v) }
    }

    /// MMDDhhmmss (field 7).
    pub(crate) fn mmddhhmmss(&self) -> &[u8] {
        &self.full[2..]
    }
    /// hhmmss (field 12 of the 1987 specs).
    pub(crate) fn hhmmss(&self) -> &[u8] {
        &self.full[6..]
    }
    /// MMDD (field 13).
    pub(crate) fn mmdd(&self) -> &[u8] {
        &self.full[2..6]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        // 2000-02-29 12:34:56 UTC and 2026-11-24 00:00:00 UTC.
        for (unix, want) in [(951_827_696u64, b"000229123456"), (1_795_478_400, b"261124000000")] {
            let s = Stamp::at(unix);
            assert_eq!(&s.full, want, "{unix}");
        }
        let s = Stamp::at(951_827_696);
        assert_eq!(s.mmddhhmmss(), b"0229123456");
        assert_eq!(s.hhmmss(), b"123456");
        assert_eq!(s.mmdd(), b"0229");
    }

    #[test]
    fn digits_and_rng() {
        assert_eq!(&digits::<6>(42), b"000042");
        assert_eq!(&digits::<2>(1234), b"34");
        let mut r = Rng::new(7);
        let mut v: Vec<u32> = (0..50).collect();
        r.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted);
        assert!((0..1000).all(|_| r.below(10) < 10));
    }
}
