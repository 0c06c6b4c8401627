//! Digits and the wall clock in the forms ISO 8583 fields use: zero-filled decimal and
//! field 7 (transmission date and time, MMDDhhmmss, UTC).
//! May import: crate::civil.

use std::time::{SystemTime, UNIX_EPOCH};

pub(super) fn write_digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Field 7, MMDDhhmmss in UTC.
pub(super) fn transmission_time() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (_, mo, d) = crate::civil::from_days(days as i64);
    format!("{mo:02}{d:02}{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_digits() {
        let mut d = [0u8; 6];
        write_digits(&mut d, 42);
        assert_eq!(&d, b"000042");
        assert_eq!(transmission_time().len(), 10);
    }
}
