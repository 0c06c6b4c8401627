//! Journal retention against SQLite and PostgreSQL: a day's export file (rows, columns, no
//! card number), a purge that deletes only exported old days, refuses the others and keeps
//! pending reversals, and a whole retention pass run while the journal's writer keeps
//! inserting (no write fails, no row of a kept day goes). PostgreSQL is reached through
//! `ISOSWITCH_TEST_PG`; without it the PostgreSQL half is skipped with a note (under CI its
//! absence fails).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use isoswitch::journal::retention::{self, Db, Exported, Pace, RetentionError, Summary};
use isoswitch::journal::{Decided, SettleCycle};
use isoswitch::journal::{Journal, JournalConfig, PanHasher, Query, Status, TxnRecord, business_date};
use isoswitch::rc::ResponseCode;
use isoswitch::route::txn::TxnType;
use isoswitch::time::UnixMs;
use tokio_util::sync::CancellationToken;

const TEST_PANS: &[&str] = &["4761739001010010", "6212345678901234567", "5413330089010434"];
const DAY: i64 = 86_400_000;

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// An approved purchase of `terminal`/`stan` received at `at` (UTC business days).
fn rec(terminal: &str, stan: u32, at: i64) -> TxnRecord {
    let keys = PanHasher::new(b"test-key");
    let pan = TEST_PANS[stan as usize % TEST_PANS.len()];
    TxnRecord {
        switch_id: "node-a".into(),
        received_at: UnixMs::from_i64(at),
        answered_at: Some(UnixMs::from_i64(at + 3)),
        business_date: business_date(UnixMs::from_i64(at), 0).into(),
        terminal_id: terminal.into(),
        merchant_id: "MERCHANT0000001".into(),
        stan: format!("{:06}", stan % 1_000_000).into(),
        switch_stan: Some(format!("{:06}", stan % 1_000_000).into()),
        rrn: Some(format!("RRN{stan:09}").into()),
        transmission_time: format!("{stan:010}").into(),
        mti: "0200".into(),
        txn_type: TxnType::Purchase.into(),
        amount: 1_000 + i64::from(stan),
        currency: Some("156".into()),
        pan_masked: Some(isoswitch::iso::mask::mask_pan(pan).into()),
        pan_hash: Some(keys.hash(pan)),
        decision: Decided::Forward,
        rc: Some(ResponseCode::APPROVED),
        fee: 6,
        settle_cycle: SettleCycle::T1,
        status: Some(Status::Approved),
        txn_key: Some(format!("0200 {stan:010}").into()),
        advice_rc: None,
        ..TxnRecord::default()
    }
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!(
            "isoswitch-retention-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh PostgreSQL database (dropped by `drop_pg`), or None when no server is configured.
async fn postgres() -> Option<(JournalConfig, String)> {
    let Ok(base) = std::env::var("ISOSWITCH_TEST_PG") else {
        assert!(std::env::var("CI").is_err(), "CI must provide ISOSWITCH_TEST_PG (see .ci/pg-setup)");
        eprintln!("note: ISOSWITCH_TEST_PG not set; PostgreSQL half skipped");
        return None;
    };
    let name = format!("retention_t{}_{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
    let (client, conn) =
        tokio_postgres::connect(&base, tokio_postgres::NoTls).await.expect("ISOSWITCH_TEST_PG");
    tokio::spawn(conn);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    Some((JournalConfig::Postgres { url: format!("{base} dbname={name}") }, name))
}

async fn drop_pg(name: &str) {
    let base = std::env::var("ISOSWITCH_TEST_PG").unwrap();
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// Run one statement on the journal's database (not through the switch's code) and return
/// the first column of the first row as an integer when it has one.
async fn sql(cfg: &JournalConfig, statement: &str) -> Option<i64> {
    match cfg {
        JournalConfig::Sqlite { path, .. } => {
            let c = rusqlite::Connection::open(path).unwrap();
            c.busy_timeout(Duration::from_secs(5)).unwrap();
            let mut stmt = c.prepare(statement).unwrap();
            let mut rows = stmt.query([]).unwrap();
            rows.next().unwrap().and_then(|r| r.get::<_, i64>(0).ok())
        }
        JournalConfig::Postgres { url } => {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let rows = client.query(statement, &[]).await.unwrap();
            rows.first().and_then(|r| r.try_get::<_, i64>(0).ok())
        }
    }
}

async fn open_journal(cfg: &JournalConfig) -> Journal {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || Journal::open(&cfg)).await.unwrap().expect("open journal")
}

async fn db(cfg: &JournalConfig) -> Db {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || Db::open(&cfg)).await.unwrap().expect("retention connection")
}

/// Write `n` rows of the business day of `at` for `terminal`, concurrently, all committed.
async fn fill(j: &Journal, terminal: &str, at: i64, n: u32) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut waits = Vec::new();
        for &i in chunk {
            let j = j.clone();
            let r = rec(terminal, i, at + i64::from(i));
            waits.push(tokio::spawn(async move { j.record(r).await }));
        }
        for w in waits {
            assert!(w.await.unwrap().unwrap(), "row inserted");
        }
    }
}

/// Run `f` on the retention connection outside the runtime's workers (it blocks).
async fn on<T: Send + 'static>(mut conn: Db, f: impl FnOnce(&mut Db) -> T + Send + 'static) -> (Db, T) {
    tokio::task::spawn_blocking(move || {
        let out = f(&mut conn);
        (conn, out)
    })
    .await
    .unwrap()
}

fn pace(batch_rows: u32) -> Pace {
    Pace { batch_rows, pause: Duration::from_millis(1), stop: CancellationToken::new() }
}

fn day_count(day: &str) -> String {
    format!("SELECT COUNT(*) FROM transactions WHERE business_date = '{day}'")
}

/// Export file contents; a purge that deletes only covered days.
async fn export_and_purge(cfg: JournalConfig) {
    let out = Scratch::new("out");
    let now = now_ms();
    let (old, older, today) = (now - 10 * DAY, now - 9 * DAY, now);
    let (d_old, d_older, d_today) = (
        business_date(UnixMs::from_i64(old), 0),
        business_date(UnixMs::from_i64(older), 0),
        business_date(UnixMs::from_i64(today), 0),
    );
    let j = open_journal(&cfg).await;
    fill(&j, "TERM0001", old, 1234).await;
    fill(&j, "TERM0002", older, 300).await;
    fill(&j, "TERM0003", today, 200).await;

    // The export of a day: header, one line per row in id order with every column, trailer.
    let conn = db(&cfg).await;
    let (dir, day) = (out.0.clone(), d_old.clone());
    let (conn, exported) = on(conn, move |c| retention::export::export_day(c, &day, &dir).unwrap()).await;
    let Exported::Written { path, summary } = exported else { panic!("written: {exported:?}") };
    assert_eq!(path, out.0.join(format!("isoswitch-journal-{d_old}.jsonl")));
    assert_eq!(summary.rows, 1234);
    let text = std::fs::read_to_string(&path).unwrap();
    for pan in TEST_PANS {
        assert!(!text.contains(pan), "a full PAN in the export");
    }
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1234 + 2);
    assert_eq!(lines[0]["format"], "isoswitch-journal-export");
    assert_eq!(lines[0]["business_date"], d_old.as_str());
    let columns: Vec<&str> =
        lines[0]["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(columns[0], "id");
    assert_eq!(&columns[1..], isoswitch::journal::store::COLUMNS);
    let mut last_id = i64::MIN;
    let mut stans = std::collections::BTreeSet::new();
    for row in &lines[1..lines.len() - 1] {
        let obj = row.as_object().unwrap();
        assert_eq!(obj.keys().len(), columns.len(), "every column, no other: {obj:?}");
        for c in &columns {
            assert!(obj.contains_key(*c), "column {c}");
        }
        let id = row["id"].as_i64().unwrap();
        assert!(id > last_id, "id order");
        last_id = id;
        assert_eq!(row["business_date"], d_old.as_str());
        assert_eq!(row["terminal_id"], "TERM0001");
        assert_eq!(row["status"], "approved");
        assert!(row["forwarded_at"].is_null(), "SQL NULL is null");
        let masked = row["pan_masked"].as_str().unwrap();
        assert!(masked.contains('*'), "masked PAN: {masked}");
        stans.insert(row["stan"].as_str().unwrap().to_string());
    }
    assert_eq!(stans.len(), 1234, "each row once");
    let trailer = &lines[lines.len() - 1];
    assert_eq!((trailer["rows"].as_u64(), trailer["last_id"].as_i64()), (Some(1234), Some(last_id)));
    assert_eq!(retention::verify(&path, &d_old).unwrap(), summary);

    // The same export again is recognised; a file that differs is never replaced.
    let (dir, day) = (out.0.clone(), d_old.clone());
    let (conn, again) = on(conn, move |c| retention::export::export_day(c, &day, &dir).unwrap()).await;
    assert!(matches!(again, Exported::Identical { .. }), "{again:?}");
    let other = Scratch::new("other");
    let foreign = other.0.join(format!("isoswitch-journal-{d_old}.jsonl"));
    std::fs::write(&foreign, "not an export\n").unwrap();
    let (dir, day) = (other.0.clone(), d_old.clone());
    let (conn, refused) = on(conn, move |c| retention::export::export_day(c, &day, &dir).unwrap_err()).await;
    assert!(matches!(refused, RetentionError::Differs { .. }), "{refused}");
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "not an export\n");
    assert_eq!(std::fs::read_dir(&other.0).unwrap().count(), 1, "no temporary file left behind");
    // A file cut short or of another day does not pass the check.
    std::fs::write(&foreign, &text[..text.len() / 2]).unwrap();
    assert!(matches!(retention::verify(&foreign, &d_old), Err(RetentionError::BadFile { .. })));
    assert!(matches!(retention::verify(&path, &d_older), Err(RetentionError::BadFile { .. })));

    // A row written to the day after its export: the export no longer covers the day.
    let late = rec("TERM0009", 1, old);
    assert!(j.record(late).await.unwrap());
    let (day, s) = (d_old.clone(), summary.clone());
    let (conn, refused) =
        on(conn, move |c| retention::purge_day(c, &day, Some(&s), &pace(100)).unwrap_err()).await;
    assert!(matches!(refused, RetentionError::NotCovered { .. }), "{refused}");
    assert_eq!(sql(&cfg, &day_count(&d_old)).await, Some(1235), "nothing deleted");
    // Exported again (the old file moved away), the day goes in batches, the others stay.
    std::fs::remove_file(&path).unwrap();
    let (dir, day) = (out.0.clone(), d_old.clone());
    let (conn, again) = on(conn, move |c| retention::export::export_day(c, &day, &dir).unwrap()).await;
    let Exported::Written { summary, .. } = again else { panic!("written: {again:?}") };
    assert_eq!(summary.rows, 1235);
    let (day, s) = (d_old.clone(), summary.clone());
    let (conn, purged) =
        on(conn, move |c| retention::purge_day(c, &day, Some(&s), &pace(100)).unwrap()).await;
    assert_eq!(purged, 1235);
    assert_eq!(sql(&cfg, &day_count(&d_old)).await, Some(0));
    assert_eq!(sql(&cfg, &day_count(&d_older)).await, Some(300));
    assert_eq!(sql(&cfg, &day_count(&d_today)).await, Some(200));

    // A summary that counts fewer rows than the journal holds (another file's) is refused.
    let short =
        Summary { business_date: d_older.clone(), rows: 10, first_id: Some(0), last_id: Some(i64::MAX) };
    let day = d_older.clone();
    let (_conn, refused) =
        on(conn, move |c| retention::purge_day(c, &day, Some(&short), &pace(100)).unwrap_err()).await;
    assert!(matches!(refused, RetentionError::NotCovered { .. }), "{refused}");
    assert_eq!(sql(&cfg, &day_count(&d_older)).await, Some(300));
    // The journal still answers for the kept days.
    let kept = j.query(Query::Day(d_today.clone())).await.unwrap();
    assert_eq!(kept.len(), 200);
}

/// A retention pass while the writer inserts: every write commits, kept days lose nothing,
/// old days are exported and purged, pending reversals stay.
async fn pass_beside_the_writer(cfg: JournalConfig) {
    let out = Scratch::new("pass");
    let now = now_ms();
    let j = open_journal(&cfg).await;
    let old_days = [now - 12 * DAY, now - 11 * DAY, now - 3 * DAY];
    for (k, at) in old_days.iter().enumerate() {
        fill(&j, &format!("OLD{k:05}"), *at, 1500).await;
    }
    fill(&j, "KEPT0001", now - DAY, 100).await;
    // The store-and-forward table beside the journal: a pending reversal and an acknowledged
    // one from the old days, an acknowledged one of yesterday.
    let id = if matches!(cfg, JournalConfig::Sqlite { .. }) {
        "INTEGER PRIMARY KEY AUTOINCREMENT"
    } else {
        "BIGSERIAL PRIMARY KEY"
    };
    for stmt in isoswitch::journal::saf_store::schema(id).split(';').filter(|s| !s.trim().is_empty()) {
        sql(&cfg, stmt).await;
    }
    let saf = |f90: &str, state: &str, at: i64| {
        format!(
            "INSERT INTO saf (issuer, created_at, next_attempt_at, state, field90, message, done_at) \
             VALUES ('bank', {at}, {at}, '{state}', '{f90}', '{{}}', {})",
            if state == "pending" { "NULL".to_string() } else { at.to_string() }
        )
    };
    sql(&cfg, &saf("1", "pending", old_days[0])).await;
    sql(&cfg, &saf("2", "acked", old_days[0])).await;
    sql(&cfg, &saf("3", "expired", old_days[1])).await;
    sql(&cfg, &saf("4", "acked", now - DAY)).await;

    // The writer keeps inserting today's rows (bounded in count and time) during the pass.
    let committed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let writer = {
        let j = j.clone();
        let committed = committed.clone();
        tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(60);
            let mut written = 0u32;
            let mut failures = 0u32;
            while written < 4000 && Instant::now() < until {
                let mut waits = Vec::new();
                for i in written..written + 50 {
                    let j = j.clone();
                    waits.push(tokio::spawn(async move { j.record(rec("LIVE0001", i, now_ms())).await }));
                }
                for w in waits {
                    match w.await.unwrap() {
                        Ok(true) => {
                            committed.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => failures += 1,
                    }
                }
                written += 50;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (written, failures)
        })
    };
    let (c, dir) = (cfg.clone(), out.0.clone());
    let started = Instant::now();
    let before = committed.load(Ordering::SeqCst);
    let report = tokio::task::spawn_blocking(move || {
        let mut conn = Db::open(&c).unwrap();
        retention::run_pass(&mut conn, &dir, 2, 0, now_ms(), &pace(200))
    })
    .await
    .unwrap()
    .expect("pass")
    .expect("the lock was free");
    let pass_ms = started.elapsed().as_millis();
    let during = committed.load(Ordering::SeqCst) - before;
    assert!(during > 0, "the writer committed rows while the pass ran");
    let (written, failures) = writer.await.unwrap();
    assert_eq!(failures, 0, "no write failed during the pass");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.days.len(), 3, "{:?}", report.days);
    for (done, at) in report.days.iter().zip(old_days) {
        assert_eq!(done.day, business_date(UnixMs::from_i64(at), 0));
        assert_eq!((done.exported, done.purged, done.written), (1500, 1500, true));
        let file = out.0.join(format!("isoswitch-journal-{}.jsonl", done.day));
        assert_eq!(retention::verify(&file, &done.day).unwrap().rows, 1500);
        assert_eq!(sql(&cfg, &day_count(&done.day)).await, Some(0));
    }
    assert_eq!(report.saf_purged, 2, "the finished reversals of the purged days");
    assert_eq!(sql(&cfg, "SELECT COUNT(*) FROM saf WHERE state = 'pending'").await, Some(1));
    assert_eq!(sql(&cfg, "SELECT COUNT(*) FROM saf WHERE field90 = '4'").await, Some(1));
    // Kept days: every row there.
    assert_eq!(sql(&cfg, &day_count(&business_date(UnixMs::from_i64(now - DAY), 0))).await, Some(100));
    let live = sql(&cfg, "SELECT COUNT(*) FROM transactions WHERE terminal_id = 'LIVE0001'").await;
    assert_eq!(live, Some(i64::from(written)));
    eprintln!("pass over 4500 rows: {pass_ms} ms; {during} of {written} live rows committed meanwhile");
    // A second pass finds nothing left to do.
    let (c, dir) = (cfg.clone(), out.0.clone());
    let again = tokio::task::spawn_blocking(move || {
        let mut conn = Db::open(&c).unwrap();
        retention::run_pass(&mut conn, &dir, 2, 0, now_ms(), &pace(200))
    })
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert!(again.days.is_empty() && again.skipped.is_empty() && again.saf_purged == 0);
}

fn sqlite(dir: &Path) -> JournalConfig {
    JournalConfig::Sqlite { path: dir.join("journal.db"), full_sync: true }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_purge_on_sqlite() {
    let d = Scratch::new("sqlite");
    export_and_purge(sqlite(&d.0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_purge_on_postgres() {
    let Some((cfg, name)) = postgres().await else { return };
    export_and_purge(cfg).await;
    drop_pg(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_beside_the_writer_on_sqlite() {
    let d = Scratch::new("sqlite-pass");
    let cfg = sqlite(&d.0);
    pass_beside_the_writer(cfg.clone()).await;
    // A journal created by this version gives freed pages back a step at a time.
    assert_eq!(sql(&cfg, "PRAGMA auto_vacuum").await, Some(2));
    assert_eq!(sql(&cfg, "PRAGMA freelist_count").await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_beside_the_writer_on_postgres() {
    let Some((cfg, name)) = postgres().await else { return };
    pass_beside_the_writer(cfg).await;
    drop_pg(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_postgres_node_retains_at_a_time() {
    let Some((cfg, name)) = postgres().await else { return };
    drop(open_journal(&cfg).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let mut first = Db::open(&c).unwrap();
        let mut second = Db::open(&c).unwrap();
        assert!(first.try_lock().unwrap());
        assert!(!second.try_lock().unwrap(), "held by the first");
        let dir = std::env::temp_dir();
        assert!(retention::run_pass(&mut second, &dir, 2, 0, now_ms(), &pace(10)).unwrap().is_none());
        drop(first);
        let until = Instant::now() + Duration::from_secs(5);
        let mut free = second.try_lock().unwrap();
        while !free && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            free = second.try_lock().unwrap();
        }
        assert!(free, "free once the first connection closed");
    })
    .await
    .unwrap();
    drop_pg(&name).await;
}
