//! Calendar arithmetic in one place: proleptic Gregorian dates from days since 1970-01-01
//! and back, counting in 400-year eras of 146,097 days (the well-known days-from-civil
//! algorithm). Field 7, fee effective dates, per-day limits, settlement days and the
//! simulators all need it; none of them keeps a copy.
//! May import: nothing.

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
}
