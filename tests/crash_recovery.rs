//! Kill -9 of the switch in the middle of a load: every approval a terminal received is
//! in the journal after the restart, with its fee, and nothing is duplicated. The switch
//! runs as its own process (the binary), the issuer and the terminals in this test, all
//! on 127.0.0.1; every loop is bounded in count and time.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PAN, Terminal, auth};
use isoswitch::iso::spec;
use isoswitch::sim::{SimIssuerConfig, run_issuer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

async fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// The switch process, killed when the test ends (also when an assertion fails).
struct Switch(Child);

impl Switch {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start_switch(config: &Path) -> Switch {
    Switch(
        Command::new(env!("CARGO_BIN_EXE_isoswitch"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the switch"),
    )
}

async fn wait_listening(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < until, "the switch did not start listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_approval_and_duplicates_nothing() {
    let stop = CancellationToken::new();
    let issuer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer_addr = issuer.local_addr().unwrap();
    tokio::spawn(run_issuer(
        issuer,
        SimIssuerConfig::new(spec::shipped("iso87ascii").unwrap()),
        stop.clone(),
    ));

    let dir = std::env::temp_dir().join(format!("isoswitch-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal.db");
    let listen = free_port().await;
    let config = dir.join("switch.toml");
    std::fs::write(
        &config,
        format!(
            "journal = {journal:?}\n[[listener]]\naddr = \"{listen}\"\n\
             [[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"{issuer_addr}\"\ndeadline_ms = 2000\n"
        ),
    )
    .unwrap();

    let mut switch = start_switch(&config);
    wait_listening(listen).await;

    // Eight terminals, each sending one request at a time with its own STANs, noting
    // every approval it receives, until the switch dies (at most 2,000 requests each).
    let approved: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let approved = approved.clone();
        tasks.push(tokio::spawn(async move {
            let mut term = Terminal::connect(listen).await;
            for i in 0..2_000u32 {
                let stan = t * 10_000 + i + 1;
                let req = auth(PAN, stan, 10_000);
                term.send(&req).await;
                match tokio::time::timeout(Duration::from_secs(3), term.recv()).await {
                    Ok(Some(rep)) => {
                        if rep.text(39).as_deref() == Some("00") {
                            assert_eq!(rep.stan(), Some(stan));
                            approved.lock().unwrap().insert(stan);
                        }
                    }
                    _ => return,
                }
            }
        }));
    }
    // Killed in the middle of the load: once a hundred approvals are in (at most 10 s, so
    // that a slow machine still kills it mid-run rather than after it).
    let t0 = std::time::Instant::now();
    while approved.lock().unwrap().len() < 100 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    switch.kill();
    for t in tasks {
        let _ = t.await;
    }
    let approved = approved.lock().unwrap().clone();
    assert!(approved.len() > 50, "the load did not run: {} approvals", approved.len());
    eprintln!("approvals received before kill -9: {}", approved.len());

    // The restarted switch opens the same journal and serves again.
    let mut switch = start_switch(&config);
    wait_listening(listen).await;
    // Until its issuer link is up again the switch rightly answers 91; then it approves.
    let mut term = Terminal::connect(listen).await;
    let mut served = None;
    for k in 0..100u32 {
        let rep = term.exchange(&auth(PAN, 99_000 + k, 10_000)).await;
        match rep.text(39).as_deref() {
            Some("00") => {
                served = Some(k);
                break;
            }
            Some("91") => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("the restarted switch answered {other:?}"),
        }
    }
    assert!(served.is_some(), "the restarted switch approved nothing within 10 s");
    switch.kill();
    stop.cancel();

    let c = rusqlite::Connection::open(&journal).unwrap();
    let mut q = c.prepare("SELECT stan, rc, fee FROM transactions WHERE terminal_id = 'TERM0001'").unwrap();
    let rows: Vec<(String, String, i64)> =
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    let journalled: BTreeSet<u32> =
        rows.iter().filter(|r| r.1 == "00").map(|r| r.0.parse().unwrap()).collect();
    let missing: Vec<&u32> = approved.iter().filter(|s| !journalled.contains(s)).collect();
    assert!(missing.is_empty(), "{} approvals the terminals received are not in the journal", missing.len());
    assert!(rows.iter().filter(|r| r.1 == "00").all(|r| r.2 > 0), "every approval carries its fee");
    let distinct: BTreeSet<&String> = rows.iter().map(|r| &r.0).collect();
    assert_eq!(distinct.len(), rows.len(), "a transaction was journalled twice");
    let _ = std::fs::remove_dir_all(&dir);
}
