//! The time and counters in the forms ISO 8583 fields use: zero-filled decimal digits and
//! field 7 (transmission date and time, MMDDhhmmss, UTC). Not a clock of its own: the
//! instant comes from [`crate::time::now`], and `field7` formats any given one.
//! May import: crate::time.

use crate::time::{self, UnixMs};

pub(super) fn write_digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Field 7 now, MMDDhhmmss in UTC.
pub(super) fn transmission_time() -> String {
    field7(time::now())
}

/// Field 7 of `at`, MMDDhhmmss in UTC.
fn field7(at: UnixMs) -> String {
    let c = at.civil(0);
    let s = c.second_of_day;
    format!("{:02}{:02}{:02}{:02}{:02}", c.date.month, c.date.day, s / 3600, s % 3600 / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::civil::Date;

    #[test]
    fn dates_and_digits() {
        let mut d = [0u8; 6];
        write_digits(&mut d, 42);
        assert_eq!(&d, b"000042");
        let at = UnixMs::from_utc(Date::parse("2026-02-03").unwrap(), 4, 5);
        assert_eq!(field7(UnixMs(at.0 + 6_789)), "0203040506");
        assert_eq!(field7(UnixMs::from_utc(Date::parse("2026-12-31").unwrap(), 23, 59)), "1231235900");
        assert_eq!(transmission_time().len(), 10);
    }
}
