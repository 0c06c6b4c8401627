//! A simulated bank host. It accepts any number of connections and answers every
//! request with the response MTI (request + 10: 0100→0110, 0200→0210, 0220→0230,
//! 0400→0410, 0420→0430, 0500→0510, 0800→0810; a repeat such as 0401 is answered 0410).
//! The reply echoes the request's fields, minus track data and PIN block (35, 36, 45, 52),
//! and adds field 39 (response code), field 38 (an authorisation code) on approved
//! authorisations and financial requests, and field 37 (an RRN) when the request had none.
//!
//! Response codes, for authorisation (01xx) and financial (02xx) requests:
//!
//! | rule                                   | field 39 |
//! |----------------------------------------|----------|
//! | PAN (field 2) starts with `400099`     | 14       |
//! | amount (field 4) ends in 51 cents      | 51       |
//! | amount ends in 05 cents                | 05       |
//! | anything else                          | 00       |
//!
//! Stand-in advices (0120/0220, repeats 0121/0221) are answered 0130/0230 with 00 and the
//! switch's authorisation code left as it came, or with 05 when their amount is
//! `decline_advice_amount`; each is recorded in `advices` (an `AdviceLog` the caller may
//! keep a handle on) by terminal, RRN and authorisation code, so that a test sees every
//! advice arrive once in effect: a first write (0120/0220) of a key seen before is a
//! duplicate, a repeat (0121/0221) is not. Every other request class (reversals, network
//! management, reconciliation) gets 00. A frame that does not decode is answered with its MTI + 10 and 39 = 30 when its
//! MTI can be read. Messages that are not requests (odd third MTI digit) are ignored.
//!
//! Options: a fixed delay and a random jitter before each reply, dropping every N-th
//! request of each connection (never answered), and answering requests that arrive
//! together in shuffled order within a window. Per connection a reader decodes requests
//! and builds replies; a writer drains every ready reply, then writes them in one go.
//! Imports the codec, framing and the simulators' helpers.
//! May import: crate::frame, crate::iso, crate::rc, crate::sim::requests, crate::sim::util.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

use super::requests::BAD_PAN_PREFIX;
use super::util::{ReadBuf, Rng, digits};
use crate::frame::{Frame, FrameCodec, FrameConfig};
use crate::iso::{EncodeError, Message, Spec};
use crate::rc::ResponseCode;

/// How the simulated issuer behaves.
#[derive(Debug, Clone)]
pub struct SimIssuerConfig {
    pub spec: Arc<Spec>,
    pub frame: FrameConfig,
    /// Added to every reply.
    pub delay: Duration,
    /// A further uniformly random delay in `0..=jitter` per reply.
    pub jitter: Duration,
    /// Drop (never answer) every N-th request of each connection; 0 drops none.
    pub drop_every: u64,
    /// Answer requests that arrive together in shuffled order, in windows of this many;
    /// 0 or 1 keeps the order.
    pub shuffle: usize,
    /// Never answer a request (other than a reversal or an advice) for this amount, in
    /// minor units: a scripted timeout (the `cup-day` scenario's unanswered purchase).
    pub silent_amount: Option<u64>,
    /// Answer stand-in advices of this amount (minor units) with 05: the issuer refuses
    /// what the switch approved on its behalf.
    pub decline_advice_amount: Option<u64>,
    /// Every stand-in advice received (shared across restarts when the caller passes the
    /// same log).
    pub advices: Arc<AdviceLog>,
}

/// The stand-in advices a simulated issuer received.
#[derive(Debug, Default)]
pub struct AdviceLog {
    inner: std::sync::Mutex<AdviceBook>,
}

#[derive(Debug, Default)]
struct AdviceBook {
    /// Key (terminal, RRN, authorisation code) -> (first writes, repeats, amount, rc answered).
    by_key: std::collections::HashMap<String, (u32, u32, u64, String)>,
}

/// What an advice log holds, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdviceTotals {
    /// Distinct advices (transactions reported).
    pub distinct: u64,
    /// First writes (0120/0220) of a transaction already reported: a repeat not marked as one.
    pub duplicates: u64,
    /// Repeats (0121/0221).
    pub repeats: u64,
    /// Amount of the distinct advices, and of those answered 00.
    pub amount: u64,
    pub amount_accepted: u64,
    /// Distinct advices answered with a decline.
    pub declined: u64,
}

impl AdviceLog {
    fn record(&self, key: String, repeat: bool, amount: u64, rc: &str) {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = b.by_key.entry(key).or_insert((0, 0, amount, rc.to_string()));
        if repeat {
            e.1 += 1;
        } else {
            e.0 += 1;
        }
    }

    pub fn totals(&self) -> AdviceTotals {
        let b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut t = AdviceTotals::default();
        for (first, repeats, amount, rc) in b.by_key.values() {
            t.distinct += 1;
            t.duplicates += u64::from(first.saturating_sub(1));
            t.repeats += u64::from(*repeats);
            t.amount += amount;
            if rc == "00" {
                t.amount_accepted += amount;
            } else {
                t.declined += 1;
            }
        }
        t
    }

    /// The authorisation codes (field 38) of every advice received.
    pub fn codes(&self) -> Vec<String> {
        let b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        b.by_key.keys().filter_map(|k| k.rsplit('|').next().map(str::to_string)).collect()
    }
}

impl SimIssuerConfig {
    /// Immediate, in-order answers to everything, default framing.
    pub fn new(spec: Arc<Spec>) -> Self {
        SimIssuerConfig {
            spec,
            frame: FrameConfig::default(),
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            drop_every: 0,
            shuffle: 0,
            silent_amount: None,
            decline_advice_amount: None,
            advices: Arc::default(),
        }
    }

    fn timed(&self) -> bool {
        !self.delay.is_zero() || !self.jitter.is_zero()
    }
}

/// What the simulated issuer did, over all connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimIssuerStats {
    pub connections: u64,
    /// Frames received.
    pub received: u64,
    /// Replies written.
    pub answered: u64,
    /// Requests dropped on purpose (`drop_every`).
    pub dropped: u64,
    /// Frames that did not decode (answered with 30 when their MTI was readable).
    pub undecodable: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    received: AtomicU64,
    answered: AtomicU64,
    dropped: AtomicU64,
    undecodable: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SimIssuerStats {
        SimIssuerStats {
            connections: self.connections.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            undecodable: self.undecodable.load(Ordering::Relaxed),
        }
    }
}

/// Serve `listener` until `shutdown` is cancelled, then close every connection and
/// return the totals.
pub async fn run_issuer(
    listener: TcpListener,
    cfg: SimIssuerConfig,
    shutdown: CancellationToken,
) -> io::Result<SimIssuerStats> {
    let cfg = Arc::new(cfg);
    let counters = Arc::new(Counters::default());
    let mut conns = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((sock, _)) => {
                    next_id += 1;
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let (cfg, counters, stop) = (cfg.clone(), counters.clone(), shutdown.clone());
                    conns.spawn(async move {
                        if let Err(e) = serve(sock, next_id, cfg, counters, stop).await {
                            tracing::debug!(error = %e, "simulated issuer connection ended");
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: back off briefly, keep serving.
                    tracing::warn!(error = %e, "simulated issuer accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    while conns.join_next().await.is_some() {}
    Ok(counters.snapshot())
}

/// Replies handed from a connection's reader to its writer.
enum Outgoing {
    /// Framed replies to write now, and how many there are.
    Now(BytesMut, u64),
    /// Framed replies to write at their instants.
    Later(Vec<(Instant, Bytes)>),
}

async fn serve(
    sock: TcpStream,
    id: u64,
    cfg: Arc<SimIssuerConfig>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let _ = sock.set_nodelay(true);
    let (mut rd, wr) = sock.into_split();
    // Bounded: a peer that stops reading stalls this reader, and so TCP pushes back.
    let (tx, rx) = mpsc::channel(64);
    let writer = tokio::spawn(write_loop(wr, rx, counters.clone(), shutdown.clone()));
    let mut codec = FrameCodec::new(cfg.frame);
    let mut rbuf = ReadBuf::new();
    let mut responder = Responder::new(cfg.clone(), id);
    let result = loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            n = rd.read_buf(rbuf.prepare()) => n,
        };
        match n {
            Ok(0) => break Ok(()),
            Ok(n) => rbuf.filled(n),
            Err(e) => break Err(e),
        }
        let mut batch = Batch::default();
        let decoded = loop {
            match codec.decode(&mut rbuf.buf) {
                Ok(Some(frame)) => responder.handle(frame, &mut codec, &mut batch),
                Ok(None) => break Ok(()),
                Err(e) => break Err(io::Error::other(e)),
            }
        };
        counters.received.fetch_add(batch.received, Ordering::Relaxed);
        counters.dropped.fetch_add(batch.dropped, Ordering::Relaxed);
        counters.undecodable.fetch_add(batch.undecodable, Ordering::Relaxed);
        if let Some(out) = responder.finish(batch) {
            // The writer may be stuck on a peer that does not read: shutdown still wins.
            let sent = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                sent = tx.send(out) => sent,
            };
            if sent.is_err() {
                break Ok(());
            }
        }
        if let Err(e) = decoded {
            // A broken length header ends the stream; the replies so far still go out.
            break Err(e);
        }
    };
    drop(tx);
    let _ = writer.await;
    result
}

#[derive(Default)]
struct Batch {
    received: u64,
    dropped: u64,
    undecodable: u64,
    /// Replies kept apart when they are to be shuffled or delayed.
    held: Vec<Bytes>,
    /// Replies framed straight into the outgoing buffer.
    now: BytesMut,
    replies: u64,
}

/// Builds one connection's replies.
struct Responder {
    cfg: Arc<SimIssuerConfig>,
    conn: u64,
    seq: u64,
    scratch: BytesMut,
    rng: Rng,
}

impl Responder {
    fn new(cfg: Arc<SimIssuerConfig>, conn: u64) -> Self {
        Responder { cfg, conn, seq: 0, scratch: BytesMut::with_capacity(16 * 1024), rng: Rng::new(conn) }
    }

    fn handle(&mut self, frame: Frame, codec: &mut FrameCodec, batch: &mut Batch) {
        batch.received += 1;
        self.seq += 1;
        if self.cfg.drop_every > 0 && self.seq.is_multiple_of(self.cfg.drop_every) {
            batch.dropped += 1;
            return;
        }
        // The message is answered in place: a `Message` is a few kilobytes, and moving it
        // between functions showed up as memcpy in profiles.
        match Message::decode(&self.cfg.spec, frame.body.clone()) {
            Ok(req)
                if self.cfg.silent_amount.is_some()
                    && req.amount() == self.cfg.silent_amount
                    && !req.mti().starts_with("04")
                    && req.mti().as_bytes().get(2) != Some(&b'2') =>
            {
                batch.dropped += 1;
            }
            Ok(mut req) => match self.respond(&mut req) {
                Ok(true) => self.emit(&req, &frame, codec, batch),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "simulated issuer could not build a reply"),
            },
            Err(e) => {
                batch.undecodable += 1;
                tracing::debug!(part = %e.part, offset = e.offset, "simulated issuer got an undecodable request");
                if let Some(mti) = Message::peek_mti(&self.cfg.spec, &frame.body).and_then(response_mti) {
                    match format_error(&self.cfg.spec, &mti) {
                        Ok(m) => self.emit(&m, &frame, codec, batch),
                        Err(e) => tracing::warn!(error = %e, "simulated issuer could not build a reply"),
                    }
                }
            }
        }
    }

    fn emit(&mut self, reply: &Message, request: &Frame, codec: &mut FrameCodec, batch: &mut Batch) {
        if reply.encode(&mut self.scratch).is_err() {
            return;
        }
        let framed = request.reply(self.scratch.split().freeze());
        if self.cfg.shuffle > 1 || self.cfg.timed() {
            let mut one = BytesMut::new();
            if codec.encode(framed, &mut one).is_ok() {
                batch.held.push(one.freeze());
            }
        } else {
            match codec.encode(framed, &mut batch.now) {
                Ok(()) => batch.replies += 1,
                Err(e) => tracing::warn!(error = %e, "simulated issuer reply does not fit the framing"),
            }
        }
    }

    /// The batch's replies, shuffled and timed as configured.
    fn finish(&mut self, mut batch: Batch) -> Option<Outgoing> {
        if self.cfg.shuffle > 1 {
            for window in batch.held.chunks_mut(self.cfg.shuffle) {
                self.rng.shuffle(window);
            }
        }
        if self.cfg.timed() {
            if batch.held.is_empty() {
                return None;
            }
            let now = Instant::now();
            let jitter = self.cfg.jitter.as_micros() as u64;
            let timed = batch
                .held
                .into_iter()
                .map(|b| {
                    let extra = Duration::from_micros(self.rng.below(jitter.saturating_add(1)));
                    (now + self.cfg.delay + extra, b)
                })
                .collect();
            return Some(Outgoing::Later(timed));
        }
        for b in &batch.held {
            batch.now.extend_from_slice(b);
            batch.replies += 1;
        }
        (batch.replies > 0).then_some(Outgoing::Now(batch.now, batch.replies))
    }

    /// Turn `req` into its reply; `false` when it is not a request.
    fn respond(&mut self, req: &mut Message) -> Result<bool, EncodeError> {
        let Some(resp) = response_mti(mti_bytes(req)) else {
            return Ok(false);
        };
        let class = req.mti().as_bytes().get(1).copied();
        let advice = matches!(class, Some(b'1' | b'2')) && req.mti().as_bytes().get(2) == Some(&b'2');
        let rc = if advice {
            if req.amount().is_some_and(|a| Some(a) == self.cfg.decline_advice_amount) {
                ResponseCode::DO_NOT_HONOUR
            } else {
                ResponseCode::APPROVED
            }
        } else if matches!(class, Some(b'1' | b'2')) {
            decide(req)
        } else {
            ResponseCode::APPROVED
        };
        if advice {
            let text = |n: usize| req.text(n).map(|t| t.into_owned()).unwrap_or_default();
            let key = format!("{}|{}|{}", text(41), text(37), text(38));
            let repeat = req.mti().ends_with('1');
            self.cfg.advices.record(key, repeat, req.amount().unwrap_or(0), rc.as_str());
        }
        let spec = self.cfg.spec.clone();
        req.set_mti(std::str::from_utf8(&resp).unwrap_or("0000"))?;
        for n in [35, 36, 45, 52] {
            req.remove(n);
        }
        if spec.field(39).is_some() {
            req.set_bytes(39, rc.as_bytes())?;
        }
        if rc.is_approved() && !advice && matches!(class, Some(b'1' | b'2')) && spec.field(38).is_some() {
            req.set_bytes(38, &digits::<6>(self.seq))?;
        }
        if !req.has(37) && spec.field(37).is_some() {
            req.set_bytes(37, &digits::<12>((self.conn % 1000) * 1_000_000_000 + self.seq % 1_000_000_000))?;
        }
        Ok(true)
    }
}

/// The reply to a request that does not decode: its response MTI and 39 = 30.
fn format_error(spec: &Arc<Spec>, mti: &[u8; 4]) -> Result<Message, EncodeError> {
    let mut m = Message::new(spec.clone(), std::str::from_utf8(mti).unwrap_or("0000"))?;
    m.set_bytes(39, ResponseCode::FORMAT_ERROR.as_bytes())?;
    Ok(m)
}

fn mti_bytes(m: &Message) -> [u8; 4] {
    m.mti().as_bytes().try_into().unwrap_or(*b"0000")
}

/// Request MTI + 10, the origin digit brought back from "repeat"; `None` for MTIs that
/// are themselves responses (odd third digit).
fn response_mti(mut mti: [u8; 4]) -> Option<[u8; 4]> {
    if !mti.iter().all(u8::is_ascii_digit) || (mti[2] - b'0') % 2 == 1 {
        return None;
    }
    mti[2] += 1;
    if (mti[3] - b'0') % 2 == 1 {
        mti[3] -= 1;
    }
    Some(mti)
}

/// The sim issuer's rules (see the module doc).
fn decide(req: &Message) -> ResponseCode {
    if req.pan().is_some_and(|p| p.starts_with(BAD_PAN_PREFIX)) {
        return ResponseCode::INVALID_CARD;
    }
    match req.amount().map(|a| a % 100) {
        Some(51) => ResponseCode::INSUFFICIENT_FUNDS,
        Some(5) => ResponseCode::DO_NOT_HONOUR,
        _ => ResponseCode::APPROVED,
    }
}

/// An entry of the delayed-reply heap, ordered by due time, then arrival.
struct Due {
    at: Instant,
    seq: u64,
    bytes: Bytes,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// What woke the writer.
enum Wake {
    Reply(Outgoing),
    Closed,
    Due,
}

/// Write every reply that is ready in one write; delayed replies wait in a heap.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut heap: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut open = true;
    loop {
        let next_due = heap.peek().map(|Reverse(d)| d.at);
        let wake = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = rx.recv(), if open => m.map_or(Wake::Closed, Wake::Reply),
            _ = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => Wake::Due,
        };
        let mut count = 0u64;
        let mut absorb = |m: Outgoing, out: &mut BytesMut| match m {
            Outgoing::Now(b, n) => {
                count += n;
                out.extend_from_slice(&b);
            }
            Outgoing::Later(items) => {
                for (at, bytes) in items {
                    seq += 1;
                    heap.push(Reverse(Due { at, seq, bytes }));
                }
            }
        };
        match wake {
            Wake::Reply(m) => absorb(m, &mut out),
            Wake::Closed => open = false,
            Wake::Due => {}
        }
        while let Ok(m) = rx.try_recv() {
            absorb(m, &mut out);
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
            if let Some(Reverse(d)) = heap.pop() {
                out.extend_from_slice(&d.bytes);
                count += 1;
            }
        }
        if !out.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                written = wr.write_all(&out) => written?,
            }
            out.clear();
            counters.answered.fetch_add(count, Ordering::Relaxed);
        }
        if !open && heap.is_empty() {
            return Ok(());
        }
    }
}
