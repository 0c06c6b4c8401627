//! `isoswitch sim-issuer` and `isoswitch sim-terminal` as processes: the JSON line of the
//! contract, a clean stop on SIGINT, and no test PAN in any output.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_isoswitch");

#[test]
fn sim_terminal_against_sim_issuer_from_the_command_line() {
    let mut issuer = Command::new(BIN)
        .args(["sim-issuer", "--listen", "127.0.0.1:0", "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(issuer.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();

    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "sim-terminal",
            "--connect",
            &addr,
            "-C",
            "4",
            "-K",
            "8",
            "--count",
            "2000",
            "--json",
            "--threads",
            "1",
        ])
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with(r#"{"sent": 2000, "received": 2000, "mismatches": 0, "errors": 0, "#), "{last}");
    let json: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(json["sent"], 2000);
    assert_eq!(json["received"], 2000);
    assert_eq!(json["mismatches"], 0);
    assert_eq!(json["errors"], 0);
    assert!(json["throughput_per_s"].as_f64().unwrap() > 0.0);
    for k in ["p50", "p99", "p999", "max"] {
        assert!(json["latency_us"][k].as_f64().is_some(), "{k}");
    }
    assert!(json["rc"]["00"].as_u64().unwrap() > 0 && json["rc"]["51"].as_u64().unwrap() > 0);

    // SIGINT stops the issuer cleanly, with its totals.
    let pid = issuer.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = issuer.wait().unwrap();
    assert!(status.success());
    let mut issuer_out = String::new();
    std::io::Read::read_to_string(&mut issuer.stdout.take().unwrap(), &mut issuer_out).unwrap();
    assert!(issuer_out.contains("received 2000  answered 2000"), "{issuer_out}");

    for text in [&stdout, &issuer_out, &line] {
        assert!(!text.contains("47617390010") && !text.contains("400099"), "a test PAN was printed");
    }
}

/// `sim-terminal --scenario cup-day` against a switch with a cup-pos listener and
/// `sim-issuer --silent-amount`: every step as expected, settlement balanced, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cup_day_scenario_from_the_command_line() {
    const TMK: &str = "0123456789ABCDEFFEDCBA9876543210";
    let mut issuer = Command::new(BIN)
        .args(["sim-issuer", "--listen", "127.0.0.1:0", "--threads", "1", "--silent-amount", "6800"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(issuer.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line.split_whitespace().find(|w| w.starts_with("127.0.0.1:")).unwrap().to_string();

    let dir = std::env::temp_dir().join(format!("isoswitch-cup-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys.toml");
    std::fs::write(
        &keys,
        format!(
            "[terminals]\n\"10000001\" = \"{TMK}\"\n[zones]\nbank = \"89ABCDEF0123456776543210FEDCBA98\"\n"
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let text = format!(
        "journal = {:?}\n[saf]\nkey_file = {:?}\n\
         [[listener]]\naddr = \"127.0.0.1:0\"\nspec = \"cup-pos\"\nframe = {{ tpdu = true, header_len = 6 }}\n\
         keys = {keys:?}\nmac = \"cup-ecb-des\"\n\
         [[issuer]]\nname = \"bank\"\npin_zone = \"bank\"\n[[issuer.link]]\naddr = \"{addr}\"\ndeadline_ms = 1500\n",
        dir.join("journal.db"),
        dir.join("saf.key"),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let cfg = isoswitch::config::Config::parse("cup-cli.toml", &text).unwrap();
    let sw = isoswitch::switch::serve(cfg, stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let switch = sw.listen_addrs()[0].to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "sim-terminal",
                "--connect",
                &switch,
                "--scenario",
                "cup-day",
                "--tmk",
                TMK,
                "--sign-on",
                "004",
                "--threads",
                "1",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("settlement: balanced"), "{stdout}");
    assert!(!stdout.contains("UNEXPECTED"), "{stdout}");
    assert!(!stdout.contains("6222021234567890128"), "the PAN was printed");
    stop.cancel();
    sw.join().await;
    let pid = issuer.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let _ = issuer.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Terminal and merchant ids that cannot work are refused before anything is sent, with
/// exit status 2 and the reason; cup-day is one terminal.
#[test]
fn sim_terminal_refuses_identities_that_cannot_work() {
    let cases: [(&[&str], &str); 4] = [
        (&["--merchant", "898340158120001"], "a merchant id needs the terminal ids"),
        (&["--terminal", "10000001,10000002", "--merchant", "A,B,C"], "3 merchant ids for 2 terminal ids"),
        (&["--terminal", "TERMINAL99"], "terminal id `TERMINAL99`"),
        (
            &[
                "--scenario",
                "cup-day",
                "--tmk",
                "0123456789ABCDEFFEDCBA9876543210",
                "--terminal",
                "10000001,10000002",
            ],
            "give one --terminal",
        ),
    ];
    for (args, want) in cases {
        // Port 9 (discard) on loopback: nothing may be sent, so nothing need listen.
        let out = Command::new(BIN)
            .args(["sim-terminal", "--connect", "127.0.0.1:9", "--count", "1"])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
