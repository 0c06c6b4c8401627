//! Reversals with store-and-forward, driven through the issuer connector (`Issuers`) on
//! 127.0.0.1: every dropped financial request is reversed exactly once and acknowledged
//! once the issuer is healthy; late replies add no reversal; pending reversals resume
//! after a restart over the same SQLite file and an acknowledged one is never resent;
//! failover to a backup issuer; a spec without field 90 is refused. The store suite also
//! runs on PostgreSQL when `ISOSWITCH_TEST_PG` is set (ignored without it; under CI its
//! absence fails), and there the store connects again after losing its connection.

#[path = "common/pg.rs"]
mod pg;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use isoswitch::config::{Config, SafConfig, Timeouts};
use isoswitch::frame::{Frame, FrameCodec, FrameConfig};
use isoswitch::iso::{Message, Spec, spec};
use isoswitch::issuer::{
    ForwardOptions, Issuer, IssuerError, Issuers, Outcome, SafPolicy, SafStore, StartOptions, Target,
};
use isoswitch::journal::JournalConfig;
use isoswitch::journal::saf_store::{SafKey, SqlSaf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

const PANS: &[&str] = &["4761739001010119", "5413330089600010"];
const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn ascii() -> Arc<Spec> {
    spec::shipped("iso87ascii").unwrap()
}

/// What the mock issuer saw and did.
#[derive(Default)]
struct Seen {
    financial: AtomicUsize,
    dropped: AtomicUsize,
    /// (MTI, field 90) of every reversal write, in arrival order.
    reversals: Mutex<Vec<(String, String)>>,
    acks: AtomicUsize,
}

struct Mock {
    addr: std::net::SocketAddr,
    seen: Arc<Seen>,
    /// Reversals are answered only when healthy.
    healthy: Arc<AtomicBool>,
    stop: CancellationToken,
}

/// A mock issuer: answers 0800; drops every `drop_every`-th 0200 (answering it after
/// `late_ms` when non-zero: a late approval); answers 0400/0401 with 0410 when healthy.
async fn mock(drop_every: usize, late_ms: u64, healthy: bool) -> Mock {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let healthy = Arc::new(AtomicBool::new(healthy));
    let stop = CancellationToken::new();
    let (s, h, st) = (seen.clone(), healthy.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let sock = tokio::select! {
                _ = st.cancelled() => return,
                a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => return },
            };
            let (s, h, st) = (s.clone(), h.clone(), st.clone());
            tokio::spawn(async move {
                let (r, w) = sock.into_split();
                let mut rd = FramedRead::new(r, FrameCodec::new(FrameConfig::default()));
                let mut wr = FramedWrite::new(w, FrameCodec::new(FrameConfig::default()));
                let (tx, mut rx) = mpsc::channel::<Message>(1024);
                let writer = tokio::spawn(async move {
                    while let Some(m) = rx.recv().await {
                        if wr.send(Frame::plain(m.to_bytes().unwrap())).await.is_err() {
                            return;
                        }
                    }
                });
                loop {
                    let f = tokio::select! {
                        _ = st.cancelled() => break,
                        f = rd.next() => match f { Some(Ok(f)) => f, _ => break },
                    };
                    let req = Message::decode(&ascii(), f.body).unwrap();
                    let mut reply = req.clone();
                    reply.remove(35).remove(52);
                    reply.set(39, "00").unwrap();
                    match req.mti() {
                        "0800" => reply.set_mti("0810").unwrap(),
                        "0200" => {
                            reply.set_mti("0210").unwrap();
                            reply.set(38, "123456").unwrap();
                            let n = s.financial.fetch_add(1, Ordering::SeqCst) + 1;
                            if drop_every > 0 && n % drop_every == 0 {
                                s.dropped.fetch_add(1, Ordering::SeqCst);
                                if late_ms > 0 {
                                    let tx = tx.clone();
                                    tokio::spawn(async move {
                                        tokio::time::sleep(Duration::from_millis(late_ms)).await;
                                        let _ = tx.send(reply).await;
                                    });
                                }
                                continue;
                            }
                        }
                        "0400" | "0401" => {
                            let f90 = req.text(90).unwrap().into_owned();
                            s.reversals.lock().unwrap().push((req.mti().to_string(), f90));
                            if !h.load(Ordering::SeqCst) {
                                continue;
                            }
                            s.acks.fetch_add(1, Ordering::SeqCst);
                            reply.set_mti("0410").unwrap();
                        }
                        _ => continue,
                    }
                    if tx.send(reply).await.is_err() {
                        break;
                    }
                }
                drop(tx);
                let _ = writer.await;
            });
        }
    });
    Mock { addr, seen, healthy, stop }
}

fn issuer_config(issuers: &[(&str, std::net::SocketAddr, &str)], deadline_ms: u64) -> Config {
    let mut t = String::new();
    for (name, addr, spec) in issuers {
        t.push_str(&format!(
            "[[issuer]]\nname = \"{name}\"\n[[issuer.link]]\naddr = \"{addr}\"\nspec = \"{spec}\"\ndeadline_ms = {deadline_ms}\necho_interval_ms = 60000\n"
        ));
    }
    Config::parse("test.toml", &t).unwrap()
}

fn policy() -> SafPolicy {
    let c = SafConfig { retry_min_ms: 50, retry_max_ms: 400, ..SafConfig::default() };
    SafPolicy::from(&c)
}

fn request(stan: u32, pan: &str) -> Message {
    let mut m = Message::new(ascii(), "0200").unwrap();
    m.set(2, pan).unwrap();
    m.set(3, "000000").unwrap();
    m.set_number(4, 1000 + u64::from(stan)).unwrap();
    m.set(7, "1124012233").unwrap();
    m.set_number(11, u64::from(stan)).unwrap();
    m.set(12, "012233").unwrap();
    m.set(13, "1124").unwrap();
    m.set(32, "12345").unwrap();
    m.set(35, &format!("{pan}=28121011234567890")).unwrap();
    m.set(37, "000000000001").unwrap();
    m.set(41, "TERM0001").unwrap();
    m.set(42, "MERCHANT0000001").unwrap();
    m.set(49, "156").unwrap();
    m.set(52, "0123456789ABCDEF").unwrap();
    m
}

struct Db {
    _dir: tempdir::Dir,
    cfg: JournalConfig,
}

fn sqlite() -> Db {
    let dir = tempdir::Dir::new();
    let cfg = JournalConfig::Sqlite { path: dir.path.join("journal.db"), full_sync: false };
    Db { _dir: dir, cfg }
}

async fn open_saf(cfg: &JournalConfig) -> Arc<dyn SafStore> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || SqlSaf::open(&cfg, SafKey::from_hex(KEY).unwrap()).unwrap().shared())
        .await
        .unwrap()
}

fn with_saf(store: Arc<dyn SafStore>) -> StartOptions {
    StartOptions { saf: Some((store, policy())), ..StartOptions::default() }
}

/// Forward as a caller without a routing decision: the class told by the MTI, arrived now.
async fn forward(bank: &Issuer, req: &Message) -> Outcome {
    bank.forward(req, ForwardOptions::of(req)).await
}

async fn forward_to(
    issuers: &Issuers,
    primary: &str,
    backup: Option<&str>,
    req: &Message,
) -> Option<(Arc<Issuer>, Outcome)> {
    issuers.forward(Target { primary, backup }, req, ForwardOptions::of(req)).await
}

async fn start(cfg: &Config, store: Arc<dyn SafStore>, stop: &CancellationToken) -> Issuers {
    let issuers = Issuers::start(&cfg.issuers, Timeouts::default(), with_saf(store), stop).unwrap();
    let t0 = Instant::now();
    while issuers.iter().any(|i| i.links_up() == 0) && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    issuers
}

async fn depth(store: &Arc<dyn SafStore>, issuer: &str) -> u64 {
    let (s, i) = (store.clone(), issuer.to_string());
    tokio::task::spawn_blocking(move || s.depth(&i)).await.unwrap().unwrap()
}

/// Wait (bounded) until no reversal of `issuer` is pending.
async fn drained(store: &Arc<dyn SafStore>, issuer: &str, bound: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < bound {
        if depth(store, issuer).await == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Every `saf` row: (state, attempts, field90), and all text of all columns.
fn rows(path: &std::path::Path) -> (Vec<(String, i64, String)>, String) {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c.prepare("SELECT * FROM saf ORDER BY id").unwrap();
    let names: Vec<String> = st.column_names().map(|s| s.to_string()).collect();
    let mut all = String::new();
    let mut out = Vec::new();
    let mut q = st.query([]).unwrap();
    while let Some(r) = q.next().unwrap() {
        let mut row = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let v: rusqlite::types::Value = r.get(i).unwrap();
            let text = match v {
                rusqlite::types::Value::Text(t) => t,
                rusqlite::types::Value::Integer(i) => i.to_string(),
                other => format!("{other:?}"),
            };
            all.push_str(&text);
            all.push('\n');
            row.insert(name.clone(), text);
        }
        out.push((row["state"].clone(), row["attempts"].parse().unwrap(), row["field90"].clone()));
    }
    (out, all)
}

fn sqlite_path(db: &Db) -> std::path::PathBuf {
    match &db.cfg {
        JournalConfig::Sqlite { path, .. } => path.clone(),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dropped_request_is_reversed_once_and_acknowledged() {
    let db = sqlite();
    let m = mock(3, 0, false).await;
    let cfg = issuer_config(&[("bank", m.addr, "iso87ascii")], 200);
    let store = open_saf(&db.cfg).await;
    let stop = CancellationToken::new();
    let issuers = start(&cfg, store.clone(), &stop).await;
    let bank = issuers.by_name("bank").unwrap().clone();
    let mut tasks = Vec::new();
    for i in 0..30u32 {
        let bank = bank.clone();
        tasks.push(tokio::spawn(async move { forward(&bank, &request(i + 1, PANS[i as usize % 2])).await }));
    }
    let mut timeouts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Outcome::Reply(r) => assert_eq!(r.response_code().as_deref(), Some("00")),
            Outcome::Timeout => timeouts += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let drops = m.seen.dropped.load(Ordering::SeqCst);
    assert_eq!(drops, 10);
    assert_eq!(timeouts, drops);
    // Unhealthy: reversals are written and repeated, nothing is acknowledged.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(depth(&store, "bank").await, drops as u64);
    m.healthy.store(true, Ordering::SeqCst);
    assert!(drained(&store, "bank", Duration::from_secs(10)).await, "reversals not acknowledged");
    let acks_then = m.seen.acks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let revs = m.seen.reversals.lock().unwrap().clone();
    let distinct: BTreeSet<&String> = revs.iter().map(|(_, f)| f).collect();
    assert_eq!(distinct.len(), drops, "one reversal per dropped request");
    assert_eq!(acks_then, drops, "each reversal acknowledged once");
    assert_eq!(m.seen.acks.load(Ordering::SeqCst), acks_then, "nothing sent after the acknowledgement");
    // The first write of each is a 0400, its repeats 0401 with the same field 90.
    for f in &distinct {
        let mtis: Vec<&str> = revs.iter().filter(|(_, g)| g == *f).map(|(m, _)| m.as_str()).collect();
        assert_eq!(mtis[0], "0400");
        assert!(mtis[1..].iter().all(|m| *m == "0401"), "{mtis:?}");
        assert!(f.starts_with("0200") && f.len() == 42);
    }
    let (saf_rows, text) = rows(&sqlite_path(&db));
    assert_eq!(saf_rows.len(), drops);
    assert!(saf_rows.iter().all(|(s, a, _)| s == "acked" && *a >= 1));
    for pan in PANS {
        assert!(!text.contains(pan), "a full PAN is stored in clear");
    }
    assert!(!text.contains("0123456789ABCDEF") && !text.contains("=2812"), "PIN block or track stored");
    stop.cancel();
    issuers.join(Duration::from_secs(2)).await;
    m.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_replies_add_no_reversal() {
    let db = sqlite();
    // Dropped requests are approved 400 ms after a 150 ms deadline.
    let m = mock(4, 400, true).await;
    let cfg = issuer_config(&[("bank", m.addr, "iso87ascii")], 150);
    let store = open_saf(&db.cfg).await;
    let stop = CancellationToken::new();
    let issuers = start(&cfg, store.clone(), &stop).await;
    let bank = issuers.by_name("bank").unwrap().clone();
    let mut timeouts = 0;
    for i in 0..12u32 {
        if matches!(forward(&bank, &request(i + 1, PANS[0])).await, Outcome::Timeout) {
            timeouts += 1;
        }
    }
    assert_eq!(timeouts, 3);
    // Every late approval has arrived by now.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(drained(&store, "bank", Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revs = m.seen.reversals.lock().unwrap().clone();
    let distinct: BTreeSet<&String> = revs.iter().map(|(_, f)| f).collect();
    assert_eq!(distinct.len(), 3, "{revs:?}");
    assert_eq!(m.seen.acks.load(Ordering::SeqCst), revs.len());
    assert_eq!(rows(&sqlite_path(&db)).0.len(), 3);
    stop.cancel();
    issuers.join(Duration::from_secs(2)).await;
    m.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_reversals_resume_after_a_restart_and_acked_ones_are_never_resent() {
    let db = sqlite();
    let m = mock(2, 0, false).await;
    let cfg = issuer_config(&[("bank", m.addr, "iso87ascii")], 150);
    // First life: three timeouts, their reversals written but unanswered.
    let store = open_saf(&db.cfg).await;
    let stop = CancellationToken::new();
    let issuers = start(&cfg, store.clone(), &stop).await;
    let bank = issuers.by_name("bank").unwrap().clone();
    for i in 0..6u32 {
        forward(&bank, &request(i + 1, PANS[1])).await;
    }
    // Long enough for each reversal's first write (the worker is woken at once).
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.cancel();
    issuers.join(Duration::from_secs(2)).await;
    drop(bank);
    drop(store);
    let (before, _) = rows(&sqlite_path(&db));
    assert_eq!(before.len(), 3);
    assert!(before.iter().all(|(s, a, _)| s == "pending" && *a >= 1), "{before:?}");
    // One was acknowledged just before the stop (its 0410 recorded).
    let acked_f90 = before[0].2.clone();
    {
        let c = rusqlite::Connection::open(sqlite_path(&db)).unwrap();
        c.execute("UPDATE saf SET state = 'acked' WHERE field90 = ?1", [&acked_f90]).unwrap();
    }
    let sent_before = m.seen.reversals.lock().unwrap().len();
    // Second life: new process state over the same file, healthy issuer.
    m.healthy.store(true, Ordering::SeqCst);
    let store = open_saf(&db.cfg).await;
    assert_eq!(depth(&store, "bank").await, 2);
    let stop = CancellationToken::new();
    let issuers = start(&cfg, store.clone(), &stop).await;
    assert!(drained(&store, "bank", Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revs = m.seen.reversals.lock().unwrap().clone();
    let after: Vec<&(String, String)> = revs[sent_before..].iter().collect();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.iter().all(|(mti, f)| mti == "0401" && *f != acked_f90), "{after:?}");
    let (end, _) = rows(&sqlite_path(&db));
    assert!(end.iter().all(|(s, _, _)| s == "acked"));
    stop.cancel();
    issuers.join(Duration::from_secs(2)).await;
    m.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_reversals_are_queued_once_and_acknowledged() {
    let db = sqlite();
    let m = mock(0, 0, true).await;
    let cfg = issuer_config(&[("bank", m.addr, "iso87ascii")], 500);
    let store = open_saf(&db.cfg).await;
    let stop = CancellationToken::new();
    let issuers = start(&cfg, store.clone(), &stop).await;
    let bank = issuers.by_name("bank").unwrap().clone();
    let Outcome::Reply(answer) = forward(&bank, &request(5, PANS[0])).await else { panic!("no reply") };
    let switch_stan = answer.text(11).unwrap().into_owned();
    // The terminal names its original by its own STAN; the issuer saw the switch's.
    let mut rev = request(5, PANS[0]);
    rev.set_mti("0400").unwrap();
    let terminal_f90 = "020000000511240122330000001234500000000000";
    let f90 = isoswitch::issuer::reversal::rebase_field90(terminal_f90, &switch_stan).unwrap();
    rev.set(90, &f90).unwrap();
    assert!(bank.queue_reversal(&rev).await.unwrap());
    assert!(!bank.queue_reversal(&rev).await.unwrap(), "a duplicate is not queued again");
    assert!(drained(&store, "bank", Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let revs = m.seen.reversals.lock().unwrap().clone();
    assert_eq!(revs, vec![("0400".to_string(), f90)]);
    stop.cancel();
    issuers.join(Duration::from_secs(2)).await;
    m.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_backup_when_every_primary_link_is_down() {
    let db = sqlite();
    let backup = mock(0, 0, true).await;
    // The primary's address refuses connections.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let cfg =
        issuer_config(&[("primary", dead_addr, "iso87ascii"), ("backup", backup.addr, "iso87ascii")], 500);
    let store = open_saf(&db.cfg).await;
    let stop = CancellationToken::new();
    let issuers = Issuers::start(&cfg.issuers, Timeouts::default(), with_saf(store), &stop).unwrap();
    let t0 = Instant::now();
    while issuers.by_name("backup").unwrap().links_up() == 0 && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (who, outcome) = forward_to(&issuers, "primary", Some("backup"), &request(1, PANS[0])).await.unwrap();
    assert_eq!(who.name(), "backup");
    assert!(matches!(outcome, Outcome::Reply(_)));
    let (who, outcome) = forward_to(&issuers, "primary", None, &request(2, PANS[0])).await.unwrap();
    assert_eq!(who.name(), "primary");
    assert!(matches!(outcome, Outcome::Unavailable));
    // A healthy primary keeps its traffic.
    let (who, _) = forward_to(&issuers, "backup", Some("primary"), &request(3, PANS[0])).await.unwrap();
    assert_eq!(who.name(), "backup");
    assert!(forward_to(&issuers, "nobody", None, &request(4, PANS[0])).await.is_none());
    stop.cancel();
    issuers.join(Duration::from_secs(2)).await;
    backup.stop.cancel();
}

#[tokio::test]
async fn a_spec_without_field_90_is_refused_with_store_and_forward() {
    let db = sqlite();
    let cfg = issuer_config(&[("cup", "127.0.0.1:9".parse().unwrap(), "cup-pos")], 500);
    let store = open_saf(&db.cfg).await;
    let stop = CancellationToken::new();
    let e = Issuers::start(&cfg.issuers, Timeouts::default(), with_saf(store), &stop).unwrap_err();
    assert!(matches!(e, IssuerError::Reversal { .. }));
    let s = e.to_string();
    assert!(s.contains("cup") && s.contains("field 90"), "{s}");
    stop.cancel();
}

/// The store contract, on any backend.
async fn store_suite(cfg: JournalConfig) {
    let store = open_saf(&cfg).await;
    let spec = ascii();
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut rev = request(7, PANS[0]);
        rev.set_mti("0400").unwrap();
        rev.remove(35).remove(52);
        let f90 = "020000000711240122330000001234500000000000";
        assert!(s.enqueue("bank", f90, &rev, 1_000).unwrap());
        assert!(!s.enqueue("bank", f90, &rev, 2_000).unwrap(), "one reversal per field 90");
        assert!(s.enqueue("other", f90, &rev, 1_000).unwrap());
        assert_eq!(s.depth("bank").unwrap(), 1);
        assert!(s.due("bank", &spec, 999, 10).unwrap().is_empty(), "not due yet");
        let due = s.due("bank", &spec, 1_000, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].attempts, 0);
        assert_eq!(due[0].field90, f90);
        assert_eq!(due[0].reversal.pan().as_deref(), Some(PANS[0]), "the PAN comes back");
        assert_eq!(due[0].reversal.text(11).as_deref(), Some("000007"));
        s.attempted(due[0].id, 1, 5_000).unwrap();
        assert!(s.due("bank", &spec, 4_999, 10).unwrap().is_empty());
        let again = s.due("bank", &spec, 5_000, 10).unwrap();
        assert_eq!(again[0].attempts, 1);
        assert!(s.acked(due[0].id, 6_000).unwrap());
        assert!(!s.acked(due[0].id, 7_000).unwrap(), "acknowledged once");
        assert!(s.due("bank", &spec, i64::MAX, 10).unwrap().is_empty(), "never due after its ack");
        assert_eq!(s.depth("bank").unwrap(), 0);
        let other = s.due("other", &spec, 1_000, 10).unwrap();
        s.expired(other[0].id, 2_000).unwrap();
        assert_eq!(s.depth("other").unwrap(), 0);
    })
    .await
    .unwrap();
    // A wrong key cannot read the sealed PAN.
    let c = cfg.clone();
    let spec = ascii();
    tokio::task::spawn_blocking(move || {
        let wrong = SqlSaf::open(&c, SafKey::from_hex(&"ab".repeat(32)).unwrap()).unwrap();
        let mut rev = request(8, PANS[1]);
        rev.set_mti("0400").unwrap();
        let f90 = "020000000811240122330000001234500000000000";
        let right = SqlSaf::open(&c, SafKey::from_hex(KEY).unwrap()).unwrap();
        right.enqueue("k", f90, &rev, 0).unwrap();
        assert!(wrong.due("k", &spec, 0, 10).is_err());
        // The track and PIN block handed over by mistake were not stored.
        let back = right.due("k", &spec, 0, 10).unwrap();
        assert_eq!(back.len(), 1);
        assert!(!back[0].reversal.has(35) && !back[0].reversal.has(52));
        assert_eq!(back[0].reversal.pan().as_deref(), Some(PANS[1]));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn store_on_sqlite_holds_no_clear_pan() {
    let db = sqlite();
    store_suite(db.cfg.clone()).await;
    let (_, text) = rows(&sqlite_path(&db));
    for pan in PANS {
        assert!(!text.contains(pan));
    }
}

/// The store's PostgreSQL connection is lost (the server ended its backend, as a restart or
/// a failover does): the call that finds it lost fails, and the store connects again for
/// the next one, instead of failing every call until the switch restarts.
#[tokio::test]
#[cfg_attr(isoswitch_no_pg, ignore = "needs ISOSWITCH_TEST_PG (see .ci/pg-setup)")]
async fn store_on_postgres_connects_again_after_losing_its_connection() {
    let name = format!("isoswitch_safre{}", std::process::id());
    let url = pg::fresh_database(&name).await;
    let store = open_saf(&JournalConfig::Postgres { url: url.clone() }).await;
    let reversal = |stan: u32| {
        let mut rev = request(stan, PANS[0]);
        rev.set_mti("0400").unwrap();
        rev.remove(35).remove(52);
        rev
    };
    let s = store.clone();
    let first = reversal(21);
    let stored = tokio::task::spawn_blocking(move || {
        s.enqueue("bank", "020000002111240122330000001234500000000000", &first, 1_000)
    });
    assert!(stored.await.unwrap().unwrap());
    // From the server's default database: the store's connection is the only one to its own.
    let (admin, conn) = tokio_postgres::connect(&pg::base(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let end_the_store =
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
    let ended = admin.query(end_the_store.as_str(), &[]).await.unwrap();
    assert_eq!(ended.len(), 1, "the store's one connection was ended");
    // At most the first call after the loss fails.
    let s = store.clone();
    let second = reversal(22);
    let outcomes = tokio::task::spawn_blocking(move || {
        let looked = s.depth("bank").map_err(|e| e.to_string());
        let depth = s.depth("bank").map_err(|e| e.to_string());
        let stored = s.enqueue("bank", "020000002211240122330000001234500000000000", &second, 2_000);
        (looked, depth, stored.map_err(|e| e.to_string()), s.depth("bank").map_err(|e| e.to_string()))
    })
    .await
    .unwrap();
    let (_, depth, stored, after) = outcomes;
    assert_eq!(depth, Ok(1), "the store reads again after one failed call");
    assert_eq!(stored, Ok(true), "and stores again");
    assert_eq!(after, Ok(2));
    // Lost again, and the server refuses new connections for a while: after one failed
    // attempt calls fail at once, without an attempt each, until a second has passed.
    admin.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await.unwrap();
    let ended = admin.query(end_the_store.as_str(), &[]).await.unwrap();
    assert_eq!(ended.len(), 1);
    let s = store.clone();
    let refused = tokio::task::spawn_blocking(move || {
        let _ = s.depth("bank"); // finds it lost
        let attempt = s.depth("bank").map_err(|e| e.to_string());
        let t0 = Instant::now();
        let at_once = s.depth("bank").map_err(|e| e.to_string());
        (attempt, at_once, t0.elapsed())
    })
    .await
    .unwrap();
    let (attempt, at_once, took) = refused;
    assert!(attempt.is_err(), "the server refuses: {attempt:?}");
    let at_once = at_once.expect_err("no connection yet");
    assert!(at_once.contains("connecting again shortly"), "{at_once}");
    assert!(took < Duration::from_millis(100), "failed at once: {took:?}");
    admin.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let s = store.clone();
    let back = tokio::task::spawn_blocking(move || s.depth("bank").map_err(|e| e.to_string())).await.unwrap();
    assert_eq!(back, Ok(2), "connected again once the server lets it");
}

#[tokio::test]
#[cfg_attr(isoswitch_no_pg, ignore = "needs ISOSWITCH_TEST_PG (see .ci/pg-setup)")]
async fn store_on_postgres() {
    let url = pg::fresh_database(&format!("isoswitch_saf{}", std::process::id())).await;
    store_suite(JournalConfig::Postgres { url: url.clone() }).await;
    let (c2, conn2) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn2);
    let rows = c2.query("SELECT CAST(saf AS TEXT) FROM saf", &[]).await.unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        let text: String = r.get(0);
        for pan in PANS {
            assert!(!text.contains(pan), "a full PAN is stored in clear");
        }
    }
}

mod tempdir {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static N: AtomicUsize = AtomicUsize::new(0);

    pub struct Dir {
        pub path: PathBuf,
    }

    impl Dir {
        pub fn new() -> Dir {
            let path = std::env::temp_dir().join(format!(
                "isoswitch-saf-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
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
