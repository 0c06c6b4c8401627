//! Reversals through the running switch, on 127.0.0.1: a request the issuer never answers
//! gets 68 and leaves exactly one durable reversal in the store-and-forward queue (with no
//! card number in clear); a terminal's reversal of a known approval is queued once for the
//! issuer and marks the original reversed, a repeat of it is not sent again, and the
//! reversal of an unknown original is acknowledged without bothering the issuer.

mod common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{MockIssuer, Mode, PAN, Terminal, auth};
use isoswitch::config::Config;
use isoswitch::iso::Message;
use isoswitch::switch::serve;
use tokio_util::sync::CancellationToken;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("isoswitch-rev-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(journal: &std::path::Path, issuer: std::net::SocketAddr, deadline_ms: u64) -> Config {
    let text = format!(
        "journal = {journal:?}\n[saf]\nretry_min_ms = 100\nretry_max_ms = 400\n\
         [[listener]]\naddr = \"127.0.0.1:0\"\n\
         [[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"{issuer}\"\ndeadline_ms = {deadline_ms}\n"
    );
    Config::parse("rev.toml", &text).unwrap()
}

fn reversal_of(req: &Message) -> Message {
    let mut r = req.clone();
    r.set_mti("0400").unwrap();
    let f90 = format!("0200{:06}{}{:022}", req.stan().unwrap(), req.text(7).unwrap(), 0);
    r.set(90, &f90).unwrap();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_leaves_one_durable_reversal() {
    let issuer = MockIssuer::start(Mode::Silent).await;
    let d = dir("timeout");
    let journal = d.join("journal.db");
    let stop = CancellationToken::new();
    let sw = serve(config(&journal, issuer.addr, 200), stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    assert_eq!(t.exchange(&auth(PAN, 7, 4_200)).await.text(39).as_deref(), Some("68"));
    stop.cancel();
    sw.join().await;

    let c = rusqlite::Connection::open(&journal).unwrap();
    let n: i64 = c.query_row("SELECT count(*) FROM saf", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1, "one reversal for one unanswered request");
    let f90: String = c.query_row("SELECT field90 FROM saf", [], |r| r.get(0)).unwrap();
    assert!(f90.starts_with("0200") && f90.len() == 42, "{f90}");
    let mut s = c.prepare("SELECT * FROM saf").unwrap();
    let cols = s.column_count();
    let mut q = s.query([]).unwrap();
    while let Some(row) = q.next().unwrap() {
        for i in 0..cols {
            let v = format!("{:?}", row.get::<_, rusqlite::types::Value>(i).unwrap());
            assert!(!v.contains(PAN), "saf column {i} holds the card number in clear");
        }
    }
    let rc: String =
        c.query_row("SELECT rc FROM transactions WHERE stan = '000007'", [], |r| r.get(0)).unwrap();
    assert_eq!(rc, "68");
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_reversals_are_matched_queued_once_and_recorded() {
    let issuer = MockIssuer::start(Mode::Approve).await;
    let d = dir("terminal");
    let journal = d.join("journal.db");
    let stop = CancellationToken::new();
    let sw = serve(config(&journal, issuer.addr, 2000), stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;

    let req = auth(PAN, 21, 8_800);
    assert_eq!(t.exchange(&req).await.text(39).as_deref(), Some("00"));
    assert_eq!(issuer.requests.load(Ordering::SeqCst), 1);

    // The terminal reverses it: 0410/00 at once, one 0400 reaches the issuer.
    let rev = reversal_of(&req);
    let rep = t.exchange(&rev).await;
    assert_eq!((rep.mti(), rep.text(39).as_deref()), ("0410", Some("00")));
    let until = Instant::now() + Duration::from_secs(5);
    while issuer.requests.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < until, "the reversal never reached the issuer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The terminal repeats its reversal (power cut): acknowledged, not sent again.
    let mut again = rev.clone();
    again.set(7, "1124103100").unwrap();
    assert_eq!(t.exchange(&again).await.text(39).as_deref(), Some("00"));
    // A reversal of something the switch never saw: acknowledged, the issuer is not bothered.
    let unknown = reversal_of(&auth(PAN, 22, 1_234));
    assert_eq!(t.exchange(&unknown).await.text(39).as_deref(), Some("00"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(issuer.requests.load(Ordering::SeqCst), 2, "one purchase and exactly one reversal");
    stop.cancel();
    sw.join().await;

    let c = rusqlite::Connection::open(&journal).unwrap();
    let status: String = c
        .query_row("SELECT status FROM transactions WHERE stan = '000021' AND mti = '0200'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(status, "reversed");
    let acked: i64 = c.query_row("SELECT count(*) FROM saf WHERE state = 'acked'", [], |r| r.get(0)).unwrap();
    assert_eq!(acked, 1, "the issuer's 0410 acknowledged the one reversal");
    let recorded: i64 =
        c.query_row("SELECT count(*) FROM transactions WHERE mti = '0400'", [], |r| r.get(0)).unwrap();
    assert_eq!(recorded, 3, "every terminal reversal is recorded");
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_terminals_void_goes_to_its_issuer_whatever_its_field_61_says() {
    // Field 61 names an original (batch, trace, date) on UnionPay-style listeners only;
    // on a generic listener it is the terminal's private data, and its void is the
    // issuer's to match, even with no original in the journal.
    let issuer = MockIssuer::start(Mode::Approve).await;
    let d = dir("generic-void");
    let journal = d.join("journal.db");
    let stop = CancellationToken::new();
    let sw = serve(config(&journal, issuer.addr, 2000), stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    let mut void = auth(PAN, 31, 2_500);
    void.set(3, "020000").unwrap().set(61, "000001000012").unwrap();
    let rep = t.exchange(&void).await;
    assert_eq!(rep.text(39).as_deref(), Some("00"), "forwarded and approved, not declined 25");
    assert_eq!(issuer.requests.load(Ordering::SeqCst), 1, "the issuer saw the void");
    stop.cancel();
    sw.join().await;
    let c = rusqlite::Connection::open(&journal).unwrap();
    let (txn, decision): (String, String) = c
        .query_row("SELECT txn_type, decision FROM transactions", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((txn.as_str(), decision.as_str()), ("void", "forward"));
    let _ = std::fs::remove_dir_all(&d);
}
