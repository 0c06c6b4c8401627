//! `isoswitch settle`: per-merchant settlement of one business day from the journal, as
//! CSV or JSON on stdout. Money is integer minor units (fen for CNY) and every money
//! column says so (`gross_minor`). Without `--date` it settles the last complete business
//! day in the estate's time zone (`--utc-offset-minutes`, else the registry's in `--rules`,
//! else UTC, said on stderr); a day with nothing to settle is said on stderr and exits 0.
//! May import: crate::civil, crate::journal, crate::route, crate::settle, crate::time.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::json;

use crate::journal::{Journal, JournalConfig, Query, business_date};
use crate::settle;
use crate::time::UnixMs;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

#[derive(Args, Debug)]
pub struct SettleArgs {
    /// SQLite journal file.
    #[arg(long, required_unless_present = "postgres")]
    pub journal: Option<PathBuf>,
    /// PostgreSQL connection string instead of a SQLite file.
    #[arg(long, conflicts_with = "journal")]
    pub postgres: Option<String>,
    /// Business day to settle (YYYYMMDD); default: the last complete business day (yesterday
    /// in the estate's time zone).
    #[arg(long)]
    pub date: Option<String>,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Cut-off times of T+0 merchants, local time, comma-separated.
    #[arg(long, default_value = "12:00,18:00")]
    pub t0_cutoffs: String,
    /// Business time zone as minutes east of UTC (480 for China Standard Time); default:
    /// the registry's `utc_offset_minutes` in `--rules`, else 0 (UTC).
    #[arg(long, allow_hyphen_values = true)]
    pub utc_offset_minutes: Option<i32>,
    /// The switch's rule directory, for the estate's time zone (its registry's
    /// `utc_offset_minutes`).
    #[arg(long)]
    pub rules: Option<PathBuf>,
}

/// The estate's offset from UTC in minutes, and where it came from (for the stderr note).
fn utc_offset(a: &SettleArgs) -> Result<(i32, String), String> {
    estate_offset(a.utc_offset_minutes, a.rules.as_ref())
}

/// The estate's offset from UTC: `--utc-offset-minutes`, else the registry's in `--rules`,
/// else UTC; with where it came from, for a note on stderr.
pub(super) fn estate_offset(minutes: Option<i32>, rules: Option<&PathBuf>) -> Result<(i32, String), String> {
    match (minutes, rules) {
        (Some(m), _) if (-1440..=1440).contains(&m) => Ok((m, "--utc-offset-minutes".into())),
        (Some(m), _) => Err(format!("--utc-offset-minutes: {m} is not within a day of UTC")),
        (None, Some(dir)) => {
            let rules = crate::route::RuleSet::load_dir(dir).map_err(|e| format!("--rules: {e}"))?;
            Ok((rules.registry.utc_offset_minutes, format!("the registry in {}", dir.display())))
        }
        (None, None) => Ok((0, "UTC: no --utc-offset-minutes or --rules given".into())),
    }
}

/// The last complete business day at `now_ms`: yesterday in the estate's local time.
pub fn last_complete_day(now_ms: i64, utc_offset_minutes: i32) -> String {
    business_date(UnixMs::from_i64(now_ms.saturating_sub(86_400_000)), utc_offset_minutes)
}

fn parse_cutoffs(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (h, m) = part.split_once(':').ok_or_else(|| format!("--t0-cutoffs: `{part}` is not HH:MM"))?;
        let (h, m): (u32, u32) = match (h.parse(), m.parse()) {
            (Ok(h), Ok(m)) if h < 24 && m < 60 => (h, m),
            _ => return Err(format!("--t0-cutoffs: `{part}` is not a time of day")),
        };
        let v = h * 60 + m;
        if out.last().is_some_and(|&last| v <= last) {
            return Err("--t0-cutoffs: times must ascend".into());
        }
        out.push(v);
    }
    Ok(out)
}

/// A business day as the journal writes it, `YYYYMMDD`, that exists in the calendar
/// (20260231 does not).
pub(super) fn valid_date(d: &str) -> bool {
    crate::civil::Date::parse_compact(d).is_some()
}

pub fn run(a: SettleArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("isoswitch settle: {msg}");
        ExitCode::from(2)
    };
    let cutoffs = match parse_cutoffs(&a.t0_cutoffs) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (offset, zone) = match utc_offset(&a) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let date = match a.date {
        Some(d) if valid_date(&d) => d,
        Some(d) => return fail(format!("--date: `{d}` is not a YYYYMMDD date")),
        None => {
            let d = last_complete_day(crate::time::now().as_i64(), offset);
            eprintln!(
                "isoswitch settle: settling business day {d}, the last complete one (UTC{offset:+} min, from {zone})"
            );
            d
        }
    };
    let cfg = match (a.journal, a.postgres) {
        (Some(path), _) => {
            if !path.exists() {
                return fail(format!("--journal: {} does not exist", path.display()));
            }
            JournalConfig::Sqlite { path, full_sync: true }
        }
        (None, Some(url)) => JournalConfig::Postgres { url },
        (None, None) => return fail("give --journal PATH or --postgres URL".into()),
    };
    let journal = match Journal::open(&cfg) {
        Ok(j) => j,
        Err(e) => return fail(e.to_string()),
    };
    let rows = match journal.query_blocking(Query::Day(date.clone())) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let lines = match settle::settle(&rows, &date, &cutoffs, offset) {
        Ok(l) => l,
        Err(e) => return fail(e.to_string()),
    };
    if lines.is_empty() {
        // Still a well-formed (empty) report on stdout for scripts; the person reads this.
        eprintln!(
            "isoswitch settle: nothing to settle for business day {date}: the journal holds no approved financial transaction that day ({} rows of any kind)",
            rows.len()
        );
    }
    match a.format {
        Format::Csv => print!("{}", settle::to_csv(&lines)),
        Format::Json => {
            let sum = |f: fn(&settle::Line) -> i64| lines.iter().map(f).sum::<i64>();
            let v = json!({
                "date": date,
                "lines": lines,
                "totals": {
                    "count": lines.iter().map(|l| l.count).sum::<u64>(),
                    "gross_minor": sum(|l| l.gross),
                    "refunds_minor": sum(|l| l.refunds),
                    "fees_minor": sum(|l| l.fees),
                    "net_minor": sum(|l| l.net),
                }
            });
            println!("{v}");
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_and_dates() {
        assert_eq!(parse_cutoffs("12:00, 18:30"), Ok(vec![720, 1110]));
        assert!(parse_cutoffs("18:00,12:00").is_err());
        assert!(parse_cutoffs("25:00").is_err());
        assert!(valid_date("20261124") && !valid_date("20261324") && !valid_date("2026112"));
        assert!(!valid_date("20260231") && !valid_date("20260431") && !valid_date("20261100"));
        assert!(valid_date("20240229") && !valid_date("20250229") && !valid_date("21000229"));
    }

    #[test]
    fn the_last_complete_day_is_yesterday_in_the_estates_time_zone() {
        // 2026-11-24 17:00 UTC is already 2026-11-25 01:00 in Beijing (UTC+8).
        let at = crate::civil::to_days(2026, 11, 24) * 86_400_000 + 17 * 3_600_000;
        assert_eq!(last_complete_day(at, 0), "20261123");
        assert_eq!(last_complete_day(at, 480), "20261124");
        assert_eq!(last_complete_day(at, -300), "20261123");
    }
}
