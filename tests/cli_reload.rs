//! SIGHUP reloads the rule directory of a running `isoswitch run`, atomically: a terminal
//! that was suspended is served after its registry entry changes, and a broken file is
//! refused with its name in the log while the running rules stay in force.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Terminal;
use isoswitch::iso::{Message, spec};
use isoswitch::sim::{SimIssuerConfig, run_issuer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn purchase(stan: u32) -> Message {
    let mut m = Message::new(spec::shipped("iso87ascii").unwrap(), "0200").unwrap();
    m.set(2, "6222021234567890128").unwrap();
    m.set(3, "000000").unwrap();
    m.set_number(4, 1_000).unwrap();
    m.set(7, &format!("1124{:06}", stan)).unwrap();
    m.set_number(11, u64::from(stan)).unwrap();
    m.set(41, "10000009").unwrap();
    m.set(42, "898340158120001").unwrap();
    m.set(49, "156").unwrap();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_rules_and_a_bad_file_leaves_them_in_force() {
    assert!(isoswitch::sim::luhn_valid("6222021234567890128"));
    let stop = CancellationToken::new();
    let il = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = il.local_addr().unwrap();
    tokio::spawn(run_issuer(il, SimIssuerConfig::new(spec::shipped("iso87ascii").unwrap()), stop.clone()));

    let dir = std::env::temp_dir().join(format!("isoswitch-reload-{}", std::process::id()));
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/rules");
    for f in std::fs::read_dir(&examples).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), rules.join(f.file_name())).unwrap();
    }
    let listen = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let config = dir.join("switch.toml");
    std::fs::write(
        &config,
        format!(
            "rules = {rules:?}\n[[listener]]\naddr = \"{listen}\"\n\
             [[issuer]]\nname = \"issuer-a\"\n[[issuer.link]]\naddr = \"{issuer}\"\n\
             [[issuer]]\nname = \"issuer-b\"\n[[issuer.link]]\naddr = \"{issuer}\"\n"
        ),
    )
    .unwrap();
    let mut switch = Command::new(env!("CARGO_BIN_EXE_isoswitch"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log as it comes: a full pipe would block the switch's logging threads.
    let mut stderr = switch.stderr.take().unwrap();
    let log_reader = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let until = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(listen).await.is_err() {
        assert!(Instant::now() < until, "the switch did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut t = Terminal::connect(listen).await;
    assert_eq!(t.exchange(&purchase(1)).await.text(39).as_deref(), Some("58"), "suspended at start");

    let hup = |pid: u32| {
        assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    };
    // Activate the terminal and reload.
    let reg = std::fs::read_to_string(rules.join("registry.toml")).unwrap();
    std::fs::write(rules.join("registry.toml"), reg.replace("status = \"suspended\"", "")).unwrap();
    hup(switch.id());
    let mut stan = 2;
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let rc = t.exchange(&purchase(stan)).await.text(39).map(|s| s.into_owned());
        stan += 1;
        if rc.as_deref() == Some("00") {
            break;
        }
        assert!(Instant::now() < until, "the reload never took effect (last rc {rc:?})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken registry: refused, the running rules stay.
    std::fs::write(rules.join("registry.toml"), "[[terminal]]\nid = \"10000001\"\nmerchant = 42\n").unwrap();
    hup(switch.id());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.exchange(&purchase(stan)).await.text(39).as_deref(), Some("00"), "old rules still in force");

    switch.kill().unwrap();
    let _ = switch.wait();
    let log = log_reader.join().unwrap();
    assert!(log.contains("rules reloaded"), "{log}");
    assert!(log.contains("rules NOT reloaded") && log.contains("registry.toml"), "{log}");
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}
