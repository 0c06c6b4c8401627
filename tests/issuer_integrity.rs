//! Issuer replies are checked before anyone believes them, over real sockets on 127.0.0.1
//! with a hand-written hostile issuer: an approval of another amount, a reply without 39,
//! an unknown code, a wrong MTI, another terminal, STAN or currency all give the terminal
//! 96; the journal row is a decline without the issuer's authorisation code; an approval
//! the switch refused is reversed (a 0400 whose field 90 names the STAN the switch sent);
//! the refusals are counted in `isoswitch_issuer_reply_rejected_total`. And whatever an
//! issuer sends back, track data, PIN block, security control and MACs never reach a
//! terminal, while a good reply still approves with the issuer's 38.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PAN, Terminal, ascii, auth, http_get};
use futures_util::{SinkExt, StreamExt};
use isoswitch::config::Config;
use isoswitch::frame::{Frame, FrameCodec, FrameConfig};
use isoswitch::iso::Message;
use isoswitch::switch::{RunningSwitch, serve};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// How the hostile issuer spoils its approval of a financial request (by its amount).
type Tamper = fn(&mut Message);

/// What the hostile issuer saw.
#[derive(Default)]
struct Seen {
    /// Field 11 of each financial request (the switch's STAN), by amount.
    stans: Vec<(u64, String)>,
    /// (MTI, field 90) of each reversal write.
    reversals: Vec<(String, String)>,
}

/// A bank host that approves every financial request (38 = HOST42), spoils the approval
/// as `tamper` says for its amount, and acknowledges every reversal with a 0410.
async fn hostile(tamper: fn(u64) -> Option<Tamper>) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let mut io = Framed::new(sock, FrameCodec::new(FrameConfig::default()));
                while let Some(Ok(f)) = io.next().await {
                    let Ok(req) = Message::decode(&ascii(), f.body) else { continue };
                    let mut r = req.clone();
                    r.remove(35).remove(52);
                    match req.mti() {
                        "0800" => r.set_mti("0810").unwrap(),
                        "0200" | "0100" => {
                            let amount = req.amount().unwrap_or(0);
                            s.lock().unwrap().stans.push((amount, req.text(11).unwrap().into_owned()));
                            r.set_mti(if req.mti() == "0200" { "0210" } else { "0110" }).unwrap();
                            r.set(38, "HOST42").unwrap();
                        }
                        "0400" | "0401" => {
                            let f90 = req.text(90).map(|t| t.into_owned()).unwrap_or_default();
                            s.lock().unwrap().reversals.push((req.mti().to_string(), f90));
                            r.set_mti("0410").unwrap();
                        }
                        _ => continue,
                    }
                    r.set(39, "00").unwrap();
                    if (r.mti() == "0210" || r.mti() == "0110")
                        && let Some(t) = tamper(req.amount().unwrap_or(0))
                    {
                        t(&mut r);
                    }
                    if io.send(Frame::plain(r.to_bytes().unwrap())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("isoswitch-integrity-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A switch with a journal and store-and-forward, one issuer `name` at `bank`.
async fn switch(
    journal: &Path,
    name: &str,
    bank: SocketAddr,
    match_key: &str,
) -> (RunningSwitch, CancellationToken) {
    // A sign-on (0800) carries no RRN: a link matching replies by RRN does not sign on.
    let sign_on = !match_key.contains("37");
    let text = format!(
        "journal = {journal:?}\nmetrics = \"127.0.0.1:0\"\n[saf]\nretry_min_ms = 100\nretry_max_ms = 400\n\
         [[listener]]\naddr = \"127.0.0.1:0\"\n\
         [[issuer]]\nname = \"{name}\"\nmatch_key = {match_key}\n\
         [[issuer.link]]\naddr = \"{bank}\"\ndeadline_ms = 2000\necho_interval_ms = 60000\n\
         sign_on = {sign_on}\n"
    );
    let stop = CancellationToken::new();
    let sw = serve(Config::parse("integrity.toml", &text).unwrap(), stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await, "the issuer link came up");
    (sw, stop)
}

/// The value of `isoswitch_issuer_reply_rejected_total{issuer, reason}` (0 when absent).
async fn rejected(sw: &RunningSwitch, issuer: &str, reason: &str) -> u64 {
    let body = http_get(sw.metrics_addr().unwrap(), "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with("isoswitch_issuer_reply_rejected_total{"))
        .filter(|l| {
            l.contains(&format!("issuer=\"{issuer}\"")) && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Wait (bounded) until the issuer has seen a reversal; returns them all.
async fn reversals(seen: &Mutex<Seen>, want: usize) -> Vec<(String, String)> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let r = seen.lock().unwrap().reversals.clone();
        if r.len() >= want || Instant::now() > until {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tamper_amount(amount: u64) -> Option<Tamper> {
    // An issuer approving 0.01 for a 50.00 request.
    (amount == 5_000).then_some(|r: &mut Message| _ = r.set(4, "000000000001").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_of_another_amount_is_declined_journalled_and_reversed() {
    let (bank, seen) = hostile(tamper_amount).await;
    let d = dir("amount");
    let journal = d.join("journal.db");
    let (sw, stop) = switch(&journal, "amount", bank, "[\"11\"]").await;
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;

    let req = auth(PAN, 31, 5_000);
    let rep = t.exchange(&req).await;
    assert_eq!(rep.text(39).as_deref(), Some("96"), "an approval of 0.01 for 50.00 is not believed");
    assert_eq!(rep.raw(4), req.raw(4), "the terminal's amount, never the issuer's");
    assert!(!rep.has(38), "no authorisation code for a refused reply");
    // An honest approval on the same link still goes through.
    let ok = t.exchange(&auth(PAN, 32, 4_000)).await;
    assert_eq!(ok.text(39).as_deref(), Some("00"));
    assert_eq!(ok.text(38).as_deref(), Some("HOST42"));

    let switch_stan = seen.lock().unwrap().stans.iter().find(|(a, _)| *a == 5_000).unwrap().1.clone();
    let revs = reversals(&seen, 1).await;
    assert_eq!(revs.len(), 1, "exactly the refused approval is reversed: {revs:?}");
    let (mti, f90) = &revs[0];
    assert_eq!(mti, "0400");
    assert_eq!(f90.len(), 42, "{f90}");
    assert_eq!(&f90[..4], "0200");
    assert_eq!(&f90[4..10], switch_stan, "field 90 names the STAN the switch sent");
    assert_eq!(&f90[10..20], "1124103000", "and the original's field 7");
    assert_eq!(rejected(&sw, "amount", "echo").await, 1);
    stop.cancel();
    sw.join().await;

    let c = rusqlite::Connection::open(&journal).unwrap();
    let (rc, status, auth, fee, sw_stan): (String, Option<String>, Option<String>, i64, Option<String>) = c
        .query_row(
            "SELECT rc, status, auth_code, fee, switch_stan FROM transactions WHERE stan = '000031'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(rc, "96");
    assert_ne!(status.as_deref(), Some("approved"), "{status:?}");
    assert_eq!(auth, None, "the issuer's authorisation code stays out of the row");
    assert_eq!(fee, 0);
    assert_eq!(sw_stan.as_deref(), Some(switch_stan.as_str()));
    let _ = std::fs::remove_dir_all(&d);
}

/// (amount, how the approval is spoilt, the reason counted).
const SPOILT: &[(u64, Tamper, &str)] = &[
    (101, |r| _ = r.remove(39), "missing_rc"),
    (102, |r| _ = r.set(39, "ZZ").unwrap(), "unknown_rc"),
    (103, |r| r.set_mti("0230").unwrap(), "mti"),
    (104, |r| _ = r.set(41, "TERM0666").unwrap(), "echo"),
    (105, |r| _ = r.set(49, "840").unwrap(), "echo"),
    (106, |r| _ = r.remove(4), "missing_echo"),
    (107, |r| _ = r.set(2, "5413330089600010").unwrap(), "echo"),
];

fn tamper_table(amount: u64) -> Option<Tamper> {
    SPOILT.iter().find(|(a, _, _)| *a == amount).map(|(_, t, _)| *t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_that_are_not_believed_get_96_and_are_counted() {
    let (bank, seen) = hostile(tamper_table).await;
    let d = dir("table");
    let (sw, stop) = switch(&d.join("journal.db"), "table", bank, "[\"11\"]").await;
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    for (i, (amount, _, reason)) in SPOILT.iter().enumerate() {
        let before = rejected(&sw, "table", reason).await;
        let rep = t.exchange(&auth(PAN, 200 + i as u32, *amount)).await;
        assert_eq!(rep.text(39).as_deref(), Some("96"), "{reason} (amount {amount})");
        assert_eq!(rep.mti(), "0210");
        assert!(!rep.has(38), "{reason}");
        assert_eq!(rejected(&sw, "table", reason).await, before + 1, "{reason} counted");
    }
    // Each spoilt approval may have moved money: each is reversed once.
    let revs = reversals(&seen, SPOILT.len()).await;
    let mut f90s: Vec<_> = revs.iter().map(|(_, f)| f.clone()).collect();
    f90s.sort();
    f90s.dedup();
    assert_eq!(f90s.len(), SPOILT.len(), "{revs:?}");
    stop.cancel();
    sw.join().await;
    let _ = std::fs::remove_dir_all(&d);
}

fn tamper_stan(amount: u64) -> Option<Tamper> {
    (amount == 777).then_some(|r: &mut Message| _ = r.set(11, "999999").unwrap())
}

/// Replies matched by RRN (not STAN) can carry another STAN: not believed, and the
/// reversal names the STAN the switch sent, not the one the issuer made up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_with_another_stan_is_refused_and_the_sent_one_reversed() {
    let (bank, seen) = hostile(tamper_stan).await;
    let d = dir("stan");
    let (sw, stop) = switch(&d.join("journal.db"), "stan", bank, "[\"37\"]").await;
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    let rep = t.exchange(&auth(PAN, 41, 777)).await;
    assert_eq!(rep.text(39).as_deref(), Some("96"));
    assert_eq!(rep.stan(), Some(41), "the terminal's own STAN comes back");
    assert_eq!(rejected(&sw, "stan", "echo").await, 1);
    let switch_stan = seen.lock().unwrap().stans[0].1.clone();
    assert_ne!(switch_stan, "999999");
    let revs = reversals(&seen, 1).await;
    assert_eq!(revs.len(), 1, "{revs:?}");
    assert_eq!(&revs[0].1[4..10], switch_stan);
    stop.cancel();
    sw.join().await;
    let _ = std::fs::remove_dir_all(&d);
}

fn tamper_secrets(_: u64) -> Option<Tamper> {
    Some(|r| {
        r.set(35, "4761739001010119=30121010000000000000").unwrap();
        r.set(36, "011234567890123445=000978100000000****").unwrap();
        r.set(45, "B4761739001010119^CARDHOLDER/TEST^3012101").unwrap();
        r.set(52, "0123456789ABCDEF").unwrap();
        r.set(53, "2600000000000000").unwrap();
        r.set(64, "0011223344556677").unwrap();
        r.set(128, "0011223344556677").unwrap();
        r.set(48, "ISSUER PRIVATE").unwrap();
        r.set(54, "1002156C000000010000").unwrap();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_pin_and_mac_from_an_issuer_never_reach_the_terminal() {
    let (bank, seen) = hostile(tamper_secrets).await;
    let d = dir("secrets");
    let (sw, stop) = switch(&d.join("journal.db"), "secrets", bank, "[\"11\"]").await;
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    let mut req = auth(PAN, 51, 2_500);
    req.set(35, "4761739001010119=30121010000000000000").unwrap();
    req.set(52, "FEDCBA9876543210").unwrap();
    let rep = t.exchange(&req).await;
    assert_eq!(rep.text(39).as_deref(), Some("00"), "a good reply still approves");
    assert_eq!(rep.text(38).as_deref(), Some("HOST42"), "with the issuer's authorisation code");
    assert_eq!(rep.text(54).as_deref(), Some("1002156C000000010000"), "an allowed issuer field passes");
    common::assert_echoed(&req, &rep);
    for n in [35, 36, 45, 48, 52, 53, 64, 128] {
        assert!(!rep.has(n), "field {n} of the issuer's reply reached the terminal");
    }
    assert!(seen.lock().unwrap().reversals.is_empty(), "nothing to reverse");
    stop.cancel();
    sw.join().await;
    let _ = std::fs::remove_dir_all(&d);
}
