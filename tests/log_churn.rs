//! Logs an operator can read under churn or attack: a few hundred terminal connections
//! that drop mid-frame, send a frame over the maximum or a frame that does not decode
//! give one line per kind of event (the first), not one per connection; the events are
//! all counted in the metrics, and terminals are still served. An issuer that sends
//! requests (neither responses nor network management) is logged once and counted.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use isoswitch::frame::{Frame, FrameCodec, FrameConfig};
use isoswitch::iso::Message;
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

use common::*;
use isoswitch::switch::serve;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The process's log, captured once for the suites of this file.
fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(Logs::capture)
}

/// The value of an unlabelled counter in a Prometheus text body.
fn counter(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()))
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churned_connections_log_one_line_per_kind_of_event() {
    const N: usize = 200;
    let logs = logs();
    let iss = MockIssuer::start(Mode::Approve).await;
    let stop = CancellationToken::new();
    let sw = serve(config(&[iss.addr], 2000), stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let (listen, metrics) = (sw.listen_addrs()[0], sw.metrics_addr().unwrap());

    for i in 0..N {
        let mut s = TcpStream::connect(listen).await.unwrap();
        let bytes: &[u8] = match i % 3 {
            // Half a length header, then gone.
            0 => &[0x00],
            // A frame far over the maximum (2048).
            1 => &[0xFF, 0xFF, b'0'],
            // A whole frame that does not decode.
            _ => b"\x00\x04zzzz",
        };
        s.write_all(bytes).await.unwrap();
        s.shutdown().await.unwrap();
    }
    let mut done = 0;
    for _ in 0..200 {
        let body = http_get(metrics, "/metrics").await;
        done =
            counter(&body, "isoswitch_frame_errors_total") + counter(&body, "isoswitch_decode_errors_total");
        if done as usize >= N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done as usize >= N, "the switch saw {done} of the {N} bad connections");
    let mut t = Terminal::connect(listen).await;
    assert_eq!(t.exchange(&auth(PAN, 1, 100)).await.text(39).as_deref(), Some("00"));
    stop.cancel();
    sw.join().await;

    let text = logs.text();
    for event in [
        "terminal connection framing ended",
        "terminal frame over the maximum",
        "undecodable terminal message",
    ] {
        let n = text.lines().filter(|l| l.contains(event)).count();
        assert_eq!(n, 1, "{event:?} logged {n} times for {N} connections:\n{text}");
    }
    // The other suite of this file logs too: count the terminal connections' lines only.
    let conn_lines = text.lines().filter(|l| l.contains("acceptor::conn") && !l.contains("DEBUG")).count();
    assert!(conn_lines <= 3, "{conn_lines} lines for {N} churned connections:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_an_issuer_are_logged_once_and_counted() {
    const N: u32 = 30;
    let logs = logs();
    // An issuer that answers the sign-on, then sends requests of its own.
    let bank = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = bank.local_addr().unwrap();
    let stop = CancellationToken::new();
    let sw = serve(config(&[addr], 2000), stop.clone()).await.unwrap();
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(5), bank.accept()).await.unwrap().unwrap();
    let mut link = Framed::new(tcp, FrameCodec::new(FrameConfig::default()));
    let frame = tokio::time::timeout(Duration::from_secs(5), link.next()).await.unwrap().unwrap().unwrap();
    let mut sign_on = Message::decode(&ascii(), frame.body).unwrap();
    assert_eq!(sign_on.mti(), "0800");
    sign_on.set_mti("0810").unwrap();
    sign_on.set(39, "00").unwrap();
    link.send(Frame::plain(sign_on.to_bytes().unwrap())).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    for stan in 1..=N {
        let req = auth(PAN, stan, 100);
        link.send(Frame::plain(req.to_bytes().unwrap())).await.unwrap();
    }
    let metrics = sw.metrics_addr().unwrap();
    let want = format!("isoswitch_issuer_unexpected_messages_total{{issuer=\"bank\"}} {N}");
    let mut body = String::new();
    for _ in 0..100 {
        body = http_get(metrics, "/metrics").await;
        if body.contains(&want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(body.contains(&want), "{want} not in:\n{body}");
    stop.cancel();
    sw.join().await;
    let text = logs.text();
    let lines: Vec<&str> =
        text.lines().filter(|l| l.contains("neither a response nor network management")).collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("mti=\"0200\"") || lines[0].contains("mti=0200"), "{lines:?}");
    assert!(!text.contains(PAN), "a log line holds the PAN");
}
