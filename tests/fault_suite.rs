//! Malformed-input campaign against the running switch, on 127.0.0.1: while one good
//! terminal runs ordinary traffic, other connections send random bytes, oversized length
//! headers, truncated frames, byte-at-a-time (slow-loris) frames and well-framed garbage.
//! Every well-framed message whose MTI can be read is answered with 30; the rest close
//! their own connection or are skipped; the good terminal sees no error at all and the
//! switch keeps serving. `ISOSWITCH_FAULT_FRAMES` sets how many bad frames are sent
//! (default 20,000; the campaign in the README runs a million in release). Every loop is
//! bounded in count and time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{MockIssuer, Mode, PAN, Terminal, auth, config};
use isoswitch::frame::{Frame, FrameCodec, FrameConfig};
use isoswitch::iso::Message;
use isoswitch::switch::serve;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A garbled body: a valid purchase with bytes changed, cut or extended, or pure noise.
fn garbage(r: &mut Rng, good: &[u8]) -> Vec<u8> {
    let mut b = good.to_vec();
    match r.below(4) {
        0 => {
            for _ in 0..=r.below(6) {
                let i = r.below(b.len() as u64) as usize;
                b[i] = r.next() as u8;
            }
        }
        1 => b.truncate(r.below(b.len() as u64) as usize),
        2 => b.extend((0..=r.below(40)).map(|_| r.next() as u8)),
        _ => b = (0..r.below(300)).map(|_| r.next() as u8).collect(),
    }
    b
}

/// Send `frames` well-framed garbage bodies on one connection, reading the answers.
/// Returns (sent, answered with 30, readable-MTI bodies sent).
async fn garbage_connection(
    addr: std::net::SocketAddr,
    seed: u64,
    frames: u64,
    good: Vec<u8>,
) -> (u64, u64, u64) {
    let spec = common::ascii();
    let Ok(mut s) = TcpStream::connect(addr).await else { return (0, 0, 0) };
    let mut codec = FrameCodec::new(FrameConfig::default());
    let mut r = Rng(seed | 1);
    let (mut sent, mut thirty, mut readable) = (0u64, 0u64, 0u64);
    let mut inbuf = BytesMut::new();
    let mut batch = BytesMut::new();
    while sent < frames {
        batch.clear();
        let mut expect = 0u64;
        for _ in 0..64.min(frames - sent) {
            let body = garbage(&mut r, &good);
            // The codec's own response MTI rule: a readable request MTI earns a 30 (bodies that
            // decode by chance are answered otherwise and counted as answered too).
            if Message::peek_mti(&spec, &body).is_some_and(|m| isoswitch::issuer::response_mti(&m).is_some())
            {
                expect += 1;
            }
            codec.encode(Frame::plain(body.into()), &mut batch).unwrap();
            sent += 1;
        }
        readable += expect;
        if s.write_all(&batch).await.is_err() {
            break;
        }
        let until = Instant::now() + Duration::from_secs(5);
        let mut got = 0;
        while got < expect && Instant::now() < until {
            if let Ok(Some(f)) = codec.decode(&mut inbuf) {
                got += 1;
                let m = Message::decode(&spec, f.body).expect("the switch's replies decode");
                if m.text(39).as_deref() == Some("30") {
                    thirty += 1;
                }
                continue;
            }
            match tokio::time::timeout(Duration::from_millis(500), s.read_buf(&mut inbuf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (sent, thirty, readable),
                _ => {}
            }
        }
    }
    (sent, thirty, readable)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_hurts_the_good_terminal() {
    let frames: u64 =
        std::env::var("ISOSWITCH_FAULT_FRAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let issuer = MockIssuer::start(Mode::Approve).await;
    let stop = CancellationToken::new();
    let sw = serve(config(&[issuer.addr], 2000), stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let addr = sw.listen_addrs()[0];

    // The good terminal: ordinary requests one after another until the campaign ends.
    let done = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let good_task = {
        let (done, ok, bad) = (done.clone(), ok.clone(), bad.clone());
        tokio::spawn(async move {
            let mut t = Terminal::connect(addr).await;
            let mut stan = 0u32;
            let deadline = Instant::now() + Duration::from_secs(600);
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline && stan < 900_000 {
                stan += 1;
                let req = auth(PAN, stan, 1_000);
                t.send(&req).await;
                match tokio::time::timeout(Duration::from_secs(5), t.recv()).await {
                    Ok(Some(rep)) if rep.text(39).as_deref() == Some("00") && rep.stan() == Some(stan) => {
                        ok.fetch_add(1, Ordering::SeqCst)
                    }
                    _ => bad.fetch_add(1, Ordering::SeqCst),
                };
            }
        })
    };

    // Raw abuse on separate connections: random bytes, oversized headers, truncation, slow loris.
    let mut r = Rng(0x1509_2026);
    let mut abuse = Vec::new();
    for i in 0..40u64 {
        let kind = i % 4;
        let bytes: Vec<u8> = match kind {
            0 => (0..r.below(4096)).map(|_| r.next() as u8).collect(),
            1 => vec![0xFF, 0xFF, 1, 2, 3],
            2 => {
                let mut v = vec![0x01, 0x00];
                v.extend((0..100).map(|_| b'0'));
                v
            }
            _ => {
                let mut v = vec![0x00, 0x20];
                v.extend(b"0200");
                v
            }
        };
        abuse.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else { return };
            if kind == 3 {
                for b in bytes {
                    if s.write_all(&[b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            } else {
                let _ = s.write_all(&bytes).await;
            }
            let _ = tokio::time::timeout(Duration::from_millis(300), s.read(&mut [0u8; 64])).await;
        }));
    }

    // Well-framed garbage on four connections.
    let good = auth(PAN, 1, 1_000).to_bytes().unwrap().to_vec();
    let per = frames / 4;
    let mut campaign = Vec::new();
    for c in 0..4u64 {
        campaign.push(tokio::spawn(garbage_connection(addr, 77 + c, per, good.clone())));
    }
    let (mut sent, mut thirty, mut readable) = (0, 0, 0);
    for c in campaign {
        let (s, t, r) = c.await.unwrap();
        sent += s;
        thirty += t;
        readable += r;
    }
    for a in abuse {
        let _ = a.await;
    }
    done.store(true, Ordering::SeqCst);
    good_task.await.unwrap();
    eprintln!(
        "bad frames sent {sent}, readable-MTI {readable}, answered 30: {thirty}; good terminal {} ok, {} errors",
        ok.load(Ordering::SeqCst),
        bad.load(Ordering::SeqCst)
    );
    assert!(sent >= frames * 9 / 10, "the campaign ran: {sent} of {frames}");
    assert!(
        thirty * 10 >= readable * 9,
        "garbage with a readable MTI is answered with 30: {thirty} of {readable}"
    );
    assert_eq!(bad.load(Ordering::SeqCst), 0, "the good terminal saw an error");
    assert!(ok.load(Ordering::SeqCst) > 0);
    // And the switch still serves a fresh terminal.
    let mut t = Terminal::connect(addr).await;
    assert_eq!(t.exchange(&auth(PAN, 999_999, 1_000)).await.text(39).as_deref(), Some("00"));
    stop.cancel();
    sw.join().await;
}
