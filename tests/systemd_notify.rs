//! `isoswitch run` under a service manager (systemd `Type=notify`): with `NOTIFY_SOCKET`
//! naming a datagram socket, the switch sends READY=1 only once its terminal listener
//! accepts and its journal exists, RELOADING=1 then READY=1 around a SIGHUP reload, and
//! STOPPING=1 when SIGTERM starts the drain. The socket here is the test's own.
#![cfg(unix)]

#[path = "common/process.rs"]
mod process;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The next datagram, waiting at most `bound`; None when nothing came.
fn next(sock: &UnixDatagram, bound: Duration) -> Option<String> {
    let until = Instant::now() + bound;
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => return Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                if Instant::now() >= until {
                    return None;
                }
            }
            Err(e) => panic!("notify socket: {e}"),
        }
    }
}

fn lines(msg: &str) -> Vec<&str> {
    msg.lines().collect()
}

fn start(config: &Path, log: &Path, notify: &Path) -> process::Switch {
    start_with(config, log, notify, None)
}

/// Start the switch notifying `notify`; with `watchdog_usec`, as a unit with `WatchdogSec=`.
fn start_with(config: &Path, log: &Path, notify: &Path, watchdog_usec: Option<u64>) -> process::Switch {
    let err = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isoswitch"));
    cmd.env_remove("WATCHDOG_USEC").env_remove("WATCHDOG_PID");
    if let Some(usec) = watchdog_usec {
        cmd.env("WATCHDOG_USEC", usec.to_string());
    }
    let child = cmd
        .args(["run", "--config"])
        .arg(config)
        .env("NOTIFY_SOCKET", notify)
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .expect("start the switch");
    process::Switch(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_comes_after_the_listener_accepts_and_stopping_at_shutdown() {
    let dir = process::TempDir::new("sd-notify");
    let notify = dir.path.join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    // The issuer never answers: readiness is about the switch's own listeners and journal.
    let (listen, issuer) = (process::free_port().await, process::free_port().await);
    let journal = dir.path.join("journal.db");
    // The shipped example rules name two issuers; reloading only reads the directory.
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/rules");
    let config = dir.path.join("switch.toml");
    std::fs::write(
        &config,
        format!(
            "journal = {journal:?}\nrules = {rules:?}\n[[listener]]\naddr = \"{listen}\"\n\
             [[issuer]]\nname = \"issuer-a\"\n[[issuer.link]]\naddr = \"{issuer}\"\n\
             [[issuer]]\nname = \"issuer-b\"\n[[issuer.link]]\naddr = \"{issuer}\"\n"
        ),
    )
    .unwrap();
    let log = dir.path.join("switch.log");
    let mut switch = start(&config, &log, &notify);

    let ready = tokio::task::block_in_place(|| next(&sock, Duration::from_secs(30))).unwrap_or_else(|| {
        panic!("no READY=1 within 30 s; log:\n{}", std::fs::read_to_string(&log).unwrap())
    });
    // At the moment READY=1 arrives the switch already takes connections: one try, no retry.
    let accepted = std::net::TcpStream::connect_timeout(&listen, Duration::from_secs(2));
    assert!(accepted.is_ok(), "READY=1 sent before {listen} accepts: {accepted:?}");
    assert!(journal.exists(), "READY=1 sent before the journal was opened");
    let l = lines(&ready);
    assert!(l.contains(&"READY=1"), "first notification is readiness: {ready:?}");
    assert!(
        l.iter().any(|s| s.starts_with("STATUS=") && s.contains(&listen.to_string())),
        "the status names the listener: {ready:?}"
    );
    drop(accepted);

    // SIGHUP: a reload, bracketed for the service manager; the process stays up.
    process::signal(&switch, "HUP");
    let reloading =
        tokio::task::block_in_place(|| next(&sock, Duration::from_secs(10))).expect("RELOADING=1");
    let l = lines(&reloading);
    assert!(l.contains(&"RELOADING=1"), "{reloading:?}");
    assert!(l.iter().any(|s| s.strip_prefix("MONOTONIC_USEC=").is_some_and(|v| v.parse::<u64>().is_ok())));
    let reloaded = tokio::task::block_in_place(|| next(&sock, Duration::from_secs(10)))
        .expect("READY=1 after the reload");
    assert!(lines(&reloaded).contains(&"READY=1"), "{reloaded:?}");
    assert!(switch.try_wait().unwrap().is_none(), "SIGHUP ended the switch");

    process::signal(&switch, "TERM");
    let stopping = tokio::task::block_in_place(|| next(&sock, Duration::from_secs(10))).expect("STOPPING=1");
    assert!(lines(&stopping).contains(&"STOPPING=1"), "{stopping:?}");
    let status = process::wait_exit(&mut switch, Duration::from_secs(20)).await.expect("the switch exits");
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_without_a_rule_directory_leaves_the_switch_running() {
    let dir = process::TempDir::new("sd-notify-hup");
    let notify = dir.path.join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let (listen, issuer) = (process::free_port().await, process::free_port().await);
    let config = dir.path.join("switch.toml");
    std::fs::write(
        &config,
        format!(
            "journal = \"off\"\n[[listener]]\naddr = \"{listen}\"\n\
             [[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"{issuer}\"\n"
        ),
    )
    .unwrap();
    let log = dir.path.join("switch.log");
    let mut switch = start(&config, &log, &notify);
    let ready = tokio::task::block_in_place(|| next(&sock, Duration::from_secs(30))).expect("READY=1");
    assert!(lines(&ready).contains(&"READY=1"), "{ready:?}");

    process::signal(&switch, "HUP");
    // Nothing to reload: no RELOADING=1, and the process neither dies nor stops serving.
    let after = tokio::task::block_in_place(|| next(&sock, Duration::from_millis(500)));
    assert!(after.is_none(), "a notification for a reload that did not happen: {after:?}");
    assert!(switch.try_wait().unwrap().is_none(), "SIGHUP ended the switch");
    process::wait_listening(listen, &mut switch).await;
    process::signal(&switch, "TERM");
    assert!(process::wait_exit(&mut switch, Duration::from_secs(20)).await.is_some_and(|s| s.success()));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("nothing to reload"), "the ignored SIGHUP is logged:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_is_pinged_at_half_its_interval() {
    let dir = process::TempDir::new("sd-notify-watchdog");
    let notify = dir.path.join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let (listen, issuer) = (process::free_port().await, process::free_port().await);
    let config = dir.path.join("switch.toml");
    std::fs::write(
        &config,
        format!(
            "journal = \"off\"\n[[listener]]\naddr = \"{listen}\"\n\
             [[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"{issuer}\"\n"
        ),
    )
    .unwrap();
    // WatchdogSec=400ms: a ping every 200 ms.
    let mut switch = start_with(&config, &dir.path.join("switch.log"), &notify, Some(400_000));
    let ready = tokio::task::block_in_place(|| next(&sock, Duration::from_secs(30))).expect("READY=1");
    assert!(lines(&ready).contains(&"READY=1"), "{ready:?}");
    let t0 = Instant::now();
    let mut pings = 0;
    while t0.elapsed() < Duration::from_millis(1500) {
        if let Some(m) = tokio::task::block_in_place(|| next(&sock, Duration::from_millis(100))) {
            assert_eq!(m.trim_end(), "WATCHDOG=1", "only pings while nothing happens");
            pings += 1;
        }
    }
    assert!((3..=12).contains(&pings), "{pings} pings in 1.5 s at a 200 ms period");
    process::signal(&switch, "TERM");
    assert!(process::wait_exit(&mut switch, Duration::from_secs(20)).await.is_some_and(|s| s.success()));
}
