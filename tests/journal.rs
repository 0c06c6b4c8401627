//! The journal suite, run against SQLite and against PostgreSQL. PostgreSQL is reached
//! through `ISOSWITCH_TEST_PG` (a libpq-style connection string to a server where the
//! user may create databases); `.ci/run` starts one (`.ci/pg-setup`). Without it the
//! PostgreSQL tests are marked ignored, except under CI where its absence fails them.

#[path = "common/pg.rs"]
mod pg;

use std::sync::atomic::{AtomicUsize, Ordering};

use isoswitch::journal::{Decided, SettleCycle};
use isoswitch::journal::{
    Journal, JournalConfig, PanHasher, Query, Status, TxnRecord, Update, business_date,
};
use isoswitch::rc::ResponseCode;
use isoswitch::route::txn::TxnType;
use isoswitch::time::UnixMs;

const TEST_PANS: &[&str] = &["4761739001010010", "6212345678901234567", "5413330089010434"];

fn rec(node: &str, terminal: &str, stan: u32, pan: &str, amount: i64, rc: &str) -> TxnRecord {
    let keys = PanHasher::new(b"test-key");
    let at = 1_795_479_740_000 + i64::from(stan) * 1000;
    TxnRecord {
        switch_id: node.into(),
        received_at: UnixMs::from_i64(at),
        answered_at: Some(UnixMs::from_i64(at + 3)),
        business_date: business_date(UnixMs::from_i64(at), 0).into(),
        terminal_id: terminal.into(),
        merchant_id: "MERCHANT0000001".into(),
        stan: format!("{stan:06}").into(),
        switch_stan: Some(format!("{:06}", stan + 500_000).into()),
        rrn: Some(format!("RRN{stan:09}").into()),
        transmission_time: format!("11240022{:02}", stan % 60).into(),
        mti: "0200".into(),
        txn_type: TxnType::Purchase.into(),
        amount,
        currency: Some("156".into()),
        pan_masked: Some(isoswitch::iso::mask::mask_pan(pan).into()),
        pan_hash: Some(keys.hash(pan)),
        decision: Decided::Forward,
        rc: ResponseCode::parse(rc),
        fee: amount * 60 / 10_000,
        settle_cycle: SettleCycle::T1,
        status: Some(if rc == "00" { Status::Approved } else { Status::Declined }),
        txn_key: Some(format!("0200 11240022{:02}", stan % 60).into()),
        ..TxnRecord::default()
    }
}

static DB: AtomicUsize = AtomicUsize::new(0);

fn sqlite() -> (JournalConfig, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    (JournalConfig::Sqlite { path: dir.path.join("journal.db"), full_sync: true }, dir)
}

/// A fresh PostgreSQL database for one test.
async fn postgres() -> JournalConfig {
    let name = format!("isoswitch_t{}_{}", std::process::id(), DB.fetch_add(1, Ordering::SeqCst));
    JournalConfig::Postgres { url: pg::fresh_database(&name).await }
}

async fn open(cfg: &JournalConfig) -> Journal {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || Journal::open(&cfg)).await.unwrap().expect("open journal")
}

async fn suite(cfg: JournalConfig) {
    let j = open(&cfg).await;
    // Many concurrent writers: every record durable once, duplicates refused.
    let mut tasks = Vec::new();
    for i in 0..300u32 {
        let j = j.clone();
        let pan = TEST_PANS[i as usize % TEST_PANS.len()];
        tasks.push(tokio::spawn(async move {
            j.record(rec("node-a", "TERM0001", i, pan, 1_000 + i64::from(i), "00")).await
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().unwrap(), "first write inserts");
    }
    assert!(
        !j.record(rec("node-a", "TERM0001", 7, TEST_PANS[0], 1_007, "00")).await.unwrap(),
        "duplicate refused"
    );
    // A claim reserves a key before forwarding; a second claim of it is a duplicate; the
    // final row completes the claim once and only once.
    let claimed = rec("node-a", "TERM0003", 1, TEST_PANS[2], 700, "00");
    assert!(j.claim(claimed.clone()).await.unwrap(), "first claim");
    assert!(!j.claim(claimed.clone()).await.unwrap(), "second claim is a duplicate");
    let pending = j.query(Query::ByRrn("RRN000000001".into())).await.unwrap();
    assert!(pending.iter().any(|r| r.terminal_id == "TERM0003" && r.rc.is_none()));
    assert!(j.record(claimed.clone()).await.unwrap(), "the final row completes the claim");
    assert!(!j.record(claimed.clone()).await.unwrap(), "and only once");
    assert!(!j.claim(claimed).await.unwrap(), "a completed key cannot be claimed");
    let done = j.query(Query::ByRrn("RRN000000001".into())).await.unwrap();
    let t3: Vec<_> = done.iter().filter(|r| r.terminal_id == "TERM0003").collect();
    assert_eq!(t3.len(), 1);
    assert_eq!((t3[0].rc, t3[0].fee), (Some(ResponseCode::APPROVED), 700 * 60 / 10_000));
    let all = j.query(Query::All).await.unwrap();
    assert_eq!(all.len(), 301);

    // Look-ups by RRN and by terminal + STAN + date.
    let by_rrn = j.query(Query::ByRrn("RRN000000042".into())).await.unwrap();
    assert_eq!(by_rrn.len(), 1);
    assert_eq!(by_rrn[0].amount, 1_042);
    assert_eq!(by_rrn[0].pan_masked.as_deref(), Some("476173******0010"));
    let by_stan = j
        .query(Query::ByTerminalStan {
            terminal: "TERM0001".into(),
            stan: "000042".into(),
            date: "20261124".into(),
        })
        .await
        .unwrap();
    assert_eq!(by_stan, by_rrn);
    // A terminal's reversal finds its original by terminal, STAN and amount.
    let original = Query::Original { terminal: "TERM0001".into(), stan: "000042".into(), amount: 1_042 };
    assert_eq!(j.query(original).await.unwrap(), by_rrn);
    let wrong_amount = Query::Original { terminal: "TERM0001".into(), stan: "000042".into(), amount: 1_043 };
    assert!(j.query(wrong_amount).await.unwrap().is_empty());
    let recent = j.query(Query::Recent { terminal: "TERM0001".into(), limit: 5 }).await.unwrap();
    assert_eq!(recent.len(), 5);
    assert_eq!(recent[0].stan, "000299");

    // Status changes and batches.
    let n = j
        .update(Update::SetStatus {
            terminal: "TERM0001".into(),
            stan: "000001".into(),
            transmission_time: "1124002201".into(),
            mti: "0200".into(),
            status: Status::Reversed,
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    let open_batch = j.query(Query::OpenBatch("TERM0001".into())).await.unwrap();
    assert_eq!(open_batch.len(), 299);
    assert_eq!(
        j.update(Update::CloseBatch {
            terminal: "TERM0001".into(),
            batch: "B1".into(),
            terminal_batch: None
        })
        .await
        .unwrap(),
        300
    );
    assert!(j.query(Query::OpenBatch("TERM0001".into())).await.unwrap().is_empty());

    // A second node on the same database sees the first node's rows.
    if matches!(cfg, JournalConfig::Postgres { .. }) {
        let k = open(&cfg).await;
        assert!(k.record(rec("node-b", "TERM0002", 1, TEST_PANS[1], 500, "00")).await.unwrap());
        // A key node A holds cannot be claimed by node B: duplicates are seen across nodes.
        assert!(!k.claim(rec("node-b", "TERM0001", 5, TEST_PANS[0], 1_005, "00")).await.unwrap());
        let seen = k
            .query(Query::ByKey {
                terminal: "TERM0001".into(),
                stan: "000003".into(),
                txn_key: "0200 1124002203".into(),
            })
            .await
            .unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].switch_id, "node-a");
        let day = j.query(Query::Day("20261124".into())).await.unwrap();
        assert!(day.iter().any(|r| r.switch_id == "node-b") && day.iter().any(|r| r.switch_id == "node-a"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_suite_on_sqlite() {
    let (cfg, dir) = sqlite();
    suite(cfg).await;
    // No full PAN in any column of any row.
    let conn = rusqlite::Connection::open(dir.path.join("journal.db")).unwrap();
    let mut stmt = conn.prepare("SELECT * FROM transactions").unwrap();
    let cols = stmt.column_count();
    let mut rows = stmt.query([]).unwrap();
    let mut scanned = 0;
    while let Some(row) = rows.next().unwrap() {
        for i in 0..cols {
            let v: rusqlite::types::Value = row.get(i).unwrap();
            let text = format!("{v:?}");
            for pan in TEST_PANS {
                assert!(!text.contains(pan), "column {i} holds a full PAN");
            }
        }
        scanned += 1;
    }
    assert_eq!(scanned, 301);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(isoswitch_no_pg, ignore = "needs ISOSWITCH_TEST_PG (see .ci/pg-setup)")]
async fn journal_suite_on_postgres() {
    let cfg = postgres().await;
    suite(cfg.clone()).await;
    let JournalConfig::Postgres { url } = cfg else { unreachable!() };
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let rows = client.query("SELECT t::text FROM transactions t", &[]).await.unwrap();
    assert_eq!(rows.len(), 302);
    for r in rows {
        let text: String = r.get(0);
        for pan in TEST_PANS {
            assert!(!text.contains(pan), "a row holds a full PAN");
        }
    }
}

/// A row handed over with `try_submit` is queued at once: a query made right after it,
/// with the commit not awaited, finds it. A decline answered before its row's commit relies
/// on this when the terminal's reversal then looks for it as its original.
async fn submitted_rows_come_before_later_queries(cfg: JournalConfig) {
    let j = open(&cfg).await;
    for stan in 1..=50u32 {
        let row = rec("node-a", "TERM0042", stan, TEST_PANS[0], 100, "68");
        let commit = j.try_submit(Box::new(row)).expect("room in the queue");
        let found = j.query(Query::ByRrn(format!("RRN{stan:09}"))).await.unwrap();
        assert_eq!(found.len(), 1, "stan {stan}");
        assert!(commit.await.unwrap().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_rows_come_before_later_queries_on_sqlite() {
    let (cfg, _dir) = sqlite();
    submitted_rows_come_before_later_queries(cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(isoswitch_no_pg, ignore = "needs ISOSWITCH_TEST_PG (see .ci/pg-setup)")]
async fn submitted_rows_come_before_later_queries_on_postgres() {
    let cfg = postgres().await;
    submitted_rows_come_before_later_queries(cfg).await;
}

/// The `transactions` table as journals written before terminal batch numbers have it.
const OLD_SCHEMA: &str = "CREATE TABLE transactions (
    id {id}, switch_id TEXT NOT NULL, received_at BIGINT NOT NULL, forwarded_at BIGINT,
    answered_at BIGINT, business_date TEXT NOT NULL, terminal_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL, stan TEXT NOT NULL, switch_stan TEXT, rrn TEXT,
    transmission_time TEXT NOT NULL, mti TEXT NOT NULL, txn_type TEXT NOT NULL,
    amount BIGINT NOT NULL, currency TEXT, pan_masked TEXT, pan_hash TEXT, route TEXT,
    issuer TEXT, decision TEXT NOT NULL, rc TEXT NOT NULL, auth_code TEXT,
    fee BIGINT NOT NULL DEFAULT 0, settle_cycle TEXT NOT NULL DEFAULT 'T1', status TEXT, batch TEXT);
    INSERT INTO transactions (switch_id, received_at, business_date, terminal_id, merchant_id, stan,
        transmission_time, mti, txn_type, amount, decision, rc, status)
    VALUES ('old', 1, '20261123', 'TERM0009', 'MERCHANT0000001', '000001', '1123000000', '0200',
        'purchase', 100, 'forward', '00', 'approved');";

/// A journal from before terminal batch numbers gains the column on open (its rows keep
/// none); rows then keep their batch number, a batch close can be limited to one terminal
/// batch (and rows without a number), and the last closed batch is found again.
async fn terminal_batches(cfg: JournalConfig) {
    let j = open(&cfg).await;
    let old = j.query(Query::OpenBatch("TERM0009".into())).await.unwrap();
    assert_eq!(old.len(), 1, "the older journal's row is still there");
    assert_eq!(old[0].terminal_batch, None);
    let in_batch = |stan: u32, b: &str| TxnRecord {
        terminal_id: "TERM0009".into(),
        terminal_batch: Some(b.into()),
        ..rec("node-a", "TERM0009", stan, TEST_PANS[0], 1_000, "00")
    };
    for (stan, b) in [(11, "000007"), (12, "000007"), (13, "000008")] {
        assert!(j.record(in_batch(stan, b)).await.unwrap());
    }
    let open_rows = j.query(Query::OpenBatch("TERM0009".into())).await.unwrap();
    let batches: Vec<_> = open_rows.iter().map(|r| r.terminal_batch.as_deref()).collect();
    assert_eq!(batches, [None, Some("000007"), Some("000007"), Some("000008")]);
    assert!(j.query(Query::LastClosed("TERM0009".into())).await.unwrap().is_empty());
    let close = Update::CloseBatch {
        terminal: "TERM0009".into(),
        batch: "TERM0009-000007-1".into(),
        terminal_batch: Some("000007".into()),
    };
    assert_eq!(j.update(close).await.unwrap(), 3, "batch 7 and the row without a number");
    let left = j.query(Query::OpenBatch("TERM0009".into())).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].terminal_batch.as_deref(), Some("000008"));
    let last = j.query(Query::LastClosed("TERM0009".into())).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].terminal_batch.as_deref(), Some("000007"));
    // Opening the journal again finds the column there and adds nothing.
    drop(j);
    let j = open(&cfg).await;
    assert_eq!(j.query(Query::All).await.unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_batches_on_an_older_sqlite_journal() {
    let (cfg, dir) = sqlite();
    let conn = rusqlite::Connection::open(dir.path.join("journal.db")).unwrap();
    conn.execute_batch(&OLD_SCHEMA.replace("{id}", "INTEGER PRIMARY KEY AUTOINCREMENT")).unwrap();
    drop(conn);
    terminal_batches(cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(isoswitch_no_pg, ignore = "needs ISOSWITCH_TEST_PG (see .ci/pg-setup)")]
async fn terminal_batches_on_an_older_postgres_journal() {
    let cfg = postgres().await;
    let JournalConfig::Postgres { url } = &cfg else { unreachable!() };
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(&OLD_SCHEMA.replace("{id}", "BIGSERIAL PRIMARY KEY")).await.unwrap();
    drop(client);
    terminal_batches(cfg).await;
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new() -> Dir {
            let path = std::env::temp_dir().join(format!(
                "isoswitch-test-{}-{}",
                std::process::id(),
                super::DB.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
