//! The simulators against each other on 127.0.0.1: sim terminals -> sim issuer, every
//! reply checked; drops, shuffling, delays, the cup-pos dialect, a lying issuer, and the
//! CLI with its JSON line.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use isoswitch::frame::{Frame, FrameCodec, FrameConfig};
use isoswitch::iso::Message;
use isoswitch::iso::spec::shipped;
use isoswitch::sim::{
    SimIssuerConfig, SimIssuerStats, SimReport, SimStop, SimTerminalConfig, run_issuer, run_terminals,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

/// Every test is bounded in time.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f).await.expect("test took too long")
}

async fn start_issuer(
    cfg: SimIssuerConfig,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<std::io::Result<SimIssuerStats>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let h = tokio::spawn(run_issuer(listener, cfg, token.clone()));
    (addr, token, h)
}

fn terminals(addr: SocketAddr, connections: usize, pipeline: usize, count: u64) -> SimTerminalConfig {
    let mut t = SimTerminalConfig::new(addr, shipped("iso87ascii").unwrap());
    t.connections = connections;
    t.pipeline = pipeline;
    t.stop = SimStop::Count(count);
    t.timeout = Duration::from_secs(5);
    t
}

fn rc(r: &SimReport, code: &str) -> u64 {
    r.rc.get(code).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reply_matches_and_declines_follow_the_rules() {
    bounded(async {
        let (addr, token, h) = start_issuer(SimIssuerConfig::new(shipped("iso87ascii").unwrap())).await;
        let r = run_terminals(terminals(addr, 1, 8, 1000)).await.unwrap();
        assert_eq!((r.sent, r.received, r.mismatches, r.errors()), (1000, 1000, 0, 0), "{r}");
        // The request mix is exact per 100 requests on one connection.
        assert_eq!((rc(&r, "00"), rc(&r, "51"), rc(&r, "05"), rc(&r, "14")), (890, 80, 20, 10), "{r}");
        assert_eq!(r.latency.count(), 1000);
        token.cancel();
        let s = h.await.unwrap().unwrap();
        assert_eq!((s.received, s.answered, s.dropped, s.undecodable), (1000, 1000, 0, 0));

        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for key in ["sent", "received", "mismatches", "errors", "throughput_per_s", "latency_us", "rc"] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        for key in ["p50", "p99", "p999", "max"] {
            assert!(json["latency_us"][key].as_f64().is_some(), "missing latency_us.{key}");
        }
        assert_eq!(json["rc"]["51"], 80);
        assert_eq!(json["sent"], 1000);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pipelined_connections_with_the_same_stans() {
    bounded(async {
        let (addr, token, h) = start_issuer(SimIssuerConfig::new(shipped("iso87ascii").unwrap())).await;
        let r = run_terminals(terminals(addr, 8, 32, 20_000)).await.unwrap();
        assert_eq!((r.sent, r.received, r.mismatches, r.errors()), (20_000, 20_000, 0, 0), "{r}");
        assert!(rc(&r, "00") > 0 && rc(&r, "51") > 0);
        token.cancel();
        assert_eq!(h.await.unwrap().unwrap().connections, 8);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_requests_time_out_as_errors() {
    bounded(async {
        let mut cfg = SimIssuerConfig::new(shipped("iso87ascii").unwrap());
        cfg.drop_every = 10;
        let (addr, token, h) = start_issuer(cfg).await;
        let mut t = terminals(addr, 1, 4, 100);
        t.timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let r = run_terminals(t).await.unwrap();
        assert_eq!((r.sent, r.received, r.timeouts, r.errors(), r.mismatches), (100, 90, 10, 10, 0), "{r}");
        // Each dropped request costs at most its own timeout, overlapping the others.
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        token.cancel();
        let s = h.await.unwrap().unwrap();
        assert_eq!((s.received, s.answered, s.dropped), (100, 90, 10));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_and_delayed_answers_still_match() {
    bounded(async {
        let mut cfg = SimIssuerConfig::new(shipped("iso87ascii").unwrap());
        cfg.shuffle = 8;
        let (addr, token, _h) = start_issuer(cfg).await;
        let r = run_terminals(terminals(addr, 2, 16, 4000)).await.unwrap();
        assert_eq!((r.received, r.mismatches, r.errors()), (4000, 0, 0), "{r}");
        assert!(r.reordered > 0, "the issuer did not reorder: {r}");
        token.cancel();

        let mut cfg = SimIssuerConfig::new(shipped("iso87ascii").unwrap());
        cfg.delay = Duration::from_millis(5);
        cfg.jitter = Duration::from_millis(5);
        let (addr, token, _h) = start_issuer(cfg).await;
        let r = run_terminals(terminals(addr, 2, 16, 600)).await.unwrap();
        assert_eq!((r.received, r.mismatches, r.errors()), (600, 0, 0), "{r}");
        assert!(r.reordered > 0, "jitter did not reorder: {r}");
        assert!(r.latency.quantile(0.5) >= 5_000_000, "{r}");
        token.cancel();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cup_pos_dialect_with_tpdu_and_header() {
    bounded(async {
        let spec = shipped("cup-pos").unwrap();
        let mut cfg = SimIssuerConfig::new(spec.clone());
        cfg.frame = FrameConfig::cup_pos();
        let (addr, token, _h) = start_issuer(cfg).await;
        let mut t = SimTerminalConfig::new(addr, spec);
        t.frame = FrameConfig::cup_pos();
        t.pipeline = 4;
        t.stop = SimStop::Count(300);
        let r = run_terminals(t).await.unwrap();
        assert_eq!((r.received, r.mismatches, r.errors()), (300, 0, 0), "{r}");
        assert!(rc(&r, "14") > 0);
        token.cancel();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_for_a_duration_stops_by_itself() {
    bounded(async {
        let (addr, token, _h) = start_issuer(SimIssuerConfig::new(shipped("iso87ascii").unwrap())).await;
        let mut t = terminals(addr, 2, 4, 0);
        t.stop = SimStop::Duration(Duration::from_millis(300));
        let r = run_terminals(t).await.unwrap();
        assert!(r.received > 0 && r.received == r.sent, "{r}");
        assert_eq!((r.mismatches, r.errors()), (0, 0));
        token.cancel();
    })
    .await;
}

/// An issuer that answers with the wrong amount, the wrong MTI or someone else's STAN.
async fn lying_issuer(listener: TcpListener) {
    let spec = shipped("iso87ascii").unwrap();
    let (mut sock, _) = listener.accept().await.unwrap();
    let mut codec = FrameCodec::new(FrameConfig::default());
    let mut buf = BytesMut::new();
    let mut n = 0u32;
    loop {
        if sock.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            return;
        }
        let mut out = BytesMut::new();
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            n += 1;
            let mut m = Message::decode(&spec, f.body.clone()).unwrap();
            let answer = format!("{:04}", m.mti().parse::<u32>().unwrap() + 10);
            m.set_mti(if n % 4 == 2 { "0200" } else { &answer }).unwrap();
            m.set(39, "00").unwrap();
            if n % 4 == 1 && m.has(4) {
                m.set_number(4, m.amount().unwrap() + 1).unwrap();
            }
            if n % 4 == 3 {
                m.set_number(11, 999_000).unwrap();
            }
            codec.encode(f.reply(m.to_bytes().unwrap()), &mut out).unwrap();
        }
        sock.write_all(&out).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_that_do_not_belong_to_their_request_are_mismatches() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(lying_issuer(listener));
        let mut t = terminals(addr, 1, 1, 40);
        t.timeout = Duration::from_millis(200);
        let r = run_terminals(t).await.unwrap();
        // Of every 4: a wrong amount (unless an echo), a wrong MTI, a stray STAN (the
        // request then times out), and one good reply.
        assert_eq!(r.sent, 40);
        assert_eq!(r.timeouts, 10, "{r}");
        assert!(r.mismatches >= 20 + 5, "{r}");
        assert!(r.received - (r.mismatches - 10) >= 10, "{r}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_requests_get_30() {
    bounded(async {
        let (addr, token, h) = start_issuer(SimIssuerConfig::new(shipped("iso87ascii").unwrap())).await;
        let mut sock = TcpStream::connect(addr).await.unwrap();
        let mut codec = FrameCodec::new(FrameConfig::default());
        let mut out = BytesMut::new();
        codec.encode(Frame::plain(Bytes::from_static(b"0200ZZZZ")), &mut out).unwrap();
        sock.write_all(&out).await.unwrap();
        let mut buf = BytesMut::new();
        let frame = loop {
            assert!(sock.read_buf(&mut buf).await.unwrap() > 0);
            if let Some(f) = codec.decode(&mut buf).unwrap() {
                break f;
            }
        };
        let m = Message::decode(&shipped("iso87ascii").unwrap(), frame.body).unwrap();
        assert_eq!(m.mti(), "0210");
        assert_eq!(m.response_code().as_deref(), Some("30"));
        drop(sock);
        token.cancel();
        assert_eq!(h.await.unwrap().unwrap().undecodable, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_prompt_even_when_a_peer_never_reads() {
    bounded(async {
        let spec = shipped("iso87ascii").unwrap();
        let (addr, token, h) = start_issuer(SimIssuerConfig::new(spec.clone())).await;
        let mut sock = TcpStream::connect(addr).await.unwrap();
        // Enough requests that the replies overflow the socket buffers.
        let mut m = Message::new(spec, "0800").unwrap();
        m.set_number(11, 1).unwrap();
        m.set(41, "SIM00001").unwrap();
        m.set(48, &"X".repeat(900)).unwrap();
        let mut codec = FrameCodec::new(FrameConfig::default());
        let mut out = BytesMut::new();
        for _ in 0..200 {
            codec.encode(Frame::plain(m.to_bytes().unwrap()), &mut out).unwrap();
        }
        for _ in 0..100 {
            if tokio::time::timeout(Duration::from_millis(100), sock.write_all(&out)).await.is_err() {
                break;
            }
        }
        token.cancel();
        let stats =
            tokio::time::timeout(Duration::from_secs(2), h).await.expect("shutdown hung").unwrap().unwrap();
        assert!(stats.received > 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_yields_timeouts_within_the_bound() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let keep = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(s);
        });
        let mut t = terminals(addr, 1, 8, 8);
        t.timeout = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let r = run_terminals(t).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!((r.sent, r.received, r.timeouts, r.errors()), (8, 0, 8, 8), "{r}");
        keep.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_run_keeps_to_its_rate() {
    bounded(async {
        let (addr, token, _h) = start_issuer(SimIssuerConfig::new(shipped("iso87ascii").unwrap())).await;
        let mut t = terminals(addr, 2, 8, 400);
        t.rate = Some(2000.0);
        let started = std::time::Instant::now();
        let r = run_terminals(t).await.unwrap();
        let took = started.elapsed();
        assert_eq!((r.received, r.mismatches, r.errors()), (400, 0, 0), "{r}");
        // 400 requests at 2000/s take about 200 ms.
        assert!(took >= Duration::from_millis(180) && took < Duration::from_secs(2), "{took:?}");
        token.cancel();
    })
    .await;
}
