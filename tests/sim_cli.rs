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
