//! Wall-clock time in one place: [`UnixMs`], a point in time as milliseconds since
//! 1970-01-01T00:00:00Z, and [`now`], the one read of the wall clock in the crate. Pure code
//! (the routing core's decisions, field 7, retention's cut-off) takes the instant as an
//! argument (a `UnixMs`, or its milliseconds where it meets the stores) so that tests can
//! set the time; the edges call `now()` and pass it in.
//!
//! Calendar arithmetic (dates, days since 1970, `HH:MM`) is [`crate::civil`]'s; this file
//! turns an instant into a local civil time at a fixed UTC offset ([`UnixMs::civil`]).
//! The ISO 8583 forms of the time (field 7) are written by the issuer connector
//! (`issuer/clock.rs`). Durations and deadlines use the monotonic `std::time::Instant`, never
//! this clock: the wall clock may step.
//! May import: crate::civil.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::civil::Date;

const MS_PER_DAY: i64 = 86_400_000;

/// A point in time: milliseconds since 1970-01-01T00:00:00Z (never before it). Serialized
/// as that number; the default is 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct UnixMs(pub u64);

/// The wall clock now. A clock set before 1970 reads as 1970-01-01.
pub fn now() -> UnixMs {
    UnixMs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
}

impl UnixMs {
    /// From the signed milliseconds the stores keep (SQL integers); a negative value is 1970.
    #[inline]
    pub fn from_i64(ms: i64) -> UnixMs {
        UnixMs(u64::try_from(ms).unwrap_or(0))
    }

    /// As the signed milliseconds the stores keep (SQL integers), saturating.
    #[inline]
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// Whole seconds since 1970.
    pub fn secs(self) -> u64 {
        self.0 / 1000
    }

    /// Local civil time at `offset_minutes` east of UTC (e.g. +480 for China).
    pub fn civil(self, offset_minutes: i32) -> Civil {
        let local_ms = self.local_ms(offset_minutes);
        let day = local_ms.div_euclid(MS_PER_DAY);
        let ms_of_day = local_ms.rem_euclid(MS_PER_DAY);
        let date = Date::from_days(day);
        Civil {
            date,
            minute_of_day: (ms_of_day / 60_000) as u16,
            second_of_day: (ms_of_day / 1000) as u32,
            day_number: day,
        }
    }

    /// Local days since 1970-01-01 at `offset_minutes` east of UTC (cheaper than `civil`).
    pub fn day_number(self, offset_minutes: i32) -> i64 {
        self.local_ms(offset_minutes).div_euclid(MS_PER_DAY)
    }

    /// The instant of a civil UTC date and time; for tests and tools.
    pub fn from_utc(date: Date, hour: u32, minute: u32) -> UnixMs {
        let days = date.to_days();
        UnixMs::from_i64(days * MS_PER_DAY + i64::from(hour * 60 + minute) * 60_000)
    }

    fn local_ms(self, offset_minutes: i32) -> i64 {
        self.as_i64().saturating_add(i64::from(offset_minutes) * 60_000)
    }
}

/// Local civil time of one `UnixMs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub date: Date,
    /// Minutes since local midnight, 0..1440.
    pub minute_of_day: u16,
    /// Seconds since local midnight, 0..86400.
    pub second_of_day: u32,
    /// Local days since 1970-01-01: the key of per-day counters.
    pub day_number: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_moves_the_business_day() {
        // 2026-11-24 17:30 UTC is 2026-11-25 01:30 in China (+08:00).
        let at = UnixMs::from_utc(Date::parse("2026-11-24").unwrap(), 17, 30);
        let c = at.civil(480);
        assert_eq!(c.date, Date::parse("2026-11-25").unwrap());
        assert_eq!(c.minute_of_day, 90);
        assert_eq!(c.day_number, at.day_number(480));
        assert_eq!(at.day_number(480), at.day_number(0) + 1);
        assert_eq!(at.civil(0).minute_of_day, 17 * 60 + 30);
        assert_eq!(UnixMs(at.0 + 59_999).civil(0).second_of_day, (17 * 60 + 30) * 60 + 59);
        // West of UTC, the first hours of 1970 are still 1969.
        assert_eq!(UnixMs(0).civil(-60).date, Date::parse("1969-12-31").unwrap());
    }

    #[test]
    fn store_edge_and_seconds() {
        for ms in [0i64, 1, 1_795_485_600_123] {
            assert_eq!(UnixMs::from_i64(ms).as_i64(), ms);
        }
        assert_eq!(UnixMs::from_i64(-5), UnixMs(0));
        assert_eq!(UnixMs(u64::MAX).as_i64(), i64::MAX);
        assert_eq!(UnixMs(1_795_485_600_999).secs(), 1_795_485_600);
    }

    #[test]
    fn now_reads_the_wall_clock() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let at = now().0;
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
    }
}
