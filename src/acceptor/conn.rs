//! One terminal connection: a reader loop that decodes each frame into a `Request`
//! (answering at once what needs no waiting: format errors, bad MACs, network management,
//! known repeats), holds a reversing terminal's next requests until its reversal is
//! handled, and hands every other request to the handler its plan's kind names
//! (`handlers/`); and a writer task fed by an mpsc that drains every ready reply, then
//! writes and flushes once. Many requests may be in flight per connection; their replies
//! are written in the order they complete. The handlers run as futures inside the
//! connection task (no task per message). On a graceful stop it reads no more, answers
//! every request it has read (in flight, or still in its read buffer), closes its write
//! side and waits, bounded, for the terminal to close before dropping the socket.
//! May import: crate::acceptor::handlers, crate::acceptor::late, crate::acceptor::listener,
//! crate::acceptor::repeats, crate::acceptor::reply, crate::acceptor::request, crate::frame,
//! crate::iso, crate::issuer, crate::journal, crate::metrics, crate::rc, crate::telemetry,
//! crate::time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use metrics::counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Chain, Take};
use tokio::sync::mpsc;
use tokio_util::codec::{Decoder, Encoder, FramedRead};
use tokio_util::sync::CancellationToken;

use super::handlers::{decline, forward, repeat, reversal, settle, upload};
use super::listener::ListenerCtx;
use super::repeats::{Answer, Seen};
use super::reply::{format_error, repeat_reply, switch_reply};
use super::request::{Arrival, Plan, Request};
use crate::frame::batch::{Ended, write_batches};
use crate::frame::{Frame, FrameCodec, FrameError};
use crate::iso::Message;
use crate::journal::RowType;
use crate::metrics as m;

/// Read buffer of a connection that has sent something: large enough that one read
/// takes a whole pipelined batch. A connection that has sent nothing holds none.
const READ_CAPACITY: usize = 4096;

/// A connection's read side: the bytes of its first read, then the socket.
type Reader<R> = Chain<Take<std::io::Cursor<[u8; 64]>>, R>;

/// The events any terminal can repeat at will, logged first then once per interval with a
/// count (`suppressed`), so that churn or an attack cannot flood the log.
mod logged {
    use crate::telemetry::{THROTTLE_INTERVAL, Throttle};
    pub static TOO_LONG: Throttle = Throttle::new(THROTTLE_INTERVAL);
    pub static FRAMING_ENDED: Throttle = Throttle::new(THROTTLE_INTERVAL);
    pub static IDLE: Throttle = Throttle::new(THROTTLE_INTERVAL);
    pub static UNDECODABLE: Throttle = Throttle::new(THROTTLE_INTERVAL);
    pub static RESPONSE_FROM_TERMINAL: Throttle = Throttle::new(THROTTLE_INTERVAL);
}

/// The next connection's number for admission control (`Arrival::source`).
static NEXT_SOURCE: AtomicU64 = AtomicU64::new(1);

/// How long a gracefully stopped connection waits for the terminal to close its side.
const LINGER: Duration = Duration::from_secs(1);

/// How long the requests of a closed connection may take to finish (each is bounded by
/// its own deadline; this only guards against a deadline configured longer).
const DRAIN_BOUND: Duration = Duration::from_secs(120);

/// A reversal finished for this terminal: one fewer in progress.
fn release(reversing: &mut HashMap<String, usize>, tid: &str) {
    if let Some(n) = reversing.get_mut(tid) {
        *n -= 1;
        if *n == 0 {
            reversing.remove(tid);
        }
    }
}

/// The stop signals a listener's connections obey: `graceful` (read no more, answer what
/// was read) and `hard` (close now). A token's own checks lock a mutex that every
/// connection shares, and a busy connection checked both for every message; it now reads
/// these flags, which `watch` sets, and polls the tokens only before it sleeps.
pub struct Stop {
    pub graceful: CancellationToken,
    pub hard: CancellationToken,
    stopping: AtomicBool,
    killed: AtomicBool,
}

impl Stop {
    pub fn new(graceful: CancellationToken, hard: CancellationToken) -> Arc<Stop> {
        Arc::new(Stop { graceful, hard, stopping: AtomicBool::new(false), killed: AtomicBool::new(false) })
    }

    /// Set the flags as the tokens are cancelled; runs until `hard` is.
    pub async fn watch(self: Arc<Self>) {
        tokio::select! {
            _ = self.graceful.cancelled() => self.stopping.store(true, Ordering::Release),
            _ = self.hard.cancelled() => {}
        }
        self.hard.cancelled().await;
        self.killed.store(true, Ordering::Release);
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    fn killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }
}

/// Serve one connection until the terminal leaves, it idles out, or shutdown drains it.
pub async fn serve<R, W>(ctx: Arc<ListenerCtx>, r: R, w: W, stop: Arc<Stop>)
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (shutdown, hard) = (&stop.graceful, &stop.hard);
    let idle_for = Duration::from_millis(ctx.cfg.idle_timeout_ms.max(1));
    let mut r = r;
    let mut first = [0u8; 64];
    let n = tokio::select! {
        n = r.read(&mut first) => match n {
            Ok(n) if n > 0 => n,
            _ => return,
        },
        _ = tokio::time::sleep(idle_for) => return,
        _ = shutdown.cancelled() => return,
        _ = hard.cancelled() => return,
    };
    // The bytes already read come first, then the socket.
    let r = std::io::Cursor::new(first).take(n as u64).chain(r);
    let mut frames = FramedRead::with_capacity(r, FrameCodec::new(ctx.cfg.frame), READ_CAPACITY);
    let mut out = Outbox::new(&ctx, w);
    let mut inflight = FuturesUnordered::new();
    // The timer is re-armed only when it fires; each frame just notes the time, which
    // keeps timer-wheel updates off the per-message path.
    let mut last_seen = Instant::now();
    let idle = tokio::time::sleep(idle_for);
    tokio::pin!(idle);
    let mut reading = true;
    // Frames read before a graceful stop, answered before the connection closes.
    let mut backlog = VecDeque::new();
    let mut drained = false;
    let max = ctx.cfg.max_inflight_per_connection.max(1);
    // Names this connection to admission control, which serves connections in turn.
    let source = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed);
    // A reversal waits for its own original only (see `inflight::InFlightTable`), never for unrelated
    // requests on its connection (a concentrator carries many terminals). Terminals
    // reverse their last unanswered request before sending the next one, and that next
    // one must be planned with the reversal already handled: so the requests of the
    // reversing terminal (and only of that one) that arrive meanwhile are held until it is.
    let mut reversing: HashMap<String, usize> = HashMap::new();
    let mut held: VecDeque<Box<Request>> = VecDeque::new();
    loop {
        if !reading && inflight.is_empty() && backlog.is_empty() {
            drained = shutdown.is_cancelled();
            break;
        }
        if stop.killed() {
            break;
        }
        if reading && stop.stopping() {
            reading = false;
            backlog = buffered(&mut frames, ctx.cfg.frame);
            continue;
        }
        // The in-flight cap counts the replies not yet written as well: a terminal that
        // does not read its replies is read no further, so the reply queue never fills and
        // this loop never stops to wait for it, leaving granted admission slots unused.
        let room = inflight.len() + held.len() + out.unsent() < max;
        // A frame to handle, and whether it was just read from the socket (not the backlog).
        let (frame, read_now) = tokio::select! {
            biased;
            Some((reply, reversed)) = inflight.next(), if !inflight.is_empty() => {
                if !out.send(reply).await {
                    break;
                }
                let reversed: Option<String> = reversed;
                if let Some(tid) = reversed {
                    release(&mut reversing, tid.as_str());
                    // The held requests of terminals no longer reversing go on, in order.
                    let mut still = VecDeque::with_capacity(held.len());
                    for r in held.drain(..) {
                        if reversing.contains_key(&r.terminal) {
                            still.push_back(r);
                        } else {
                            inflight.push(handle(ctx.clone(), r));
                        }
                    }
                    held = still;
                }
                if inflight.is_empty() {
                    last_seen = Instant::now();
                }
                continue;
            }
            Some(frame) = async { backlog.pop_front() }, if !backlog.is_empty() && room => {
                (frame, false)
            }
            next = frames.next(), if reading && room => match next {
                None => {
                    reading = false;
                    continue;
                }
                Some(Err(FrameError::TooLong { len, max })) => {
                    counter!(m::FRAME_ERRORS_TOTAL).increment(1);
                    if let Some(suppressed) = logged::TOO_LONG.hit() {
                        tracing::warn!(len, max, suppressed, "terminal frame over the maximum; closing its connection");
                    }
                    break;
                }
                Some(Err(e)) => {
                    counter!(m::FRAME_ERRORS_TOTAL).increment(1);
                    if let Some(suppressed) = logged::FRAMING_ENDED.hit() {
                        tracing::info!(error = %e, suppressed, "terminal connection framing ended");
                    }
                    reading = false;
                    continue;
                }
                Some(Ok(frame)) => (frame, true),
            },
            // Polled only when nothing above is ready, which is before the connection
            // sleeps: they wake it. A busy connection sees the flags checked above.
            _ = hard.cancelled() => break,
            // Full only of replies the writer has not taken yet, with nothing in flight to
            // wake it: look again shortly (the writer gives no signal when it drains).
            _ = tokio::time::sleep(Duration::from_millis(1)), if !room && inflight.is_empty() => continue,
            _ = shutdown.cancelled(), if reading => {
                reading = false;
                backlog = buffered(&mut frames, ctx.cfg.frame);
                continue;
            }
            _ = &mut idle, if inflight.is_empty() && reading => {
                let quiet = last_seen.elapsed();
                if quiet >= idle_for {
                    if let Some(suppressed) = logged::IDLE.hit() {
                        tracing::debug!(suppressed, "idle terminal connection closed");
                    }
                    break;
                }
                idle.as_mut().reset(tokio::time::Instant::now() + (idle_for - quiet));
                continue;
            }
        };
        let now = Instant::now();
        if read_now {
            last_seen = now;
        }
        match on_frame(&ctx, frame, now, source) {
            Step::Reply(f) => {
                if !out.send(f).await {
                    break;
                }
            }
            Step::Handle(mut r) => {
                if matches!(r.plan, Plan::Reversal { .. }) {
                    r.terminal = r.msg.terminal_key();
                    *reversing.entry(r.terminal.clone()).or_insert(0) += 1;
                    inflight.push(handle(ctx.clone(), r));
                } else if !reversing.is_empty() && {
                    r.terminal = r.msg.terminal_key();
                    reversing.contains_key(&r.terminal)
                } {
                    held.push_back(r);
                } else {
                    inflight.push(handle(ctx.clone(), r));
                }
            }
            Step::Nothing => {}
        }
    }
    // Requests already forwarded run to their end even when the terminal has gone: an
    // issuer's answer is journalled (or reversed) whoever is left to read it, and a
    // retransmission on a new connection finds it. Held requests never started.
    if !stop.killed() {
        let drain = async { while inflight.next().await.is_some() {} };
        if tokio::time::timeout(DRAIN_BOUND, drain).await.is_err() {
            tracing::warn!(
                "requests of a closed terminal connection still unfinished after the bound; dropped"
            );
        }
    }
    drop(inflight);
    out.close().await;
    if drained {
        linger(frames.into_inner(), hard).await;
    }
}

/// The complete frames a connection has read but not decoded yet (its read buffer, and
/// what is left of its first read): at a graceful stop they are answered, not dropped.
fn buffered<R: AsyncRead + Unpin>(
    frames: &mut FramedRead<Reader<R>, FrameCodec>,
    cfg: crate::frame::FrameConfig,
) -> VecDeque<Frame> {
    let first = frames.get_mut().get_mut().0;
    let left = first.limit() as usize;
    let start = first.get_ref().position() as usize;
    let rest = first.get_ref().get_ref().get(start..start.saturating_add(left)).unwrap_or(&[]).to_vec();
    first.set_limit(0);
    let buf = frames.read_buffer_mut();
    buf.extend_from_slice(&rest);
    let mut codec = FrameCodec::new(cfg);
    let mut out = VecDeque::new();
    while let Ok(Some(f)) = codec.decode(buf) {
        out.push_back(f);
    }
    out
}

/// After a graceful stop has answered everything and sent FIN: read and discard what the
/// terminal still sends until it closes (bounded). Closing a socket with unread bytes
/// makes the kernel reset the connection, which can destroy replies still on their way.
async fn linger<R: AsyncRead + Unpin>(mut r: R, hard: &CancellationToken) {
    let mut sink = [0u8; 1024];
    let until = tokio::time::Instant::now() + LINGER;
    loop {
        tokio::select! {
            n = tokio::time::timeout_at(until, r.read(&mut sink)) => match n {
                Ok(Ok(n)) if n > 0 => continue,
                _ => return,
            },
            _ = hard.cancelled() => return,
        }
    }
}

/// The write side, started on the first reply: an idle terminal costs no writer task
/// and no channel.
struct Outbox<W> {
    w: Option<W>,
    tx: Option<mpsc::Sender<Frame>>,
    writer: Option<tokio::task::JoinHandle<()>>,
    frame: crate::frame::FrameConfig,
    bound: Duration,
    depth: usize,
}

impl<W: AsyncWrite + Send + Unpin + 'static> Outbox<W> {
    fn new(ctx: &ListenerCtx, w: W) -> Self {
        Outbox {
            w: Some(w),
            tx: None,
            writer: None,
            frame: ctx.cfg.frame,
            bound: ctx.write_bound,
            depth: ctx.cfg.max_inflight_per_connection.max(1) + 16,
        }
    }

    /// Queue a reply; false when the writer has gone (the connection is finished).
    async fn send(&mut self, f: Frame) -> bool {
        if self.tx.is_none()
            && let Some(w) = self.w.take()
        {
            let (tx, rx) = mpsc::channel::<Frame>(self.depth);
            self.writer = Some(tokio::spawn(write_loop(rx, w, FrameCodec::new(self.frame), self.bound)));
            self.tx = Some(tx);
        }
        match &self.tx {
            Some(tx) => tx.send(f).await.is_ok(),
            None => false,
        }
    }

    /// Replies queued and not yet taken by the writer.
    fn unsent(&self) -> usize {
        self.tx.as_ref().map_or(0, |tx| tx.max_capacity().saturating_sub(tx.capacity()))
    }

    /// Flush what is queued and close the write side.
    async fn close(mut self) {
        drop(self.tx.take());
        if let Some(h) = self.writer.take() {
            let _ = h.await;
        } else if let Some(mut w) = self.w.take() {
            let _ = tokio::time::timeout(self.bound, w.shutdown()).await;
        }
    }
}

/// What one frame leads to.
enum Step {
    /// An answer made at once (format error, bad MAC, network management, a known repeat).
    Reply(Frame),
    /// A request for its handler. Boxed: it waits in a future, and moving a pointer is
    /// cheaper than the message.
    Handle(Box<Request>),
    Nothing,
}

fn reply_frame(
    ctx: &ListenerCtx,
    req: &Frame,
    request: Option<(&Message, bool)>,
    msg: Result<Message, crate::iso::EncodeError>,
) -> Step {
    let msg = msg.map(|mut m| {
        if let Some((r, mac)) = request {
            ctx.security.finish(r, &mut m, mac);
        }
        m
    });
    match msg.and_then(|m| m.to_bytes().map(|b| (b, m))) {
        Ok((body, msg)) => {
            ctx.local.get(msg.raw(39).unwrap_or(b"")).increment(1);
            Step::Reply(req.reply(body))
        }
        Err(e) => {
            tracing::error!(listener = %ctx.cfg.addr, error = %e, "could not build a reply");
            Step::Nothing
        }
    }
}

/// Decode a frame read at `now` on connection `source`, check it, and plan it.
fn on_frame(ctx: &ListenerCtx, frame: Frame, now: Instant, source: u64) -> Step {
    let msg = match Message::decode(&ctx.spec, frame.body.clone()) {
        Ok(msg) => msg,
        Err(e) => {
            counter!(m::DECODE_ERRORS_TOTAL).increment(1);
            // The error names the part and offset, never a field's value.
            if let Some(suppressed) = logged::UNDECODABLE.hit() {
                tracing::warn!(listener = %ctx.cfg.addr, error = %e, suppressed, "undecodable terminal message");
            }
            let Some(mti) = Message::peek_mti(&ctx.spec, &frame.body) else { return Step::Nothing };
            ctx.requests.get(&mti).increment(1);
            return match format_error(&ctx.spec, mti) {
                Some(r) => reply_frame(ctx, &frame, None, Ok(r)),
                None => Step::Nothing,
            };
        }
    };
    ctx.requests.get(msg.mti().as_bytes()).increment(1);
    if crate::issuer::response_mti(msg.mti().as_bytes()).is_none() {
        if let Some(suppressed) = logged::RESPONSE_FROM_TERMINAL.hit() {
            tracing::info!(mti = msg.mti(), suppressed, "terminal sent a response message; ignored");
        }
        return Step::Nothing;
    }
    let mac = match ctx.security.verify(&msg) {
        Ok(mac) => mac,
        Err(rc) => return reply_frame(ctx, &frame, Some((&msg, false)), switch_reply(&msg, rc)),
    };
    let at = crate::time::now().as_i64();
    // A retransmission or repeat is answered as its original was, never forwarded again.
    let (claim, plan) = match ctx.services.repeats.check(&msg, at) {
        None => (None, None),
        Some(Seen::New(c)) => (Some(c), None),
        Some(Seen::Unsure(c)) => (Some(c), Some(Plan::Lookup)),
        Some(Seen::InFlight(rx)) => {
            counter!(m::REPEATS_TOTAL, "outcome" => "waited").increment(1);
            (None, Some(Plan::Repeat(rx)))
        }
        Some(Seen::Answered(a)) => {
            counter!(m::REPEATS_TOTAL, "outcome" => "answered").increment(1);
            tracing::debug!(mti = msg.mti(), "retransmission answered as its original was");
            return reply_frame(ctx, &frame, Some((&msg, mac)), repeat_reply(&msg, &a));
        }
        Some(Seen::Conflict) => {
            counter!(m::REPEATS_TOTAL, "outcome" => "conflict").increment(1);
            tracing::info!(mti = msg.mti(), "terminal key reused with another amount; answered 94");
            (
                None,
                Some(Plan::Decline {
                    rc: crate::rc::ResponseCode::DUPLICATE,
                    field44: None,
                    txn: RowType::Duplicate,
                }),
            )
        }
    };
    let plan = match plan {
        Some(p) => p,
        None => ctx.services.plan(&msg, at),
    };
    if let Plan::Local(rc) = plan {
        let reply = switch_reply(&msg, rc).map(|mut r| {
            if let Some(Err(code)) = ctx.security.sign_on(&msg, &mut r) {
                let _ = r.set(39, code.as_str());
            }
            r
        });
        return reply_frame(ctx, &frame, Some((&msg, mac)), reply);
    }
    // A forwarded request is known in flight from now on: a reversal read after it finds it.
    let inflight = matches!(plan, Plan::Forward { .. }).then(|| ctx.inflight.start(&msg));
    Step::Handle(Box::new(Request {
        plan,
        msg,
        frame,
        arrival: Arrival { at, instant: now, source },
        mac,
        claim,
        terminal: String::new(),
        inflight,
    }))
}

/// Hand `req` to the handler its plan's kind names and turn the answer into the
/// terminal's reply frame, with the terminal of a reversal (whose held requests may then
/// go on). Every handler is boxed: a future is as large as its largest branch, and this
/// one is moved into the connection's set for every request.
async fn handle(ctx: Arc<ListenerCtx>, mut req: Box<Request>) -> (Frame, Option<String>) {
    let svc = &ctx.services;
    let (msg, at) = (&req.msg, req.arrival.at);
    if let Plan::Lookup = req.plan {
        // Memory could not prove the key new: the journal decides.
        req.plan = Box::pin(repeat::lookup(svc, msg, at)).await;
    }
    let msg = &req.msg;
    let (built, issuer) = match &req.plan {
        Plan::Forward { issuer, fwd } => {
            let (reply, asked) = Box::pin(forward::forward(&ctx, msg, *issuer, fwd, req.arrival)).await;
            (reply, asked.then_some(*issuer))
        }
        Plan::Reversal { fwd } => (Box::pin(reversal::reversal(&ctx, msg, fwd, at)).await, None),
        Plan::Settle => (Box::pin(settle::settle(&ctx, msg)).await, None),
        Plan::Upload => (Box::pin(upload::upload(svc, msg, at)).await, None),
        Plan::Decline { rc, field44, txn } => {
            (Box::pin(decline::decline(svc, msg, *rc, field44.as_deref(), *txn, at)).await, None)
        }
        Plan::Repeat(rx) => (Box::pin(repeat::in_flight(msg, rx.clone())).await, None),
        Plan::Answered(a) => (repeat::answered(msg, a), None),
        Plan::Local(rc) => (switch_reply(msg, *rc).ok().map(Box::new), None),
        // Resolved above; a lookup that planned another lookup is not forwarded.
        Plan::Lookup => {
            (switch_reply(msg, crate::rc::ResponseCode::SYSTEM_MALFUNCTION).ok().map(Box::new), None)
        }
    };
    let reversal = matches!(req.plan, Plan::Reversal { .. }).then(|| std::mem::take(&mut req.terminal));
    let frame = answer(&ctx, &mut req, built, issuer);
    (frame, reversal)
}

/// The terminal's reply frame: the repeat table told the answer, the request no longer in
/// flight, the reply MACed and encoded, counted, and its end-to-end time recorded.
fn answer(ctx: &ListenerCtx, req: &mut Request, built: Option<Box<Message>>, issuer: Option<usize>) -> Frame {
    if let (Some(claim), Some(msg)) = (req.claim.take(), &built) {
        claim.finish(Answer::of_reply(msg));
    }
    req.inflight = None;
    let mut body = BytesMut::with_capacity(req.frame.body.len() + 64);
    let built = built.map(|mut m| {
        ctx.security.finish(&req.msg, &mut m, req.mac);
        m
    });
    let body = match built {
        Some(msg) if msg.encode(&mut body).is_ok() => {
            let rc = msg.raw(39).unwrap_or(b"");
            match issuer.and_then(|i| ctx.issuers.get(i)) {
                Some(i) => i.responses().get(rc).increment(1),
                None => ctx.local.get(rc).increment(1),
            }
            body.freeze()
        }
        _ => Bytes::new(),
    };
    let took = req.arrival.instant.elapsed();
    ctx.end_to_end.record(took.as_secs_f64());
    if let Some(promised) = issuer.and_then(|i| ctx.issuers.get(i)).map(|i| i.reply_deadline())
        && took > promised
    {
        super::late::answered_late(took - promised);
    }
    if body.is_empty() {
        tracing::error!(listener = %ctx.cfg.addr, "could not encode the reply");
    }
    req.frame.reply(body)
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut rx: mpsc::Receiver<Frame>,
    mut w: W,
    mut codec: FrameCodec,
    bound: Duration,
) {
    let ended = write_batches(&mut rx, &mut w, bound, BytesMut::new(), |f: Frame, buf: &mut BytesMut| {
        // An empty body is a reply that could not be built; nothing is sent for it.
        if !f.body.is_empty() && codec.encode(f, buf).is_err() {
            tracing::warn!("reply too large for the terminal's framing");
        }
    })
    .await;
    if ended == Ended::Closed {
        let _ = tokio::time::timeout(bound, w.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_stop_flags_follow_the_tokens() {
        let (graceful, hard) = (CancellationToken::new(), CancellationToken::new());
        let stop = Stop::new(graceful.clone(), hard.clone());
        let watcher = tokio::spawn(stop.clone().watch());
        tokio::task::yield_now().await;
        assert!(!stop.stopping() && !stop.killed());
        graceful.cancel();
        for _ in 0..100 {
            if stop.stopping() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(stop.stopping() && !stop.killed());
        hard.cancel();
        tokio::time::timeout(Duration::from_secs(1), watcher).await.expect("watcher ends").expect("no panic");
        assert!(stop.killed());
    }

    #[tokio::test]
    async fn a_hard_stop_alone_kills() {
        let (graceful, hard) = (CancellationToken::new(), CancellationToken::new());
        let stop = Stop::new(graceful, hard.clone());
        hard.cancel();
        tokio::time::timeout(Duration::from_secs(1), stop.clone().watch()).await.expect("watcher ends");
        assert!(stop.killed() && !stop.stopping());
    }
}
