//! Time for the routing core: `now` is passed in as unix milliseconds, never read from a
//! clock here. A small civil-date helper turns it into the local business date and time of
//! day (a fixed UTC offset, e.g. +480 minutes for China) for daily limits, fee plan effective
//! dates and peak windows.
//! May import: crate::civil.

use serde::Serialize;

/// A point in time: milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Now(pub u64);

impl Now {
    /// Local civil time at `offset_minutes` east of UTC.
    pub fn civil(self, offset_minutes: i32) -> Civil {
        let local_ms = self.0 as i64 + i64::from(offset_minutes) * 60_000;
        let day = local_ms.div_euclid(86_400_000);
        let ms_of_day = local_ms.rem_euclid(86_400_000);
        let date = Date::from_days(day);
        Civil { date, minute_of_day: (ms_of_day / 60_000) as u16, day_number: day }
    }

    /// Local days since 1970-01-01 at `offset_minutes` east of UTC (cheaper than `civil`).
    pub fn day_number(self, offset_minutes: i32) -> i64 {
        (self.0 as i64 + i64::from(offset_minutes) * 60_000).div_euclid(86_400_000)
    }

    /// Build from a civil UTC date and time; for tests and tools.
    pub fn from_utc(date: Date, hour: u32, minute: u32) -> Now {
        let days = date.to_days();
        Now((days * 86_400_000 + i64::from(hour * 60 + minute) * 60_000).max(0) as u64)
    }
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
        crate::civil::to_days(i64::from(self.year), u32::from(self.month), u32::from(self.day))
    }

    pub fn from_days(days: i64) -> Date {
        let (year, month, day) = crate::civil::from_days(days);
        Date { year: year as i32, month: month as u8, day: day as u8 }
    }
}

/// Local civil time of one `Now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub date: Date,
    /// Minutes since local midnight, 0..1440.
    pub minute_of_day: u16,
    /// Local days since 1970-01-01: the key of per-day counters.
    pub day_number: i64,
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
    fn offset_moves_the_business_day() {
        // 2026-11-24 17:30 UTC is 2026-11-25 01:30 in China (+08:00).
        let now = Now::from_utc(Date::parse("2026-11-24").unwrap(), 17, 30);
        let c = now.civil(480);
        assert_eq!(c.date, Date::parse("2026-11-25").unwrap());
        assert_eq!(c.minute_of_day, 90);
        assert_eq!(now.civil(0).minute_of_day, 17 * 60 + 30);
    }

    #[test]
    fn hhmm() {
        assert_eq!(parse_hhmm("09:30"), Some(570));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        assert_eq!(parse_hhmm("24:01"), None);
        assert_eq!(parse_hhmm("9:75"), None);
    }
}
