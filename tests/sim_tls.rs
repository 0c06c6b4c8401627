//! `isoswitch sim-terminal --tls` against a switch's TLS listener: with the CA file it gets
//! its answers; against a listener that verifies terminals it needs `--client-cert` and
//! `--client-key`, and without them (or with a certificate of another CA) it gets nothing
//! and says why. Bad TLS arguments exit 2 naming the file. Certificates are made with rcgen.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use isoswitch::config::Config;
use isoswitch::switch::serve;
use tokio_util::sync::CancellationToken;

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A switch whose listener speaks TLS with `cert`/`key` (verifying terminals against
/// `client_ca` when given), forwarding to an approving mock issuer.
async fn tls_switch(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> (isoswitch::switch::RunningSwitch, CancellationToken, MockIssuer) {
    let iss = MockIssuer::start(Mode::Approve).await;
    let client_ca = client_ca.map_or(String::new(), |ca| format!(", client_ca = \"{}\"", p(ca)));
    let text = config_text(&[iss.addr], 2000, "").replace(
        "idle_timeout_ms = 60000\n",
        &format!(
            "idle_timeout_ms = 60000\ntls = {{ cert = \"{}\", key = \"{}\"{client_ca} }}\n",
            p(cert),
            p(key)
        ),
    );
    let cfg = Config::parse("tls.toml", &text).unwrap();
    assert!(cfg.listeners[0].tls.is_some());
    let stop = CancellationToken::new();
    let sw = serve(cfg, stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    (sw, stop, iss)
}

/// Run `sim-terminal` at `addr` with `extra` flags: (exit code, stdout, stderr).
async fn sim_terminal(addr: SocketAddr, extra: &[&str]) -> (Option<i32>, String, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_isoswitch"))
        .args(["sim-terminal", "--connect", &addr.to_string(), "-C", "2", "-K", "4", "--count", "40"])
        .args(["--json", "--threads", "1", "--timeout-ms", "3000"])
        .args(extra)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("sim-terminal ran over 30 s")
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    (out.status.code(), o, e)
}

fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_terminal_over_tls_gets_its_answers() {
    let pki = Pki::new("sim-tls");
    let ca = pki.ca("estate");
    let other = pki.ca("stranger");
    let (cert, key) = pki.leaf(&ca, "switch");
    let (sw, stop, _iss) = tls_switch(&cert, &key, None).await;
    let at = sw.listen_addrs()[0];
    let ca_file = p(&ca.cert);

    let (code, out, err) =
        sim_terminal(at, &["--tls", "--ca-file", &ca_file, "--server-name", "localhost"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let json = last_json(&out);
    assert_eq!((json["sent"].as_u64(), json["received"].as_u64()), (Some(40), Some(40)), "{out}");
    assert_eq!(json["mismatches"], 0);
    assert!(json["rc"]["00"].as_u64().unwrap_or(0) > 0, "{out}");

    // The certificate names localhost, not the IP address the default name is taken from.
    let (code, out, err) = sim_terminal(at, &["--tls", "--ca-file", &ca_file]).await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(err.contains("TLS handshake with") && err.contains("not valid for name"), "{err}");
    // A CA that did not sign the switch's certificate.
    let stranger = p(&other.cert);
    let (code, _, err) =
        sim_terminal(at, &["--tls", "--ca-file", &stranger, "--server-name", "localhost"]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("UnknownIssuer"), "{err}");
    // Plain TCP to a TLS listener gets no answer.
    let (code, out, err) = sim_terminal(at, &[]).await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert_eq!(last_json(&out)["received"], 0);
    stop.cancel();
    sw.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_terminal_with_a_client_certificate_passes_mutual_tls() {
    let pki = Pki::new("sim-mtls");
    let ca = pki.ca("estate");
    let other = pki.ca("stranger");
    let (cert, key) = pki.leaf(&ca, "switch");
    let (term_cert, term_key) = pki.leaf(&ca, "terminal");
    let (rogue_cert, rogue_key) = pki.leaf(&other, "rogue");
    let (sw, stop, iss) = tls_switch(&cert, &key, Some(&ca.cert)).await;
    let at = sw.listen_addrs()[0];
    let ca_file = p(&ca.cert);
    let base = ["--tls", "--ca-file", &ca_file, "--server-name", "localhost"];

    let (tc, tk) = (p(&term_cert), p(&term_key));
    let with_cert = [&base[..], &["--client-cert", &tc, "--client-key", &tk]].concat();
    let (code, out, err) = sim_terminal(at, &with_cert).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(last_json(&out)["received"], 40, "{out}");
    let served = iss.requests.load(std::sync::atomic::Ordering::SeqCst);
    // Echo tests among the requests are answered by the switch itself.
    assert!(served > 0, "{served}");

    // Without a certificate, or with one of another CA: not served (TLS 1.3 reports the
    // refusal after the handshake, so the run sees its connections closed).
    let (rc, rk) = (p(&rogue_cert), p(&rogue_key));
    let rogue = [&base[..], &["--client-cert", &rc, "--client-key", &rk]].concat();
    for args in [&base[..], &rogue[..]] {
        let (code, out, err) = sim_terminal(at, args).await;
        assert_eq!(code, Some(1), "{args:?}\n{out}\n{err}");
        assert_eq!(last_json(&out)["received"], 0, "{out}");
    }
    assert_eq!(iss.requests.load(std::sync::atomic::Ordering::SeqCst), served);
    stop.cancel();
    sw.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_arguments_exit_2_naming_what_is_wrong() {
    let pki = Pki::new("sim-tls-args");
    let ca = pki.ca("estate");
    let (_, key) = pki.leaf(&ca, "switch");
    let at = dead_addr().await;
    let missing = pki.dir.join("missing.pem");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--tls".into()], "--ca-file"),
        (vec!["--ca-file".into(), p(&ca.cert)], "--tls"),
        (vec!["--tls".into(), "--ca-file".into(), p(&missing)], "missing.pem: cannot read"),
        (vec!["--tls".into(), "--ca-file".into(), p(&key)], "no certificate"),
        (
            vec!["--tls".into(), "--ca-file".into(), p(&ca.cert), "--client-cert".into(), p(&ca.cert)],
            "--client-key",
        ),
        (
            vec![
                "--tls".into(),
                "--ca-file".into(),
                p(&ca.cert),
                "--server-name".into(),
                "not a name!".into(),
            ],
            "not a valid TLS server name",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = sim_terminal(at, &args).await;
        assert_eq!(code, Some(2), "{args:?}\n{out}\n{err}");
        assert!(err.contains(want), "{args:?}: {err:?} should name {want:?}");
    }
}
