//! Stand-in through the real binary (`isoswitch run`), its SQLite journal and the
//! simulated issuer (`sim::issuer`, in this process, restartable on its port):
//!
//! - an issuer outage in the middle of a load: once the links are known down, requests
//!   within the policy are approved at once (well inside the deadline) with an `S…` code,
//!   those outside it get 91; after the issuer is back every stand-in approval reaches it
//!   as exactly one advice and is acknowledged, one it declines is recorded
//!   (`advice_rc`), and the journal, the settlement and the advices agree to the cent;
//! - many terminals racing one card's daily count get exactly that many approvals; the
//!   switch killed with -9 while advices are being delivered delivers each one once after
//!   its restart (repeats marked 0221, never a second 0220), and the day's limits survive
//!   the restart;
//! - a request unanswered by its deadline is reversed first and then stood in for; the
//!   operator's "stand in now" and its end through the admin API.
//!
//! The outage lasts `STANDIN_OUTAGE_S` seconds (default 8; 30 for the full outage run).
//! Every wait is bounded.

#[path = "common/load.rs"]
mod load;
#[path = "common/process.rs"]
mod process;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use isoswitch::frame::{Frame, FrameCodec, FrameConfig};
use isoswitch::iso::{Message, spec};
use isoswitch::sim::issuer::AdviceLog;
use isoswitch::sim::{SimIssuerConfig, run_issuer};
use load::{Load, LoadConfig, purchase, unix_ms};
use process::{
    ADMIN_TOKEN, TempDir, free_port, http, saf_states, start_ready, start_switch, until, wait_listening,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

const MID: &str = "MERCHANT0000001";
/// Within the policy's cap, outside it, and within it but declined when advised.
const WITHIN: u64 = 10_000;
const OUTSIDE: u64 = 30_000;
const ADVICE_DECLINED: u64 = 10_002;

/// A Luhn-valid 16-digit card number `622202…` numbered `n`.
fn card(n: u64) -> String {
    let body = format!("622202{n:09}");
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// The simulated issuer on `addr` (bound again after a stop, bounded retry).
struct Sim {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn sim_at(addr: SocketAddr, advices: Arc<AdviceLog>, tune: impl FnOnce(&mut SimIssuerConfig)) -> Sim {
    let t0 = Instant::now();
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) => {
                assert!(t0.elapsed() < Duration::from_secs(10), "sim issuer cannot bind {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut cfg = SimIssuerConfig::new(spec::shipped("iso87ascii").unwrap());
    cfg.advices = advices;
    cfg.decline_advice_amount = Some(ADVICE_DECLINED);
    tune(&mut cfg);
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let _ = run_issuer(listener, cfg, s).await;
    });
    Sim { stop, task }
}

impl Sim {
    /// Close the listener and every connection (the host dies, seen from the switch).
    async fn kill(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

fn write_config(
    dir: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
    issuer: SocketAddr,
    saf: &str,
    extra: &str,
) -> std::path::PathBuf {
    write_config_with(dir, listen, admin, issuer, saf, extra, "")
}

fn write_config_with(
    dir: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
    issuer: SocketAddr,
    saf: &str,
    extra: &str,
    top: &str,
) -> std::path::PathBuf {
    let journal = dir.join("journal.db");
    let config = dir.join("switch.toml");
    std::fs::write(
        &config,
        format!(
            "{top}journal = {journal:?}\njournal_sync = \"normal\"\nadmin = \"{admin}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             [timeouts]\nreconnect_max_ms = 200\nconnect_ms = 300\n\
             [saf]\nretry_min_ms = 100\nretry_max_ms = 400\n{saf}\
             [[listener]]\naddr = \"{listen}\"\n\
             [[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"{issuer}\"\ndeadline_ms = 2000\necho_interval_ms = 60000\n\
             [[standin]]\nissuer = \"bank\"\nmax_amount = 20000\n{extra}"
        ),
    )
    .unwrap();
    config
}

/// A stand-in row of the journal.
#[derive(Debug, Clone)]
struct StoodIn {
    rc: String,
    amount: i64,
    auth: Option<String>,
    advice_rc: Option<String>,
}

/// The journal's rows by decision: stand-in rows by (terminal, STAN).
fn stood_in(journal: &Path) -> HashMap<(String, u32), StoodIn> {
    let c = rusqlite::Connection::open(journal).unwrap();
    let mut q = c
        .prepare("SELECT terminal_id, stan, rc, amount, auth_code, advice_rc FROM transactions WHERE decision = 'stand-in'")
        .unwrap();
    q.query_map([], |r| {
        let t: String = r.get(0)?;
        let s: String = r.get(1)?;
        Ok((
            (t.trim_end().to_string(), s.parse().unwrap_or(0)),
            StoodIn { rc: r.get(2)?, amount: r.get(3)?, auth: r.get(4)?, advice_rc: r.get(5)? },
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Pending advices in the store-and-forward table.
fn advices_pending(journal: &Path) -> i64 {
    let c = rusqlite::Connection::open(journal).unwrap();
    c.query_row("SELECT COUNT(*) FROM saf WHERE state = 'pending' AND field90 LIKE 'advice %'", [], |r| {
        r.get(0)
    })
    .unwrap_or(-1)
}

/// Send one request on a fresh connection and read its answer (bounded).
async fn one(addr: SocketAddr, m: &Message) -> Message {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut f = Framed::new(tcp, FrameCodec::new(FrameConfig::default()));
    f.send(Frame::plain(m.to_bytes().unwrap())).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), f.next()).await.expect("an answer in 10 s");
    Message::decode(&spec::shipped("iso87ascii").unwrap(), got.unwrap().unwrap().body).unwrap()
}

/// GET /metrics (no token); (status line, body).
async fn metrics_text(addr: SocketAddr) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await.unwrap().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

/// Wait (bounded) until the admin API answers.
async fn wait_admin(admin: SocketAddr) {
    let t0 = Instant::now();
    while http(admin, "GET", "/health").await.is_none() {
        assert!(t0.elapsed() < Duration::from_secs(20), "the admin API did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn outage() -> Duration {
    let s = std::env::var("STANDIN_OUTAGE_S").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    Duration::from_secs(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_outage_is_stood_in_for_and_every_approval_is_advised_once() {
    let dir = TempDir::new("standin-outage");
    let advices = Arc::new(AdviceLog::default());
    let issuer = free_port().await;
    let sim = sim_at(issuer, advices.clone(), |_| {}).await;
    let (listen, admin) = (free_port().await, free_port().await);
    let metrics = free_port().await;
    let config = write_config_with(
        &dir.path,
        listen,
        admin,
        issuer,
        "",
        "card_daily_count = 100\ncard_daily_amount = 10000000\nmax_exposure = 100000000000\n",
        &format!("metrics = \"{metrics}\"\n"),
    );
    let log = dir.path.join("switch.log");
    let _switch = start_ready(&config, &log, listen, admin).await;
    let journal = dir.path.join("journal.db");

    // Four terminals, one request in flight each; every request its own card.
    let load = Load::start(LoadConfig {
        addr: listen,
        connections: 4,
        pipeline: 1,
        max: 1_000_000,
        reply_bound: Duration::from_secs(10),
        run_bound: Duration::from_secs(300),
        make: Arc::new(|c, stan| {
            let amount = match stan % 10 {
                0 | 5 => OUTSIDE,
                3 => ADVICE_DECLINED,
                _ => WITHIN,
            };
            purchase(
                &card(c as u64 * 1_000_000 + u64::from(stan)),
                &format!("1000000{}", c + 1),
                MID,
                stan,
                amount,
            )
        }),
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down_at = unix_ms();
    sim.kill().await;
    tokio::time::sleep(outage()).await;
    let back_at = unix_ms();
    let sim = sim_at(issuer, advices.clone(), |_| {}).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reports = load.finish().await;

    let rows = stood_in(&journal);
    let approved: Vec<&StoodIn> = rows.values().filter(|r| r.rc == "00").collect();
    assert!(approved.len() >= 20, "too few stand-in approvals to judge: {}", approved.len());
    until("every stand-in approval advised and acknowledged", Duration::from_secs(60), || {
        advices.totals().distinct as usize >= approved.len() && advices_pending(&journal) == 0
    })
    .await;
    let rows = stood_in(&journal);

    // What the terminals heard while the issuer was known down (from 1 s after its death
    // until its restart): 00 within the policy, 91 outside it, without waiting.
    let mut during = 0;
    let mut first_stand_in = None;
    for rep in &reports {
        assert!(rep.mismatches.is_empty(), "{:?}", rep.mismatches);
        for (stan, sent) in &rep.sent {
            let Some(a) = rep.answers.get(stan) else { continue };
            if sent.at_ms < down_at + 1000 || a.at_ms > back_at {
                continue;
            }
            during += 1;
            let want = if sent.amount == OUTSIDE { "91" } else { "00" };
            assert_eq!(a.rc, want, "amount {} during the outage", sent.amount);
            assert!(a.at_ms - sent.at_ms < 1000, "answered in {} ms: stand-in waited", a.at_ms - sent.at_ms);
            let row = rows.get(&(rep.terminal.clone(), *stan)).expect("journalled as stand-in");
            assert_eq!(row.rc, a.rc);
            if want == "00" {
                let code = row.auth.as_deref().unwrap_or("");
                assert!(code.len() == 6 && code.starts_with('S'), "stand-in code {code}");
                first_stand_in.get_or_insert((rep.terminal.clone(), *stan));
            }
        }
    }
    assert!(during >= 20, "too few answers during the outage: {during}");

    // Every stand-in approval reached the issuer as one advice, acknowledged; the one
    // amount it refuses is recorded on its transaction.
    let totals = advices.totals();
    let approved: Vec<&StoodIn> = rows.values().filter(|r| r.rc == "00").collect();
    assert_eq!(totals.distinct as usize, approved.len(), "one advice per stand-in approval");
    assert_eq!(totals.duplicates, 0, "an advice sent twice as new");
    let journal_amount: i64 = approved.iter().map(|r| r.amount).sum();
    assert_eq!(totals.amount as i64, journal_amount, "advices and journal agree to the cent");
    for r in &approved {
        let want = if r.amount as u64 == ADVICE_DECLINED { "05" } else { "00" };
        assert_eq!(r.advice_rc.as_deref(), Some(want), "advice_rc of a stand-in of {}", r.amount);
    }
    let declined: i64 =
        approved.iter().filter(|r| r.amount as u64 == ADVICE_DECLINED).map(|r| r.amount).sum();
    assert!(declined > 0, "no advice was declined: the rule was not exercised");
    assert_eq!(totals.amount_accepted as i64, journal_amount - declined);
    let mut codes = advices.codes();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), approved.len(), "stand-in codes are unique in the day");

    // The settlement counts stand-in approvals like any approval.
    let c = rusqlite::Connection::open(&journal).unwrap();
    let (date, all_approved): (String, i64) = c
        .query_row(
            "SELECT business_date, SUM(amount) FROM transactions WHERE rc = '00' AND txn_type = 'purchase' GROUP BY business_date",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_isoswitch"))
        .args(["settle", "--format", "json", "--date", &date, "--journal"])
        .arg(&journal)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["totals"]["gross_minor"].as_i64(), Some(all_approved), "settlement gross");
    let forwarded: i64 = c
        .query_row("SELECT SUM(amount) FROM transactions WHERE rc = '00' AND decision = 'forward'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(all_approved, forwarded + journal_amount);

    // Nothing is owed any more; the admin API and the metrics say so.
    let (status, body) = http(admin, "GET", "/issuers/bank/standin").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((s["exposure"].as_i64(), s["advices_pending"].as_i64()), (Some(0), Some(0)), "{body}");
    let (tid, stan) = first_stand_in.expect("a stand-in approval during the outage");
    let rrn = format!("{:0>4}{stan:08}", &tid[tid.len() - 4..]);
    let (status, body) = http(admin, "GET", &format!("/transactions?rrn={rrn}")).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"decision\":\"stand-in\"") && body.contains("\"advice_rc\":"), "{body}");
    let (_, m) = metrics_text(metrics).await;
    let approved_metric =
        format!("isoswitch_standin_total{{issuer=\"bank\",decision=\"approved\"}} {}", approved.len());
    assert!(m.contains(&approved_metric), "{approved_metric} not in:\n{m}");
    assert!(m.contains("isoswitch_standin_exposure{issuer=\"bank\"} 0"), "{m}");
    assert!(m.contains("isoswitch_advice_depth{issuer=\"bank\"} 0"), "{m}");
    assert!(m.contains("isoswitch_advice_declined_total{issuer=\"bank\"} "), "{m}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("stand-in active") && text.contains("stand-in ended"), "state changes logged");
    eprintln!(
        "outage {:?}: {during} answers while down, {} stand-in approvals ({} minor units), {} advices, {} repeats, {} declined by the issuer",
        outage(),
        approved.len(),
        journal_amount,
        totals.distinct,
        totals.repeats,
        totals.declined
    );
    assert!(!text.contains("6222020"), "a card number in the log");
    sim.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_terminals_respect_a_cards_daily_count_and_advices_survive_kill_9() {
    let dir = TempDir::new("standin-kill");
    let advices = Arc::new(AdviceLog::default());
    let issuer = free_port().await;
    let (listen, admin) = (free_port().await, free_port().await);
    // Advices go four at a time, so that the kill finds some delivered and some not.
    let config = write_config(&dir.path, listen, admin, issuer, "batch = 4\n", "card_daily_count = 5\n");
    let log = dir.path.join("switch.log");
    let journal = dir.path.join("journal.db");
    // The issuer is down from the start: every request is decided by the switch.
    let mut switch = start_switch(&config, &log);
    wait_listening(listen, &mut switch).await;
    wait_admin(admin).await;

    // Sixteen terminals race the same card; its daily count is 5.
    let racing = card(7);
    let tasks: Vec<_> = (0..16u32)
        .map(|t| {
            let m = purchase(&racing, &format!("2000{t:04}"), MID, 1, 1_000);
            tokio::spawn(async move { one(listen, &m).await.text(39).unwrap().into_owned() })
        })
        .collect();
    let mut rcs = Vec::new();
    for t in tasks {
        rcs.push(t.await.unwrap());
    }
    assert_eq!(rcs.iter().filter(|r| *r == "00").count(), 5, "{rcs:?}");
    assert_eq!(rcs.iter().filter(|r| *r == "91").count(), 11, "{rcs:?}");

    // Sixty more, each its own card.
    for n in 0..60u32 {
        let m = purchase(&card(1000 + u64::from(n)), "30000001", MID, n + 1, 2_000 + u64::from(n));
        assert_eq!(one(listen, &m).await.text(39).as_deref(), Some("00"));
    }
    assert_eq!(advices_pending(&journal), 65);

    // The issuer comes back slowly; the switch dies while it delivers.
    let sim = sim_at(issuer, advices.clone(), |c| c.delay = Duration::from_millis(40)).await;
    until("some advices delivered", Duration::from_secs(60), || advices.totals().distinct >= 10).await;
    process::signal(&switch, "KILL");
    let _ = process::wait_exit(&mut switch, Duration::from_secs(10)).await;
    let delivered_before = advices.totals().distinct;
    assert!(delivered_before < 65, "everything went before the kill: nothing was tested");
    let mut switch = start_ready(&config, &log, listen, admin).await;
    until("every advice delivered after the restart", Duration::from_secs(60), || {
        advices.totals().distinct >= 65 && advices_pending(&journal) == 0
    })
    .await;
    let totals = advices.totals();
    assert_eq!((totals.distinct, totals.duplicates), (65, 0), "each advice once: {totals:?}");
    let rows = stood_in(&journal);
    let approved: Vec<&StoodIn> = rows.values().filter(|r| r.rc == "00").collect();
    assert_eq!(approved.len(), 65);
    assert!(approved.iter().all(|r| r.advice_rc.as_deref() == Some("00")));
    assert_eq!(totals.amount as i64, approved.iter().map(|r| r.amount).sum::<i64>());
    assert_eq!(saf_states(&journal).get("pending"), None, "{:?}", saf_states(&journal));

    // The day's limits outlive the restart: the racing card is spent, another is not.
    sim.kill().await;
    let t0 = Instant::now();
    loop {
        let (_, body) = http(admin, "GET", "/issuers/bank/standin").await.unwrap();
        if body.contains("\"links_up\":0") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "links still up: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = purchase(&racing, "20009999", MID, 1, 1_000);
    assert_eq!(one(listen, &again).await.text(39).as_deref(), Some("91"), "the card's count survived");
    let fresh = purchase(&card(5000), "20009999", MID, 2, 1_000);
    assert_eq!(one(listen, &fresh).await.text(39).as_deref(), Some("00"));
    process::signal(&switch, "TERM");
    let _ = process::wait_exit(&mut switch, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_reversed_before_it_is_stood_in_for_and_the_operator_switch_works() {
    let dir = TempDir::new("standin-timeout");
    let advices = Arc::new(AdviceLog::default());
    let issuer = free_port().await;
    let sim = sim_at(issuer, advices.clone(), |c| c.silent_amount = Some(7_700)).await;
    let (listen, admin) = (free_port().await, free_port().await);
    let config = write_config(&dir.path, listen, admin, issuer, "", "when = [\"down\", \"timeout\"]\n");
    let log = dir.path.join("switch.log");
    let journal = dir.path.join("journal.db");
    let mut switch = start_ready(&config, &log, listen, admin).await;

    let silent = purchase(&card(1), "40000001", MID, 1, 7_700);
    let reply = one(listen, &silent).await;
    assert_eq!(reply.text(39).as_deref(), Some("00"));
    assert!(reply.text(38).is_some_and(|c| c.starts_with('S')), "a stand-in code");
    until("the reversal and the advice acknowledged", Duration::from_secs(30), || {
        saf_states(&journal).get("acked") == Some(&2)
    })
    .await;
    let c = rusqlite::Connection::open(&journal).unwrap();
    let kinds: Vec<String> = c
        .prepare("SELECT field90 FROM saf ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(kinds.len(), 2);
    assert!(kinds[0].starts_with("0200") && kinds[1].starts_with("advice "), "reversal first: {kinds:?}");
    assert_eq!(advices.totals().distinct, 1);

    // The terminal reverses that stand-in after its advice went: a reversal naming the
    // advice is queued and acknowledged.
    let mut rev = silent.clone();
    rev.set_mti("0400").unwrap();
    assert_eq!(one(listen, &rev).await.text(39).as_deref(), Some("00"));
    until("the advice's reversal acknowledged", Duration::from_secs(30), || {
        saf_states(&journal).get("acked") == Some(&3)
    })
    .await;
    let last: String =
        c.query_row("SELECT field90 FROM saf ORDER BY id DESC LIMIT 1", [], |r| r.get(0)).unwrap();
    assert!(last.starts_with("0220000001"), "field 90 names the advice: {last}");

    // The operator stands in for a healthy issuer, then stops.
    let (status, body) = http(admin, "POST", "/issuers/bank/standin/start").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"forced\":true"), "{body}");
    let forced_req = purchase(&card(2), "40000001", MID, 2, 1_500);
    let forced = one(listen, &forced_req).await;
    assert!(forced.text(38).is_some_and(|c| c.starts_with('S')), "decided by the switch");
    // Reversed before its advice was written: the advice is withdrawn, never sent.
    let mut rev = forced_req.clone();
    rev.set_mti("0400").unwrap();
    assert_eq!(one(listen, &rev).await.text(39).as_deref(), Some("00"));
    assert_eq!(saf_states(&journal).get("void"), Some(&1), "{:?}", saf_states(&journal));
    let status: String = c
        .query_row("SELECT status FROM transactions WHERE stan = '000002' AND mti = '0200'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(status, "reversed");
    let (_, body) = http(admin, "GET", "/issuers/bank/standin").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["exposure"] == 0 && v["advices_pending"] == 0 && v["forced"] == true, "{body}");
    let (status, _) = http(admin, "POST", "/issuers/bank/standin/stop").await.unwrap();
    assert_eq!(status, 200);
    let normal = one(listen, &purchase(&card(3), "40000001", MID, 3, 1_500)).await;
    assert!(normal.text(38).is_some_and(|c| !c.starts_with('S')), "the issuer answers again");
    let (status, _) = http(admin, "POST", "/issuers/nobody/standin/start").await.unwrap();
    assert_eq!(status, 404);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("stand-in started by the operator")
            && text.contains("stand-in stopped by the operator")
    );
    process::signal(&switch, "TERM");
    let _ = process::wait_exit(&mut switch, Duration::from_secs(10)).await;
    sim.kill().await;
}

/// The advice half of the store-and-forward store, on one backend: stored once per
/// transaction, counted with its amount, withdrawn when its approval never reached the
/// journal or when it was never written, and its answer written on the transaction.
async fn advice_store_suite(cfg: isoswitch::journal::JournalConfig) {
    use isoswitch::issuer::SafStore;
    use isoswitch::journal::saf_store::{SafKey, SqlSaf, advice_key};
    use isoswitch::journal::{Decided, Journal, Query, Status, TxnRecord};
    use isoswitch::rc::ResponseCode;
    use isoswitch::route::txn::TxnType;
    let key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let c2 = cfg.clone();
    let (journal, store) = tokio::task::spawn_blocking(move || {
        (Journal::open(&c2).unwrap(), SqlSaf::open(&c2, SafKey::from_hex(key).unwrap()).unwrap())
    })
    .await
    .unwrap();
    let row = TxnRecord {
        terminal_id: "50000001".into(),
        stan: "000001".into(),
        txn_key: Some("0200 1124103000".into()),
        decision: Decided::StandIn,
        rc: Some(ResponseCode::APPROVED),
        status: Some(Status::Approved),
        amount: 4_200,
        business_date: "20261124".into(),
        mti: "0200".into(),
        txn_type: TxnType::Purchase.into(),
        ..TxnRecord::default()
    };
    assert!(journal.record(row).await.unwrap());
    let mut adv = purchase(&card(9), "50000001", MID, 1, 4_200);
    adv.set_mti("0220").unwrap();
    adv.set(38, "S00001").unwrap();
    let k = advice_key("50000001", "000001", "0200 1124103000");
    let orphan = advice_key("50000001", "000002", "0200 1124103001");
    let now = unix_ms();
    let store: Arc<dyn SafStore> = Arc::new(store);
    let s = store.clone();
    let (adv2, k2, o2) = (adv.clone(), k.clone(), orphan.clone());
    tokio::task::spawn_blocking(move || {
        assert!(s.enqueue_advice("bank", &k2, &adv2, now - 5_000, now - 5_000).unwrap());
        assert!(!s.enqueue_advice("bank", &k2, &adv2, now, now).unwrap(), "one advice per transaction");
        assert!(s.enqueue_advice("bank", &o2, &adv2, now - 5_000, now - 5_000).unwrap());
        assert_eq!(s.advices_pending("bank").unwrap(), (2, 8_400));
        assert_eq!(s.void_orphan_advices("bank", now).unwrap(), 1, "the approval never journalled");
        assert_eq!(s.advices_pending("bank").unwrap(), (1, 4_200));
        let due = s.due("bank", &spec::shipped("iso87ascii").unwrap(), now, 10).unwrap();
        assert_eq!(due.len(), 1);
        let item = &due[0];
        assert_eq!((item.reversal.mti(), item.reversal.pan().as_deref()), ("0220", Some(card(9).as_str())));
        s.attempted(item.id, 1, now + 100).unwrap();
        assert!(!s.void_advice("bank", &k2, now).unwrap(), "written once: no longer withdrawn");
        assert!(s.advice_answered(item.id, "05", now).unwrap());
        assert!(!s.advice_answered(item.id, "05", now).unwrap(), "answered once");
        assert_eq!(s.advices_pending("bank").unwrap(), (0, 0));
    })
    .await
    .unwrap();
    let q = Query::ByKey {
        terminal: "50000001".into(),
        stan: "000001".into(),
        txn_key: "0200 1124103000".into(),
    };
    let rows = journal.query(q).await.unwrap();
    assert_eq!(
        rows.first().and_then(|r| r.advice_rc),
        Some(ResponseCode::DO_NOT_HONOUR),
        "the answer is on the transaction"
    );
}

#[tokio::test]
async fn advice_store_on_sqlite() {
    let dir = TempDir::new("standin-store");
    let cfg =
        isoswitch::journal::JournalConfig::Sqlite { path: dir.path.join("journal.db"), full_sync: false };
    advice_store_suite(cfg).await;
    let c = rusqlite::Connection::open(dir.path.join("journal.db")).unwrap();
    let text: String = c
        .query_row("SELECT group_concat(message || coalesce(pan_enc, '')) FROM saf", [], |r| r.get(0))
        .unwrap();
    assert!(!text.contains(&card(9)), "a card number stored in clear");
}

#[tokio::test]
#[cfg_attr(isoswitch_no_pg, ignore = "needs ISOSWITCH_TEST_PG (see .ci/pg-setup)")]
async fn advice_store_on_postgres() {
    let base = std::env::var("ISOSWITCH_TEST_PG").expect("ISOSWITCH_TEST_PG (see .ci/pg-setup)");
    let name = format!("standin_store{}", std::process::id());
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    advice_store_suite(isoswitch::journal::JournalConfig::Postgres { url: format!("{base} dbname={name}") })
        .await;
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
}

/// The README's worked example, as written there (the issuer named `bank`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_worked_example() {
    let dir = TempDir::new("standin-readme");
    let advices = Arc::new(AdviceLog::default());
    let issuer = free_port().await;
    let (listen, admin) = (free_port().await, free_port().await);
    let config = write_config(&dir.path, listen, admin, issuer, "", "").to_string_lossy().into_owned();
    let policy = "max_amount = 50000\nwhen = [\"down\", \"timeout\"]\ntypes = [\"purchase\"]\n\
                  card_types = [\"debit\"]\nmcc = [\"5411\", \"5331\"]\nexclude_mcc = []\ncard_daily_count = 2\n\
                  card_daily_amount = 60000\nmerchant_daily_amount = 2000000\nmax_exposure = 50000000\n\
                  never = [\"622203\"]\nnever_hash = []\nadvice_mti = \"0220\"\n";
    let text = std::fs::read_to_string(&config).unwrap().replace("max_amount = 20000\n", policy);
    std::fs::write(&config, text).unwrap();
    let log = dir.path.join("switch.log");
    let journal = dir.path.join("journal.db");
    let mut switch = start_switch(Path::new(&config), &log);
    wait_listening(listen, &mut switch).await;
    wait_admin(admin).await;

    let lane = |pan: &str, stan: u32, amount: u64| {
        let mut m = purchase(pan, "60000001", MID, stan, amount);
        m.set(18, "5411").unwrap();
        m
    };
    let (a, b) = (card(100), card(200));
    let mut other = "6222030000000000".to_string();
    other.pop();
    let luhn = (0..10).map(|d| format!("{other}{d}")).find(|p| isoswitch::sim::luhn_valid(p)).unwrap();
    let mut with_pin = lane(&card(300), 6, 1_000);
    with_pin.set_bytes(52, &[0x11; 8]).unwrap();
    let mut refund = lane(&card(300), 7, 1_000);
    refund.set(3, "200000").unwrap();
    let steps: Vec<(Message, &str)> = vec![
        (lane(&a, 1, 12_850), "00"),
        (lane(&a, 2, 40_000), "00"),
        (lane(&a, 3, 5_000), "91"),
        (lane(&b, 4, 60_000), "91"),
        (lane(&luhn, 5, 1_000), "91"),
        (with_pin, "91"),
        (refund, "91"),
    ];
    let mut codes = Vec::new();
    for (m, want) in &steps {
        let r = one(listen, m).await;
        assert_eq!(r.text(39).as_deref(), Some(*want), "step STAN {:?}", m.text(11));
        if *want == "00" {
            codes.push(r.text(38).unwrap().into_owned());
        }
    }
    assert_eq!(codes, ["S00001", "S00002"]);
    let (_, body) = http(admin, "GET", "/issuers/bank/standin").await.unwrap();
    assert!(body.contains("\"exposure\":52850") && body.contains("\"advices_pending\":2"), "{body}");

    let sim = sim_at(issuer, advices.clone(), |c| c.decline_advice_amount = Some(40_000)).await;
    until("both advices answered", Duration::from_secs(30), || advices_pending(&journal) == 0).await;
    let c = rusqlite::Connection::open(&journal).unwrap();
    let rows: Vec<String> = c
        .prepare("SELECT auth_code, amount, advice_rc FROM transactions WHERE decision = 'stand-in' AND rc = '00' ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok(format!("{}|{}|{}", r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, ["S00001|12850|00", "S00002|40000|05"]);
    let totals = advices.totals();
    assert_eq!((totals.distinct, totals.declined, totals.amount), (2, 1, 52_850));
    let (_, body) = http(admin, "GET", "/issuers/bank/standin").await.unwrap();
    assert!(body.contains("\"exposure\":0") && body.contains("\"advices_pending\":0"), "{body}");
    process::signal(&switch, "TERM");
    let _ = process::wait_exit(&mut switch, Duration::from_secs(10)).await;
    sim.kill().await;
}

/// Policies in the rule directory reload with it: a bad `standin.toml` is refused with its
/// file, line and key, the running policy staying in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_in_the_rule_directory_reload_with_it() {
    let dir = TempDir::new("standin-rules");
    let rules = dir.path.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for f in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/rules")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, rules.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(rules.join("standin.toml"), "[[standin]]\nissuer = \"issuer-a\"\nmax_amount = 5000\n")
        .unwrap();
    let (listen, admin) = (free_port().await, free_port().await);
    let (a, b) = (free_port().await, free_port().await);
    let config = dir.path.join("switch.toml");
    std::fs::write(
        &config,
        format!(
            "journal = {:?}\nrules = {rules:?}\nadmin = \"{admin}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             [[listener]]\naddr = \"{listen}\"\n\
             [[issuer]]\nname = \"issuer-a\"\n[[issuer.link]]\naddr = \"{a}\"\n\
             [[issuer]]\nname = \"issuer-b\"\n[[issuer.link]]\naddr = \"{b}\"\n",
            dir.path.join("journal.db")
        ),
    )
    .unwrap();
    let log = dir.path.join("switch.log");
    let mut switch = start_switch(&config, &log);
    wait_listening(listen, &mut switch).await;
    wait_admin(admin).await;
    let read = |issuer: &'static str| async move {
        let (status, body) = http(admin, "GET", &format!("/issuers/{issuer}/standin")).await.unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    assert_eq!(read("issuer-a").await["policy"], true);
    assert_eq!(read("issuer-b").await["policy"], false);
    std::fs::write(rules.join("standin.toml"), "[[standin]]\nissuer = \"issuer-b\"\nmax_amount = 0\n")
        .unwrap();
    let (status, body) = http(admin, "POST", "/rules/reload").await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("standin.toml") && body.contains("max_amount"), "{body}");
    assert_eq!(read("issuer-a").await["policy"], true, "the running policy stays");
    std::fs::write(rules.join("standin.toml"), "[[standin]]\nissuer = \"issuer-b\"\nmax_amount = 900\n")
        .unwrap();
    let (status, body) = http(admin, "POST", "/rules/reload").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(read("issuer-a").await["policy"], false);
    assert_eq!(read("issuer-b").await["policy"], true);
    assert_eq!(read("issuer-b").await["max_exposure"], 900_000);
    process::signal(&switch, "TERM");
    let _ = process::wait_exit(&mut switch, Duration::from_secs(10)).await;
}
