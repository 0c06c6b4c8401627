//! Calendar arithmetic in one place: proleptic Gregorian dates from days since 1970-01-01
//! and back, counting in 400-year eras of 146,097 days (the well-known days-from-civil
//! algorithm), the [`Date`] type with its `YYYY-MM-DD` form, and `HH:MM` times of day.
//! Field 7, fee effective dates, per-day limits, peak windows, settlement days and the
//! simulators all need it; none of them keeps a copy. An instant and the wall clock are
//! [`crate::time`]'s (`UnixMs`, `now`), built on this file.
//! May import: nothing.

use serde::Serialize;

/// (year, month 1..=12, day 1..=31) of a day number (days since 1970-01-01, may be negative).
pub fn from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Day number (days since 1970-01-01) of a date.
pub fn to_days(year: i64, month: u32, day: u32) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A calendar date (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// Parse `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
            return None;
        }
        let year: i32 = s.get(0..4)?.parse().ok()?;
        let month: u8 = s.get(5..7)?.parse().ok()?;
        let day: u8 = s.get(8..10)?.parse().ok()?;
        Date::checked(year, month, day)
    }

    /// Parse `YYYYMMDD`, a business date as the journal keeps it.
    pub fn parse_compact(s: &str) -> Option<Date> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Date::checked(s[0..4].parse().ok()?, s[4..6].parse().ok()?, s[6..8].parse().ok()?)
    }

    /// The date, when it is a day of the calendar (20260231 is not).
    fn checked(year: i32, month: u8, day: u8) -> Option<Date> {
        let d = Date { year, month, day };
        ((1..=12).contains(&month) && day >= 1 && day <= d.days_in_month()).then_some(d)
    }

    pub fn days_in_month(self) -> u8 {
        match self.month {
            4 | 6 | 9 | 11 => 30,
            2 if self.year % 4 == 0 && (self.year % 100 != 0 || self.year % 400 == 0) => 29,
            2 => 28,
            _ => 31,
        }
    }

    /// Days since 1970-01-01.
    pub fn to_days(self) -> i64 {
        to_days(i64::from(self.year), u32::from(self.month), u32::from(self.day))
    }

    pub fn from_days(days: i64) -> Date {
        let (year, month, day) = from_days(days);
        Date { year: year as i32, month: month as u8, day: day as u8 }
    }
}

/// Parse `HH:MM` into minutes since midnight (`24:00` allowed as the end of a day).
pub fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0)) && h.to_string().len() <= 2).then_some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_days_both_ways() {
        for (days, ymd) in [
            (0, (1970, 1, 1)),
            (-1, (1969, 12, 31)),
            (11_016, (2000, 2, 29)),
            (19_723, (2024, 1, 1)),
            (20_781, (2026, 11, 24)),
        ] {
            assert_eq!(from_days(days), ymd, "{days}");
            assert_eq!(to_days(ymd.0, ymd.1, ymd.2), days, "{ymd:?}");
        }
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = from_days(days);
            assert_eq!(to_days(y, m, d), days);
        }
    }

    #[test]
    fn civil_round_trips() {
        for (s, days) in [("1970-01-01", 0), ("2000-02-29", 11_016), ("2026-11-24", 20_781)] {
            let d = Date::parse(s).unwrap();
            assert_eq!(d.to_days(), days, "{s}");
            assert_eq!(Date::from_days(days), d, "{s}");
        }
        for bad in ["2026-02-29", "2026-13-01", "2026-1-01", "20261124"] {
            assert!(Date::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn hhmm() {
        assert_eq!(parse_hhmm("09:30"), Some(570));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        assert_eq!(parse_hhmm("24:01"), None);
        assert_eq!(parse_hhmm("9:75"), None);
    }
}
