//! The switch as its own process (`isoswitch run --config FILE`): start it, wait for its
//! listener, signal it, and read its journal. Every wait is bounded.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

/// A loopback port free at the time of the call (the switch binds it right after).
pub async fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A switch process, killed when dropped (a failed assertion leaves nothing running).
pub struct Switch(pub Child);

impl std::ops::Deref for Switch {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Switch {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Start the switch; its stderr goes to `log` (read it after the process ended).
pub fn start_switch(config: &Path, log: &Path) -> Switch {
    let err = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_isoswitch"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .expect("start the switch");
    Switch(child)
}

/// Start the switch and wait until it listens on `listen` and its admin API on `admin`
/// says ready.
pub async fn start_ready(config: &Path, log: &Path, listen: SocketAddr, admin: SocketAddr) -> Switch {
    let mut switch = start_switch(config, log);
    wait_listening(listen, &mut switch).await;
    wait_ready(admin, &mut switch).await;
    switch
}

/// Poll `cond` until it holds; fail the test naming `what` once `bound` has passed.
pub async fn until(what: &str, bound: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < bound, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait until `addr` accepts connections (the switch is up), at most 30 s.
pub async fn wait_listening(addr: SocketAddr, child: &mut Child) {
    let until = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).await.is_err() {
        assert!(child.try_wait().unwrap().is_none(), "the switch exited at start");
        assert!(Instant::now() < until, "the switch did not start listening on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Send `signal` (a `kill` name: TERM, HUP, KILL) to the process.
pub fn signal(child: &Child, signal: &str) {
    let ok = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
    assert!(ok.success(), "kill -{signal} failed");
}

/// Wait for the process to exit, at most `bound`; its status, or None (then it is killed).
pub async fn wait_exit(child: &mut Child, bound: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + bound;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A temporary directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "isoswitch-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A journal row: (terminal, STAN) → (rc, fee, issuer, received_at ms, amount).
#[derive(Debug, Clone)]
pub struct Row {
    pub rc: String,
    pub fee: i64,
    pub issuer: Option<String>,
    pub received_at: i64,
    pub amount: i64,
    pub mti: String,
}

/// Rows of `transactions` by (terminal id, STAN number).
pub fn journal_rows(journal: &Path) -> std::collections::HashMap<(String, u32), Row> {
    let c = rusqlite::Connection::open(journal).unwrap();
    let mut q = c
        .prepare("SELECT terminal_id, stan, rc, fee, issuer, received_at, amount, mti FROM transactions")
        .unwrap();
    let rows = q
        .query_map([], |r| {
            let t: String = r.get(0)?;
            let s: String = r.get(1)?;
            Ok((
                (t.trim_end().to_string(), s.parse::<u32>().unwrap_or(0)),
                Row {
                    rc: r.get(2)?,
                    fee: r.get(3)?,
                    issuer: r.get(4)?,
                    received_at: r.get(5)?,
                    amount: r.get(6)?,
                    mti: r.get(7)?,
                },
            ))
        })
        .unwrap()
        .map(Result::unwrap);
    let mut out = std::collections::HashMap::new();
    for (k, v) in rows {
        assert!(out.insert(k.clone(), v).is_none(), "journalled twice: {k:?}");
    }
    out
}

/// (state, count) of the store-and-forward table.
pub fn saf_states(journal: &Path) -> std::collections::BTreeMap<String, i64> {
    let c = rusqlite::Connection::open(journal).unwrap();
    let Ok(mut q) = c.prepare("SELECT state, count(*) FROM saf GROUP BY state") else {
        return Default::default();
    };
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

/// The admin token the suites configure.
pub const ADMIN_TOKEN: &str = "reliability-admin-token-0001";

/// One HTTP request to the admin API; (status, body). None when the connection failed.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let head =
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n");
        s.write_all(head.as_bytes()).await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        let status = out.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()))
    };
    tokio::time::timeout(Duration::from_secs(10), io).await.ok().flatten()
}

/// Wait until the admin API says every issuer has a link up, at most 30 s.
pub async fn wait_ready(admin: SocketAddr, child: &mut Child) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, _)) = http(admin, "GET", "/ready").await {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "the switch exited at start");
        assert!(Instant::now() < until, "the switch's issuers did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (switch STAN, field 7) of the journal rows that hold an issuer's answer: the parts of
/// field 90 (digits 5-10 and 11-20) that name a request as the issuer saw it.
pub fn answered_keys(journal: &Path) -> std::collections::HashSet<(String, String)> {
    let c = rusqlite::Connection::open(journal).unwrap();
    let mut q = c
        .prepare(
            "SELECT switch_stan, transmission_time FROM transactions WHERE switch_stan IS NOT NULL AND rc <> ''",
        )
        .unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

/// Whether the journal holds the issuer's answer to the request whose reversal would
/// carry `field90`.
pub fn answer_journalled(answered: &std::collections::HashSet<(String, String)>, field90: &str) -> bool {
    answered.contains(&(field90[4..10].to_string(), field90[10..20].to_string()))
}
