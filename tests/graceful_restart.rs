//! SIGTERM to `isoswitch run` in the middle of a load, through the real binary: the switch
//! stops accepting, answers every request it has read from a connection (in flight at the
//! issuer or still waiting in its read buffer behind the per-connection limit), closes each
//! terminal connection in order, and exits 0; every approval a terminal received is in the
//! journal, and every request the issuer saw or the journal holds reached its terminal.
//! Then a new process on the same port serves again. Linux only: the suite reads
//! /proc/net/tcp to know that the switch has read a burst before it signals.
#![cfg(target_os = "linux")]

#[path = "common/bank.rs"]
mod bank;
#[path = "common/load.rs"]
mod load;
#[path = "common/process.rs"]
mod process;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bank::{Bank, BankState};
use bytes::BytesMut;
use futures_util::StreamExt;
use isoswitch::frame::{Frame, FrameCodec, FrameConfig};
use isoswitch::iso::{Message, spec};
use load::{End, Load, LoadConfig, purchase};
use process::{
    ADMIN_TOKEN, TempDir, free_port, journal_rows, signal, start_ready, start_switch, wait_exit,
    wait_listening,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder, FramedRead};

const PAN: &str = "4761739001010119";
const MID: &str = "MERCHANT0000001";
/// Requests the burst terminal writes at once: three times the per-connection limit.
const BURST: u32 = 12;
/// The amount of a request tells the issuer which STAN it carries.
const AMOUNT_BASE: u64 = 10_000;

/// Bytes the switch has not read yet on its side of the connection from `peer_port`
/// (Linux: /proc/net/tcp, rx_queue of the socket 127.0.0.1:listen <- 127.0.0.1:peer).
fn unread_by_switch(listen_port: u16, peer_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let (local, remote) = (format!("0100007F:{listen_port:04X}"), format!("0100007F:{peer_port:04X}"));
    table.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.get(1) == Some(&local.as_str()) && cols.get(2) == Some(&remote.as_str()) {
            let queues = cols.get(4)?;
            u64::from_str_radix(queues.split(':').nth(1)?, 16).ok()
        } else {
            None
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_request_read_and_a_new_process_serves_the_port() {
    let dir = TempDir::new("graceful");
    let state = BankState::new();
    // A slow issuer: requests are in flight when the signal comes.
    state.delay_ms.store(400, Ordering::SeqCst);
    let bank = Bank::start("127.0.0.1:0".parse().unwrap(), state.clone()).await;
    let journal = dir.path.join("journal.db");
    let (listen, admin) = (free_port().await, free_port().await);
    let config = dir.path.join("switch.toml");
    // The test counts on every request reaching the issuer: a journal budget far above
    // the default so that the burst is never shed with 91 by a writer slowed down by a
    // busy machine (shedding is tested in journal_backlog).
    std::fs::write(
        &config,
        format!(
            "journal = {journal:?}\njournal_budget_ms = 1000\nadmin = \"{admin}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             [timeouts]\ndrain_ms = 20000\nreconnect_max_ms = 200\n\
             [[listener]]\naddr = \"{listen}\"\nmax_inflight_per_connection = 4\n\
             [[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"{}\"\ndeadline_ms = 10000\necho_interval_ms = 60000\n",
            bank.addr
        ),
    )
    .unwrap();
    let mut switch = start_ready(&config, &log_path(&dir), listen, admin).await;

    // Terminals at full speed, more requests in flight than the switch takes per connection.
    let load = Load::start(LoadConfig {
        addr: listen,
        connections: 4,
        pipeline: 8,
        max: 100_000,
        reply_bound: Duration::from_secs(30),
        run_bound: Duration::from_secs(60),
        make: Arc::new(|c, stan| {
            purchase(PAN, &format!("1000000{}", c + 1), MID, stan, AMOUNT_BASE + u64::from(stan))
        }),
    });
    let t0 = Instant::now();
    while load.answered.load(Ordering::Relaxed) < 100 {
        assert!(t0.elapsed() < Duration::from_secs(30), "the load did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // One more terminal writes a burst at once; the switch reads it whole and takes four.
    let burst_tid = "30000001";
    let mut burst = TcpStream::connect(listen).await.unwrap();
    let peer_port = burst.local_addr().unwrap().port();
    let mut bytes = BytesMut::new();
    let mut codec = FrameCodec::new(FrameConfig::default());
    for stan in 1..=BURST {
        let m = purchase(PAN, burst_tid, MID, stan, AMOUNT_BASE + u64::from(stan));
        codec.encode(Frame::plain(m.to_bytes().unwrap()), &mut bytes).unwrap();
    }
    burst.write_all(&bytes).await.unwrap();
    let t0 = Instant::now();
    loop {
        let at_issuer = state.log().originals.values().filter(|o| o.terminal == burst_tid).count();
        let unread = unread_by_switch(listen.port(), peer_port);
        if at_issuer > 0 && unread == Some(0) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "the burst was not read: {unread:?} unread");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen_at_signal = state.log().originals.values().filter(|o| o.terminal == burst_tid).count();
    signal(&switch, "TERM");
    let term_at = Instant::now();

    // It stops accepting while it still drains.
    let t0 = Instant::now();
    let mut refused_while_running = false;
    while t0.elapsed() < Duration::from_secs(20) {
        if TcpStream::connect(listen).await.is_err() {
            refused_while_running = switch.try_wait().unwrap().is_none();
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = wait_exit(&mut switch, Duration::from_secs(40)).await;
    let exited_after = term_at.elapsed();
    assert!(refused_while_running, "new connections were still accepted while draining");
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "exit status after SIGTERM");

    // The burst terminal: every request the switch had read was answered, then EOF.
    let spec = spec::shipped("iso87ascii").unwrap();
    let (r, _w) = burst.into_split();
    let mut frames = FramedRead::new(r, FrameCodec::new(FrameConfig::default()));
    let mut burst_answers = HashMap::new();
    let burst_end = loop {
        match tokio::time::timeout(Duration::from_secs(10), frames.next()).await {
            Ok(Some(Ok(f))) => {
                let m = Message::decode(&spec, f.body).unwrap();
                let stan = m.stan().unwrap();
                assert_eq!(m.amount(), Some(AMOUNT_BASE + u64::from(stan)), "burst reply {stan}");
                burst_answers.insert(stan, m.text(39).unwrap().into_owned());
            }
            Ok(None) => break "eof".to_string(),
            Ok(Some(Err(e))) => break format!("error: {e}"),
            Err(_) => break "silent".to_string(),
        }
    };
    let reports = load.join().await;

    // Every request that reached the issuer, or the journal, reached its terminal.
    let rows = journal_rows(&journal);
    let mut answered: HashMap<(String, u32), String> = HashMap::new();
    let mut drained = 0;
    let mut unanswered = 0;
    let mut disorderly = Vec::new();
    for r in &reports {
        assert!(r.mismatches.is_empty(), "{:?}", r.mismatches);
        if r.end != End::Eof {
            disorderly.push((r.terminal.clone(), r.end.clone()));
        }
        for (stan, a) in &r.answers {
            answered.insert((r.terminal.clone(), *stan), a.rc.clone());
            if a.at > term_at {
                drained += 1;
            }
        }
        unanswered += r.unanswered().len();
    }
    for (stan, rc) in &burst_answers {
        answered.insert((burst_tid.to_string(), *stan), rc.clone());
    }
    let seen_by_issuer = {
        let log = state.log();
        for o in log.originals.values() {
            let stan = (o.amount - AMOUNT_BASE) as u32;
            let rc = answered.get(&(o.terminal.clone(), stan));
            assert_eq!(
                rc.map(String::as_str),
                Some("00"),
                "{} / {stan} reached the issuer, terminal got {rc:?}",
                o.terminal
            );
        }
        log.originals.len()
    };
    for (key, row) in &rows {
        assert_eq!(
            answered.get(key),
            Some(&row.rc),
            "journalled {key:?} ({}) but the terminal got otherwise",
            row.rc
        );
    }
    for (key, rc) in &answered {
        assert_eq!(rc, "00", "{key:?}");
        assert!(rows.get(key).is_some_and(|r| r.rc == "00"), "approval {key:?} not journalled");
    }
    assert_eq!(
        burst_answers.len() as u32,
        BURST,
        "the burst terminal's requests were all read by the switch before the signal; answered: {:?}, then {burst_end}",
        burst_answers.keys().collect::<std::collections::BTreeSet<_>>()
    );
    assert_eq!(burst_end, "eof");
    assert!(disorderly.is_empty(), "connections not closed in order: {disorderly:?}");
    assert!(drained > 0, "nothing was in flight at the signal");
    let text = std::fs::read_to_string(log_path(&dir)).unwrap_or_default();
    assert!(!text.contains("drain bound reached"), "the drain hit its bound");

    // A new process on the same port serves again.
    let mut again = start_ready(&config, &log_path(&dir), listen, admin).await;
    let check = Load::start(LoadConfig {
        addr: listen,
        connections: 1,
        pipeline: 1,
        max: 5,
        reply_bound: Duration::from_secs(10),
        run_bound: Duration::from_secs(30),
        make: Arc::new(|_, stan| purchase(PAN, "40000001", MID, stan, AMOUNT_BASE + u64::from(stan))),
    })
    .join()
    .await;
    assert_eq!(check[0].end, End::Done);
    assert!(check[0].answers.values().all(|a| a.rc == "00"));
    signal(&again, "TERM");
    let status = wait_exit(&mut again, Duration::from_secs(30)).await;
    assert_eq!(status.map(|s| s.code()), Some(Some(0)));
    // A SIGTERM as soon as the port accepts is a graceful stop too, not the default action.
    let mut early = start_switch(&config, &log_path(&dir));
    wait_listening(listen, &mut early).await;
    signal(&early, "TERM");
    let status = wait_exit(&mut early, Duration::from_secs(30)).await;
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "SIGTERM right after the start");
    bank.stop();
    eprintln!(
        "issuer saw {seen_by_issuer} requests; terminals got {} answers, {drained} of them after SIGTERM \
         (burst: {} of {BURST}, {seen_at_signal} at the issuer at the signal); {unanswered} sent but unanswered (neither at the issuer nor journalled); \
         exit 0 after {exited_after:?}",
        answered.len(),
        burst_answers.len()
    );
}

fn log_path(dir: &TempDir) -> std::path::PathBuf {
    dir.path.join("switch.log")
}
