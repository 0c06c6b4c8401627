//! A journal that cannot write, through the running switch on 127.0.0.1. The journal's
//! SQLite connection is capped (`PRAGMA max_page_count`: a genuine SQLITE_FULL, "database
//! or disk is full") and the store-and-forward store beside it fails on demand, as both
//! would on a full disk. Then: the approval whose row could not be written gets 96 and is
//! reversed with the issuer (0400 naming the switch STAN, repeated as 0401 until the 0410)
//! from memory; new purchases are declined before any issuer; readiness is false on the
//! admin and metrics ports and `isoswitch_journal_up` is 0; the log has a line per change,
//! not per request. Space back: the switch journals and approves again by itself, and a
//! reversal still held in memory moves into the store with its writes so far. One test:
//! the metrics and the log capture are the process's.

#[path = "common/bank.rs"]
mod bank;
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use bank::{Bank, BankState};
use common::*;
use isoswitch::acceptor::Services;
use isoswitch::config::Config;
use isoswitch::iso::{Message, Spec};
use isoswitch::issuer::{IssuerError, SafItem, SafStore};
use isoswitch::journal::saf_store::{SafKey, SqlSaf};
use isoswitch::journal::sqlite::SqliteStore;
use isoswitch::journal::{Journal, JournalConfig, Query, Store, StoreError, TxnRecord, Update};
use isoswitch::switch::{RunningSwitch, serve_with};
use tokio_util::sync::CancellationToken;

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// No cap (SQLite's own largest page count is about four billion).
const ROOMY: u64 = 1 << 30;

/// The journal's SQLite store with a page budget set from the test: `cap` is applied on
/// the writer's connection before its next group or probe.
struct Budget {
    inner: SqliteStore,
    cap: Arc<AtomicU64>,
    applied: u64,
}

impl Budget {
    fn apply(&mut self) {
        let want = self.cap.load(SeqCst);
        if want != self.applied {
            self.inner.set_max_page_count(want).unwrap();
            self.applied = want;
        }
    }
}

impl Store for Budget {
    fn begin(&mut self) -> Result<(), StoreError> {
        self.apply();
        self.inner.begin()
    }
    fn insert(&mut self, row: &TxnRecord) -> Result<bool, StoreError> {
        self.inner.insert(row)
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        self.inner.commit()
    }
    fn rollback(&mut self) {
        self.inner.rollback()
    }
    fn query(&mut self, q: &Query) -> Result<Vec<TxnRecord>, StoreError> {
        self.inner.query(q)
    }
    fn reads_in_one_transaction(&self) -> bool {
        self.inner.reads_in_one_transaction()
    }
    fn update(&mut self, u: &Update) -> Result<u64, StoreError> {
        self.inner.update(u)
    }
    fn probe(&mut self) -> Result<(), StoreError> {
        self.apply();
        self.inner.probe()
    }
}

/// The store-and-forward store over the same file, failing every call while `fail` is set.
struct Failing {
    inner: SqlSaf,
    fail: Arc<AtomicBool>,
}

impl Failing {
    fn check(&self) -> Result<(), IssuerError> {
        if self.fail.load(SeqCst) { Err(IssuerError::Saf("database or disk is full".into())) } else { Ok(()) }
    }
}

impl SafStore for Failing {
    fn enqueue(&self, issuer: &str, f90: &str, rev: &Message, now: i64) -> Result<bool, IssuerError> {
        self.check()?;
        self.inner.enqueue(issuer, f90, rev, now)
    }
    fn enqueue_attempted(
        &self,
        issuer: &str,
        f90: &str,
        rev: &Message,
        now: i64,
        attempts: u32,
    ) -> Result<bool, IssuerError> {
        self.check()?;
        self.inner.enqueue_attempted(issuer, f90, rev, now, attempts)
    }
    fn due(
        &self,
        issuer: &str,
        spec: &Arc<Spec>,
        now: i64,
        limit: usize,
    ) -> Result<Vec<SafItem>, IssuerError> {
        self.check()?;
        self.inner.due(issuer, spec, now, limit)
    }
    fn attempted(&self, id: i64, attempts: u32, next: i64) -> Result<(), IssuerError> {
        self.check()?;
        self.inner.attempted(id, attempts, next)
    }
    fn acked(&self, id: i64, now: i64) -> Result<bool, IssuerError> {
        self.check()?;
        self.inner.acked(id, now)
    }
    fn expired(&self, id: i64, now: i64) -> Result<(), IssuerError> {
        self.check()?;
        self.inner.expired(id, now)
    }
    fn depth(&self, issuer: &str) -> Result<u64, IssuerError> {
        self.check()?;
        self.inner.depth(issuer)
    }
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Rig {
    switch: RunningSwitch,
    stop: CancellationToken,
    bank: Bank,
    cap: Arc<AtomicU64>,
    saf_fails: Arc<AtomicBool>,
    journal: PathBuf,
    _dir: TempDir,
}

async fn rig(tag: &str) -> Rig {
    let dir = std::env::temp_dir().join(format!("isoswitch-jfault-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal.db");
    let bank = Bank::start("127.0.0.1:0".parse().unwrap(), BankState::new()).await;
    let text = format!(
        "journal = {journal:?}\nadmin = \"127.0.0.1:0\"\nadmin_token = \"a-token-of-16-chars-or-more\"\n{}\
         [saf]\nretry_min_ms = 100\nretry_max_ms = 200\nkey = \"{KEY}\"\nindoubt = false\n",
        config_text(&[bank.addr], 2000, "")
    );
    let cfg = Config::parse("jfault.toml", &text).unwrap();
    let cap = Arc::new(AtomicU64::new(ROOMY));
    let saf_fails = Arc::new(AtomicBool::new(false));
    let store = Budget { inner: SqliteStore::open(&journal, true).unwrap(), cap: cap.clone(), applied: 0 };
    let jc = JournalConfig::Sqlite { path: journal.clone(), full_sync: true };
    let saf = Failing {
        inner: SqlSaf::open(&jc, SafKey::from_hex(KEY).unwrap()).unwrap(),
        fail: saf_fails.clone(),
    };
    let services = Services::open_with(&cfg, Some((Journal::start(store), Arc::new(saf)))).unwrap();
    let stop = CancellationToken::new();
    let switch = serve_with(cfg, Arc::new(services), stop.clone()).await.unwrap();
    assert!(switch.wait_issuers_up(Duration::from_secs(5)).await);
    Rig { switch, stop, bank, cap, saf_fails, journal, _dir: TempDir(dir) }
}

impl Rig {
    async fn ready(&self) -> (bool, bool) {
        let admin = http_get(self.switch.admin_addr().unwrap(), "/ready").await;
        let metrics = http_get(self.switch.metrics_addr().unwrap(), "/ready").await;
        (admin.starts_with("HTTP/1.1 200"), metrics.starts_with("HTTP/1.1 200"))
    }

    async fn metric(&self, line_start: &str) -> Option<f64> {
        let text = http_get(self.switch.metrics_addr().unwrap(), "/metrics").await;
        text.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// The disk fills: the journal's inserts past its current size fail, and so does the
    /// store-and-forward store.
    fn fill(&self) {
        self.saf_fails.store(true, SeqCst);
        self.cap.store(1, SeqCst);
    }

    fn free(&self) {
        self.cap.store(ROOMY, SeqCst);
        self.saf_fails.store(false, SeqCst);
    }

    fn rows_with_rc(&self, stan: u32) -> Vec<String> {
        let c = rusqlite::Connection::open(&self.journal).unwrap();
        let mut st = c.prepare("SELECT rc FROM transactions WHERE stan = ?1").unwrap();
        st.query_map([format!("{stan:06}")], |r| r.get::<_, String>(0)).unwrap().map(|r| r.unwrap()).collect()
    }

    fn saf_rows(&self) -> Vec<(String, String, i64)> {
        let c = rusqlite::Connection::open(&self.journal).unwrap();
        let mut st = c.prepare("SELECT field90, state, attempts FROM saf").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(|r| r.unwrap()).collect()
    }
}

/// Wait for `cond`, at most `bound`.
async fn until(bound: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let end = Instant::now() + bound;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Purchases until one is answered 96 (at most `max`): the journal ran out of pages under
/// its approval. Returns its STAN; every earlier one was approved.
async fn purchase_until_96(t: &mut Terminal, first_stan: u32, max: u32) -> u32 {
    for stan in first_stan..first_stan + max {
        let rc = t.exchange(&auth(PAN, stan, 1000 + u64::from(stan))).await.text(39).unwrap().into_owned();
        if rc == "96" {
            return stan;
        }
        assert_eq!(rc, "00", "STAN {stan} before the journal filled");
    }
    panic!("the journal never filled within {max} purchases");
}

/// The field 90 the bank saw for the original of the approval answered to `stan` last.
fn original_f90(bank: &Bank, amount: u64) -> String {
    let log = bank.state.log();
    let hits: Vec<&String> =
        log.originals.iter().filter(|(_, o)| o.amount == amount).map(|(k, _)| k).collect();
    assert_eq!(hits.len(), 1, "one original of amount {amount}");
    hits[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_declines_new_purchases_reverses_the_unrecorded_approval_and_recovers() {
    let logs = Logs::capture();
    let r = rig("main").await;
    let mut t = Terminal::connect(r.switch.listen_addrs()[0]).await;
    assert_eq!(r.ready().await, (true, true));
    assert_eq!(r.metric("isoswitch_journal_up ").await, Some(1.0));
    assert_eq!(r.metric("isoswitch_journal_write_errors_total ").await, Some(0.0));
    assert_eq!(t.exchange(&auth(PAN, 1, 500)).await.text(39).as_deref(), Some("00"));

    // The disk fills. The first approval whose row cannot be written gets 96...
    r.fill();
    let lost = purchase_until_96(&mut t, 10, 500).await;
    let amount = 1000 + u64::from(lost);
    let f90 = original_f90(&r.bank, amount);
    assert!(r.bank.state.log().originals[&f90].answered, "the issuer approved it");
    assert!(r.rows_with_rc(lost).is_empty(), "its row is not in the journal");

    // ...and new purchases are declined before any issuer hears of them.
    let seen = r.bank.state.financial.load(SeqCst);
    for stan in 1000..1040 {
        assert_eq!(t.exchange(&auth(PAN, stan, 700)).await.text(39).as_deref(), Some("96"), "STAN {stan}");
    }
    assert_eq!(r.bank.state.financial.load(SeqCst), seen, "no new purchase reached the issuer");
    assert_eq!(r.ready().await, (false, false), "not ready on the admin and metrics ports");
    assert_eq!(r.metric("isoswitch_journal_up ").await, Some(0.0));
    assert!(r.metric("isoswitch_journal_write_errors_total ").await.unwrap() >= 1.0);

    // The unrecorded approval is reversed from memory (the store fails too): its 0400 names
    // the switch STAN the issuer saw, and is repeated as 0401 while unacknowledged.
    let repeated = until(Duration::from_secs(5), async || {
        r.bank.state.log().reversals.get(&f90).is_some_and(|v| v.arrivals.len() >= 2)
    })
    .await;
    assert!(repeated, "the reversal reached the issuer and was repeated");
    {
        let log = r.bank.state.log();
        let v = &log.reversals[&f90];
        assert_eq!(v.arrivals[0].1, "0400");
        assert!(v.arrivals[1..].iter().all(|(_, m)| m == "0401"));
        assert_eq!(v.amount, amount);
        assert_eq!(log.reversals.len(), 1, "nothing else is reversed");
    }
    assert_eq!(r.metric("isoswitch_saf_held{issuer=\"bank\"} ").await, Some(1.0));

    // The issuer acknowledges: no write follows the 0410 and nothing stays held.
    r.bank.state.ack_reversals.store(true, SeqCst);
    assert!(
        until(Duration::from_secs(5), async || r.bank.state.log().reversals[&f90].acked_at.is_some()).await
    );
    assert!(until(Duration::from_secs(2), async || r.metric("isoswitch_saf_held{").await == Some(0.0)).await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(r.bank.state.log().reversals[&f90].after_ack(), 0, "nothing is sent after the 0410");

    // Space comes back: the switch journals and approves again by itself.
    r.free();
    assert!(until(Duration::from_secs(5), async || r.ready().await == (true, true)).await, "ready again");
    assert_eq!(r.metric("isoswitch_journal_up ").await, Some(1.0));
    assert_eq!(t.exchange(&auth(PAN, 2000, 800)).await.text(39).as_deref(), Some("00"));
    assert_eq!(r.rows_with_rc(2000), ["00"], "journalled again");
    assert!(r.saf_rows().iter().all(|(f, ..)| f != &f90), "acknowledged from memory: never stored");

    let text = logs.text();
    let count = |s: &str| text.lines().filter(|l| l.contains(s)).count();
    assert_eq!(count("journal DOWN"), 1, "one line when the journal went down:\n{text}");
    assert_eq!(count("journal back"), 1, "one line when it came back:\n{text}");
    let back = text.lines().find(|l| l.contains("journal back")).unwrap();
    assert!(back.contains("declined=40"), "the recovery line counts the declines: {back}");
    assert!(back.contains("reversals_queued=1"), "and the reversal: {back}");
    assert_eq!(count("store-and-forward store failing"), 1, "{text}");
    assert!(count("ERROR") <= 5, "a handful of error lines, not one per request:\n{text}");
    assert!(!text.contains(PAN), "no PAN in the log");

    // Again, but the store comes back before the issuer acknowledges: the reversal held in
    // memory moves into the store with its writes so far (its next write is a 0401), and
    // the store's worker repeats it until the 0410, which the store records.
    r.bank.state.ack_reversals.store(false, SeqCst);
    r.fill();
    let lost = purchase_until_96(&mut t, 3000, 500).await;
    let f90 = original_f90(&r.bank, 1000 + u64::from(lost));
    assert!(until(Duration::from_secs(5), async || r.bank.state.log().reversals.contains_key(&f90)).await);
    r.free();
    let stored = until(Duration::from_secs(5), async || {
        r.saf_rows().iter().any(|(f, s, a)| f == &f90 && s == "pending" && *a >= 1)
    })
    .await;
    assert!(stored, "moved into the store with its writes: {:?}", r.saf_rows());
    r.bank.state.ack_reversals.store(true, SeqCst);
    let acked = until(Duration::from_secs(5), async || {
        r.saf_rows().iter().any(|(f, s, _)| f == &f90 && s == "acked")
    })
    .await;
    assert!(acked, "acknowledged in the store: {:?}", r.saf_rows());
    {
        let log = r.bank.state.log();
        let v = &log.reversals[&f90];
        assert_eq!(v.arrivals[0].1, "0400");
        assert!(
            v.arrivals[1..].iter().all(|(_, m)| m == "0401"),
            "repeats after the first: {:?}",
            v.arrivals
        );
        assert_eq!(log.reversals.len(), 2, "one reversal per unrecorded approval");
    }
    assert!(until(Duration::from_secs(5), async || r.ready().await == (true, true)).await);
    assert_eq!(t.exchange(&auth(PAN, 4000, 900)).await.text(39).as_deref(), Some("00"));
    r.stop.cancel();
    r.switch.join().await;
}
