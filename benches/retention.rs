//! Journal retention's costs, in one bounded run on a SQLite journal
//! (`cargo bench --bench retention`; `RETENTION_BENCH_ROWS`, `RETENTION_BENCH_SEGMENT_MS` and
//! `RETENTION_BENCH_ROUNDS` change its size, `RETENTION_BENCH_BATCH` and
//! `RETENTION_BENCH_PAUSE_MS` the purge's pace):
//!
//! 1. Disk per transaction: `RETENTION_BENCH_ROWS` (200,000) realistic rows of one old
//!    business day written through the real journal writer (`Journal`, group commit,
//!    `synchronous = FULL`, 256 requests in flight); the file's size after a checkpoint
//!    divided by the rows, the table and its three indexes included.
//! 2. The export of that day (as many rows again are added first, so that the purges
//!    below do not run out): rows per second and file bytes per row.
//! 3. The writer with and without a purge of the old day beside it (the switch's defaults:
//!    batches of 500 rows, rest 100 ms or three times the batch; its own connection), in
//!    segments of `RETENTION_BENCH_SEGMENT_MS` (2 s) that alternate without / with:
//!    - saturated: 64 tasks insert rows of today as fast as the writer takes them; rows
//!      per second, and the ratio of the means;
//!    - at 2,000 rows/s offered (a modest estate's rate): latency of `Journal::record`
//!      (p50, p99, max) without and with the purge.
//!
//! The machine may be busy: the segments are interleaved so that both kinds see the same
//! load, and the ratios are the figures to read.
//!
//! The setup is checked before anything is timed (rows in, export complete). May import:
//! the journal.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use isoswitch::journal::retention::{self, Db, Exported, Pace};
use isoswitch::journal::{Decided, SettleCycle};
use isoswitch::journal::{Journal, JournalConfig, PanHasher, Status, TxnRecord, business_date};
use isoswitch::rc::ResponseCode;
use isoswitch::route::txn::TxnType;
use isoswitch::time::UnixMs;
use tokio_util::sync::CancellationToken;

const DAY: i64 = 86_400_000;
const LIVE_TASKS: usize = 64;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Row `i` received at `at`: an approved purchase forwarded to an issuer, every column the
/// switch fills, 64 terminals.
fn row(i: u64, at: i64, hasher: &PanHasher) -> TxnRecord {
    let (t, s) = (i % 64, i / 64);
    let pan = format!("62123456{:011}", i % 10_000);
    TxnRecord {
        switch_id: "node-1".into(),
        received_at: UnixMs::from_i64(at),
        forwarded_at: Some(UnixMs::from_i64(at + 1)),
        answered_at: Some(UnixMs::from_i64(at + 40)),
        business_date: business_date(UnixMs::from_i64(at), 480).into(),
        terminal_id: format!("T{t:07}").into(),
        merchant_id: format!("8983401581{:05}", t).into(),
        stan: format!("{:06}", s % 1_000_000).into(),
        switch_stan: Some(format!("{:06}", i % 1_000_000).into()),
        rrn: Some(format!("{:012}", i).into()),
        transmission_time: format!("{:010}", s).into(),
        mti: "0200".into(),
        txn_type: TxnType::Purchase.into(),
        amount: 100 + (i % 50_000) as i64,
        currency: Some("156".into()),
        pan_masked: Some(isoswitch::iso::mask::mask_pan(&pan).into()),
        pan_hash: Some(hasher.hash(&pan)),
        route: Some("cup".into()),
        issuer: Some("bank-a".into()),
        decision: Decided::Forward,
        rc: Some(ResponseCode::APPROVED),
        auth_code: Some(format!("{:06}", i % 1_000_000).into()),
        fee: 6,
        settle_cycle: SettleCycle::T1,
        status: Some(Status::Approved),
        batch: None,
        terminal_batch: None,
        txn_key: Some(format!("0200 {:010}", s).into()),
        advice_rc: None,
    }
}

struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Write rows `first..first + n` received at `at` with `inflight` requests at once.
async fn fill(j: &Journal, first: u64, n: u64, at: i64, inflight: u64, hasher: &PanHasher) {
    let next = Arc::new(AtomicU64::new(first));
    let mut tasks = Vec::new();
    for _ in 0..inflight {
        let (j, next, hasher) = (j.clone(), next.clone(), hasher.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= first + n {
                    return;
                }
                let r = row(i, at + (i % 1000) as i64, &hasher);
                assert!(j.record(r).await.expect("row written"), "row {i} inserted");
            }
        }));
    }
    for t in tasks {
        t.await.expect("fill task");
    }
}

/// One segment of live inserts: rows per second and `record` latencies (µs).
async fn live_segment(
    j: &Journal,
    next: &Arc<AtomicU64>,
    length: Duration,
    hasher: &PanHasher,
) -> (f64, Vec<u64>) {
    let started = Instant::now();
    let until = started + length;
    let mut tasks = Vec::new();
    for _ in 0..LIVE_TASKS {
        let (j, next, hasher) = (j.clone(), next.clone(), hasher.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < until {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let r = row(i, now_ms(), &hasher);
                let t0 = Instant::now();
                assert!(j.record(r).await.expect("live row written"));
                lat.push(t0.elapsed().as_micros() as u64);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("live task"));
    }
    let secs = started.elapsed().as_secs_f64();
    (all.len() as f64 / secs, all)
}

/// One segment at `per_s` rows per second offered (a batch every 5 ms): `record` latencies (µs).
async fn paced_segment(
    j: &Journal,
    next: &Arc<AtomicU64>,
    length: Duration,
    per_s: u64,
    hasher: &PanHasher,
) -> Vec<u64> {
    let until = Instant::now() + length;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let per_tick = (per_s / 200).max(1);
    let mut waits = Vec::new();
    while Instant::now() < until {
        tick.tick().await;
        for _ in 0..per_tick {
            let (j, hasher) = (j.clone(), hasher.clone());
            let i = next.fetch_add(1, Ordering::Relaxed);
            waits.push(tokio::spawn(async move {
                let r = row(i, now_ms(), &hasher);
                let t0 = Instant::now();
                assert!(j.record(r).await.expect("paced row written"));
                t0.elapsed().as_micros() as u64
            }));
        }
    }
    let mut lat = Vec::with_capacity(waits.len());
    for w in waits {
        lat.push(w.await.expect("paced row"));
    }
    lat
}

/// A purge of `day` on its own thread until `stop`; gives back the connection, the rows
/// it deleted, how long it ran and whether it ran out of rows.
fn purge_beside(
    mut db: Db,
    day: String,
    summary: retention::Summary,
    stop: CancellationToken,
) -> std::thread::JoinHandle<(Db, u64, Duration, bool)> {
    std::thread::spawn(move || {
        let batch_rows = env("RETENTION_BENCH_BATCH", 500) as u32;
        let pause = Duration::from_millis(env("RETENTION_BENCH_PAUSE_MS", 100));
        let pace = Pace { batch_rows, pause, stop };
        let before = db.count(&day, i64::MAX).expect("count").0;
        let t0 = Instant::now();
        let outcome = retention::purge_day(&mut db, &day, Some(&summary), &pace);
        let after = db.count(&day, i64::MAX).expect("count").0;
        (db, before - after, t0.elapsed(), outcome.is_ok())
    })
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not used.
    let rows = env("RETENTION_BENCH_ROWS", 200_000);
    let segment = Duration::from_millis(env("RETENTION_BENCH_SEGMENT_MS", 2000));
    let rounds = env("RETENTION_BENCH_ROUNDS", 3);
    let dir = Scratch(std::env::temp_dir().join(format!("isoswitch-bench-retention-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).expect("scratch directory");
    let path = dir.0.join("journal.db");
    let cfg = JournalConfig::Sqlite { path: path.clone(), full_sync: true };
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let hasher = PanHasher::new(b"bench-key");
    let j = Journal::open(&cfg).expect("open journal");
    let old_at = now_ms() - 10 * DAY;
    let old_day = business_date(UnixMs::from_i64(old_at), 480);

    // 1. Disk per transaction.
    let t0 = Instant::now();
    rt.block_on(fill(&j, 0, rows, old_at, 256, &hasher));
    j.barrier_blocking().expect("barrier");
    let fill_s = t0.elapsed().as_secs_f64();
    let conn = rusqlite::Connection::open(&path).expect("bench connection");
    conn.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM transactions", [], |r| r.get(0)).expect("count");
    assert_eq!(n as u64, rows, "setup: every row is in");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("checkpoint");
    let file_bytes = std::fs::metadata(&path).expect("file").len();
    let (pages, page_size): (i64, i64) = (
        conn.query_row("PRAGMA page_count", [], |r| r.get(0)).expect("page_count"),
        conn.query_row("PRAGMA page_size", [], |r| r.get(0)).expect("page_size"),
    );
    println!(
        "disk: {rows} rows written through the journal writer in {fill_s:.1} s ({:.0} rows/s, 256 in flight, FULL)",
        rows as f64 / fill_s
    );
    println!(
        "disk: file {file_bytes} bytes ({pages} pages of {page_size}) = {:.0} bytes per transaction, table and indexes included",
        file_bytes as f64 / rows as f64
    );
    println!(
        "disk: at 2,000 transactions/s that is {:.1} GB per day",
        file_bytes as f64 / rows as f64 * 2000.0 * 86_400.0 / 1e9
    );

    // 2. Export of the old day, with as many rows again for the purges to delete.
    rt.block_on(fill(&j, rows, rows, old_at, 256, &hasher));
    j.barrier_blocking().expect("barrier");
    let mut db = Db::open(&cfg).expect("retention connection");
    let t0 = Instant::now();
    let exported = retention::export::export_day(&mut db, &old_day, &dir.0.join("exports")).expect("export");
    let export_s = t0.elapsed().as_secs_f64();
    let Exported::Written { path: file, summary } = exported else { panic!("setup: the export was written") };
    assert_eq!(summary.rows, 2 * rows, "setup: the export holds every row");
    let export_bytes = std::fs::metadata(&file).expect("export file").len();
    println!(
        "export: {} rows in {export_s:.2} s ({:.0} rows/s), {:.0} bytes per row in {}",
        summary.rows,
        summary.rows as f64 / export_s,
        export_bytes as f64 / summary.rows as f64,
        file.file_name().and_then(|f| f.to_str()).unwrap_or("?")
    );

    // 3. The writer with and without a purge beside it, interleaved.
    let next = Arc::new(AtomicU64::new(10 * rows));
    let (mut base, mut beside) = (Vec::new(), Vec::new());
    let (mut paced_alone, mut paced_beside) = (Vec::new(), Vec::new());
    let (mut purged_total, mut purge_time, mut ran_out) = (0u64, Duration::ZERO, false);
    let mut note = |(back, purged, took, out): (Db, u64, Duration, bool)| {
        purged_total += purged;
        purge_time += took;
        ran_out |= out;
        (back, purged)
    };
    for round in 0..rounds {
        let (rate, _) = rt.block_on(live_segment(&j, &next, segment, &hasher));
        println!("round {round}: saturated, writer alone        {rate:>8.0} rows/s");
        base.push(rate);
        let stop = CancellationToken::new();
        let purge = purge_beside(db, old_day.clone(), summary.clone(), stop.clone());
        let (rate, _) = rt.block_on(live_segment(&j, &next, segment, &hasher));
        stop.cancel();
        let (back, purged) = note(purge.join().expect("purge thread"));
        db = back;
        println!(
            "round {round}: saturated, writer beside purge {rate:>8.0} rows/s   (purge deleted {purged} rows)"
        );
        beside.push(rate);

        paced_alone.extend(rt.block_on(paced_segment(&j, &next, segment, 2000, &hasher)));
        let stop = CancellationToken::new();
        let purge = purge_beside(db, old_day.clone(), summary.clone(), stop.clone());
        paced_beside.extend(rt.block_on(paced_segment(&j, &next, segment, 2000, &hasher)));
        stop.cancel();
        let (back, purged) = note(purge.join().expect("purge thread"));
        db = back;
        println!("round {round}: 2,000 rows/s offered, purge beside deleted {purged} rows");
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "saturated: writer alone mean {:.0} rows/s, beside purge {:.0} rows/s, ratio {:.3}",
        mean(&base),
        mean(&beside),
        mean(&beside) / mean(&base).max(1.0)
    );
    paced_alone.sort_unstable();
    paced_beside.sort_unstable();
    for (what, lat) in [("alone", &paced_alone), ("beside purge", &paced_beside)] {
        println!(
            "2,000 rows/s: writer {what:<13} record latency p50 {} µs, p99 {} µs, max {} µs ({} rows)",
            pct(lat, 0.5),
            pct(lat, 0.99),
            lat.last().copied().unwrap_or(0),
            lat.len()
        );
    }
    println!(
        "purge: {purged_total} rows in {:.1} s beside the writer ({:.0} rows/s){}",
        purge_time.as_secs_f64(),
        purged_total as f64 / purge_time.as_secs_f64().max(0.001),
        if ran_out { "; it ran out of rows: raise RETENTION_BENCH_ROWS" } else { "" }
    );
}
