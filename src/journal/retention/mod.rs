//! Journal retention: settled business days are exported to a file per day (`export`) and
//! then deleted from the journal in small batches (`purge_day`), online, beside the
//! running writer. A pass (`run_pass`) does both for every day older than the days kept;
//! the switch runs one a day and `isoswitch journal export|purge` run them by hand.
//!
//! Invariants:
//! - A row is deleted only when an export file of its day, checked whole (`export::verify`),
//!   holds it: the day has no row past the file's last `id`, and no more rows up to it than
//!   the file counts (fewer when an earlier purge of the day was interrupted). `--force`
//!   (the CLI) alone deletes without an export.
//! - The pass has its own connection (`db::Db`), never the writer's; each delete batch is a
//!   transaction of at most `batch_rows` rows followed by a rest (`pause`, or three times
//!   what the batch took when that is longer), so the writer waits at most one batch for
//!   its lock and the pass holds the lock at most a quarter of the time.
//! - Only `transactions` rows of days before the cut-off and *finished* store-and-forward
//!   rows (acknowledged or expired before the cut-off) are deleted; a pending reversal is
//!   never touched, nor the in-doubt log (files of its own).
//!
//! May import: crate::civil, crate::journal::record, crate::time.

pub mod db;
mod error;
pub mod export;

pub use error::RetentionError;

use std::path::Path;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::record::business_date;
use crate::time::UnixMs;
pub use db::Db;
pub use export::{Exported, Summary, file_name, verify};

/// How a purge deletes: rows per transaction, the pause after each, and when to give up.
#[derive(Debug, Clone)]
pub struct Pace {
    pub batch_rows: u32,
    pub pause: Duration,
    /// Checked between batches: a stopping switch is not held up by a long purge.
    pub stop: CancellationToken,
}

/// After a batch that took `t`, the pass rests `pause` or `YIELD_FACTOR` × `t`, whichever
/// is longer: on a loaded journal a batch takes longer, and the pass then holds the write
/// lock at most a quarter of the time whatever `pause` says.
const YIELD_FACTOR: u32 = 3;

impl Pace {
    fn rest(&self, batch_took: Duration) -> Result<(), RetentionError> {
        if self.stop.is_cancelled() {
            return Err(RetentionError::Stopped);
        }
        let rest = self.pause.max(batch_took.saturating_mul(YIELD_FACTOR));
        if !rest.is_zero() {
            std::thread::sleep(rest);
        }
        Ok(())
    }
}

/// The first business day kept when `keep_days` complete days are kept before today (in
/// the estate's zone): days strictly before it are retained. `keep_days = 1` keeps today
/// and yesterday (the day `settle` settles by default).
pub fn cutoff_day(now_ms: i64, keep_days: u32, utc_offset_minutes: i32) -> String {
    let back = i64::from(keep_days).saturating_mul(86_400_000);
    business_date(UnixMs::from_i64(now_ms.saturating_sub(back)), utc_offset_minutes)
}

/// Delete the rows of `day` that `covered` (the day's checked export) holds, in batches;
/// `None` deletes every row of the day (`--force`). Returns the rows deleted.
pub fn purge_day(
    db: &mut Db,
    day: &str,
    covered: Option<&Summary>,
    pace: &Pace,
) -> Result<u64, RetentionError> {
    let last_id = match covered {
        None => i64::MAX,
        Some(s) => {
            let last = s.last_id.unwrap_or(i64::MIN);
            let (within, beyond) = db.count(day, last)?;
            if beyond > 0 {
                return Err(RetentionError::NotCovered {
                    day: day.into(),
                    detail: format!(
                        "{beyond} rows were written after its export (last id {last}): move the export away and export the day again"
                    ),
                });
            }
            if within > s.rows {
                return Err(RetentionError::NotCovered {
                    day: day.into(),
                    detail: format!("the journal holds {within} rows, its export {}", s.rows),
                });
            }
            last
        }
    };
    let mut deleted = 0u64;
    loop {
        let started = Instant::now();
        let n = db.delete_batch(day, last_id, pace.batch_rows.max(1))?;
        deleted += n;
        if n < u64::from(pace.batch_rows.max(1)) {
            return Ok(deleted);
        }
        pace.rest(started.elapsed())?;
    }
}

/// Delete finished store-and-forward rows done before `before_ms`, in batches.
pub fn purge_saf(db: &mut Db, before_ms: i64, pace: &Pace) -> Result<u64, RetentionError> {
    let mut deleted = 0u64;
    loop {
        let started = Instant::now();
        let n = db.delete_saf_batch(before_ms, pace.batch_rows.max(1))?;
        deleted += n;
        if n < u64::from(pace.batch_rows.max(1)) {
            return Ok(deleted);
        }
        pace.rest(started.elapsed())?;
    }
}

/// Free pages given back per step of incremental vacuum (4 MB of 4 KB pages).
const RECLAIM_STEP: u32 = 1024;

/// Give freed pages back to the file system where the store allows it, a step at a time
/// with `pace`'s pause between steps; returns the pages given back (0 when the store
/// reuses them instead).
pub fn reclaim(db: &mut Db, pace: &Pace) -> Result<u64, RetentionError> {
    if !db.reclaims()? {
        return Ok(0);
    }
    let before = db.free_pages()?;
    let mut left = before;
    while left > 0 {
        let started = Instant::now();
        let now = db.reclaim_step(RECLAIM_STEP)?;
        if now >= left {
            break;
        }
        left = now;
        pace.rest(started.elapsed())?;
    }
    Ok(before.saturating_sub(left))
}

/// What a pass did to one business day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayDone {
    pub day: String,
    /// Rows the export file holds (written now or before).
    pub exported: u64,
    /// Whether the export was written by this pass (not found from an earlier one).
    pub written: bool,
    pub purged: u64,
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    pub days: Vec<DayDone>,
    /// Days left alone, and why (the pass carries on with the others).
    pub skipped: Vec<(String, RetentionError)>,
    pub saf_purged: u64,
    pub pages_reclaimed: u64,
}

/// Export the day unless its file exists, then check the file: the summary to purge by.
pub fn ensure_exported(db: &mut Db, day: &str, dir: &Path) -> Result<(Summary, bool), RetentionError> {
    let path = dir.join(file_name(day));
    if path.exists() {
        return Ok((verify(&path, day)?, false));
    }
    match export::export_day(db, day, dir)? {
        Exported::Written { path, .. } | Exported::Identical { path, .. } => Ok((verify(&path, day)?, true)),
        // The rows went between the look-up and the export (another purge).
        Exported::Empty => {
            Ok((Summary { business_date: day.into(), rows: 0, first_id: None, last_id: None }, false))
        }
    }
}

/// One retention pass at `now_ms`: every business day before the cut-off is exported to
/// `dir` (unless its file is there) and purged; then finished store-and-forward rows of
/// before the cut-off go, and freed pages are given back where the store allows. A day
/// whose export fails or does not cover it is skipped (reported) and the others go on; a
/// database error ends the pass. `Ok(None)` when another node holds the retention lock.
pub fn run_pass(
    db: &mut Db,
    dir: &Path,
    keep_days: u32,
    utc_offset_minutes: i32,
    now_ms: i64,
    pace: &Pace,
) -> Result<Option<PassReport>, RetentionError> {
    if !db.try_lock()? {
        return Ok(None);
    }
    let cutoff = cutoff_day(now_ms, keep_days, utc_offset_minutes);
    let mut report = PassReport::default();
    for day in db.days_before(&cutoff)? {
        let started = Instant::now();
        let (summary, written) = match ensure_exported(db, &day, dir) {
            Ok(s) => s,
            Err(e @ (RetentionError::Store(_) | RetentionError::Stopped)) => return Err(e),
            Err(e) => {
                report.skipped.push((day, e));
                continue;
            }
        };
        match purge_day(db, &day, Some(&summary), pace) {
            Ok(purged) => {
                tracing::info!(
                    business_date = %day,
                    exported = summary.rows,
                    written,
                    purged,
                    ms = started.elapsed().as_millis() as u64,
                    "journal retention: day exported and purged"
                );
                report.days.push(DayDone { day, exported: summary.rows, written, purged });
            }
            Err(e @ RetentionError::NotCovered { .. }) => report.skipped.push((day, e)),
            Err(e) => return Err(e),
        }
        pace.rest(Duration::ZERO)?;
    }
    // Finished reversals of the purged days: done before the first kept day began.
    let first_kept_ms = day_start_ms(&cutoff, utc_offset_minutes);
    report.saf_purged = purge_saf(db, first_kept_ms, pace)?;
    report.pages_reclaimed = reclaim(db, pace)?;
    Ok(Some(report))
}

/// Unix milliseconds of local midnight starting business day `day` (YYYYMMDD).
pub fn day_start_ms(day: &str, utc_offset_minutes: i32) -> i64 {
    let num = |r: std::ops::Range<usize>| day.get(r).and_then(|s| s.parse::<u32>().ok()).unwrap_or(1);
    let y = i64::from(num(0..4));
    let days = crate::civil::to_days(y, num(4..6), num(6..8));
    days * 86_400_000 - i64::from(utc_offset_minutes) * 60_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_keeps_today_and_keep_days_before_it_in_the_estates_zone() {
        // 2026-11-24 17:00 UTC is 2026-11-25 01:00 in Beijing.
        let at = crate::civil::to_days(2026, 11, 24) * 86_400_000 + 17 * 3_600_000;
        assert_eq!(cutoff_day(at, 1, 0), "20261123");
        assert_eq!(cutoff_day(at, 1, 480), "20261124");
        assert_eq!(cutoff_day(at, 7, 480), "20261118");
        assert_eq!(
            day_start_ms("20261124", 480),
            crate::civil::to_days(2026, 11, 24) * 86_400_000 - 8 * 3_600_000
        );
        assert_eq!(business_date(UnixMs::from_i64(day_start_ms("20261124", 480)), 480), "20261124");
        assert_eq!(business_date(UnixMs::from_i64(day_start_ms("20261124", 480) - 1), 480), "20261123");
    }
}
