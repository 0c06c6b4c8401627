//! The admin API of a switch process (`isoswitch run --config FILE`) over real sockets:
//! an unknown terminal is 404, a wrong method 405 with `Allow`, a bad date 400, a reload
//! answers its counts as JSON numbers; a suspension survives a restart and a state file
//! edited by hand is applied at the next reload; every call is in the audit log (who,
//! what, when), and the log never names a terminal the registry does not know.

mod common;
#[path = "common/process.rs"]
mod process;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{MockIssuer, Mode, Terminal, ascii};
use isoswitch::iso::Message;
use process::{ADMIN_TOKEN, TempDir};
use serde_json::Value;

const RESTAURANT_TID: &str = "10000001";
const RESTAURANT_MID: &str = "898340158120001";
/// A Luhn-valid debit card of the example estate's issuer-a.
const DEBIT: &str = "6222020000000015";

fn purchase(tid: &str, mid: &str, stan: u32) -> Message {
    let mut m = Message::new(ascii(), "0200").unwrap();
    m.set(2, DEBIT).unwrap();
    m.set(3, "000000").unwrap();
    m.set_number(4, 5_000).unwrap();
    m.set(7, &format!("1124{:06}", 100_000 + stan)).unwrap();
    m.set_number(11, u64::from(stan)).unwrap();
    m.set(12, "103000").unwrap();
    m.set(13, "1124").unwrap();
    m.set(37, &format!("R{stan:011}")).unwrap();
    m.set(41, tid).unwrap();
    m.set(42, mid).unwrap();
    m.set(49, "156").unwrap();
    m
}

/// One request: (status, head, body); with the suites' token unless `token` is false.
async fn call(addr: SocketAddr, method: &str, path: &str, token: bool) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = if token { format!("Authorization: Bearer {ADMIN_TOKEN}\r\n") } else { String::new() };
        s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let out = tokio::time::timeout(Duration::from_secs(10), io).await.expect("admin API answers");
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.split_whitespace().nth(1).unwrap().parse().unwrap(), head.to_ascii_lowercase(), body.to_string())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

async fn rc(t: &mut Terminal, stan: u32) -> String {
    t.exchange(&purchase(RESTAURANT_TID, RESTAURANT_MID, stan))
        .await
        .text(39)
        .unwrap_or_default()
        .into_owned()
}

/// The text without terminal colour sequences (ESC [ ... m).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for c in it.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn stop(mut switch: process::Switch) {
    process::signal(&switch, "TERM");
    assert!(process::wait_exit(&mut switch, Duration::from_secs(20)).await.is_some(), "the switch stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_are_checked_persist_across_a_restart_and_are_audited() {
    let (a, b) = (MockIssuer::start(Mode::Approve).await, MockIssuer::start(Mode::Approve).await);
    let dir = TempDir::new("admin-api");
    let (listen, admin) = (process::free_port().await, process::free_port().await);
    let journal = dir.path.join("journal.db");
    let rules_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/rules");
    let rules = dir.path.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for f in std::fs::read_dir(&rules_src).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), rules.join(f.file_name())).unwrap();
    }
    let config = dir.path.join("switch.toml");
    std::fs::write(
        &config,
        format!(
            "journal = {journal:?}\nrules = {rules:?}\npan_key = \"00112233445566778899aabbccddeeff\"\n\
             admin = \"{admin}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             [[listener]]\naddr = \"{listen}\"\n\
             [[issuer]]\nname = \"issuer-a\"\n[[issuer.link]]\naddr = \"{}\"\ndeadline_ms = 2000\n\
             [[issuer]]\nname = \"issuer-b\"\n[[issuer.link]]\naddr = \"{}\"\ndeadline_ms = 2000\n",
            a.addr, b.addr
        ),
    )
    .unwrap();
    let log = dir.path.join("switch.log");
    let switch = process::start_ready(&config, &log, listen, admin).await;
    let mut t = Terminal::connect(listen).await;
    assert_eq!(rc(&mut t, 1).await, "00");

    // Unknown terminal: 404 with a JSON error, nothing changed.
    let (status, _, body) = call(admin, "POST", "/terminals/NOSUCH/suspend", true).await;
    assert_eq!(status, 404, "{body}");
    assert!(json(&body)["error"].is_string());
    // A PAN typed where a terminal id goes: refused, and (below) never in the log.
    assert_eq!(call(admin, "POST", &format!("/terminals/{DEBIT}/suspend"), true).await.0, 404);
    // Wrong method on a known path: 405 with Allow; an unknown path stays 404.
    let (status, head, body) = call(admin, "GET", "/rules/reload", true).await;
    assert_eq!(status, 405, "{body}");
    assert!(head.contains("\r\nallow: post"), "{head}");
    assert!(json(&body)["error"].is_string());
    let (status, head, _) = call(admin, "POST", "/transactions?rrn=R1", true).await;
    assert!(status == 405 && head.contains("\r\nallow: get"), "{head}");
    assert_eq!(call(admin, "GET", "/nothing", true).await.0, 404);
    // A date that is not YYYYMMDD: 400.
    let q = format!("/transactions?terminal={RESTAURANT_TID}&stan=000001&date=");
    for bad in ["2026-12-07", "20261332", "1207"] {
        let (status, _, body) = call(admin, "GET", &format!("{q}{bad}"), true).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let today = isoswitch::journal::business_date(isoswitch::time::now(), 480);
    let (status, _, body) = call(admin, "GET", &format!("{q}{today}"), true).await;
    assert_eq!((status, json(&body)[0]["stan"].as_str()), (200, Some("000001")), "{body}");
    // Reload: counts as numbers.
    let (status, _, body) = call(admin, "POST", "/rules/reload", true).await;
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert!(v["reloaded"]["terminals"].as_u64().is_some_and(|n| n > 0), "{body}");
    assert!(v["reloaded"]["merchants"].is_u64() && v["reloaded"]["routes"].is_u64(), "{body}");

    // Suspend: 58, persisted, and still 58 after a restart.
    let (status, _, body) = call(admin, "POST", &format!("/terminals/{RESTAURANT_TID}/suspend"), true).await;
    assert_eq!((status, json(&body)["changed"].as_bool()), (200, Some(true)), "{body}");
    assert_eq!(rc(&mut t, 2).await, "58");
    assert_eq!(call(admin, "POST", &format!("/terminals/{RESTAURANT_TID}/activate"), false).await.0, 401);
    drop(t);
    stop(switch).await;
    let state = dir.path.join("journal.db.suspensions.json");
    assert!(std::fs::read_to_string(&state).unwrap().contains(RESTAURANT_TID));

    let switch = process::start_ready(&config, &log, listen, admin).await;
    let mut t = Terminal::connect(listen).await;
    assert_eq!(rc(&mut t, 3).await, "58", "the suspension survived the restart");
    let (status, _, body) = call(admin, "POST", &format!("/terminals/{RESTAURANT_TID}/activate"), true).await;
    assert_eq!((status, json(&body)["changed"].as_bool()), (200, Some(true)), "{body}");
    assert_eq!(rc(&mut t, 4).await, "00");
    // The file is the truth: edited by hand, it is applied at the next reload.
    std::fs::write(&state, format!("{{\"suspended\": [\"{RESTAURANT_TID}\"]}}\n")).unwrap();
    assert_eq!(call(admin, "POST", "/rules/reload", true).await.0, 200);
    assert_eq!(rc(&mut t, 5).await, "58", "the state file is applied on reload");
    drop(t);
    stop(switch).await;

    // The audit log: one INFO line per call with the token, who, what and when.
    let text = strip_ansi(&std::fs::read_to_string(&log).unwrap());
    let audit: Vec<&str> = text.lines().filter(|l| l.contains("isoswitch::audit")).collect();
    let has = |what: &str, extra: &str| {
        audit.iter().any(|l| {
            l.contains("INFO") && l.contains("who=\"admin\"") && l.contains(what) && l.contains(extra)
        })
    };
    assert!(
        has("what=\"/terminals/{terminal}/suspend\"", &format!("terminal=\"{RESTAURANT_TID}\"")),
        "{audit:#?}"
    );
    assert!(has("what=\"/terminals/{terminal}/activate\"", "detail=\"activated\""), "{audit:#?}");
    assert!(has("what=\"/rules/reload\"", "status=200"), "{audit:#?}");
    assert!(has("what=\"/terminals/{terminal}/suspend\"", "status=404"), "{audit:#?}");
    assert!(audit.iter().any(|l| l.contains("WARN") && l.contains("status=401")), "{audit:#?}");
    assert!(audit.iter().all(|l| l.contains(" at=20")), "every line says when: {audit:#?}");
    assert!(!text.contains(DEBIT), "a card number typed as a terminal id is never logged");
}
