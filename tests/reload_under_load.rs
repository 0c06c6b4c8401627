//! Rule reloads under full load, through the real binary: terminals send pipelined
//! purchases on several connections while the rule directory (routes, fees, priorities,
//! risk) is changed and reloaded six times, by SIGHUP and by the admin API in turn. No
//! connection is dropped, every request is answered, every load request is approved (the
//! rules never decline it), and the journal shows each request priced and routed by one
//! whole rule set: the rules in force when it arrived, never older than a reload the
//! terminals had already seen take effect.

#[path = "common/bank.rs"]
mod bank;
#[path = "common/load.rs"]
mod load;
#[path = "common/process.rs"]
mod process;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bank::{Bank, BankState};
use futures_util::{SinkExt, StreamExt};
use isoswitch::frame::{Frame, FrameCodec, FrameConfig};
use isoswitch::iso::{Message, spec};
use load::{End, Load, LoadConfig, purchase, unix_ms};
use process::{ADMIN_TOKEN, TempDir, free_port, http, journal_rows, signal, start_ready, wait_exit};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const PAN: &str = "6222021234567890128";
const MID: &str = "898340159990001";
const PROBE_TID: &str = "10000009";
const LOAD_AMOUNT: u64 = 10_000;
/// Version k allows amounts up to PROBE_BASE + k: a probe of PROBE_BASE + k is approved
/// exactly when version k (or later) is in force.
const PROBE_BASE: u64 = 50_000;
const VERSIONS: u64 = 6;

/// Version `k` of the rules: fee 20 + k bp, default route alternating between the two
/// issuers, risk limit PROBE_BASE + k, weights and window changed too.
fn write_rules(dir: &Path, k: u64) {
    let mut registry = format!(
        "utc_offset = \"+08:00\"\n[[merchant]]\nid = \"{MID}\"\nname = \"Load\"\nmcc = 5999\nplan = \"load\"\n"
    );
    for t in ["10000001", "10000002", "10000003", "10000004", PROBE_TID] {
        registry.push_str(&format!("[[terminal]]\nid = \"{t}\"\nmerchant = \"{MID}\"\n"));
    }
    let bp = 20 + k;
    let fees = format!(
        "[[plan]]\nid = \"load\"\neffective_from = \"2020-01-01\"\n\
         cards = {{ debit = {{ bp = {bp} }}, credit = {{ bp = {bp} }}, qr = {{ bp = {bp} }} }}\n"
    );
    let routes = format!("[default]\nissuer = \"{}\"\ncard_type = \"debit\"\n", issuer_of(k));
    let risk = format!(
        "duplicate_window_s = 300\ncard_frequency = {{ count = 1000000, window_s = 60 }}\n\
         terminal_frequency = {{ count = 1000000, window_s = 60 }}\n\
         [[group]]\nname = \"default\"\nper_txn_max = {}\ncard_daily_max = 10000000000000\n",
        PROBE_BASE + k
    );
    let priority = format!(
        "[weights]\nreversal = 16\nnetwork = 8\npriority = 6\nordinary = {}\nbatch = 1\n[queue]\nwindow = {}\n",
        3 + k,
        64 + k
    );
    for (name, text) in [
        ("registry.toml", registry),
        ("fees.toml", fees),
        ("routes.toml", routes),
        ("risk.toml", risk),
        ("priority.toml", priority),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// The issuer a version routes to.
fn issuer_of(v: u64) -> &'static str {
    if v.is_multiple_of(2) { "issuer-a" } else { "issuer-b" }
}

struct Probe {
    framed: Framed<TcpStream, FrameCodec>,
    stan: u32,
}

impl Probe {
    /// Send a purchase of `amount`; its rc.
    async fn rc(&mut self, amount: u64) -> String {
        self.stan += 1;
        let req = purchase(PAN, PROBE_TID, MID, self.stan, amount);
        self.framed.send(Frame::plain(req.to_bytes().unwrap())).await.unwrap();
        let f = tokio::time::timeout(Duration::from_secs(10), self.framed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let rep = Message::decode(&spec::shipped("iso87ascii").unwrap(), f.body).unwrap();
        assert_eq!(rep.stan(), Some(self.stan));
        rep.text(39).unwrap().into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_reload_under_full_load_without_a_dropped_or_wrong_answer() {
    let dir = TempDir::new("reload-load");
    let rules = dir.path.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    write_rules(&rules, 0);
    let state = BankState::new();
    let bank = Bank::start("127.0.0.1:0".parse().unwrap(), state.clone()).await;
    let journal = dir.path.join("journal.db");
    let (listen, admin) = (free_port().await, free_port().await);
    let config = dir.path.join("switch.toml");
    let log = dir.path.join("switch.log");
    // Every load request must be approved: a journal budget far above the default, so that
    // a writer slowed down by a busy machine sheds none of this full load with 91 (the
    // shedding is tested in journal_backlog).
    std::fs::write(
        &config,
        format!(
            "journal = {journal:?}\njournal_budget_ms = 1000\nrules = {rules:?}\nadmin = \"{admin}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             [[listener]]\naddr = \"{listen}\"\n\
             [[issuer]]\nname = \"issuer-a\"\n[[issuer.link]]\naddr = \"{0}\"\ndeadline_ms = 10000\n\
             [[issuer]]\nname = \"issuer-b\"\n[[issuer.link]]\naddr = \"{0}\"\ndeadline_ms = 10000\n",
            bank.addr
        ),
    )
    .unwrap();
    let mut switch = start_ready(&config, &log, listen, admin).await;

    let load = Load::start(LoadConfig {
        addr: listen,
        connections: 4,
        pipeline: 16,
        max: 200_000,
        reply_bound: Duration::from_secs(20),
        run_bound: Duration::from_secs(90),
        make: Arc::new(|c, stan| purchase(PAN, &format!("1000000{}", c + 1), MID, stan, LOAD_AMOUNT)),
    });
    let wait_answers = |n: usize| {
        let answered = load.answered.clone();
        async move {
            let target = answered.load(Ordering::Relaxed) + n;
            let t0 = Instant::now();
            while answered.load(Ordering::Relaxed) < target {
                assert!(t0.elapsed() < Duration::from_secs(30), "the load stalled");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_answers(300).await;

    let mut probe = Probe {
        framed: Framed::new(
            TcpStream::connect(listen).await.unwrap(),
            FrameCodec::new(FrameConfig::default()),
        ),
        stan: 0,
    };
    // (version, unix ms when the terminals had seen it in force)
    let mut in_force = Vec::new();
    let mut by_signal = 0;
    let mut by_api = 0;
    for k in 1..=VERSIONS {
        assert_eq!(probe.rc(PROBE_BASE + k).await, "61", "version {k} is not in force yet");
        write_rules(&rules, k);
        if !k.is_multiple_of(2) {
            signal(&switch, "HUP");
            by_signal += 1;
            let t0 = Instant::now();
            loop {
                let rc = probe.rc(PROBE_BASE + k).await;
                if rc == "00" {
                    break;
                }
                assert_eq!(rc, "61");
                assert!(t0.elapsed() < Duration::from_secs(15), "SIGHUP reload {k} never took effect");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else {
            let (status, body) = http(admin, "POST", "/rules/reload").await.expect("admin API");
            assert_eq!(status, 200, "{body}");
            by_api += 1;
            assert_eq!(probe.rc(PROBE_BASE + k).await, "00", "version {k} in force once the API answered");
        }
        in_force.push((k, unix_ms()));
        wait_answers(300).await;
    }
    // A route to an issuer the switch does not have is refused; the rules in force stay.
    std::fs::write(rules.join("routes.toml"), "[default]\nissuer = \"issuer-c\"\ncard_type = \"debit\"\n")
        .unwrap();
    let (status, body) = http(admin, "POST", "/rules/reload").await.expect("admin API");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("routes.toml") && body.contains("issuer-c"), "{body}");
    assert_eq!(probe.rc(PROBE_BASE + VERSIONS).await, "00", "the last good rules stay in force");
    wait_answers(100).await;
    let reports = load.finish().await;
    drop(probe);
    signal(&switch, "TERM");
    let status = wait_exit(&mut switch, Duration::from_secs(30)).await;
    assert_eq!(status.map(|s| s.code()), Some(Some(0)));
    bank.stop();

    let rows = journal_rows(&journal);
    let mut per_version = [0usize; VERSIONS as usize + 1];
    let mut total = 0;
    for r in &reports {
        assert!(r.mismatches.is_empty(), "{:?}", r.mismatches);
        assert_eq!(r.end, End::Stopped, "connection {} ended {:?}", r.terminal, r.end);
        assert!(r.unanswered().is_empty(), "{} unanswered on {}", r.unanswered().len(), r.terminal);
        let mut stans: Vec<&u32> = r.answers.keys().collect();
        stans.sort_unstable();
        let mut last = 0;
        for stan in stans {
            total += 1;
            let rc = &r.answers[stan].rc;
            assert_eq!(rc, "00", "{} / {stan}: a load request was not approved", r.terminal);
            let row = rows.get(&(r.terminal.clone(), *stan)).expect("every answer journalled");
            assert_eq!(&row.rc, rc);
            let v = (row.fee - 20) as u64;
            assert!(v <= VERSIONS, "{} / {stan}: fee {} is no version's", r.terminal, row.fee);
            assert_eq!(
                row.issuer.as_deref(),
                Some(issuer_of(v)),
                "{} / {stan}: fee of version {v}, route of another",
                r.terminal
            );
            assert!(v >= last, "{} / {stan}: version {v} after version {last} on one connection", r.terminal);
            last = v;
            for (k, at) in &in_force {
                assert!(
                    row.received_at <= *at || v >= *k,
                    "{} / {stan}: arrived after version {k} was in force, priced by version {v}",
                    r.terminal
                );
            }
            per_version[v as usize] += 1;
        }
    }
    assert!(per_version.iter().all(|n| *n > 0), "every version carried load: {per_version:?}");
    eprintln!(
        "{total} load requests, all approved and journalled; reloads: {by_signal} by SIGHUP, {by_api} by the API; \
         requests per rule version {per_version:?}; issuer saw {}",
        state.financial.load(Ordering::SeqCst)
    );
}
