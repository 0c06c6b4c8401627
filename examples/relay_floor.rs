//! The floor of an ISO 8583 relay on this machine, for reading the switch's load figures:
//! the least any switch that decodes what it forwards must do. Each request is decoded
//! (validated), given a relay STAN and written to one issuer link; each reply is decoded,
//! matched by that STAN, given back the terminal's STAN and written to its connection.
//! Nothing else: no routing rules or risk counters, no deadlines, admission, reversals,
//! journal or metrics. Same codec, framing (2-byte binary length), runtime (tokio, two
//! workers) and allocator as the switch. `benches/load.sh floor C K S` runs it in the
//! switch's place:
//!
//! `cargo build --release --example relay_floor`
//! `target/release/examples/relay_floor LISTEN_ADDR ISSUER_ADDR` (`iso87ascii`)

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use futures_util::StreamExt;
use isoswitch::frame::batch::write_batches;
use isoswitch::frame::{Frame, FrameCodec, FrameConfig};
use isoswitch::iso::{Message, Spec, spec::shipped};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{Encoder, FramedRead};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A request at the issuer: where its reply goes and the terminal's STAN.
struct Waiting {
    reply: mpsc::Sender<Bytes>,
    stan: [u8; 6],
}

/// Messages queued for one socket's writer.
const QUEUE: usize = 4096;

/// How long a batch write may take before its socket is given up, as the switch's bound.
const WRITE_BOUND: Duration = Duration::from_secs(5);

type Table = DashMap<u32, Waiting>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, issuer] = args.as_slice() else {
        eprintln!("usage: relay_floor LISTEN_ADDR ISSUER_ADDR");
        return ExitCode::from(2);
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("relay_floor: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(relay(listen, issuer)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay_floor: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn relay(listen: &str, issuer: &str) -> Result<(), String> {
    let spec = shipped("iso87ascii").ok_or("the iso87ascii spec is missing")?;
    let link = TcpStream::connect(issuer).await.map_err(|e| format!("issuer {issuer}: {e}"))?;
    link.set_nodelay(true).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(listen).await.map_err(|e| format!("listen {listen}: {e}"))?;
    let table = Arc::new(Table::with_capacity(4096));
    let (lr, lw) = link.into_split();
    let (to_issuer, queued) = mpsc::channel(QUEUE);
    tokio::spawn(writer(queued, lw));
    tokio::spawn(replies(lr, spec.clone(), table.clone()));
    let next = Arc::new(AtomicU32::new(0));
    loop {
        let (s, _) = listener.accept().await.map_err(|e| format!("accept: {e}"))?;
        let _ = s.set_nodelay(true);
        let (r, w) = s.into_split();
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(rx, w));
        tokio::spawn(requests(r, tx, spec.clone(), table.clone(), to_issuer.clone(), next.clone()));
    }
}

/// One terminal connection's requests: decode, take a relay STAN, write to the issuer.
async fn requests(
    r: OwnedReadHalf,
    reply: mpsc::Sender<Bytes>,
    spec: Arc<Spec>,
    table: Arc<Table>,
    to_issuer: mpsc::Sender<Bytes>,
    next: Arc<AtomicU32>,
) {
    let mut frames = FramedRead::new(r, FrameCodec::new(FrameConfig::default()));
    let mut out = BytesMut::new();
    while let Some(Ok(f)) = frames.next().await {
        let Ok(m) = Message::decode(&spec, f.body) else { continue };
        let Some(stan) = m.raw(11).and_then(|s| <[u8; 6]>::try_from(s).ok()) else { continue };
        let ours = next.fetch_add(1, Ordering::Relaxed) % 999_999 + 1;
        table.insert(ours, Waiting { reply: reply.clone(), stan });
        if m.encode_with(&[(11, &format!("{ours:06}"))], &mut out).is_ok() {
            let _ = to_issuer.send(out.split().freeze()).await;
        }
    }
}

/// The issuer's replies: decode, match by relay STAN, restore the terminal's STAN.
async fn replies(r: OwnedReadHalf, spec: Arc<Spec>, table: Arc<Table>) {
    let mut frames = FramedRead::new(r, FrameCodec::new(FrameConfig::default()));
    let mut out = BytesMut::new();
    while let Some(Ok(f)) = frames.next().await {
        let Ok(mut m) = Message::decode(&spec, f.body) else { continue };
        let Some(ours) = m.number(11).and_then(|n| u32::try_from(n).ok()) else { continue };
        let Some((_, w)) = table.remove(&ours) else { continue };
        let stan = std::str::from_utf8(&w.stan).unwrap_or("000000");
        if m.set(11, stan).is_ok() && m.encode(&mut out).is_ok() {
            let _ = w.reply.send(out.split().freeze()).await;
        }
    }
}

/// Frame and write whatever is queued, one write per batch (the switch's batching writer).
async fn writer(mut rx: mpsc::Receiver<Bytes>, mut w: OwnedWriteHalf) {
    let mut codec = FrameCodec::new(FrameConfig::default());
    let frame = |b: Bytes, buf: &mut BytesMut| {
        let _ = codec.encode(Frame::plain(b), buf);
    };
    write_batches(&mut rx, &mut w, WRITE_BOUND, BytesMut::with_capacity(16 * 1024), frame).await;
}
