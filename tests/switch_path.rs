//! The switch path end to end over real sockets on 127.0.0.1: terminals → switch →
//! mock issuer, with approvals, declines, STAN/RRN restoration, concurrency, out-of-order
//! replies, deadlines, issuer loss and restart, bad frames and metrics.

mod common;

use std::time::{Duration, Instant};

use common::*;
use isoswitch::config::Config;
use isoswitch::switch::{RunningSwitch, serve};
use tokio_util::sync::CancellationToken;

async fn start(cfg: Config) -> (RunningSwitch, CancellationToken) {
    let stop = CancellationToken::new();
    let sw = serve(cfg, stop.clone()).await.unwrap();
    (sw, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_and_declines_restore_the_terminals_stan_and_rrn() {
    let iss = MockIssuer::start(Mode::Approve).await;
    let (sw, stop) = start(config(&[iss.addr], 2000)).await;
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;

    let req = auth(PAN, 17, 1000);
    let rep = t.exchange(&req).await;
    assert_echoed(&req, &rep);
    assert_eq!(rep.text(39).as_deref(), Some("00"));
    assert_eq!(rep.text(38).as_deref(), Some("AUTH01"));

    let req = auth(PAN, 18, 1051);
    let rep = t.exchange(&req).await;
    assert_echoed(&req, &rep);
    assert_eq!(rep.text(39).as_deref(), Some("51"));

    // The issuer saw the switch's STANs, not the terminal's.
    let seen = iss.stans.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen, vec![17, 18]);
    assert_eq!(iss.stats.sign_ons.load(std::sync::atomic::Ordering::SeqCst), 1, "signed on after connecting");

    // Echo answered by the switch itself.
    let mut echo = isoswitch::iso::Message::new(ascii(), "0800").unwrap();
    echo.set(7, "1124103000").unwrap().set(11, "000099").unwrap().set(70, "301").unwrap();
    let rep = t.exchange(&echo).await;
    assert_eq!(rep.mti(), "0810");
    assert_eq!(rep.text(39).as_deref(), Some("00"));
    assert_eq!(rep.stan(), Some(99));
    assert_eq!(iss.requests.load(std::sync::atomic::Ordering::SeqCst), 2);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), sw.join()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_terminals_with_the_same_stan_each_get_their_own_reply() {
    // The issuer holds both requests and answers them in reverse order: both are in
    // flight together and the replies come back out of order.
    let iss = MockIssuer::start(Mode::Batch(2)).await;
    let (sw, stop) = start(config(&[iss.addr], 3000)).await;
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let mut a = Terminal::connect(sw.listen_addrs()[0]).await;
    let mut b = Terminal::connect(sw.listen_addrs()[0]).await;
    let ra = auth(PAN, 1, 1111);
    let rb = auth(PAN2, 1, 2222);
    a.send(&ra).await;
    b.send(&rb).await;
    let (xa, xb) = tokio::join!(a.recv(), b.recv());
    let (xa, xb) = (xa.unwrap(), xb.unwrap());
    assert_echoed(&ra, &xa);
    assert_echoed(&rb, &xb);
    assert_eq!(xa.amount(), Some(1111));
    assert_eq!(xb.amount(), Some(2222));
    stop.cancel();
    sw.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_replies_on_one_pipelined_connection_are_matched() {
    let iss = MockIssuer::start(Mode::Batch(10)).await;
    let (sw, stop) = start(config(&[iss.addr], 3000)).await;
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    let reqs: Vec<_> = (0..10).map(|i| auth(PAN, 100 + i, 5000 + u64::from(i))).collect();
    for r in &reqs {
        t.send(r).await;
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(t.recv().await.unwrap());
    }
    // Replies arrive newest first; each carries its own request's fields.
    assert_eq!(got[0].stan(), Some(109));
    for rep in &got {
        let req = reqs.iter().find(|r| r.stan() == rep.stan()).unwrap();
        assert_echoed(req, rep);
    }
    stop.cancel();
    sw.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_issuer_yields_68_within_the_deadline_plus_50_ms() {
    let iss = MockIssuer::start(Mode::Silent).await;
    let (sw, stop) = start(config(&[iss.addr], 300)).await;
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    let req = auth(PAN, 5, 100);
    let t0 = Instant::now();
    let rep = t.exchange(&req).await;
    let took = t0.elapsed();
    assert_echoed(&req, &rep);
    assert_eq!(rep.text(39).as_deref(), Some("68"));
    // The reply wait ends `answer_margin_ms` (50) before the deadline, so that the 68
    // (its reversal stored first, when there is a store) arrives within it.
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took <= Duration::from_millis(350), "{took:?}");
    assert_eq!(sw.issuers().pending(), 0, "the timed-out entry left the session table");
    stop.cancel();
    sw.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_links_down_gives_91_at_once_and_a_restarted_issuer_gets_traffic_again() {
    let iss = MockIssuer::start(Mode::Approve).await;
    let addr = iss.addr;
    let (sw, stop) = start(config(&[addr, addr], 5000)).await;
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    assert_eq!(t.exchange(&auth(PAN, 1, 100)).await.text(39).as_deref(), Some("00"));

    iss.stop();
    let bank = sw.issuers().by_name("bank").unwrap().clone();
    let until = Instant::now() + Duration::from_secs(5);
    while bank.links_up() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(bank.links_up(), 0);
    let t0 = Instant::now();
    let req = auth(PAN, 2, 100);
    let rep = t.exchange(&req).await;
    assert_echoed(&req, &rep);
    assert_eq!(rep.text(39).as_deref(), Some("91"));
    assert!(t0.elapsed() < Duration::from_millis(50), "{:?}", t0.elapsed());

    // Restart on the same port: the links reconnect on their own.
    let again = MockIssuer::start_at(addr, Mode::Approve, None).await;
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let until = Instant::now() + Duration::from_secs(5);
    while bank.links_up() < 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(bank.links_up(), 2);
    for i in 0..20 {
        let req = auth(PAN, 10 + i, 100);
        let rep = t.exchange(&req).await;
        assert_echoed(&req, &rep);
        assert_eq!(rep.text(39).as_deref(), Some("00"));
    }
    assert_eq!(again.requests.load(std::sync::atomic::Ordering::SeqCst), 20);
    stop.cancel();
    sw.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_that_was_never_up_gives_91() {
    let (sw, stop) = start(config(&[dead_addr().await], 5000)).await;
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    let t0 = Instant::now();
    let rep = t.exchange(&auth(PAN, 3, 100)).await;
    assert_eq!(rep.text(39).as_deref(), Some("91"));
    assert!(t0.elapsed() < Duration::from_millis(50));
    stop.cancel();
    sw.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_hurt_only_their_own_connection() {
    let iss = MockIssuer::start(Mode::Approve).await;
    let (sw, stop) = start(config(&[iss.addr], 2000)).await;
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let at = sw.listen_addrs()[0];
    let mut good = Terminal::connect(at).await;
    let mut garbled = Terminal::connect(at).await;
    let mut huge = Terminal::connect(at).await;

    // MTI readable, bitmap promises fields that are not there: 0210 with 30.
    garbled.send_raw(b"02007000000000000000164761").await.unwrap();
    let rep = garbled.recv().await.unwrap();
    assert_eq!(rep.mti(), "0210");
    assert_eq!(rep.text(39).as_deref(), Some("30"));
    // Unreadable MTI: no answer, but the connection stays and serves the next request.
    garbled.send_raw(b"XXXX").await.unwrap();
    let req = auth(PAN, 7, 100);
    assert_echoed(&req, &garbled.exchange(&req).await);

    // Over the listener's 2048-byte maximum: that connection is closed.
    let _ = huge.send_raw(&vec![b'0'; 4000]).await;
    assert!(huge.recv().await.is_none());

    let req = auth(PAN, 8, 100);
    let rep = good.exchange(&req).await;
    assert_echoed(&req, &rep);
    assert_eq!(rep.text(39).as_deref(), Some("00"));
    stop.cancel();
    sw.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_histograms_and_counters_after_traffic() {
    let iss = MockIssuer::start(Mode::Approve).await;
    let (sw, stop) = start(config(&[iss.addr], 2000)).await;
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    for i in 0..5 {
        t.exchange(&auth(PAN, i + 1, 100)).await;
    }
    let m = sw.metrics_addr().unwrap();
    let body = http_get(m, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for needle in [
        "isoswitch_requests_total{mti=\"0200\"}",
        "isoswitch_responses_total{issuer=\"bank\",rc=\"00\"}",
        "isoswitch_issuer_latency_seconds_bucket{issuer=\"bank\",le=",
        "isoswitch_end_to_end_latency_seconds_bucket{le=",
        "isoswitch_end_to_end_latency_seconds_count",
        "isoswitch_issuer_up{issuer=\"bank\"}",
        "isoswitch_terminal_connections",
        "isoswitch_inflight{issuer=\"bank\"}",
        "isoswitch_saf_depth{issuer=\"bank\"}",
        "isoswitch_shed_total{class=\"ordinary\"}",
        "isoswitch_admission_queue_depth{issuer=\"bank\",class=\"ordinary\"}",
        "isoswitch_decode_errors_total",
        "# TYPE isoswitch_issuer_latency_seconds histogram",
    ] {
        assert!(body.contains(needle), "missing {needle} in\n{body}");
    }
    assert!(!body.contains(PAN));
    assert!(http_get(m, "/health").await.ends_with("ok\n"));
    stop.cancel();
    sw.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight_and_stops_accepting() {
    let iss = MockIssuer::start(Mode::Delay(300)).await;
    let (sw, stop) = start(config(&[iss.addr], 3000)).await;
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let at = sw.listen_addrs()[0];
    let mut t = Terminal::connect(at).await;
    let req = auth(PAN, 1, 100);
    t.send(&req).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.cancel();
    // The request in flight still gets its approval.
    let rep = t.recv().await.unwrap();
    assert_echoed(&req, &rep);
    assert_eq!(rep.text(39).as_deref(), Some("00"));
    tokio::time::timeout(Duration::from_secs(3), sw.join()).await.unwrap();
    assert!(tokio::net::TcpStream::connect(at).await.is_err(), "no longer accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_issuer_link_is_closed_and_reconnected() {
    let iss = MockIssuer::start(Mode::Mute).await;
    let text =
        config_text(&[iss.addr], 200, "").replace("echo_interval_ms = 60000", "echo_interval_ms = 100");
    let (sw, stop) = start(Config::parse("t.toml", &text).unwrap()).await;
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let until = Instant::now() + Duration::from_secs(5);
    while iss.stats.connections.load(std::sync::atomic::Ordering::SeqCst) < 3 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each unanswered echo closed the link; each reconnect signed on again.
    assert!(iss.stats.connections.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    assert!(iss.stats.sign_ons.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    stop.cancel();
    sw.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_the_connection_limit_holds() {
    let iss = MockIssuer::start(Mode::Approve).await;
    let text = config_text(&[iss.addr], 2000, "")
        .replace("idle_timeout_ms = 60000", "idle_timeout_ms = 300\nmax_connections = 1");
    let (sw, stop) = start(Config::parse("t.toml", &text).unwrap()).await;
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let at = sw.listen_addrs()[0];
    let mut first = Terminal::connect(at).await;
    let req = auth(PAN, 1, 100);
    assert_echoed(&req, &first.exchange(&req).await);
    // Over the limit: accepted by the kernel, closed by the switch at once.
    let mut second = Terminal::connect(at).await;
    let t0 = Instant::now();
    assert!(second.recv().await.is_none());
    assert!(t0.elapsed() < Duration::from_millis(250));
    // The first goes quiet and is closed after the idle timeout.
    let t0 = Instant::now();
    assert!(first.recv().await.is_none());
    let quiet = t0.elapsed();
    assert!(quiet >= Duration::from_millis(250) && quiet < Duration::from_millis(1000), "{quiet:?}");
    // Its slot is free again.
    let mut third = Terminal::connect(at).await;
    let req = auth(PAN, 2, 100);
    assert_echoed(&req, &third.exchange(&req).await);
    stop.cancel();
    sw.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unionpay_style_terminal_is_served_through_an_ascii_issuer() {
    use isoswitch::frame::{Frame, FrameConfig, Tpdu};
    let iss = MockIssuer::start(Mode::Approve).await;
    let text = config_text(&[iss.addr], 2000, "").replace(
        "frame = { max_frame = 2048 }",
        "spec = \"cup-pos\"\nframe = { tpdu = true, header_len = 6 }",
    );
    let (sw, stop) = start(Config::parse("t.toml", &text).unwrap()).await;
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let cup = isoswitch::iso::spec::shipped("cup-pos").unwrap();
    let mut t = Terminal::connect_with(sw.listen_addrs()[0], cup.clone(), FrameConfig::cup_pos()).await;
    let mut req = isoswitch::iso::Message::new(cup, "0200").unwrap();
    req.set(2, PAN).unwrap().set(3, "000000").unwrap().set(4, "000000012300").unwrap();
    req.set(11, "000777").unwrap().set(12, "101010").unwrap().set(13, "1124").unwrap();
    req.set(41, "POS00001").unwrap().set(42, "MERCHANT0000002").unwrap().set(49, "156").unwrap();
    // 60.1 = 22 (purchase), 60.2 = the batch that numbers its STANs.
    req.set(60, "22000001000").unwrap();
    let tpdu = Tpdu { id: 0x60, dst: 0x0003, src: 0x0001 };
    let header = bytes::Bytes::from_static(&[0x60, 0x31, 0x00, 0x31, 0x00, 0x00]);
    t.send_frame(Frame { tpdu: Some(tpdu), header: header.clone(), body: req.to_bytes().unwrap() }).await;
    let rep = t.recv().await.unwrap();
    assert_eq!(rep.mti(), "0210");
    assert_eq!(rep.text(39).as_deref(), Some("00"));
    for n in [2, 3, 4, 11, 12, 13, 41, 42, 49] {
        assert_eq!(req.raw(n), rep.raw(n), "field {n}");
    }
    let f = t.last.take().unwrap();
    assert_eq!(f.tpdu, Some(tpdu.swapped()));
    assert_eq!(f.header, header);
    stop.cancel();
    sw.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_fails_names_the_address() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let text = config_text(&[dead_addr().await], 1000, "")
        .replace("addr = \"127.0.0.1:0\"\nframe", &format!("addr = \"{addr}\"\nframe"));
    let err = serve(Config::parse("t.toml", &text).unwrap(), CancellationToken::new()).await.err().unwrap();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
