//! The composition root (`isoswitch::switch`): a start refused for a port it cannot bind
//! leaves nothing running (the terminal listener's port is free again), and the admin
//! API and the metrics port, both started by the root, answer `/ready` from the same
//! state: 503 naming the issuer without a link, then 200 once its link is up.

mod common;

use std::time::Duration;

use common::{MockIssuer, Mode, config_text, dead_addr, http_get};
use isoswitch::config::Config;
use isoswitch::switch::{Error, serve};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "0123456789abcdef0123";

fn with_admin(admin: std::net::SocketAddr, text: &str) -> Config {
    let text = format!("admin = \"{admin}\"\nadmin_token = \"{TOKEN}\"\n{text}");
    Config::parse("root.toml", &text).unwrap()
}

/// GET with the bearer token; returns the whole answer (status line, head, body).
async fn admin_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_refused_for_the_admin_port_leaves_no_listener_running() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = taken.local_addr().unwrap();
    let listen = dead_addr().await;
    let text = config_text(&[dead_addr().await], 1000, "")
        .replace("[[listener]]\naddr = \"127.0.0.1:0\"", &format!("[[listener]]\naddr = \"{listen}\""));
    let stop = CancellationToken::new();
    let err = match serve(with_admin(admin, &text), stop.clone()).await {
        Ok(_) => panic!("started with its admin port taken"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Bind { addr, .. } if addr == admin), "{err:?}");
    assert!(err.to_string().starts_with(&format!("cannot bind {admin}: ")), "{err}");
    // Nothing accepts terminals on the configured port: it can be bound again.
    let again = TcpListener::bind(listen).await;
    assert!(again.is_ok(), "the terminal listener is still held after a refused start: {again:?}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_operations_ports_say_ready_from_the_same_state() {
    let bank = dead_addr().await;
    let admin = dead_addr().await;
    let stop = CancellationToken::new();
    let sw = serve(with_admin(admin, &config_text(&[bank], 1000, "")), stop.clone()).await.unwrap();
    assert_eq!(sw.admin_addr(), Some(admin));
    let metrics = sw.metrics_addr().unwrap();

    let a = http_get(admin, "/ready").await;
    assert!(a.starts_with("HTTP/1.1 503"), "{a}");
    assert!(a.contains("\"issuers_down\":[\"bank\"]"), "{a}");
    let m = http_get(metrics, "/ready").await;
    assert!(m.starts_with("HTTP/1.1 503"), "{m}");
    let unknown = admin_get(admin, "/issuers/nobody/standin").await;
    assert!(unknown.starts_with("HTTP/1.1 404") && unknown.contains("no such issuer"), "{unknown}");

    // The issuer comes up where its link points; the link reconnects (backoff at most 200 ms).
    let iss = MockIssuer::start_at(bank, Mode::Approve, None).await;
    assert!(sw.wait_issuers_up(Duration::from_secs(10)).await, "the link did not come up");
    let a = http_get(admin, "/ready").await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    let m = http_get(metrics, "/ready").await;
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    let known = admin_get(admin, "/issuers/bank/standin").await;
    assert!(known.starts_with("HTTP/1.1 200"), "{known}");
    assert!(known.contains("\"policy\":false") && known.contains("\"links_up\":1"), "{known}");

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), sw.join()).await.unwrap();
    iss.stop();
}
