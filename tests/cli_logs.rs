//! What `isoswitch run` writes to stderr when it is not a terminal: plain text without
//! colour codes, or with `--log-format json` one JSON object per line; and a PostgreSQL
//! journal's schema notices ("already exists, skipping") are not logged at all (the PostgreSQL
//! half runs with `ISOSWITCH_TEST_PG` and is ignored when it is unset).

#[path = "common/pg.rs"]
mod pg;
#[path = "common/process.rs"]
mod process;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Run the switch with `extra` flags on `config_text` (a listener is added) until it
/// listens, stop it, and return its stderr.
async fn run_once(tag: &str, config_text: &str, extra: &[&str]) -> String {
    let dir = process::TempDir::new(tag);
    let listen = process::free_port().await;
    let config = dir.path.join("switch.toml");
    std::fs::write(&config, format!("{config_text}[[listener]]\naddr = \"{listen}\"\n")).unwrap();
    let log = dir.path.join("stderr.log");
    let err = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_isoswitch"))
        .args(["run", "--config"])
        .arg(&config)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap();
    let mut switch = process::Switch(child);
    process::wait_listening(listen, &mut switch).await;
    process::signal(&switch, "TERM");
    assert!(process::wait_exit(&mut switch, Duration::from_secs(20)).await.is_some_and(|s| s.success()));
    read(&log)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

const NO_ISSUER: &str =
    "journal = \"off\"\n[[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"127.0.0.1:9\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_to_a_file_carry_no_colour_codes() {
    let text = run_once("logs-text", NO_ISSUER, &[]).await;
    assert!(text.contains("switch started"), "{text}");
    assert!(!text.contains('\u{1b}'), "no ANSI escape codes in a file:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let text = run_once("logs-json", NO_ISSUER, &["--log-format", "json"]).await;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let started = lines
        .iter()
        .find(|v| v["fields"]["message"] == "switch started")
        .unwrap_or_else(|| panic!("no start line: {text}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["target"], "isoswitch::switch");
    assert!(started["timestamp"].is_string());
    assert!(!text.contains('\u{1b}'));
    // A bad value is refused by clap, naming the choices.
    let out =
        Command::new(env!("CARGO_BIN_EXE_isoswitch")).args(["run", "--log-format", "xml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(isoswitch_no_pg, ignore = "needs ISOSWITCH_TEST_PG (see .ci/pg-setup)")]
async fn a_postgres_journal_logs_no_schema_notices() {
    let base = pg::base();
    let name = format!("isoswitch_logs_{}", std::process::id());
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let cfg = format!(
        "journal_url = \"{base} dbname={name}\"\n[[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"127.0.0.1:9\"\n"
    );
    // The second start finds every table: that is when the server would say "skipping".
    let _ = run_once("logs-pg1", &cfg, &[]).await;
    let text = run_once("logs-pg2", &cfg, &[]).await;
    assert!(text.contains("switch started"), "{text}");
    assert!(!text.contains("NOTICE") && !text.contains("skipping"), "{text}");
    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}
