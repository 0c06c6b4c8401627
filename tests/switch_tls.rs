//! TLS on both sides of the switch: terminals connect over TLS (with client-certificate
//! verification), the switch connects to the issuer over mutual TLS; certificates are
//! made in the test with rcgen. A client certificate from an unknown CA is refused on
//! either side.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use isoswitch::config::Config;
use isoswitch::switch::serve;
use tokio_util::sync::CancellationToken;

fn p(path: &std::path::Path) -> String {
    path.display().to_string().replace('\\', "/")
}

fn issuer_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: &std::path::Path,
) -> tokio_rustls::TlsAcceptor {
    let sc = isoswitch::tls::server_config(cert, key, Some(client_ca)).unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(sc))
}

async fn tls_terminal(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> std::io::Result<Terminal> {
    let cc = isoswitch::tls::client_config(ca, client).unwrap();
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cc));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = conn.connect(name, tcp).await?;
    Ok(Terminal::over(Box::new(tls)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_both_sides_with_client_certificates() {
    let pki = Pki::new("tls");
    let ca = pki.ca("estate");
    let other = pki.ca("stranger");
    let (switch_cert, switch_key) = pki.leaf(&ca, "switch");
    let (bank_cert, bank_key) = pki.leaf(&ca, "bank");
    let (term_cert, term_key) = pki.leaf(&ca, "terminal");
    let (rogue_cert, rogue_key) = pki.leaf(&other, "rogue");

    let iss = MockIssuer::start_at(
        "127.0.0.1:0".parse().unwrap(),
        Mode::Approve,
        Some(issuer_acceptor(&bank_cert, &bank_key, &ca.cert)),
    )
    .await;
    let text = format!(
        "{}\n",
        config_text(
            &[iss.addr],
            2000,
            &format!(
                "tls = {{ ca = \"{}\", server_name = \"localhost\", cert = \"{}\", key = \"{}\" }}",
                p(&ca.cert),
                p(&switch_cert),
                p(&switch_key)
            )
        )
    )
    .replace(
        "idle_timeout_ms = 60000\n",
        &format!(
            "idle_timeout_ms = 60000\ntls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}\n",
            p(&switch_cert),
            p(&switch_key),
            p(&ca.cert)
        ),
    );
    let cfg = Config::parse("tls.toml", &text).unwrap();
    assert!(cfg.listeners[0].tls.is_some() && cfg.issuers[0].links[0].tls.is_some());
    let stop = CancellationToken::new();
    let sw = serve(cfg, stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await, "mutual TLS link to the issuer");
    let at = sw.listen_addrs()[0];

    let mut t = tls_terminal(at, &ca.cert, Some((&term_cert, &term_key))).await.unwrap();
    let req = auth(PAN, 42, 1200);
    let rep = t.exchange(&req).await;
    assert_echoed(&req, &rep);
    assert_eq!(rep.text(39).as_deref(), Some("00"));

    // A terminal certificate from another CA, or none, gets no service.
    for client in [Some((rogue_cert.as_path(), rogue_key.as_path())), None] {
        if let Ok(mut bad) = tls_terminal(at, &ca.cert, client).await {
            // TLS 1.3 reports the refusal on the first read.
            let _ = bad.send_raw(&req.to_bytes().unwrap()).await;
            assert!(bad.recv().await.is_none());
        }
    }
    // The good terminal is still served.
    assert_eq!(t.exchange(&auth(PAN, 43, 100)).await.text(39).as_deref(), Some("00"));
    stop.cancel();
    sw.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_refusing_the_switch_certificate_leaves_the_link_down() {
    let pki = Pki::new("tls-refused");
    let ca = pki.ca("estate");
    let other = pki.ca("stranger");
    let (bank_cert, bank_key) = pki.leaf(&ca, "bank");
    let (rogue_cert, rogue_key) = pki.leaf(&other, "rogue");
    let iss = MockIssuer::start_at(
        "127.0.0.1:0".parse().unwrap(),
        Mode::Approve,
        Some(issuer_acceptor(&bank_cert, &bank_key, &ca.cert)),
    )
    .await;
    let link_tls = format!(
        "tls = {{ ca = \"{}\", server_name = \"localhost\", cert = \"{}\", key = \"{}\" }}",
        p(&ca.cert),
        p(&rogue_cert),
        p(&rogue_key)
    );
    let cfg = Config::parse("tls.toml", &config_text(&[iss.addr], 2000, &link_tls)).unwrap();
    let stop = CancellationToken::new();
    let sw = serve(cfg, stop.clone()).await.unwrap();
    assert!(!sw.wait_issuers_up(Duration::from_millis(700)).await);
    assert!(iss.stats.connections.load(std::sync::atomic::Ordering::SeqCst) >= 1, "it kept trying");
    assert_eq!(iss.stats.sign_ons.load(std::sync::atomic::Ordering::SeqCst), 0);
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    assert_eq!(t.exchange(&auth(PAN, 1, 100)).await.text(39).as_deref(), Some("91"));
    stop.cancel();
    sw.join().await;
}
