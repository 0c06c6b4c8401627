//! One terminal transaction, one authorisation, one journal row, over real sockets on
//! 127.0.0.1: retransmissions (pipelined, on new connections, as ISO repeats 0201, after a
//! restart of the switch) are never forwarded twice and get the original's answer with its
//! authorisation code; the same terminal key with another amount gets 94 and is journalled
//! beside the original; a request without the fields its type requires gets 30 and never
//! reaches the issuer; a reversal waits for its own original only, not for other
//! terminals' requests on its connection.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PAN, Terminal, ascii, auth};
use futures_util::{SinkExt, StreamExt};
use isoswitch::config::Config;
use isoswitch::frame::{Frame, FrameCodec, FrameConfig};
use isoswitch::iso::Message;
use isoswitch::switch::{RunningSwitch, serve};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// An issuer that approves every financial request with a fresh authorisation code
/// (so that two authorisations can be told apart), delays the amounts it is told to,
/// acknowledges reversals, and counts what it received.
struct CountingIssuer {
    addr: std::net::SocketAddr,
    /// Financial requests (01xx/02xx) received.
    financial: Arc<AtomicUsize>,
    #[allow(dead_code)]
    reversals: Arc<AtomicUsize>,
    /// Amounts answered only after 1.5 s.
    slow: Arc<Mutex<Vec<u64>>>,
    stop: CancellationToken,
}

impl CountingIssuer {
    async fn start() -> CountingIssuer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (financial, reversals) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let slow = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let codes = Arc::new(AtomicUsize::new(0));
        let (f, r, sl, st) = (financial.clone(), reversals.clone(), slow.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = st.cancelled() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let (f, r, sl, codes, st) = (f.clone(), r.clone(), sl.clone(), codes.clone(), st.clone());
                tokio::spawn(async move {
                    let framed = Framed::new(tcp, FrameCodec::new(FrameConfig::default()));
                    let (mut tx, mut rx) = framed.split();
                    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
                    let writer = tokio::spawn(async move {
                        while let Some(m) = out_rx.recv().await {
                            if tx.send(Frame::plain(m.to_bytes().unwrap())).await.is_err() {
                                return;
                            }
                        }
                    });
                    loop {
                        let frame = tokio::select! {
                            _ = st.cancelled() => break,
                            f = rx.next() => match f { Some(Ok(f)) => f, _ => break },
                        };
                        let Ok(req) = Message::decode(&ascii(), frame.body) else { continue };
                        let mut rep = req.clone();
                        let mti = isoswitch::issuer::response_mti(req.mti().as_bytes()).unwrap();
                        rep.set_mti(std::str::from_utf8(&mti).unwrap()).unwrap();
                        rep.set(39, "00").unwrap();
                        let delay = match &req.mti()[..2] {
                            "01" | "02" => {
                                f.fetch_add(1, Ordering::SeqCst);
                                let code = codes.fetch_add(1, Ordering::SeqCst) + 1;
                                rep.set(38, &format!("A{code:05}")).unwrap();
                                let amount = req.amount().unwrap_or(0);
                                sl.lock().unwrap().contains(&amount)
                            }
                            "04" => {
                                r.fetch_add(1, Ordering::SeqCst);
                                false
                            }
                            _ => false,
                        };
                        let out = out_tx.clone();
                        if delay {
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_millis(1500)).await;
                                let _ = out.send(rep);
                            });
                        } else {
                            let _ = out.send(rep);
                        }
                    }
                    writer.abort();
                });
            }
        });
        CountingIssuer { addr, financial, reversals, slow, stop }
    }
}

struct TempDir(PathBuf);
impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "isoswitch-repeats-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(issuer: std::net::SocketAddr, journal: &Path) -> Config {
    let text = format!(
        "journal = {journal:?}\njournal_sync = \"normal\"\n[timeouts]\nreconnect_max_ms = 200\n\
         [[listener]]\naddr = \"127.0.0.1:0\"\nidle_timeout_ms = 60000\n\
         [[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"{issuer}\"\ndeadline_ms = 4000\necho_interval_ms = 60000\n"
    );
    Config::parse("repeats.toml", &text).unwrap()
}

async fn start(cfg: Config) -> (RunningSwitch, CancellationToken) {
    let stop = CancellationToken::new();
    let sw = serve(cfg, stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    (sw, stop)
}

/// (rc, auth code, amount, txn_key) of the journal's rows of a terminal and STAN, oldest first.
fn rows(journal: &Path, stan: &str) -> Vec<(String, Option<String>, i64, Option<String>)> {
    let c = rusqlite::Connection::open(journal).unwrap();
    let mut s = c
        .prepare("SELECT rc, auth_code, amount, txn_key FROM transactions WHERE stan = ?1 ORDER BY id")
        .unwrap();
    s.query_map([stan], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_purchase_is_authorised_once_and_answered_alike() {
    let iss = CountingIssuer::start().await;
    let dir = TempDir::new();
    let journal = dir.0.join("journal.db");
    let (sw, stop) = start(config(iss.addr, &journal)).await;
    let at = sw.listen_addrs()[0];
    // The issuer takes its time with this one, so that the retransmissions find it in flight.
    iss.slow.lock().unwrap().push(5000);
    let req = auth(PAN, 41, 5000);
    let mut t = Terminal::connect(at).await;
    for _ in 0..5 {
        t.send(&req).await;
    }
    let mut codes = Vec::new();
    for _ in 0..5 {
        let rep = t.recv().await.expect("an answer to each retransmission");
        common::assert_echoed(&req, &rep);
        assert_eq!(rep.text(39).as_deref(), Some("00"));
        codes.push(rep.text(38).unwrap().into_owned());
    }
    // Three more on new connections, and an ISO repeat (0201) of it.
    for _ in 0..3 {
        let mut other = Terminal::connect(at).await;
        let rep = other.exchange(&req).await;
        codes.push(rep.text(38).unwrap().into_owned());
    }
    let mut repeat = req.clone();
    repeat.set_mti("0201").unwrap();
    let mut other = Terminal::connect(at).await;
    other.send(&repeat).await;
    let rep = other.recv().await.unwrap();
    assert_eq!((rep.mti(), rep.text(39).as_deref()), ("0210", Some("00")));
    codes.push(rep.text(38).unwrap().into_owned());
    assert_eq!(iss.financial.load(Ordering::SeqCst), 1, "forwarded once");
    assert!(codes.iter().all(|c| *c == codes[0]), "one authorisation code for all: {codes:?}");
    let r = rows(&journal, "000041");
    assert_eq!(r.len(), 1, "one journal row: {r:?}");
    assert_eq!((r[0].0.as_str(), r[0].1.as_deref(), r[0].2), ("00", Some(codes[0].as_str()), 5000));

    // A restart on the same journal remembers the transaction: its retransmission is
    // still answered from the journal, not forwarded.
    stop.cancel();
    sw.join().await;
    let (sw, stop) = start(config(iss.addr, &journal)).await;
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    let rep = t.exchange(&req).await;
    assert_eq!((rep.text(39).as_deref(), rep.text(38).as_deref()), (Some("00"), Some(codes[0].as_str())));
    assert_eq!(iss.financial.load(Ordering::SeqCst), 1, "not forwarded after the restart either");
    assert_eq!(rows(&journal, "000041").len(), 1);
    stop.cancel();
    sw.join().await;
    iss.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_another_amount_is_94_and_both_are_journalled() {
    let iss = CountingIssuer::start().await;
    let dir = TempDir::new();
    let journal = dir.0.join("journal.db");
    let (sw, stop) = start(config(iss.addr, &journal)).await;
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    let first = t.exchange(&auth(PAN, 7, 1111)).await;
    assert_eq!(first.text(39).as_deref(), Some("00"));
    let second = t.exchange(&auth(PAN, 7, 2222)).await;
    assert_eq!(second.text(39).as_deref(), Some("94"));
    assert_eq!(second.text(38), None, "a 94 carries no authorisation code");
    assert_eq!(iss.financial.load(Ordering::SeqCst), 1);
    // Another STAN with the same field 7 is another transaction.
    assert_eq!(t.exchange(&auth(PAN, 8, 2222)).await.text(39).as_deref(), Some("00"));
    assert_eq!(iss.financial.load(Ordering::SeqCst), 2);
    let r = rows(&journal, "000007");
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!((r[0].0.as_str(), r[0].2, r[0].3.as_deref()), ("00", 1111, Some("0200 1124103000")));
    assert_eq!((r[1].0.as_str(), r[1].2, r[1].3.as_deref()), ("94", 2222, None));
    stop.cancel();
    sw.join().await;
    iss.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_required_field_is_30_and_never_forwarded() {
    let iss = CountingIssuer::start().await;
    let dir = TempDir::new();
    let journal = dir.0.join("journal.db");
    let (sw, stop) = start(config(iss.addr, &journal)).await;
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    for (stan, field, rc) in [(21, 7, "30"), (22, 11, "30"), (23, 41, "30"), (25, 4, "30"), (24, 3, "12")] {
        let mut req = auth(PAN, stan, 100 + u64::from(stan));
        req.remove(field);
        let rep = t.exchange(&req).await;
        // Without a processing code the type is unknown: 12.
        assert_eq!(rep.text(39).as_deref(), Some(rc), "without field {field}");
    }
    // Two purchases that differ only in amount and lack field 7 are both refused, not
    // both approved with one of them lost from the journal.
    assert_eq!(iss.financial.load(Ordering::SeqCst), 0);
    let c = rusqlite::Connection::open(&journal).unwrap();
    let approved: i64 =
        c.query_row("SELECT COUNT(*) FROM transactions WHERE rc = '00'", [], |r| r.get(0)).unwrap();
    assert_eq!(approved, 0);
    stop.cancel();
    sw.join().await;
    iss.stop.cancel();
}

/// A reversal as the terminal sends it for an unanswered purchase: same STAN and amount.
fn reversal_of(purchase: &Message) -> Message {
    let mut r = purchase.clone();
    r.set_mti("0400").unwrap();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_waits_for_its_own_original_only() {
    let iss = CountingIssuer::start().await;
    let dir = TempDir::new();
    let journal = dir.0.join("journal.db");
    let (sw, stop) = start(config(iss.addr, &journal)).await;
    iss.slow.lock().unwrap().push(7777);
    // One connection carrying two terminals, as a concentrator does.
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    let slow = auth(PAN, 31, 7777);
    let mut other = auth(PAN, 32, 100);
    other.set(41, "TERM0002").unwrap();
    let mut next_same = auth(PAN, 33, 200);
    next_same.set(7, "1124103001").unwrap();
    let t0 = Instant::now();
    t.send(&slow).await;
    t.send(&reversal_of(&slow)).await;
    // The reversing terminal's next request, and another terminal's.
    t.send(&next_same).await;
    t.send(&other).await;
    let mut order = Vec::new();
    for _ in 0..4 {
        let rep = t.recv().await.expect("four answers");
        order.push((rep.mti().to_string(), rep.text(11).unwrap().into_owned(), t0.elapsed()));
    }
    let when = |mti: &str, stan: &str| order.iter().find(|(m, s, _)| m == mti && s == stan).unwrap().2;
    assert!(
        when("0210", "000032") < Duration::from_millis(1000),
        "the other terminal is not held: {order:?}"
    );
    assert!(when("0410", "000031") >= when("0210", "000031"), "the reversal after its original: {order:?}");
    assert!(
        when("0210", "000033") >= when("0410", "000031"),
        "the reversing terminal's next after it: {order:?}"
    );
    stop.cancel();
    sw.join().await;
    iss.stop.cancel();
}
