//! What an operator reads when an issuer is down: one WARN when a link goes down, with the
//! reason (connection refused, sign-on declined with its response code, echo unanswered),
//! a reminder while it stays down — throttled, never one per retry — and one INFO when it
//! is up again, with how long it was down. Retries in between are DEBUG lines only.
//! The suites share the process's log; each looks at the lines of its own link address.

mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use isoswitch::config::Config;
use isoswitch::frame::{Frame, FrameCodec, FrameConfig};
use isoswitch::iso::Message;
use isoswitch::switch::serve;
use tokio::net::TcpListener;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use common::*;

fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(Logs::capture)
}

/// The log lines of `level` about the link to `addr` that contain `message`.
fn lines(level: &str, addr: SocketAddr, message: &str) -> Vec<String> {
    let at = format!("addr={addr}");
    logs()
        .text()
        .lines()
        .filter(|l| l.contains(&format!(" {level} ")) && l.contains(&at) && l.contains(message))
        .map(str::to_string)
        .collect()
}

/// Wait (at most `bound`) until `lines(level, addr, message)` is not empty.
async fn wait_line(level: &str, addr: SocketAddr, message: &str, bound: Duration) -> Vec<String> {
    let until = tokio::time::Instant::now() + bound;
    loop {
        let found = lines(level, addr, message);
        if !found.is_empty() || tokio::time::Instant::now() >= until {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config_with(links: &[SocketAddr], deadline_ms: u64, edit: &[(&str, &str)]) -> Config {
    let mut text = config_text(links, deadline_ms, "");
    for (from, to) in edit {
        assert!(text.contains(from), "{from:?} not in the test configuration");
        text = text.replace(from, to);
    }
    Config::parse("links.toml", &text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_link_warns_once_then_says_when_it_is_up_again() {
    logs();
    let addr = dead_addr().await;
    let stop = CancellationToken::new();
    let sw = serve(config_with(&[addr], 2000, &[]), stop.clone()).await.unwrap();
    // Backoff 50, 100, 200, 200 ... ms: several refused attempts within the wait.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attempts = lines("DEBUG", addr, "issuer link attempt failed");
    assert!(attempts.len() >= 3, "only {} retries seen: {attempts:#?}", attempts.len());
    let down = lines("WARN", addr, "issuer link down");
    assert_eq!(down.len(), 1, "one WARN for {} refused attempts: {down:#?}", attempts.len() + 1);
    assert!(down[0].contains("reason=\"connection refused\""), "{}", down[0]);
    assert!(down[0].contains("issuer=\"bank\""), "{}", down[0]);
    assert!(lines("WARN", addr, "still down").is_empty(), "the reminder is a minute away by default");

    // The issuer comes up on that address: one INFO, with how long it was down.
    let iss = MockIssuer::start_at(addr, Mode::Approve, None).await;
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let up = wait_line("INFO", addr, "issuer link up again", Duration::from_secs(2)).await;
    assert_eq!(up.len(), 1, "{up:#?}");
    let down_for_ms: u64 = up[0]
        .split("down_for_ms=")
        .nth(1)
        .and_then(|v| v.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no down_for_ms in {}", up[0]));
    assert!((1400..60_000).contains(&down_for_ms), "{}", up[0]);
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    assert_eq!(t.exchange(&auth(PAN, 1, 100)).await.text(39).as_deref(), Some("00"));
    assert_eq!(lines("WARN", addr, "issuer link down").len(), 1);
    stop.cancel();
    sw.join().await;
    iss.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_stays_down_is_reminded_at_the_interval_not_per_retry() {
    logs();
    let addr = dead_addr().await;
    let edit = [("reconnect_max_ms = 200\n", "reconnect_max_ms = 100\ndown_reminder_ms = 500\n")];
    let stop = CancellationToken::new();
    let sw = serve(config_with(&[addr], 2000, &edit), stop.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    stop.cancel();
    sw.join().await;
    let attempts = lines("DEBUG", addr, "issuer link attempt failed").len();
    let reminders = lines("WARN", addr, "issuer link still down");
    assert_eq!(lines("WARN", addr, "issuer link down").len(), 1);
    // 1.8 s at one reminder per 0.5 s: 2 or 3 (one more if the machine is slow to stop).
    assert!((2..=4).contains(&reminders.len()), "{reminders:#?}");
    assert!(attempts >= reminders.len() * 2, "{attempts} retries, {} reminders", reminders.len());
    for r in &reminders {
        assert!(r.contains("reason=\"connection refused\"") && r.contains("attempts="), "{r}");
    }
}

/// An issuer that answers every sign-on 0810 with response code 91, until `stop`.
async fn refusing_issuer(stop: CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
            };
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut link = Framed::new(tcp, FrameCodec::new(FrameConfig::default()));
                loop {
                    let frame = tokio::select! {
                        _ = stop.cancelled() => return,
                        f = link.next() => match f { Some(Ok(f)) => f, _ => return },
                    };
                    let Ok(mut m) = Message::decode(&ascii(), frame.body) else { return };
                    m.set_mti("0810").unwrap();
                    m.set(39, "91").unwrap();
                    if link.send(Frame::plain(m.to_bytes().unwrap())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_sign_on_is_warned_once_with_its_response_code() {
    logs();
    let bank = CancellationToken::new();
    let addr = refusing_issuer(bank.clone()).await;
    let stop = CancellationToken::new();
    let sw = serve(config_with(&[addr], 2000, &[]), stop.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!sw.wait_issuers_up(Duration::from_millis(10)).await);
    stop.cancel();
    sw.join().await;
    bank.cancel();
    let attempts = lines("DEBUG", addr, "issuer link attempt failed");
    assert!(attempts.len() >= 3, "{attempts:#?}");
    assert!(attempts.iter().all(|l| l.contains("sign-on declined")), "{attempts:#?}");
    let down = lines("WARN", addr, "issuer link down");
    assert_eq!(down.len(), 1, "{down:#?}");
    assert!(down[0].contains("reason=\"sign-on declined: 0810 with response code 91\""), "{}", down[0]);
    assert!(lines("INFO", addr, "issuer link up").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_echo_takes_the_link_down_with_that_reason() {
    logs();
    // Signs on, then answers nothing: the echo (every 200 ms of silence) goes unanswered
    // for the link's deadline (400 ms), the link is closed and signs on again.
    let iss = MockIssuer::start(Mode::Mute).await;
    let addr = iss.addr;
    let edit = [("echo_interval_ms = 60000", "echo_interval_ms = 200")];
    let stop = CancellationToken::new();
    let sw = serve(config_with(&[addr], 400, &edit), stop.clone()).await.unwrap();
    let down = wait_line("WARN", addr, "issuer link down", Duration::from_secs(5)).await;
    assert_eq!(down.len(), 1, "{down:#?}");
    assert!(down[0].contains("reason=\"echo unanswered after 400 ms\""), "{}", down[0]);
    assert_eq!(lines("INFO", addr, "issuer link up issuer=").len(), 1, "up at start, before the echo failed");
    let again = wait_line("INFO", addr, "issuer link up again", Duration::from_secs(5)).await;
    assert_eq!(again.len(), 1, "{again:#?}");
    stop.cancel();
    sw.join().await;
    iss.stop();
}
