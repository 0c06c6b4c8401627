//! Bounded listeners: idle connections beyond the admin and metrics ports' cap are closed
//! at once while terminals are still served; and the switch process, its descriptors
//! exhausted by idle terminals, backs off instead of spinning and serves again once they
//! close. Every loop is bounded in count and time; the process suite is Linux only (it
//! reads /proc and uses prlimit).

mod common;
#[path = "common/process.rs"]
mod process;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use isoswitch::config::Config;
use isoswitch::switch::serve;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Whether the peer closes `s` within `within` (end of stream or a reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 64];
    match tokio::time::timeout(within, s.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// Open `n` idle connections to `addr`, one after the other; those closed at once and
/// those kept open.
async fn idle_connections(addr: SocketAddr, n: usize) -> (usize, Vec<TcpStream>) {
    let mut open = Vec::new();
    let mut closed = 0;
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if closed_within(&mut s, Duration::from_millis(300)).await {
            closed += 1;
        } else {
            open.push(s);
        }
    }
    (closed, open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_ports_close_connections_beyond_their_cap_and_terminals_are_served() {
    let iss = MockIssuer::start(Mode::Approve).await;
    let text = format!(
        "admin = \"127.0.0.1:0\"\nadmin_token = \"{}\"\n{}\n[ops]\nmax_connections = 4\nread_timeout_ms = 1500\n",
        process::ADMIN_TOKEN,
        config_text(&[iss.addr], 2000, "")
    );
    let stop = CancellationToken::new();
    let sw = serve(Config::parse("ops.toml", &text).unwrap(), stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let (admin, metrics) = (sw.admin_addr().unwrap(), sw.metrics_addr().unwrap());

    let t0 = Instant::now();
    let (admin_closed, mut admin_open) = idle_connections(admin, 10).await;
    let (metrics_closed, mut metrics_open) = idle_connections(metrics, 10).await;
    assert_eq!((admin_closed, admin_open.len()), (6, 4), "admin: 4 kept, the excess closed at once");
    assert_eq!((metrics_closed, metrics_open.len()), (6, 4), "metrics: 4 kept, the excess closed at once");

    // Terminals do not notice.
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    assert_eq!(t.exchange(&auth(PAN, 1, 100)).await.text(39).as_deref(), Some("00"));

    // The idle ones are closed at the read timeout (1.5 s after they were opened), and
    // the ports answer again.
    for s in admin_open.iter_mut().chain(metrics_open.iter_mut()) {
        assert!(
            closed_within(s, Duration::from_secs(3)).await,
            "an idle connection outlived the read timeout"
        );
    }
    assert!(t0.elapsed() < Duration::from_secs(6));
    assert_eq!(process::http(admin, "GET", "/health").await.map(|r| r.0), Some(200));
    let body = http_get(metrics, "/metrics").await;
    assert!(body.contains("isoswitch_ops_refused_connections_total{port=\"admin\"} 6"), "{body}");
    assert!(body.contains("isoswitch_ops_refused_connections_total{port=\"metrics\"} 6"), "{body}");
    stop.cancel();
    sw.join().await;
}

/// A slowloris peer (a request head trickled a byte at a time, never finished) is closed at
/// the read timeout on both operations ports, while a plain request in the meantime is
/// answered; an oversized head is refused with 431; a request's body is not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_ports_close_a_slow_head_at_the_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let iss = MockIssuer::start(Mode::Approve).await;
    let text = format!(
        "admin = \"127.0.0.1:0\"\nadmin_token = \"{}\"\n{}\n[ops]\nmax_connections = 4\nread_timeout_ms = 800\n",
        process::ADMIN_TOKEN,
        config_text(&[iss.addr], 2000, "")
    );
    let stop = CancellationToken::new();
    let sw = serve(Config::parse("ops.toml", &text).unwrap(), stop.clone()).await.unwrap();
    let (admin, metrics) = (sw.admin_addr().unwrap(), sw.metrics_addr().unwrap());

    for port in [admin, metrics] {
        let t0 = Instant::now();
        let mut slow = TcpStream::connect(port).await.unwrap();
        slow.write_all(b"GET /health HTTP/1.1\r\nx-slow: ").await.unwrap();
        // Meanwhile a plain request on the same port is answered.
        assert_eq!(process::http(port, "GET", "/health").await.map(|r| r.0), Some(200), "{port}");
        let mut closed_at = None;
        // At most 40 bytes, 100 ms apart: 4 s, five times the read timeout.
        for _ in 0..40 {
            if slow.write_all(b"a").await.is_err()
                || closed_within(&mut slow, Duration::from_millis(100)).await
            {
                closed_at = Some(t0.elapsed());
                break;
            }
        }
        let at = closed_at.expect("a head trickled byte by byte outlived the read timeout");
        assert!(
            at >= Duration::from_millis(700) && at < Duration::from_millis(2500),
            "{port}: closed at {at:?}"
        );
    }

    // A head over the port's limit (2 KiB for metrics) is refused, named by its status.
    let mut big = TcpStream::connect(metrics).await.unwrap();
    let filler = "x".repeat(3000);
    big.write_all(format!("GET /metrics HTTP/1.1\r\nx-fill: {filler}\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), big.read_to_string(&mut out)).await;
    assert!(read.is_ok() && out.starts_with("HTTP/1.1 431 "), "{out}");

    // A POST announcing a body it never sends is answered without waiting for it.
    let mut post = TcpStream::connect(admin).await.unwrap();
    let head = format!(
        "POST /rules/reload HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 100000\r\n\r\n",
        process::ADMIN_TOKEN
    );
    post.write_all(head.as_bytes()).await.unwrap();
    let mut out = String::new();
    let read = tokio::time::timeout(Duration::from_millis(600), post.read_to_string(&mut out)).await;
    assert!(read.is_ok() && out.starts_with("HTTP/1.1 409 "), "{out}");
    stop.cancel();
    sw.join().await;
}

/// utime + stime of a process, in clock ticks.
#[cfg(target_os = "linux")]
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line are 12 and 13 after the name (state is field 3).
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[cfg(target_os = "linux")]
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_switch_backs_off_and_recovers() {
    use std::process::{Command, Stdio};

    let iss = MockIssuer::start(Mode::Approve).await;
    let dir = process::TempDir::new("nofile");
    let (listen, metrics) = (process::free_port().await, process::free_port().await);
    let config = dir.path.join("switch.toml");
    std::fs::write(
        &config,
        format!(
            "metrics = \"{metrics}\"\n[[listener]]\naddr = \"{listen}\"\nidle_timeout_ms = 60000\n\
             [[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"{}\"\necho_interval_ms = 60000\n",
            iss.addr
        ),
    )
    .unwrap();
    let log = dir.path.join("switch.log");
    // 256 descriptors at start (soft and hard): the terminal cap is fitted under them.
    let child = Command::new("bash")
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" run --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_isoswitch"))
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let mut switch = process::Switch(child);
    process::wait_listening(listen, &mut switch).await;
    // The first request needs the issuer link up (the metrics port's /ready says so).
    process::wait_ready(metrics, &mut switch).await;
    let pid = switch.id();
    let mut t = Terminal::connect(listen).await;
    assert_eq!(t.exchange(&auth(PAN, 1, 100)).await.text(39).as_deref(), Some("00"));
    drop(t);
    // Then the limit drops under the cap the switch derived (as when another part of the
    // process, or an operator's prlimit, takes descriptors): idle terminals exhaust them.
    let ok = Command::new("prlimit").arg(format!("--pid={pid}")).arg("--nofile=64:64").status().unwrap();
    assert!(ok.success(), "prlimit failed");
    let mut idle = Vec::new();
    for _ in 0..120 {
        idle.push(TcpStream::connect(listen).await.unwrap());
    }
    process::until("the switch to run out of descriptors", Duration::from_secs(10), || open_fds(pid) >= 63)
        .await;
    // The metrics port meets the same wall (its waiting connections stay queued).
    for _ in 0..5 {
        idle.push(TcpStream::connect(metrics).await.unwrap());
    }
    // Let the accept loop meet EMFILE, then measure a second of its CPU.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (c0, t0) = (cpu_ticks(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ticks = cpu_ticks(pid) - c0;
    let per_second = ticks as f64 / t0.elapsed().as_secs_f64();
    // Clock ticks are 100 a second on Linux: a spinning loop shows ~100.
    assert!(per_second < 20.0, "{per_second:.0} ticks/s of CPU while out of descriptors: spinning");

    drop(idle);
    let t0 = Instant::now();
    let answered = loop {
        assert!(t0.elapsed() < Duration::from_secs(10), "no terminal answered after the connections closed");
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(listen)).await {
            let mut t = Terminal::over(Box::new(s));
            t.send(&auth(PAN, 2, 100)).await;
            if let Some(r) = t.recv().await {
                break r;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answered.text(39).as_deref(), Some("00"));
    process::signal(&switch, "TERM");
    assert!(process::wait_exit(&mut switch, Duration::from_secs(10)).await.is_some());
    let log = std::fs::read_to_string(&log).unwrap();
    let log: String = strip_ansi(&log);
    assert!(log.contains("max_connections=[189]"), "the cap fitted under 256 descriptors:\n{log}");
    for port in ["terminal", "metrics"] {
        let warned = log
            .lines()
            .filter(|l| l.contains("accept failing") && l.contains(&format!("\"{port}\"")))
            .count();
        assert_eq!(warned, 1, "one WARN for the {port} port's episode:\n{log}");
    }
    assert!(log.contains("accept recovered"), "the episode's end with its count:\n{log}");
}

/// The log text without its colour escapes.
#[cfg(target_os = "linux")]
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}
