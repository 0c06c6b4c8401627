//! `[retention]` in a running switch: with `first_run_after_s = 0` the pass runs right after
//! start, while terminals keep buying; the old days are exported and purged, the kept days
//! and every live transaction stay in the journal, and the metrics count the rows.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{MockIssuer, Mode, PAN, Terminal, auth};
use isoswitch::config::Config;
use isoswitch::journal::{Decided, SettleCycle};
use isoswitch::journal::{Journal, JournalConfig, Status, TxnRecord, business_date};
use isoswitch::rc::ResponseCode;
use isoswitch::route::txn::TxnType;
use isoswitch::switch::serve;
use isoswitch::time::UnixMs;
use tokio_util::sync::CancellationToken;

const DAY: i64 = 86_400_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn row(terminal: &str, stan: u32, at: i64) -> TxnRecord {
    TxnRecord {
        switch_id: "node".into(),
        received_at: UnixMs::from_i64(at),
        business_date: business_date(UnixMs::from_i64(at), 0).into(),
        terminal_id: terminal.into(),
        merchant_id: "MERCHANT0000001".into(),
        stan: format!("{stan:06}").into(),
        transmission_time: "1124103000".into(),
        mti: "0200".into(),
        txn_type: TxnType::Purchase.into(),
        amount: 1000,
        pan_masked: Some("476173******0010".into()),
        decision: Decided::Forward,
        rc: Some(ResponseCode::APPROVED),
        settle_cycle: SettleCycle::T1,
        status: Some(Status::Approved),
        txn_key: Some(format!("0200 {stan:010}").into()),
        advice_rc: None,
        ..TxnRecord::default()
    }
}

struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn count(journal: &Path, day: &str) -> i64 {
    let c = rusqlite::Connection::open(journal).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row("SELECT COUNT(*) FROM transactions WHERE business_date = ?1", [day], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_exports_and_purges_old_days_while_it_takes_transactions() {
    let dir =
        Scratch(std::env::temp_dir().join(format!("isoswitch-retention-switch-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let journal = dir.0.join("journal.db");
    let exports = dir.0.join("exports");
    let now = now_ms();
    let old = now - 5 * DAY;
    {
        let cfg = JournalConfig::Sqlite { path: journal.clone(), full_sync: false };
        let j = tokio::task::spawn_blocking(move || Journal::open(&cfg)).await.unwrap().unwrap();
        for i in 0..2000 {
            assert!(j.record(row("OLD00001", i, old + i64::from(i))).await.unwrap());
        }
        for i in 0..10 {
            assert!(j.record(row("KEPT0001", i, now - DAY)).await.unwrap());
        }
        tokio::task::spawn_blocking(move || j.barrier_blocking()).await.unwrap().unwrap();
    }
    let iss = MockIssuer::start(Mode::Approve).await;
    let text = format!(
        "journal = {journal:?}\njournal_sync = \"normal\"\n{}\n[retention]\nexport_dir = {exports:?}\n\
         keep_days = 2\nfirst_run_after_s = 0\nbatch_rows = 100\npause_ms = 2\n",
        common::config_text(&[iss.addr], 4000, "")
    );
    let cfg = Config::parse("retention.toml", &text).unwrap();
    let stop = CancellationToken::new();
    let sw = serve(cfg, stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    let old_day = business_date(UnixMs::from_i64(old), 0);
    let file = exports.join(format!("isoswitch-journal-{old_day}.jsonl"));
    let until = Instant::now() + Duration::from_secs(30);
    let mut approved = 0;
    let mut stan = 1;
    // Transactions flow until the pass is over (bounded in time and count).
    while (count(&journal, &old_day) > 0 || !file.exists()) && Instant::now() < until && stan < 5000 {
        let rep = t.exchange(&auth(PAN, stan, 1000)).await;
        assert_eq!(rep.text(39).as_deref(), Some("00"), "stan {stan}");
        approved += 1;
        stan += 1;
    }
    assert!(file.exists(), "the old day was exported");
    assert_eq!(count(&journal, &old_day), 0, "and purged");
    let summary = isoswitch::journal::retention::verify(&file, &old_day).unwrap();
    assert_eq!(summary.rows, 2000);
    assert_eq!(
        count(&journal, &business_date(UnixMs::from_i64(now - DAY), 0)),
        10,
        "a kept day keeps its rows"
    );
    let c = rusqlite::Connection::open(&journal).unwrap();
    let live: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM transactions WHERE terminal_id = 'TERM0001' AND rc = '00'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(live, approved, "every approval journalled");
    assert!(approved > 0);
    eprintln!("{approved} approvals journalled while the pass ran");
    // The pass counts its rows when it ends (after the store-and-forward rows and the
    // space given back).
    let m = sw.metrics_addr().expect("metrics served");
    let until = Instant::now() + Duration::from_secs(10);
    let mut body = common::http_get(m, "/metrics").await;
    while !body.contains("isoswitch_retention_rows_purged_total 2000") && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        body = common::http_get(m, "/metrics").await;
    }
    assert!(body.contains("isoswitch_retention_rows_purged_total 2000"), "{body}");
    assert!(body.contains("isoswitch_retention_rows_exported_total 2000"));
    assert!(body.contains("isoswitch_retention_failures_total 0"));
    assert!(body.contains("isoswitch_retention_last_success_timestamp_seconds"));
    stop.cancel();
    sw.join().await;
    iss.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_directory_that_cannot_be_written_refuses_the_start() {
    let dir = Scratch(std::env::temp_dir().join(format!("isoswitch-retention-bad-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    // A file where the directory should be.
    let not_a_dir = dir.0.join("exports");
    std::fs::write(&not_a_dir, b"").unwrap();
    let iss = MockIssuer::start(Mode::Approve).await;
    let text = format!(
        "journal = {:?}\n{}\n[retention]\nexport_dir = {not_a_dir:?}\nkeep_days = 2\n",
        dir.0.join("journal.db"),
        common::config_text(&[iss.addr], 4000, "")
    );
    let cfg = Config::parse("retention.toml", &text).unwrap();
    let err = serve(cfg, CancellationToken::new()).await.err().expect("refused");
    assert!(err.to_string().contains("retention.export_dir"), "{err}");
    iss.stop();
}
