//! A journal writer that cannot keep up, through the running switch on 127.0.0.1: its
//! store takes `ROW` per row (a slow disk), terminals send far more than that allows, and
//! the switch sheds with 91 before any issuer instead of queueing: no row waits in the
//! writer's queue much longer than `journal_budget_ms` plus a group's inserts (queueing
//! them all would make the last wait for 128 in flight x `ROW`), every 91 is a journal shed
//! (`isoswitch_journal_shed_total`), every approval answered is in the journal, and a
//! reversal sent meanwhile is not shed.

mod common;
#[path = "common/process.rs"]
mod process;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{MockIssuer, Mode, Terminal, auth, config_text, http_get};
use isoswitch::acceptor::Services;
use isoswitch::config::Config;
use isoswitch::journal::saf_store::{SafKey, SqlSaf};
use isoswitch::journal::sqlite::SqliteStore;
use isoswitch::journal::{Journal, JournalConfig, Query, Store, StoreError, TxnRecord, Update};
use isoswitch::switch::serve_with;
use process::TempDir;
use tokio_util::sync::CancellationToken;

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// What the slow store takes to insert a row.
const ROW: Duration = Duration::from_millis(2);
const TERMINALS: u32 = 8;
const IN_FLIGHT: u32 = 16;
const ROUNDS: u32 = 4;

/// The journal's SQLite store on a slow disk; notes the longest a row waited between its
/// answer (`answered_at`) and its insert.
struct Slow(SqliteStore, Arc<AtomicI64>);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Store for Slow {
    fn begin(&mut self) -> Result<(), StoreError> {
        self.0.begin()
    }
    fn insert(&mut self, row: &TxnRecord) -> Result<bool, StoreError> {
        if let Some(at) = row.answered_at {
            self.1.fetch_max(now_ms() - at.as_i64(), Ordering::SeqCst);
        }
        std::thread::sleep(ROW);
        self.0.insert(row)
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        self.0.commit()
    }
    fn rollback(&mut self) {
        self.0.rollback()
    }
    fn query(&mut self, q: &Query) -> Result<Vec<TxnRecord>, StoreError> {
        self.0.query(q)
    }
    fn reads_in_one_transaction(&self) -> bool {
        true
    }
    fn update(&mut self, u: &Update) -> Result<u64, StoreError> {
        self.0.update(u)
    }
}

/// One terminal's rounds of `IN_FLIGHT` purchases: (STAN, rc, latency) of each.
async fn flood(addr: SocketAddr, t: u32, rounds: u32) -> Vec<(u32, String, Duration)> {
    let mut term = Terminal::connect(addr).await;
    let mut out = Vec::new();
    for round in 0..rounds {
        let mut sent = std::collections::HashMap::new();
        for i in 0..IN_FLIGHT {
            let stan = t * 1000 + round * IN_FLIGHT + i + 1;
            sent.insert(stan, Instant::now());
            term.send(&auth(common::PAN, stan, 1000 + u64::from(stan % 50))).await;
        }
        for _ in 0..IN_FLIGHT {
            let reply = term.recv().await.expect("a reply within 5 s");
            let stan = reply.stan().expect("field 11") as u32;
            let took = sent[&stan].elapsed();
            out.push((stan, reply.text(39).expect("field 39").into_owned(), took));
        }
    }
    out
}

fn approved_rows(journal: &Path) -> i64 {
    let c = rusqlite::Connection::open(journal).unwrap();
    c.query_row("SELECT count(*) FROM transactions WHERE rc = '00' AND mti = '0200'", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_keep_up_sheds_with_91_and_approvals_stay_fast_and_recorded() {
    let dir = TempDir::new("jbacklog");
    let journal = dir.path.join("journal.db");
    let issuer = MockIssuer::start(Mode::Approve).await;
    let text = format!(
        "journal = {journal:?}\njournal_budget_ms = 10\n{}[saf]\nkey = \"{KEY}\"\nindoubt = false\n",
        config_text(&[issuer.addr], 2000, "")
    );
    let cfg = Config::parse("jbacklog.toml", &text).unwrap();
    let jc = JournalConfig::Sqlite { path: journal.clone(), full_sync: false };
    let longest_wait = Arc::new(AtomicI64::new(0));
    let store = Slow(SqliteStore::open(&journal, false).unwrap(), longest_wait.clone());
    let saf = SqlSaf::open(&jc, SafKey::from_hex(KEY).unwrap()).unwrap();
    let services = Services::open_with(&cfg, Some((Journal::start(store), Arc::new(saf)))).unwrap();
    let stop = CancellationToken::new();
    let switch = serve_with(cfg, Arc::new(services), stop.clone()).await.unwrap();
    assert!(switch.wait_issuers_up(Duration::from_secs(5)).await);
    let addr = switch.listen_addrs()[0];

    // One round of purchases first (the writer learns what a row costs from a group of
    // them), then the flood, and while it floods a reversal of a purchase, never shed.
    let warm = flood(addr, 50, 1).await;
    assert!(warm.iter().all(|a| a.1 == "00"), "{warm:?}");
    let mut t = Terminal::connect(addr).await;
    let original = auth(common::PAN, 900_001, 4_200);
    assert_eq!(t.exchange(&original).await.text(39).as_deref(), Some("00"));
    let floods: Vec<_> = (0..TERMINALS).map(|t| tokio::spawn(flood(addr, t, ROUNDS))).collect();
    let mut reversal = original.clone();
    reversal.set_mti("0400").unwrap();
    let rev = t.exchange(&reversal).await;
    assert_eq!(rev.mti(), "0410");
    assert_ne!(rev.text(39).as_deref(), Some("91"), "a reversal is never shed");

    let mut answers = Vec::new();
    for f in floods {
        answers.extend(f.await.unwrap());
    }
    let total = (TERMINALS * IN_FLIGHT * ROUNDS) as usize;
    assert_eq!(answers.len(), total);
    let approved: Vec<Duration> = answers.iter().filter(|a| a.1 == "00").map(|a| a.2).collect();
    let shed = answers.iter().filter(|a| a.1 == "91").count();
    assert!(!approved.is_empty(), "some purchases are approved");
    assert!(shed > 0, "the writer fell behind: some purchases are shed");
    assert_eq!(
        approved.len() + shed,
        total,
        "only 00 and 91: {:?}",
        answers.iter().find(|a| a.1 != "00" && a.1 != "91")
    );
    // Queued whole, the last rows would wait for 128 others (256 ms); shed, none waits for
    // much more than the budget and a group's inserts (a busy machine adds its own delays).
    let waited = longest_wait.load(Ordering::SeqCst);
    assert!(waited < 100, "a row waited {waited} ms for the writer");
    let slowest = approved.iter().max().unwrap();
    assert!(*slowest < Duration::from_secs(2), "slowest approval {slowest:?}");

    // Every 91 was the journal's shedding, counted; nothing of the shed reached the journal.
    let metrics = http_get(switch.metrics_addr().unwrap(), "/metrics").await;
    let counted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("isoswitch_journal_shed_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted as usize, shed, "isoswitch_journal_shed_total");
    // Every approval the terminals heard of is in the journal (the reversal's original too).
    stop.cancel();
    switch.join().await;
    assert_eq!(approved_rows(&journal), (approved.len() + warm.len()) as i64 + 1);
}
