//! `isoswitch journal export|purge`: journal retention by hand (the switch does the same
//! once a day with `[retention]`). `export` writes one business day to a file of its own
//! (see `journal::retention::export` for the format); `purge` deletes the days older than
//! `--older-than-days` whose export file is there and holds them, in small batches, while
//! the switch keeps writing. Exit status: 0 done, 1 failed on the way (journal or file
//! error), 2 bad argument or journal that cannot be opened, 3 refused (an existing export
//! file that differs; days not exported; another node retaining now).
//! May import: crate::civil, crate::cli::settle, crate::journal, crate::time.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use super::settle::estate_offset;
use crate::journal::retention::{self, Db, Exported, Pace, RetentionError};
use crate::journal::{JournalConfig, business_date};

#[derive(Args, Debug)]
pub struct JournalArgs {
    #[command(subcommand)]
    pub command: JournalCommand,
}

#[derive(Subcommand, Debug)]
pub enum JournalCommand {
    /// Write one business day of the journal to DIR/isoswitch-journal-YYYYMMDD.jsonl.
    Export(ExportArgs),
    /// Delete the business days older than N days whose export is in the export directory.
    Purge(PurgeArgs),
}

/// Which journal to open (as `settle` names it): a SQLite file or a PostgreSQL database.
#[derive(Args, Debug)]
pub struct JournalSource {
    /// SQLite journal file.
    #[arg(long, required_unless_present = "postgres")]
    pub journal: Option<PathBuf>,
    /// PostgreSQL connection string instead of a SQLite file.
    #[arg(long, conflicts_with = "journal")]
    pub postgres: Option<String>,
}

/// The estate's time zone, as `settle` takes it.
#[derive(Args, Debug)]
pub struct Zone {
    /// Business time zone as minutes east of UTC (480 for China Standard Time); default:
    /// the registry's `utc_offset_minutes` in `--rules`, else 0 (UTC).
    #[arg(long, allow_hyphen_values = true)]
    pub utc_offset_minutes: Option<i32>,
    /// The switch's rule directory, for the estate's time zone.
    #[arg(long)]
    pub rules: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: JournalSource,
    /// Business day to export: YYYYMMDD or YYYY-MM-DD.
    #[arg(long)]
    pub date: String,
    /// Directory of the export files (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub zone: Zone,
}

#[derive(Args, Debug)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub source: JournalSource,
    /// Delete the business days more than N days before today (estate's time zone);
    /// at least 1: today and yesterday are always kept.
    #[arg(long)]
    pub older_than_days: u32,
    /// Directory of the export files; a day is deleted only when its file is there and
    /// holds every row deleted.
    #[arg(long, visible_alias = "out", required_unless_present = "force")]
    pub export_dir: Option<PathBuf>,
    /// Delete without an export.
    #[arg(long)]
    pub force: bool,
    /// Rows deleted per transaction.
    #[arg(long, default_value_t = 500)]
    pub batch_rows: u32,
    /// Rest after each batch, in milliseconds (at least three times what the batch took:
    /// the writer's turn).
    #[arg(long, default_value_t = 100)]
    pub pause_ms: u64,
    #[command(flatten)]
    pub zone: Zone,
}

const FAILED: u8 = 1;
const BAD_ARGUMENT: u8 = 2;
const REFUSED: u8 = 3;

pub fn run(a: JournalArgs) -> ExitCode {
    match a.command {
        JournalCommand::Export(e) => export(e),
        JournalCommand::Purge(p) => purge(p),
    }
}

fn say(cmd: &str, code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("isoswitch journal {cmd}: {msg}");
    ExitCode::from(code)
}

/// `YYYYMMDD` or `YYYY-MM-DD`, a real day, as `YYYYMMDD`.
pub fn parse_day(s: &str) -> Option<String> {
    let digits: String = s.chars().filter(|c| *c != '-').collect();
    let dashed = s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') && s.as_bytes().get(7) == Some(&b'-');
    if !(s.len() == 8 || dashed) || digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = digits[0..4].parse().ok()?;
    let m: u32 = digits[4..6].parse().ok()?;
    let d: u32 = digits[6..8].parse().ok()?;
    let real = (1..=12).contains(&m) && crate::civil::from_days(crate::civil::to_days(y, m, d)) == (y, m, d);
    real.then_some(digits)
}

fn open(cmd: &str, s: &JournalSource) -> Result<Db, ExitCode> {
    let cfg = match (&s.journal, &s.postgres) {
        (Some(path), _) => {
            if !path.exists() {
                return Err(say(cmd, BAD_ARGUMENT, format!("--journal: {} does not exist", path.display())));
            }
            JournalConfig::Sqlite { path: path.clone(), full_sync: true }
        }
        (None, Some(url)) => JournalConfig::Postgres { url: url.clone() },
        (None, None) => return Err(say(cmd, BAD_ARGUMENT, "give --journal PATH or --postgres URL")),
    };
    Db::open(&cfg).map_err(|e| say(cmd, BAD_ARGUMENT, e))
}

fn export(a: ExportArgs) -> ExitCode {
    let Some(day) = parse_day(&a.date) else {
        return say(
            "export",
            BAD_ARGUMENT,
            format!("--date: `{}` is not a day as YYYYMMDD or YYYY-MM-DD", a.date),
        );
    };
    let (offset, _) = match estate_offset(a.zone.utc_offset_minutes, a.zone.rules.as_ref()) {
        Ok(o) => o,
        Err(e) => return say("export", BAD_ARGUMENT, e),
    };
    if day >= business_date(crate::time::now(), offset) {
        eprintln!(
            "isoswitch journal export: note: business day {day} is not over (UTC{offset:+} min): \
             rows written after this export keep the day from being purged until it is exported again"
        );
    }
    let mut db = match open("export", &a.source) {
        Ok(d) => d,
        Err(code) => return code,
    };
    match retention::export::export_day(&mut db, &day, &a.out) {
        Ok(Exported::Written { path, summary }) => {
            println!("exported business day {day}: {} rows to {}", summary.rows, path.display());
            ExitCode::SUCCESS
        }
        Ok(Exported::Identical { path, summary }) => {
            println!(
                "business day {day} already exported: {} holds the same {} rows",
                path.display(),
                summary.rows
            );
            ExitCode::SUCCESS
        }
        Ok(Exported::Empty) => {
            eprintln!(
                "isoswitch journal export: business day {day} has no rows in the journal: no file written"
            );
            ExitCode::SUCCESS
        }
        Err(e @ RetentionError::Differs { .. }) => say("export", REFUSED, e),
        Err(e) => say("export", FAILED, e),
    }
}

fn purge(a: PurgeArgs) -> ExitCode {
    if a.older_than_days == 0 {
        return say(
            "purge",
            BAD_ARGUMENT,
            "--older-than-days: must be at least 1 (today and yesterday are kept)",
        );
    }
    if a.batch_rows == 0 || a.batch_rows > 100_000 {
        return say(
            "purge",
            BAD_ARGUMENT,
            format!("--batch-rows: {} is not between 1 and 100000", a.batch_rows),
        );
    }
    let (offset, zone) = match estate_offset(a.zone.utc_offset_minutes, a.zone.rules.as_ref()) {
        Ok(o) => o,
        Err(e) => return say("purge", BAD_ARGUMENT, e),
    };
    let mut db = match open("purge", &a.source) {
        Ok(d) => d,
        Err(code) => return code,
    };
    match db.try_lock() {
        Ok(true) => {}
        Ok(false) => {
            return say(
                "purge",
                REFUSED,
                "another switch node is retaining the journal now; try again later",
            );
        }
        Err(e) => return say("purge", FAILED, e),
    }
    let now = crate::time::now().as_i64();
    let cutoff = retention::cutoff_day(now, a.older_than_days, offset);
    eprintln!("isoswitch journal purge: business days before {cutoff} (UTC{offset:+} min, from {zone})");
    let pace = Pace {
        batch_rows: a.batch_rows,
        pause: Duration::from_millis(a.pause_ms),
        stop: CancellationToken::new(),
    };
    let days = match db.days_before(&cutoff) {
        Ok(d) => d,
        Err(e) => return say("purge", FAILED, e),
    };
    let mut refused = 0;
    for day in &days {
        let covered = match (&a.export_dir, a.force) {
            (_, true) => None,
            (Some(dir), false) => {
                let path = dir.join(retention::file_name(day));
                if !path.exists() {
                    refused += 1;
                    eprintln!(
                        "isoswitch journal purge: {}",
                        RetentionError::NotExported { day: day.clone(), path }
                    );
                    continue;
                }
                match retention::verify(&path, day) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        refused += 1;
                        eprintln!("isoswitch journal purge: {e}; its rows are kept");
                        continue;
                    }
                }
            }
            (None, false) => return say("purge", BAD_ARGUMENT, "give --export-dir DIR (or --force)"),
        };
        match retention::purge_day(&mut db, day, covered.as_ref(), &pace) {
            Ok(n) => match &covered {
                Some(s) => println!("business day {day}: {n} rows purged (its export holds {})", s.rows),
                None => {
                    println!("business day {day}: {n} rows purged (--force: not checked against an export)")
                }
            },
            Err(e @ RetentionError::NotCovered { .. }) => {
                refused += 1;
                eprintln!("isoswitch journal purge: {e}");
            }
            Err(e) => return say("purge", FAILED, e),
        }
    }
    if days.is_empty() {
        println!("nothing to purge: no business day before {cutoff} in the journal");
    }
    let first_kept_ms = retention::day_start_ms(&cutoff, offset);
    match retention::purge_saf(&mut db, first_kept_ms, &pace) {
        Ok(0) => {}
        Ok(n) => println!("{n} finished store-and-forward rows purged"),
        Err(e) => return say("purge", FAILED, e),
    }
    match (db.reclaims().map_err(RetentionError::from), retention::reclaim(&mut db, &pace)) {
        (Ok(true), Ok(pages)) => println!("{pages} free pages given back to the file system"),
        (Ok(false), Ok(_)) if a.source.journal.is_some() => {
            println!(
                "freed pages are reused by new rows (this journal file predates incremental auto-vacuum)"
            )
        }
        (Ok(false), Ok(_)) => {}
        (Err(e), _) | (_, Err(e)) => return say("purge", FAILED, e),
    }
    if refused > 0 {
        return say("purge", REFUSED, format!("{refused} business days kept (see above)"));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_real_days_in_either_form() {
        assert_eq!(parse_day("20261124").as_deref(), Some("20261124"));
        assert_eq!(parse_day("2026-11-24").as_deref(), Some("20261124"));
        assert_eq!(parse_day("2024-02-29").as_deref(), Some("20240229"));
        for bad in ["2026-02-30", "20261324", "2026112", "2026/11/24", "2026-1124-", "20261124x", ""] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }
}
