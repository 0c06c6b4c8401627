//! One persistent link to an issuer: connect (TCP or TLS) with capped exponential
//! backoff that survives refused connects, sign on (0800, field 70 = 001), echo (0800,
//! 70 = 301) when nothing has been received for the echo interval, and close the link
//! hard when a write stalls or an echo goes unanswered. Per connection a reader task
//! matches replies in the session table while the link task writes: it drains every
//! queued message, then writes and flushes once. A reversible financial request that
//! times out (or whose link is lost under it) is reversed here: the 0400 is built from the
//! request as written and stored before the waiting side hears of the timeout; its key is
//! remembered so that a late reply is recognised and not reversed a second time. With an
//! in-doubt log, the writer logs each batch's reversible requests before writing it.
//! Each connection ends with a reason (`link_state::LinkFault`); the link's health
//! (`link_state::LinkHealth`) decides what of it reaches the log: one WARN when the link
//! goes down, a reminder while it stays down, one INFO when it is up again.
//! May import: codec, framing, config, response-code tables, metrics, telemetry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use metrics::{Gauge, Histogram, counter, gauge, histogram};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::clock::{transmission_time, write_digits};
use super::indoubt::SegmentWriter;
use super::link_state::{DownReport, LinkFault, LinkHealth};
use super::saf::{Late, SafCtx};
use super::session::{Key, MatchKey, Pending, SessionTable, Ticket};
pub use super::writer::Outgoing;
use super::writer::{Ended, write_loop};
use super::{Outcome, convert, response_mti, reversal};
use crate::config::{LinkConfig, Timeouts};
use crate::frame::FrameCodec;
use crate::iso::{Message, Spec};
use crate::metrics as m;
use crate::telemetry::{THROTTLE_INTERVAL, Throttle};

/// Issuer faults that repeat per message: logged first, then once per interval with a count.
static UNDECODABLE: Throttle = Throttle::new(THROTTLE_INTERVAL);
static UNEXPECTED: Throttle = Throttle::new(THROTTLE_INTERVAL);

type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub(super) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A request on its way: what the waiting side needs.
struct Sent {
    ticket: Ticket,
    rx: oneshot::Receiver<Box<Message>>,
    deadline: Instant,
    terminal_stan: Option<u32>,
    /// Field 11 as written (the switch's STAN): the reply must echo it.
    stan: u32,
    /// The request as written, kept (a shared buffer, no copy) while it may need a reversal.
    written: Option<Bytes>,
}

/// What is being exchanged: it decides admission, the RRN and what a timeout costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A terminal's request: needs a link up; gets a switch RRN. The issuer's admission
    /// control (in front of all its links) keeps the window, not the link: a link that
    /// refused for its own count would answer 91 for a request admitted to the issuer,
    /// and the waiters behind it, one after another, while the store-and-forward
    /// worker's reversals (which pass the window) are in flight.
    Request,
    /// Sign-on and echo: may use a link not marked up yet.
    Network,
    /// A stored reversal (its store id): needs a link up, is never refused for the
    /// window (reversals are never shed), keeps the original's RRN.
    Reversal(i64),
}

/// Why a request was not written.
enum NotSent {
    Unavailable,
    Failed,
}

/// A link's shared state: read by the requests that use it, written by its task.
pub struct Link {
    id: u32,
    issuer: Arc<str>,
    cfg: LinkConfig,
    spec: Arc<Spec>,
    key: MatchKey,
    /// The response-code table of the link's dialect: a reply's field 39 must be in it.
    rc: Arc<crate::rc::RcTable>,
    tls: Option<(Arc<rustls::ClientConfig>, String)>,
    table: Arc<SessionTable>,
    timeouts: Timeouts,
    saf: Option<Arc<SafCtx>>,
    /// Whether this link's writer keeps an in-doubt log.
    logged: bool,
    tx: mpsc::Sender<Outgoing>,
    up: AtomicBool,
    inflight: AtomicUsize,
    ewma_us: AtomicU64,
    /// The issuer's STAN allocator, shared by all of its links: field 90 of a reversal names
    /// its original by STAN and field 7, so two links must never send the same STAN.
    stan: Arc<AtomicU32>,
    rrn: AtomicU64,
    /// Milliseconds since `born` at the last frame received.
    last_rx_ms: AtomicU64,
    born: Instant,
    latency: Histogram,
    inflight_gauge: Gauge,
    /// `isoswitch_issuer_up` and `isoswitch_issuer_links_up` of this link's issuer.
    up_gauge: Arc<m::IssuerUp>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("addr", &self.cfg.addr)
            .finish()
    }
}

/// An issuer's STAN allocator: it starts where the clock puts it, so that a restart does
/// not reuse the STANs of the last minutes.
pub fn stan_allocator() -> Arc<AtomicU32> {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Arc::new(AtomicU32::new((secs % 999_999) as u32))
}

impl Link {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u32,
        issuer: Arc<str>,
        cfg: LinkConfig,
        spec: Arc<Spec>,
        key: MatchKey,
        tls: Option<(Arc<rustls::ClientConfig>, String)>,
        table: Arc<SessionTable>,
        timeouts: Timeouts,
        saf: Option<Arc<SafCtx>>,
        stan: Arc<AtomicU32>,
        logged: bool,
    ) -> (Arc<Link>, mpsc::Receiver<Outgoing>) {
        // Room past the window: stored reversals and echoes are written outside it, and a
        // full channel fails the request (96). Blocks are allocated as they fill.
        let (tx, rx) = mpsc::channel(cfg.window.saturating_add(1024));
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let label = issuer.to_string();
        let link = Link {
            id,
            latency: histogram!(m::ISSUER_LATENCY_SECONDS, "issuer" => label.clone()),
            inflight_gauge: gauge!(m::INFLIGHT, "issuer" => label.clone()),
            up_gauge: m::IssuerUp::of(&label),
            issuer,
            cfg,
            rc: crate::rc::RcTable::shipped(&spec.name),
            spec,
            key,
            tls,
            table,
            timeouts,
            saf,
            logged,
            tx,
            up: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            ewma_us: AtomicU64::new(0),
            stan,
            rrn: AtomicU64::new((secs % 100_000) * 100_000),
            last_rx_ms: AtomicU64::new(0),
            born: Instant::now(),
        };
        (Arc::new(link), rx)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn latency_us(&self) -> u64 {
        self.ewma_us.load(Ordering::Relaxed)
    }

    /// Set the state the link chooser reads (tests of the choice only).
    #[cfg(test)]
    pub fn set_state(&self, up: bool, inflight: usize, latency_us: u64) {
        self.up.store(up, Ordering::Release);
        self.inflight.store(inflight, Ordering::Relaxed);
        self.ewma_us.store(latency_us, Ordering::Relaxed);
    }

    pub(super) fn next_stan(&self) -> u32 {
        self.stan.fetch_add(1, Ordering::Relaxed) % 999_999 + 1
    }

    fn next_rrn(&self) -> [u8; 12] {
        let seq = self.rrn.fetch_add(1, Ordering::Relaxed) % 10_000_000_000;
        let mut out = [b'0'; 12];
        write_digits(&mut out[..2], u64::from(self.id % 100));
        write_digits(&mut out[2..], seq);
        out
    }

    fn entry_left(&self) {
        self.inflight.fetch_sub(1, Ordering::Relaxed);
        self.inflight_gauge.decrement(1.0);
    }

    /// Send `req` on this link with a fresh switch STAN (and RRN for a terminal's request)
    /// and wait for its outcome until the link's deadline.
    pub async fn exchange(&self, req: &Message, kind: Kind) -> Outcome {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.deadline_ms);
        self.exchange_by(req, kind, deadline).await
    }

    /// As `exchange`, waiting for the reply until `deadline` (the issuer connector counts
    /// it from the request's arrival, so time spent waiting for admission is included).
    /// A reversible request that times out or is lost with its link is reversed before
    /// this returns (when the issuer has a store-and-forward).
    pub async fn exchange_by(&self, req: &Message, kind: Kind, deadline: Instant) -> Outcome {
        // Everything that touches a whole `Message` happens before the await, so the
        // future that waits stays small.
        let Sent { ticket, mut rx, deadline, terminal_stan, stan, written } =
            match self.send(req, kind, deadline) {
                Ok(sent) => sent,
                Err(NotSent::Unavailable) => return Outcome::Unavailable,
                Err(NotSent::Failed) => return Outcome::Failed,
            };
        let outcome = match tokio::time::timeout_at(deadline.into(), &mut rx).await {
            Ok(Ok(reply)) => return self.believe(req, kind, stan, reply),
            Ok(Err(_)) => Outcome::LinkLost,
            Err(_) => {
                if self.table.take(&ticket).is_some() {
                    self.entry_left();
                    counter!(m::TIMEOUTS_TOTAL, "issuer" => self.issuer.to_string()).increment(1);
                    tracing::info!(issuer = %self.issuer, link = self.id, terminal_stan, "issuer reply timed out");
                    Outcome::Timeout
                } else {
                    // The reply won the race with the deadline; it is in the channel.
                    match rx.try_recv() {
                        Ok(reply) => return self.believe(req, kind, stan, reply),
                        Err(_) => Outcome::Timeout,
                    }
                }
            }
        };
        let key = ticket.into_key();
        match (kind, written) {
            (Kind::Request, Some(body)) => {
                // The reply wait ended the answer margin before the deadline the terminal was
                // promised (see `Issuer::forward_as`); the reversal store may use half of it,
                // the other half is left for writing the 68 on a busy machine (see
                // `Issuer::answer_by`). Boxed: the reversal path holds two messages across an
                // await, and inline it would make every forward's future (moved on each
                // spawn/push) kilobytes larger.
                let margin = self.timeouts.answer_margin_ms.min(self.cfg.deadline_ms / 2);
                let by = deadline + Duration::from_millis(margin / 2);
                Box::pin(self.reverse(body, key, &outcome, by)).await
            }
            (Kind::Reversal(id), _) if matches!(outcome, Outcome::Timeout) => {
                if let Some(saf) = &self.saf {
                    saf.late.remember(key, Late::Reversal { id }, Instant::now());
                }
            }
            _ => {}
        }
        outcome
    }

    /// The reply to a terminal's request `req` written with switch STAN `stan`, when it is
    /// believed (`verify`); else counted, logged (the field named, never its value) and
    /// turned into `Outcome::Rejected`. Sign-on, echo and stored reversals check their own
    /// replies.
    fn believe(&self, req: &Message, kind: Kind, stan: u32, reply: Box<Message>) -> Outcome {
        if kind != Kind::Request {
            return Outcome::Reply(reply);
        }
        match super::verify::verify(req, stan, &reply, &self.rc) {
            Ok(()) => Outcome::Reply(reply),
            Err(why) => {
                let reason = why.reason.as_str();
                counter!(m::ISSUER_REPLY_REJECTED_TOTAL, "issuer" => self.issuer.to_string(), "reason" => reason)
                    .increment(1);
                tracing::warn!(issuer = %self.issuer, link = self.id, reason, field = why.field,
                    request_mti = req.mti(), reply_mti = reply.mti(), switch_stan = stan,
                    may_have_approved = why.may_have_approved, "issuer reply not believed; the terminal gets 96");
                Outcome::Rejected(super::Rejected { why, switch_stan: stan })
            }
        }
    }

    /// Write a stored reversal (0400 / 0401) and wait for its 0410.
    pub async fn exchange_reversal(&self, rev: &Message, id: i64) -> Outcome {
        self.exchange(rev, Kind::Reversal(id)).await
    }

    /// Store the reversal of a request written as `body` that ended in `outcome`, and
    /// remember its key for a late reply. Failures are logged: the terminal's answer
    /// (68) does not depend on them. Waits for the store until `reply_by` at most.
    async fn reverse(&self, body: Bytes, key: Key, outcome: &Outcome, reply_by: Instant) {
        let Some(saf) = &self.saf else { return };
        let sent = match Message::decode(&self.spec, body) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(issuer = %self.issuer, error = %e, "reversal not built: request does not decode");
                return;
            }
        };
        let rev = match reversal::build(&sent, &transmission_time(), reversal::REASON_TIMEOUT) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(issuer = %self.issuer, error = %e, "reversal not built");
                return;
            }
        };
        let field90 = reversal::field90(&sent);
        if matches!(outcome, Outcome::Timeout) {
            saf.late.remember(key, Late::Original { field90: field90.clone() }, Instant::now());
        }
        let (ctx, issuer) = (saf.clone(), self.issuer.clone());
        // The store runs in a task of its own: it completes whatever happens to the wait
        // below (and to this future).
        let store = tokio::spawn(async move {
            // Held in memory when the store fails (see `held`): never lost.
            match ctx.enqueue(&issuer, field90.clone(), rev).await {
                Ok(true) => {
                    counter!(m::REVERSALS_QUEUED_TOTAL, "issuer" => issuer.to_string()).increment(1);
                    tracing::info!(issuer = %issuer, field90 = %field90, "reversal queued");
                }
                Ok(false) => tracing::info!(issuer = %issuer, field90 = %field90, "reversal already queued"),
                Err(e) => {
                    tracing::error!(issuer = %issuer, field90 = %field90, error = %e, "reversal NOT stored")
                }
            }
        });
        // Normally the reversal is durable before the 68 leaves: the reply wait ended the
        // answer margin early to leave it the time. Under overload its write can wait far
        // longer (SQLite has one writer, and the journal's group commits hold it), and a
        // 68 held past the promised deadline is a late answer the terminal may no longer
        // read. So the 68 does not wait past `reply_by`: the store still completes in its
        // task (the reversal is never dropped, and a late reply is already recognised by
        // the late memory above); what is given up is only the ordering in that case — a
        // crash between the 68 and the commit could lose the reversal — and the 68
        // approves nothing. Counted, so an operator sees the store falling behind.
        if tokio::time::timeout_at(reply_by.into(), store).await.is_err() {
            counter!(m::REVERSAL_STORE_LATE_TOTAL, "issuer" => self.issuer.to_string()).increment(1);
            tracing::warn!(issuer = %self.issuer, "reversal store slower than the answer margin; 68 sent before it is durable");
        }
    }

    /// Allocate the switch STAN/RRN, enter the session and queue the message for the writer.
    fn send(&self, req: &Message, kind: Kind, deadline: Instant) -> Result<Sent, NotSent> {
        let terminal = kind == Kind::Request;
        let admitted = match kind {
            Kind::Network => true,
            Kind::Reversal(_) | Kind::Request => self.is_up(),
        };
        if !admitted {
            return Err(NotSent::Unavailable);
        }
        // A repeat (0401, 0221) is answered by the plain response MTI (0410, 0230).
        let Some(reply_mti) = super::verify::answer_mti(req.mti().as_bytes()) else {
            return Err(NotSent::Failed);
        };
        // The request is written with the switch's STAN (and RRN) in place of the
        // terminal's, encoded straight from the request: no copy of the message.
        let converted;
        let msg = if Arc::ptr_eq(req.spec(), &self.spec) || **req.spec() == *self.spec {
            req
        } else {
            let Ok(m) = convert(req, &self.spec) else { return Err(NotSent::Failed) };
            converted = m;
            &converted
        };
        let terminal_stan = req.stan();
        let start = Instant::now();
        let (tx, rx) = oneshot::channel();
        let terminal_rrn = req.raw(37).and_then(|r| <[u8; 12]>::try_from(r).ok());
        let mut pending =
            Pending { reply: tx, sent: start, deadline, reply_mti, terminal_stan, terminal_rrn };
        let with_rrn = kind == Kind::Request && self.spec.field(37).is_some();
        let mut body = BytesMut::new();
        let mut ticket = None;
        let mut written_stan = 0;
        // A STAN whose key (or slot) is still in flight is skipped, before encoding when
        // the table can tell; a bounded number of tries.
        for _ in 0..64 {
            let stan = self.next_stan();
            if self.table.busy(stan) {
                continue;
            }
            let mut digits = [b'0'; 6];
            write_digits(&mut digits, u64::from(stan));
            let rrn = if with_rrn { self.next_rrn() } else { [b'0'; 12] };
            let stan_text = std::str::from_utf8(&digits).unwrap_or("000000");
            let rrn_text = std::str::from_utf8(&rrn).unwrap_or("000000000000");
            let overrides: &[(usize, &str)] =
                if with_rrn { &[(11, stan_text), (37, rrn_text)] } else { &[(11, stan_text)] };
            body.clear();
            if msg.encode_with(overrides, &mut body).is_err() {
                return Err(NotSent::Failed);
            }
            let k = if self.key.reads(37) {
                // The key reads the RRN as written: take it from the encoded request.
                Message::decode(&self.spec, Bytes::copy_from_slice(&body))
                    .ok()
                    .and_then(|sent| self.key.of(self.id, &sent))
            } else {
                self.key.of_written(self.id, msg, stan)
            };
            let Some(k) = k else { return Err(NotSent::Failed) };
            match self.table.insert(k, pending) {
                Ok(t) => {
                    ticket = Some(t);
                    written_stan = stan;
                    break;
                }
                Err(p) => pending = p,
            }
        }
        let Some(ticket) = ticket else { return Err(NotSent::Unavailable) };
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.inflight_gauge.increment(1.0);
        let body = body.freeze();
        let reversible = terminal && reversal::is_reversible(req.mti());
        let written = (reversible && self.saf.is_some()).then(|| body.clone());
        let doubt = (reversible && self.logged).then(|| {
            let mut stan = [0u8; 12];
            let text = req.text(11).unwrap_or_default();
            let n = text.len().min(stan.len());
            stan[..n].copy_from_slice(&text.as_bytes()[..n]);
            (stan, n as u8)
        });
        if self.tx.try_send(Outgoing { body, doubt }).is_err() {
            if self.table.take(&ticket).is_some() {
                self.entry_left();
            }
            return Err(NotSent::Failed);
        }
        Ok(Sent { ticket, rx, deadline, terminal_stan, stan: written_stan, written })
    }

    /// Match one frame read from the issuer.
    fn on_frame(&self, body: Bytes, reply_tx: &mpsc::Sender<Outgoing>) {
        // One clock read per frame serves both the echo timer and the reply's latency.
        let now = Instant::now();
        self.last_rx_ms.store(now.saturating_duration_since(self.born).as_millis() as u64, Ordering::Relaxed);
        let msg = match Message::decode(&self.spec, body) {
            Ok(msg) => Box::new(msg),
            Err(e) => {
                counter!(m::DECODE_ERRORS_TOTAL).increment(1);
                if let Some(suppressed) = UNDECODABLE.hit() {
                    tracing::warn!(issuer = %self.issuer, link = self.id, error = %e, suppressed, "undecodable message from issuer");
                }
                return;
            }
        };
        let mti = msg.mti().as_bytes();
        if let Some(resp) = response_mti(mti) {
            // The issuer's own network management (echo, key exchange): answer 0810 with 00.
            if mti.starts_with(b"08") {
                let mut r = msg.clone();
                let ok = r.set_mti(std::str::from_utf8(&resp).unwrap_or("0810")).is_ok()
                    && r.set(39, "00").is_ok();
                if ok && let Ok(b) = r.to_bytes() {
                    let _ = reply_tx.try_send(Outgoing::plain(b));
                }
                return;
            }
            // A request (0200, 0400, ...) from the issuer: the switch takes none, and it
            // must not pass unseen.
            counter!(m::ISSUER_UNEXPECTED_MESSAGES_TOTAL, "issuer" => self.issuer.to_string()).increment(1);
            if let Some(suppressed) = UNEXPECTED.hit() {
                tracing::warn!(issuer = %self.issuer, link = self.id, mti = msg.mti(), suppressed,
                    "issuer sent a message that is neither a response nor network management; dropped");
            }
            return;
        }
        let taken = self.key.of(self.id, &msg).and_then(|k| self.table.take_reply(&k, mti));
        match taken {
            Some((p, expected)) => {
                if !expected {
                    // Handed over all the same: the waiting request refuses it (96) instead
                    // of timing out.
                    tracing::debug!(issuer = %self.issuer, link = self.id, mti = msg.mti(), "reply of an unexpected MTI");
                }
                self.entry_left();
                let took = now.saturating_duration_since(p.sent);
                self.latency.record(took.as_secs_f64());
                let us = took.as_micros() as u64;
                let old = self.ewma_us.load(Ordering::Relaxed);
                let new = if old == 0 { us } else { old - old / 8 + us / 8 };
                self.ewma_us.store(new, Ordering::Relaxed);
                let _ = p.reply.send(msg);
            }
            None => self.unmatched(&msg),
        }
    }

    /// A reply that matches no waiting request: late (its key timed out) or unknown.
    fn unmatched(&self, msg: &Message) {
        counter!(m::UNMATCHED_REPLIES_TOTAL, "issuer" => self.issuer.to_string()).increment(1);
        let late = self.saf.as_ref().and_then(|saf| {
            let key = self.key.of(self.id, msg)?;
            Some((saf, saf.late.take(&key, Instant::now())?))
        });
        let rc = msg.response_code();
        match late {
            Some((_, Late::Original { field90 })) => {
                counter!(m::LATE_REPLIES_TOTAL, "issuer" => self.issuer.to_string()).increment(1);
                // The reversal queued at the deadline covers an approval as well: one
                // reversal per original, nothing more to send.
                tracing::warn!(issuer = %self.issuer, link = self.id, mti = msg.mti(), rc = rc.as_deref(),
                    field90 = %field90, "late issuer reply to a timed-out request; its reversal is queued");
            }
            Some((saf, Late::Reversal { id })) if msg.mti() == "0410" => {
                counter!(m::LATE_REPLIES_TOTAL, "issuer" => self.issuer.to_string()).increment(1);
                super::saf::late_ack(saf, &self.issuer, id);
            }
            _ => {
                tracing::warn!(issuer = %self.issuer, link = self.id, mti = msg.mti(), stan = msg.stan(),
                    "late or unmatched issuer reply dropped");
            }
        }
    }

    async fn connect(&self) -> Result<(Reader, Writer), LinkFault> {
        let ms = self.timeouts.connect_ms;
        let tcp = tokio::time::timeout(Duration::from_millis(ms), TcpStream::connect(self.cfg.addr))
            .await
            .map_err(|_| LinkFault::ConnectTimeout { ms })?
            .map_err(LinkFault::Connect)?;
        tcp.set_nodelay(true).map_err(LinkFault::Connect)?;
        match &self.tls {
            None => {
                let (r, w) = tcp.into_split();
                Ok((Box::new(r), Box::new(w)))
            }
            Some((cc, name)) => {
                let name = rustls_pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| LinkFault::Tls(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
                let connector = tokio_rustls::TlsConnector::from(cc.clone());
                let ms = self.timeouts.handshake_ms;
                let tls = tokio::time::timeout(Duration::from_millis(ms), connector.connect(name, tcp))
                    .await
                    .map_err(|_| LinkFault::TlsTimeout { ms })?
                    .map_err(LinkFault::Tls)?;
                let (r, w) = tokio::io::split(tls);
                Ok((Box::new(r), Box::new(w)))
            }
        }
    }

    fn network_message(&self, code: &str) -> Option<Message> {
        let mut msg = Message::new(self.spec.clone(), "0800").ok()?;
        // Dialects without fields 7 or 70 (UnionPay-style POS) get the message without them.
        if self.spec.field(7).is_some() {
            msg.set(7, &transmission_time()).ok()?;
        }
        if self.spec.field(70).is_some() {
            msg.set(70, code).ok()?;
        }
        Some(msg)
    }

    /// A sign-on (`001`) or echo (`301`) exchange: `Ok` when answered 0810 with 00.
    async fn network(&self, code: &str) -> Result<(), LinkFault> {
        let what = if code == "001" { "sign-on" } else { "echo" };
        let Some(msg) = self.network_message(code) else { return Err(LinkFault::NotExchanged { what }) };
        match self.exchange(&msg, Kind::Network).await {
            Outcome::Reply(r) => {
                let rc = r.response_code();
                if r.mti() == "0810" && rc.as_deref() == Some("00") {
                    Ok(())
                } else {
                    Err(LinkFault::Declined { what, mti: r.mti().to_string(), rc: rc.map(|c| c.to_string()) })
                }
            }
            Outcome::Timeout => Err(LinkFault::Unanswered { what, ms: self.cfg.deadline_ms }),
            _ => Err(LinkFault::NotExchanged { what }),
        }
    }

    /// Log the end of an attempt or of a connection, as `health` decides.
    fn report_down(&self, health: &mut LinkHealth, fault: LinkFault) {
        let reason = fault.to_string();
        let (issuer, link, addr) = (&*self.issuer, self.id, self.cfg.addr);
        match health.down(Instant::now(), fault) {
            DownReport::WentDown => {
                tracing::warn!(issuer, link, %addr, reason, "issuer link down");
            }
            DownReport::Reminder { down_for, attempts, reason_changed } => {
                let down_for_s = down_for.as_secs();
                tracing::warn!(issuer, link, %addr, reason, reason_changed, down_for_s, attempts,
                    "issuer link still down");
            }
            DownReport::Quiet => tracing::debug!(issuer, link, %addr, reason, "issuer link attempt failed"),
        }
    }

    /// The link is serving (connected, signed on where configured).
    fn report_up(&self, health: &mut LinkHealth) {
        let (issuer, link, addr) = (&*self.issuer, self.id, self.cfg.addr);
        match health.up(Instant::now()) {
            Some((down_for, attempts)) => {
                let down_for_ms = down_for.as_millis() as u64;
                tracing::info!(issuer, link, %addr, down_for_ms, attempts, "issuer link up again");
            }
            None => tracing::info!(issuer, link, %addr, "issuer link up"),
        }
    }
}

/// The link task: connect, sign on, serve, and reconnect until `shutdown`.
pub async fn run(
    link: Arc<Link>,
    mut rx: mpsc::Receiver<Outgoing>,
    mut log: Option<SegmentWriter>,
    shutdown: CancellationToken,
) {
    let cap = Duration::from_millis(link.timeouts.reconnect_max_ms.max(100));
    let mut backoff = Duration::from_millis(50);
    let mut health = LinkHealth::new(Duration::from_millis(link.timeouts.down_reminder_ms.max(1)));
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = link.connect() => c,
        };
        let fault = match conn {
            Ok((r, w)) => {
                counter!(m::LINK_CONNECTS_TOTAL, "issuer" => link.issuer.to_string()).increment(1);
                tracing::debug!(issuer = %link.issuer, link = link.id, addr = %link.cfg.addr, "issuer link connected");
                let (signed_on, fault) = serve(&link, &mut rx, &mut log, r, w, &shutdown, &mut health).await;
                if signed_on {
                    backoff = Duration::from_millis(50);
                }
                if shutdown.is_cancelled() {
                    return;
                }
                fault
            }
            Err(fault) => fault,
        };
        link.report_down(&mut health, fault);
        // Jitter keeps many links from reconnecting in step.
        let jitter = Duration::from_millis(u64::from(link.born.elapsed().subsec_nanos() % 50));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff + jitter) => {}
        }
        backoff = (backoff * 2).min(cap);
    }
}

/// Serve one connection until it breaks; returns whether it was signed on, and why it ended.
async fn serve(
    link: &Arc<Link>,
    rx: &mut mpsc::Receiver<Outgoing>,
    log: &mut Option<SegmentWriter>,
    r: Reader,
    w: Writer,
    shutdown: &CancellationToken,
    health: &mut LinkHealth,
) -> (bool, LinkFault) {
    // Messages queued for a previous connection belong to requests already failed.
    while rx.try_recv().is_ok() {}
    let reader_link = link.clone();
    let reply_tx = link.tx.clone();
    let codec = FrameCodec::new(link.cfg.frame);
    let mut reader = tokio::spawn(async move {
        let mut frames = FramedRead::new(r, codec);
        loop {
            match frames.next().await {
                Some(Ok(frame)) => reader_link.on_frame(frame.body, &reply_tx),
                Some(Err(e)) => return LinkFault::ReadFailed(e.to_string()),
                None => return LinkFault::Closed,
            }
        }
    });
    let mut signed_on = false;
    let write_bound = Duration::from_millis(link.timeouts.write_ms);
    let control = async {
        if link.cfg.sign_on
            && let Err(fault) = link.network("001").await
        {
            return fault;
        }
        signed_on = true;
        link.up.store(true, Ordering::Release);
        link.up_gauge.link_up();
        link.report_up(health);
        let every = Duration::from_millis(link.cfg.echo_interval_ms.max(10));
        loop {
            tokio::time::sleep(every / 4).await;
            let now = link.born.elapsed().as_millis() as u64;
            if now.saturating_sub(link.last_rx_ms.load(Ordering::Relaxed)) >= every.as_millis() as u64
                && let Err(fault) = link.network("301").await
            {
                return fault;
            }
        }
    };
    let fault = tokio::select! {
        ended = &mut reader => ended.unwrap_or(LinkFault::Closed),
        ended = write_loop(&link.issuer, link.id, link.cfg.frame, write_bound, rx, log, w) => match ended {
            Ended::WriteFailed => LinkFault::WriteFailed,
            Ended::Closed => LinkFault::Closed,
        },
        fault = control => fault,
        _ = shutdown.cancelled() => LinkFault::Closed,
    };
    reader.abort();
    if link.up.swap(false, Ordering::AcqRel) {
        link.up_gauge.link_down();
    }
    let lost = link.table.purge_link(link.id);
    if lost > 0 {
        link.inflight.fetch_sub(lost.min(link.inflight()), Ordering::Relaxed);
        link.inflight_gauge.decrement(lost as f64);
        tracing::warn!(issuer = %link.issuer, link = link.id, lost, "requests in flight on a lost link");
    }
    (signed_on, fault)
}
