//! The running switch's journal retention (`[retention]`): once a day at `at` (local time
//! in the estate's zone, read from the rules in force at each pass), and once
//! `first_run_after_s` after start, a retention pass exports every business day older than
//! `keep_days` complete days to a file of its own and purges it (`journal::retention`).
//! The pass runs on a blocking-pool thread over a connection of its own, never the
//! writer's, in batches of `batch_rows` with `pause_ms` between them; a stopping switch
//! ends it between two batches. It starts after the start-up work that reads old rows
//! (the in-doubt reconciliation, the reload of the retransmission window), and never
//! reaches the days they read: `keep_days` is at least 1 and covers `[repeats] window_s`.
//! May import: crate::acceptor::service, crate::config, crate::journal, crate::metrics,
//! crate::time.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::acceptor::service::Services;
use crate::config::RetentionConfig;
use crate::journal::JournalConfig;
use crate::journal::record::minute_of_day;
use crate::journal::retention::{self, Db, Pace, PassReport, RetentionError};
use crate::metrics as m;
use crate::time::UnixMs;

/// Unix milliseconds of the next `at_minute` (minutes past local midnight) after `now_ms`.
pub fn next_daily(now_ms: i64, at_minute: u32, utc_offset_minutes: i32) -> i64 {
    let minute_now = i64::from(minute_of_day(UnixMs::from_i64(now_ms), utc_offset_minutes));
    let into_minute = now_ms.rem_euclid(60_000);
    let mut ahead = i64::from(at_minute) - minute_now;
    if ahead <= 0 {
        ahead += 1440;
    }
    now_ms - into_minute + ahead * 60_000
}

/// Check at start that the export directory can be written (created when missing).
pub fn check_export_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(".isoswitch-retention-probe");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// Start the daily pass; it ends with `stop`.
pub fn spawn(
    cfg: RetentionConfig,
    journal: JournalConfig,
    services: Arc<Services>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    counter!(m::RETENTION_ROWS_EXPORTED_TOTAL).increment(0);
    counter!(m::RETENTION_ROWS_PURGED_TOTAL).increment(0);
    counter!(m::RETENTION_FAILURES_TOTAL).increment(0);
    tokio::spawn(async move {
        let at = cfg.at_minute().unwrap_or(210);
        let mut first = Some(
            crate::time::now().as_i64().saturating_add(cfg.first_run_after_s.saturating_mul(1000) as i64),
        );
        loop {
            let offset = services.router.rules().registry.utc_offset_minutes;
            let now = crate::time::now().as_i64();
            let daily = next_daily(now, at, offset);
            let when = first.map_or(daily, |f| f.min(daily));
            let wait = Duration::from_millis(u64::try_from(when.saturating_sub(now)).unwrap_or(0));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            first = None;
            let (c, j, s) = (cfg.clone(), journal.clone(), stop.clone());
            let done = tokio::task::spawn_blocking(move || pass(&c, &j, offset, &s)).await;
            match done {
                Ok(Ok(Some(report))) => record(&report),
                Ok(Ok(None)) => {
                    tracing::info!("journal retention: another switch node is retaining now; skipped")
                }
                Ok(Err(RetentionError::Stopped)) => return,
                Ok(Err(e)) => {
                    counter!(m::RETENTION_FAILURES_TOTAL).increment(1);
                    tracing::error!(error = %e, "journal retention pass failed; the next one is tomorrow");
                }
                Err(e) => {
                    counter!(m::RETENTION_FAILURES_TOTAL).increment(1);
                    tracing::error!(error = %e, "journal retention pass ended abnormally");
                }
            }
            // Past the minute of `at`, so that the next daily time is tomorrow's.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(61)) => {}
            }
        }
    })
}

/// One pass on a connection of its own.
fn pass(
    cfg: &RetentionConfig,
    journal: &JournalConfig,
    offset: i32,
    stop: &CancellationToken,
) -> Result<Option<PassReport>, RetentionError> {
    let mut db = Db::open(journal)?;
    let pace =
        Pace { batch_rows: cfg.batch_rows, pause: Duration::from_millis(cfg.pause_ms), stop: stop.clone() };
    retention::run_pass(&mut db, &cfg.export_dir, cfg.keep_days, offset, crate::time::now().as_i64(), &pace)
}

/// Log and count what a pass did.
fn record(report: &PassReport) {
    let written: u64 = report.days.iter().filter(|d| d.written).map(|d| d.exported).sum();
    let purged: u64 = report.days.iter().map(|d| d.purged).sum();
    counter!(m::RETENTION_ROWS_EXPORTED_TOTAL).increment(written);
    counter!(m::RETENTION_ROWS_PURGED_TOTAL).increment(purged);
    for (day, why) in &report.skipped {
        counter!(m::RETENTION_FAILURES_TOTAL).increment(1);
        tracing::error!(business_date = %day, error = %why, "journal retention: day kept");
    }
    if report.skipped.is_empty() {
        gauge!(m::RETENTION_LAST_SUCCESS_SECONDS).set(crate::time::now().as_i64() as f64 / 1000.0);
    }
    tracing::info!(
        days = report.days.len(),
        rows_exported = written,
        rows_purged = purged,
        days_kept_back = report.skipped.len(),
        saf_rows_purged = report.saf_purged,
        pages_reclaimed = report.pages_reclaimed,
        "journal retention pass done"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_daily_time_is_the_next_local_occurrence() {
        let midnight = crate::civil::to_days(2026, 11, 24) * 86_400_000;
        let h = 3_600_000;
        // 02:00 UTC, at 03:30 UTC: today.
        assert_eq!(next_daily(midnight + 2 * h, 210, 0), midnight + 3 * h + 30 * 60_000);
        // 04:00 UTC: tomorrow.
        assert_eq!(next_daily(midnight + 4 * h, 210, 0), midnight + 27 * h + 30 * 60_000);
        // Exactly at the minute (a pass just ran): tomorrow.
        assert_eq!(next_daily(midnight + 3 * h + 30 * 60_000 + 5, 210, 0), midnight + 27 * h + 30 * 60_000);
        // Beijing (UTC+8): 03:30 local is 19:30 UTC the day before.
        assert_eq!(next_daily(midnight + 12 * h, 210, 480), midnight + 19 * h + 30 * 60_000);
    }
}
