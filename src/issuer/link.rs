//! One persistent link to an issuer, as the requests that use it see it. The protocol is
//! the link's `protocol::Session`: a request is prepared there (switch STAN/RRN, table
//! entry, bytes), queued for the writer (`writer`: it drains every queued message, then
//! writes and flushes once) and waited for until its deadline; each frame the reader
//! receives is handed to the session (`Link::on_frame`), and what it says is acted on
//! (deliver a reply, answer an echo, count a late or unknown reply). A reply is checked
//! (`verify`) before it is believed. A reversible financial request that times out (or
//! whose link is lost under it) is reversed here: the 0400 is built from the request as
//! written and stored before the waiting side hears of the timeout; its key is remembered
//! so that a late reply is recognised and not reversed a second time. With an in-doubt
//! log, the writer logs each batch's reversible requests before writing it. The link's
//! connection (connect with backoff, TLS, sign-on, echo, the reader task) is run by
//! `link_task`.
//! May import: crate::config, crate::iso, crate::issuer::clock, crate::issuer::late,
//! crate::issuer::outcome, crate::issuer::protocol, crate::issuer::reversal,
//! crate::issuer::saf, crate::issuer::session, crate::issuer::verify, crate::issuer::writer,
//! crate::metrics, crate::rc, crate::telemetry.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::{Gauge, Histogram, counter, gauge, histogram};
use tokio::sync::mpsc;

use super::clock::transmission_time;
use super::late::Late;
use super::outcome::{Outcome, Rejected};
use super::protocol::{Inbound, NotPrepared, Prepared, Session, Shared, rrn_start};
use super::reversal;
use super::saf::{SafCtx, SafLink};
use super::session::{Key, Ticket};
pub use super::writer::Outgoing;
use crate::config::{LinkConfig, Timeouts};
use crate::iso::{Message, Spec};
use crate::metrics as m;
use crate::telemetry::{THROTTLE_INTERVAL, Throttle};

/// Issuer faults that repeat per message: logged first, then once per interval with a count.
static UNDECODABLE: Throttle = Throttle::new(THROTTLE_INTERVAL);
static UNEXPECTED: Throttle = Throttle::new(THROTTLE_INTERVAL);

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
    pub(super) id: u32,
    pub(super) issuer: Arc<str>,
    pub(super) cfg: LinkConfig,
    pub(super) spec: Arc<Spec>,
    /// The issuer protocol: STAN/RRN, encoding, the session table, late replies.
    pub(super) session: Session,
    /// The response-code table of the link's dialect: a reply's field 39 must be in it.
    rc: Arc<crate::rc::RcTable>,
    pub(super) tls: Option<(Arc<rustls::ClientConfig>, String)>,
    pub(super) timeouts: Timeouts,
    saf: Option<Arc<SafCtx>>,
    /// Whether this link's writer keeps an in-doubt log.
    logged: bool,
    pub(super) tx: mpsc::Sender<Outgoing>,
    pub(super) up: AtomicBool,
    pub(super) inflight: AtomicUsize,
    ewma_us: AtomicU64,
    /// Milliseconds since `born` at the last frame received.
    pub(super) last_rx_ms: AtomicU64,
    pub(super) born: Instant,
    latency: Histogram,
    pub(super) inflight_gauge: Gauge,
    /// `isoswitch_issuer_up` and `isoswitch_issuer_links_up` of this link's issuer.
    pub(super) up_gauge: Arc<m::IssuerUp>,
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
                Outcome::Rejected(Rejected { why, switch_stan: stan })
            }
        }
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
    pub(super) fn on_frame(&self, body: Bytes, reply_tx: &mpsc::Sender<Outgoing>) {
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
}

/// Store-and-forward writes its reversals (0400 / 0401) and advices (0120 / 0220 and their
/// repeats) here and waits for the answer (0410, 0130, 0230).
impl SafLink for Link {
    fn exchange_stored(&self, msg: &Message, id: i64) -> impl Future<Output = Outcome> + Send {
        self.exchange(msg, Kind::Reversal(id))
    }
}
