//! One persistent link to an issuer: connect (TCP or TLS) with capped exponential
//! backoff that survives refused connects, sign on (0800, field 70 = 001), echo (0800,
//! 70 = 301) when nothing has been received for the echo interval, and close the link
//! hard when a write stalls or an echo goes unanswered. The protocol is the link's
//! `protocol::Session`: a request is prepared there (switch STAN/RRN, table entry,
//! bytes) and queued here; per connection a reader task hands each frame to the session
//! and acts on what it says (deliver a reply, answer an echo, count a late or unknown
//! reply) while the link task writes (`writer`): it drains every queued message, then
//! writes and flushes once. A reversible financial request that
//! times out (or whose link is lost under it) is reversed here: the 0400 is built from the
//! request as written and stored before the waiting side hears of the timeout; its key is
//! remembered so that a late reply is recognised and not reversed a second time. With an
//! in-doubt log, the writer logs each batch's reversible requests before writing it.
//! Each connection ends with a reason (`link_state::LinkFault`); the link's health
//! (`link_state::LinkHealth`) decides what of it reaches the log: one WARN when the link
//! goes down, a reminder while it stays down, one INFO when it is up again.
//! May import: crate::config, crate::frame, crate::iso, crate::issuer, crate::issuer::clock,
//! crate::issuer::indoubt, crate::issuer::late, crate::issuer::link_state,
//! crate::issuer::protocol, crate::issuer::reversal, crate::issuer::saf,
//! crate::issuer::session, crate::issuer::verify, crate::issuer::writer, crate::metrics,
//! crate::rc, crate::telemetry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use metrics::{Gauge, Histogram, counter, gauge, histogram};
use tokio::io::AsyncRead;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::clock::transmission_time;
use super::indoubt::SegmentWriter;
use super::late::Late;
use super::link_state::{DownReport, LinkFault, LinkHealth};
use super::protocol::{Inbound, NotPrepared, Prepared, Session, Shared, rrn_start};
use super::saf::SafCtx;
use super::session::{Key, Ticket};
pub use super::writer::Outgoing;
use super::writer::{Ended, Writer, write_loop};
use super::{Outcome, reversal};
use crate::config::{LinkConfig, Timeouts};
use crate::frame::FrameCodec;
use crate::iso::{Message, Spec};
use crate::metrics as m;
use crate::rc::ResponseCode;
use crate::telemetry::{THROTTLE_INTERVAL, Throttle};

/// Issuer faults that repeat per message: logged first, then once per interval with a count.
static UNDECODABLE: Throttle = Throttle::new(THROTTLE_INTERVAL);
static UNEXPECTED: Throttle = Throttle::new(THROTTLE_INTERVAL);

type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// A request on its way: what the waiting side needs.
struct Sent {
    ticket: Ticket,
    rx: tokio::sync::oneshot::Receiver<Box<Message>>,
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

/// What a link is made of: its issuer's name and shared session state, its configuration
/// and spec, TLS, timeouts, the issuer's store-and-forward, and whether its writer keeps an
/// in-doubt log.
pub struct LinkSetup {
    pub issuer: Arc<str>,
    pub cfg: LinkConfig,
    pub spec: Arc<Spec>,
    pub shared: Shared,
    pub tls: Option<(Arc<rustls::ClientConfig>, String)>,
    pub timeouts: Timeouts,
    pub saf: Option<Arc<SafCtx>>,
    pub logged: bool,
}

/// A link's shared state: read by the requests that use it, written by its task.
pub struct Link {
    id: u32,
    issuer: Arc<str>,
    cfg: LinkConfig,
    spec: Arc<Spec>,
    /// The issuer protocol: STAN/RRN, encoding, the session table, late replies.
    session: Session,
    /// The response-code table of the link's dialect: a reply's field 39 must be in it.
    rc: Arc<crate::rc::RcTable>,
    tls: Option<(Arc<rustls::ClientConfig>, String)>,
    timeouts: Timeouts,
    saf: Option<Arc<SafCtx>>,
    /// Whether this link's writer keeps an in-doubt log.
    logged: bool,
    tx: mpsc::Sender<Outgoing>,
    up: AtomicBool,
    inflight: AtomicUsize,
    ewma_us: AtomicU64,
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

impl Link {
    /// Link `id` made of `setup`, and the receiving end of its write queue (for `run`).
    pub fn new(id: u32, setup: LinkSetup) -> (Arc<Link>, mpsc::Receiver<Outgoing>) {
        let LinkSetup { issuer, cfg, spec, shared, tls, timeouts, saf, logged } = setup;
        // Room past the window: stored reversals and echoes are written outside it, and a
        // full channel fails the request (96). Blocks are allocated as they fill.
        let (tx, rx) = mpsc::channel(cfg.window.saturating_add(1024));
        let label = issuer.to_string();
        let link = Link {
            id,
            latency: histogram!(m::ISSUER_LATENCY_SECONDS, "issuer" => label.clone()),
            inflight_gauge: gauge!(m::INFLIGHT, "issuer" => label.clone()),
            up_gauge: m::IssuerUp::of(&label),
            issuer,
            cfg,
            rc: crate::rc::RcTable::shipped(&spec.name),
            session: Session::new(id, spec.clone(), &shared, rrn_start()),
            spec,
            tls,
            timeouts,
            saf,
            logged,
            tx,
            up: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            ewma_us: AtomicU64::new(0),
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

    /// The next switch STAN of the issuer (tests of the allocator only).
    #[cfg(test)]
    pub(super) fn next_stan(&self) -> u32 {
        self.session.next_stan()
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
        let Sent { ticket, mut rx, stan, written } = match self.send(req, kind, deadline) {
            Ok(sent) => sent,
            Err(NotSent::Unavailable) => return Outcome::Unavailable,
            Err(NotSent::Failed) => return Outcome::Failed,
        };
        let outcome = match tokio::time::timeout_at(deadline.into(), &mut rx).await {
            Ok(Ok(reply)) => return self.believe(req, kind, stan, reply),
            Ok(Err(_)) => Outcome::LinkLost,
            Err(_) => {
                if self.session.take(&ticket).is_some() {
                    self.entry_left();
                    counter!(m::TIMEOUTS_TOTAL, "issuer" => self.issuer.to_string()).increment(1);
                    tracing::info!(issuer = %self.issuer, link = self.id, terminal_stan = req.stan(), "issuer reply timed out");
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
                // promised (see `Issuer::forward`); the reversal store may use half of it,
                // the other half is left for writing the 68 on a busy machine (see
                // `Issuer::answer_by`). Boxed: the reversal path holds two messages across an
                // await, and inline it would make every forward's future (moved on each
                // spawn/push) kilobytes larger.
                let margin = self.timeouts.answer_margin_ms.min(self.cfg.deadline_ms / 2);
                let by = deadline + Duration::from_millis(margin / 2);
                Box::pin(self.reverse(body, key, &outcome, by)).await
            }
            (Kind::Reversal(id), _) if matches!(outcome, Outcome::Timeout) => {
                self.session.remember(key, Late::Reversal { id }, Instant::now());
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
            self.session.remember(key, Late::Original { field90: field90.clone() }, Instant::now());
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

    /// Prepare `req` in the session (switch STAN/RRN, table entry) and queue it for the
    /// writer, with its in-doubt record when it is reversible and the writer keeps a log.
    fn send(&self, req: &Message, kind: Kind, deadline: Instant) -> Result<Sent, NotSent> {
        let terminal = kind == Kind::Request;
        let admitted = match kind {
            Kind::Network => true,
            Kind::Reversal(_) | Kind::Request => self.is_up(),
        };
        if !admitted {
            return Err(NotSent::Unavailable);
        }
        let Prepared { ticket, reply, body, stan } =
            self.session.prepare(req, terminal, Instant::now(), deadline).map_err(|e| match e {
                NotPrepared::Busy => NotSent::Unavailable,
                NotPrepared::Failed => NotSent::Failed,
            })?;
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.inflight_gauge.increment(1.0);
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
            if self.session.take(&ticket).is_some() {
                self.entry_left();
            }
            return Err(NotSent::Failed);
        }
        Ok(Sent { ticket, rx: reply, stan, written })
    }

    /// Act on one frame read from the issuer, as the session classifies it.
    fn on_frame(&self, body: Bytes, reply_tx: &mpsc::Sender<Outgoing>) {
        // One clock read per frame serves the echo timer, the reply's latency and the late
        // memory.
        let now = Instant::now();
        self.last_rx_ms.store(now.saturating_duration_since(self.born).as_millis() as u64, Ordering::Relaxed);
        match self.session.on_frame(body, now) {
            Inbound::Reply { pending, msg, expected } => {
                if !expected {
                    // Handed over all the same: the waiting request refuses it (96) instead
                    // of timing out.
                    tracing::debug!(issuer = %self.issuer, link = self.id, mti = msg.mti(), "reply of an unexpected MTI");
                }
                self.entry_left();
                let took = now.saturating_duration_since(pending.sent);
                self.latency.record(took.as_secs_f64());
                let us = took.as_micros() as u64;
                let old = self.ewma_us.load(Ordering::Relaxed);
                let new = if old == 0 { us } else { old - old / 8 + us / 8 };
                self.ewma_us.store(new, Ordering::Relaxed);
                let _ = pending.reply.send(msg);
            }
            Inbound::Network(answer) => {
                if let Some(b) = answer {
                    let _ = reply_tx.try_send(Outgoing::plain(b));
                }
            }
            Inbound::Request(msg) => {
                // The switch takes no request from an issuer, and it must not pass unseen.
                counter!(m::ISSUER_UNEXPECTED_MESSAGES_TOTAL, "issuer" => self.issuer.to_string())
                    .increment(1);
                if let Some(suppressed) = UNEXPECTED.hit() {
                    tracing::warn!(issuer = %self.issuer, link = self.id, mti = msg.mti(), suppressed,
                        "issuer sent a message that is neither a response nor network management; dropped");
                }
            }
            Inbound::Late { msg, late } => self.unmatched(&msg, Some(late)),
            Inbound::Unknown(msg) => self.unmatched(&msg, None),
            Inbound::Undecodable(e) => {
                counter!(m::DECODE_ERRORS_TOTAL).increment(1);
                if let Some(suppressed) = UNDECODABLE.hit() {
                    tracing::warn!(issuer = %self.issuer, link = self.id, error = %e, suppressed, "undecodable message from issuer");
                }
            }
        }
    }

    /// A reply that matches no waiting request: late (its key timed out) or unknown.
    fn unmatched(&self, msg: &Message, late: Option<Late>) {
        counter!(m::UNMATCHED_REPLIES_TOTAL, "issuer" => self.issuer.to_string()).increment(1);
        let rc = msg.response_code();
        match (late, &self.saf) {
            (Some(Late::Original { field90 }), _) => {
                counter!(m::LATE_REPLIES_TOTAL, "issuer" => self.issuer.to_string()).increment(1);
                // The reversal queued at the deadline covers an approval as well: one
                // reversal per original, nothing more to send.
                tracing::warn!(issuer = %self.issuer, link = self.id, mti = msg.mti(), rc = rc.as_deref(),
                    field90 = %field90, "late issuer reply to a timed-out request; its reversal is queued");
            }
            (Some(Late::Reversal { id }), Some(saf)) if msg.mti() == "0410" => {
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
                if r.mti() == "0810"
                    && rc.as_deref().and_then(ResponseCode::parse).is_some_and(ResponseCode::is_approved)
                {
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
    let lost = link.session.purge();
    if lost > 0 {
        link.inflight.fetch_sub(lost.min(link.inflight()), Ordering::Relaxed);
        link.inflight_gauge.decrement(lost as f64);
        tracing::warn!(issuer = %link.issuer, link = link.id, lost, "requests in flight on a lost link");
    }
    (signed_on, fault)
}
