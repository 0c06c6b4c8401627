//! The issuer connector: persistent links to bank hosts, deadlines, sign-on and echo,
//! reconnect with backoff, and the choice of a link among an issuer's several (fewest in
//! flight, then recent latency). The issuer protocol itself (switch STAN/RRN, encoding,
//! the session table, telling replies, late replies and network management apart) is a
//! pure `protocol::Session` per link, tested without sockets; `link` runs the socket
//! around it. One entry starts it all (`Issuers::start`, with `StartOptions`), and one
//! forwards (`Issuers::forward(target, request, options)`): to the target's primary, or
//! to its backup when every link of the primary is down; `Issuer::forward` returns an
//! `Outcome`: the issuer's reply, a timeout (68), unavailable (91) or a failure (96). With a `SafStore` (see `saf`), timed-out financial requests are
//! reversed through a durable store-and-forward queue, and with an in-doubt log (see
//! `indoubt`) so are those in flight when the process dies, at its next start. The same
//! queue carries the advices of stand-in approvals (`queue_advice`, `advice`).
//!
//! In front of each issuer's window (all its links together) sits admission control
//! (`admit`): requests beyond the window wait in per-class queues served by weight (and
//! within a class, by terminal connection in turn), and one whose wait would pass its
//! deadline is answered 91 at once, lowest class first, reversals and advices never. A
//! request's deadline counts from its arrival at the switch: the reply wait ends
//! `answer_margin_ms` plus the caller's reserve (the journal commit of an approval) before
//! `deadline_ms`, and a request still waiting for admission when less than the expected
//! issuer latency is left is shed.
//! Reversals the store-and-forward worker repeats are already durable and are not held
//! by admission (as before, they pass the window).
//! Every reply to a terminal's request is checked (`verify`) before it is handed on: one
//! that is not believed comes back as `Outcome::Rejected`.
//! May import: crate::config, crate::iso, crate::metrics, crate::rc, crate::route, crate::tls.

mod admit;
pub mod advice;
mod clock;
mod held;
pub mod indoubt;
pub mod late;
mod link;
mod link_state;
pub mod protocol;
pub mod reversal;
pub mod saf;
pub mod session;
mod slots;
#[cfg(test)]
mod slots_model;
pub mod verify;
mod wire;
mod writer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{IssuerConfig, Timeouts};
use crate::iso::{EncodeError, Message, Spec};
use crate::rc::ResponseCode;
use crate::route::Class;
use crate::route::priority::{Priorities, QueueConfig, Weights};
use admit::{Admission, Admit};
use link::{Kind, Link, LinkSetup};
use saf::SafCtx;
pub use saf::{SafItem, SafPolicy, SafStore};
use session::{MatchKey, SessionTable};
pub use wire::{convert, convert_owned, response_mti};

/// How a forwarded request ended.
#[derive(Debug)]
pub enum Outcome {
    /// The issuer answered.
    Reply(Box<Message>),
    /// No reply before the deadline (the terminal gets 68).
    Timeout,
    /// No link up, or the window is full (91).
    Unavailable,
    /// The link broke while the request was in flight; the issuer may have seen it (68).
    LinkLost,
    /// The request could not be converted or encoded for the issuer (96).
    Failed,
    /// The issuer answered, but its reply is not believed (96; reversed when it may
    /// have approved). Counted and logged where it was refused.
    Rejected(Rejected),
}

/// An issuer reply that was not believed, and what reversing its request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub why: verify::Rejection,
    /// Field 11 as the switch wrote it to the issuer (field 90 of the reversal names it).
    pub switch_stan: u32,
}

impl Outcome {
    /// The response code the switch answers with when this is not a reply.
    pub fn switch_rc(&self) -> Option<ResponseCode> {
        match self {
            Outcome::Reply(_) => None,
            Outcome::Timeout | Outcome::LinkLost => Some(ResponseCode::LATE_RESPONSE),
            Outcome::Unavailable => Some(ResponseCode::ISSUER_UNAVAILABLE),
            Outcome::Failed | Outcome::Rejected(_) => Some(ResponseCode::SYSTEM_MALFUNCTION),
        }
    }
}

/// Why the issuer connector could not start.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("issuer {issuer}: spec {spec}: {message}")]
    Spec { issuer: String, spec: String, message: String },
    #[error("issuer {issuer}: {source}")]
    Tls { issuer: String, source: crate::tls::TlsError },
    #[error("issuer {issuer}: {source}")]
    Reversal { issuer: String, source: reversal::ReversalError },
    /// The store-and-forward store failed (the message never carries row data).
    #[error("store-and-forward: {0}")]
    Saf(String),
    /// The in-doubt log could not be written or read (the file is named, never a request).
    #[error("in-doubt log {file}: {message}")]
    InDoubt { file: String, message: String },
}

/// One issuer and its links.
#[derive(Debug)]
pub struct Issuer {
    name: Arc<str>,
    links: Vec<Arc<Link>>,
    responses: crate::metrics::ResponseCounters,
    failovers: metrics::Counter,
    /// Store-and-forward and the spec reversals are stored in (the first link's).
    saf: Option<(Arc<SafCtx>, Arc<Spec>)>,
    admission: Arc<Admission>,
    /// The reply deadline promised from a request's arrival (the links' smallest
    /// `deadline_ms`), and the part of it kept for answering after the reply wait.
    deadline: Duration,
    margin: Duration,
    /// Stand-in advices owed to this issuer and their exposure.
    advices: advice::Book,
}

/// How long a new advice waits before its first write: the journal commit of its approval
/// comes first (an approval that fails to commit withdraws its advice, never written).
pub const ADVICE_GRACE: Duration = Duration::from_secs(2);

impl Issuer {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `isoswitch_responses_total` handles labelled with this issuer.
    pub fn responses(&self) -> &crate::metrics::ResponseCounters {
        &self.responses
    }

    /// Links currently connected (and signed on when configured).
    pub fn links_up(&self) -> usize {
        self.links.iter().filter(|l| l.is_up()).count()
    }

    /// Requests waiting for this issuer.
    pub fn inflight(&self) -> usize {
        self.links.iter().map(|l| l.inflight()).sum()
    }

    /// Forward a terminal's request through admission control and wait for its outcome:
    /// at most the link deadline from its arrival (`options.origin`), less the answer
    /// margin and `options.reserve`.
    /// The reserve is the time the caller expects to need after a reply before the terminal
    /// has its answer (the journal's commit of an approval): the reply wait ends that much
    /// earlier (an approval that arrived later could only be answered late), and a request
    /// that could not be written by then less the expected latency is shed with 91 instead.
    pub async fn forward(&self, req: &Message, options: ForwardOptions) -> Outcome {
        let ForwardOptions { class, reserve, origin } = options;
        let arrival = origin.arrival;
        // Storing the reversal of an unanswered request (durably, before the 68), the
        // journal row and the write to the terminal happen after the reply wait: ending the
        // wait `margin` early keeps the 68 within the deadline the terminal was promised.
        // The reserve is capped at half the deadline, so that some requests are always
        // admitted and the caller's measure of it follows.
        let reserve = reserve.min(self.deadline / 2);
        let answer_by = arrival + self.deadline.saturating_sub(self.margin).saturating_sub(reserve);
        if self.links_up() == 0 {
            return Outcome::Unavailable;
        }
        // A request written later than this would likely time out (68, and a reversal)
        // instead of being answered: shed it with 91 while there is time to say so. Half
        // again the measured latency covers its usual spread.
        let latency = match self.links.iter().map(|l| l.latency_us()).max() {
            Some(us) if us > 0 => Duration::from_micros(us.saturating_add(us / 2)),
            _ => self.admission.expected_latency(),
        };
        let send_by = answer_by.checked_sub(latency).unwrap_or(arrival);
        if class != Class::Reversal && Instant::now() >= send_by {
            // It waited (behind its terminal's reversal, or for the CPU) past the time it
            // could still be answered: sending it now would only buy a 68 and a reversal.
            let label = crate::metrics::CLASSES.get(class.index()).copied().unwrap_or("ordinary");
            metrics::counter!(crate::metrics::SHED_TOTAL, "class" => label).increment(1);
            return Outcome::Unavailable;
        }
        let slot = match self.admission.admit(class, send_by, origin.source).await {
            Admit::Go(slot) => Some(slot),
            Admit::Shed => return Outcome::Unavailable,
            // A reversal or advice is never shed: past the window it goes.
            Admit::Overflow => None,
        };
        let outcome = match self.pick() {
            Some(link) => link.exchange_by(req, Kind::Request, answer_by).await,
            None => Outcome::Unavailable,
        };
        // The slot frees its place (and wakes the next waiter) only now.
        drop(slot);
        outcome
    }

    /// The reply deadline a terminal's request is promised from its arrival.
    pub fn reply_deadline(&self) -> Duration {
        self.deadline
    }

    /// How long after its arrival a request's answer should be on its way at the latest:
    /// the promised deadline less half the answer margin. Work that finishes an answer
    /// (the reversal store before a 68, a decline's journal row) waits no longer than this;
    /// the other half is left for encoding, writing and the scheduler of a busy machine.
    pub fn answer_by(&self) -> Duration {
        self.deadline.saturating_sub(self.margin / 2)
    }

    /// Queue sizes (at start only) and class weights for admission control; returns
    /// whether the sizes were taken.
    pub fn configure_admission(&self, queue: QueueConfig, weights: Weights) -> bool {
        self.admission.configure(queue, weights)
    }

    /// New class weights (a rules reload, a peak window opening or closing).
    pub fn set_weights(&self, weights: Weights) {
        self.admission.set_weights(weights);
    }

    /// Requests admitted into the window and waiting for it, by class index.
    pub fn admission(&self) -> (usize, [usize; 5]) {
        self.admission.snapshot()
    }

    /// Queue a terminal's reversal for this issuer through store-and-forward instead of
    /// forwarding it in line: durable, repeated until the 0410, and idempotent — `Ok(false)`
    /// when a reversal with the same field 90 is already stored (a duplicate from the
    /// terminal, or the original already reversed by the switch after its timeout).
    /// `rev`'s field 90 must name the original as the issuer saw it (see
    /// `reversal::rebase_field90`). Tracks and PIN block are dropped; the MTI becomes 0400.
    pub async fn queue_reversal(&self, rev: &Message) -> Result<bool, IssuerError> {
        let Some((ctx, spec)) = &self.saf else {
            return Err(IssuerError::Saf(format!("issuer {} has no store-and-forward", self.name)));
        };
        let bad = |e: EncodeError| IssuerError::Saf(format!("reversal for {}: {e}", self.name));
        let mut out = convert(rev, spec).map_err(bad)?;
        out.set_mti("0400").map_err(bad)?;
        for n in [35, 36, 45, 52] {
            out.remove(n);
        }
        let field90 = out
            .text(90)
            .filter(|f| f.len() == 42)
            .ok_or_else(|| IssuerError::Saf(format!("reversal for {}: no 42-digit field 90", self.name)))?
            .into_owned();
        // Held in memory when the store fails: never lost, sent all the same.
        let fresh = ctx.enqueue(&self.name, field90, out).await?;
        if fresh {
            metrics::counter!(crate::metrics::REVERSALS_QUEUED_TOTAL, "issuer" => self.name.to_string())
                .increment(1);
        }
        Ok(fresh)
    }

    /// Store a stand-in advice for this issuer under `key`, durably: `Ok(true)` once it is
    /// committed (never held in memory: an approval is given only when its advice is
    /// durable). The message keeps its MTI (0120 or 0220); tracks and PIN block are
    /// dropped. The advice's amount must have been reserved (`advices().try_reserve`).
    pub async fn queue_advice(&self, adv: &Message, key: &str) -> Result<bool, IssuerError> {
        let Some((ctx, spec)) = &self.saf else {
            return Err(IssuerError::Saf(format!("issuer {} has no store-and-forward", self.name)));
        };
        let bad = |e: EncodeError| IssuerError::Saf(format!("advice for {}: {e}", self.name));
        let mut out = convert(adv, spec).map_err(bad)?;
        for n in [35, 36, 45, 52, 53] {
            out.remove(n);
        }
        let (store, name, key) = (ctx.store.clone(), self.name.to_string(), key.to_string());
        let now = saf::unix_ms();
        let first = now.saturating_add(ADVICE_GRACE.as_millis() as i64);
        let fresh = saf::blocking(move || store.enqueue_advice(&name, &key, &out, now, first)).await?;
        if fresh {
            self.advices.stored();
        }
        Ok(fresh)
    }

    /// Withdraw the pending advice stored under `key` (of `amount`) when it was never
    /// written; `Ok(false)` when it was (or is not pending).
    pub async fn void_advice(&self, key: &str, amount: i64) -> Result<bool, IssuerError> {
        let Some((ctx, _)) = &self.saf else { return Ok(false) };
        let (store, name, key) = (ctx.store.clone(), self.name.to_string(), key.to_string());
        let voided = saf::blocking(move || store.void_advice(&name, &key, saf::unix_ms())).await?;
        if voided {
            self.advices.done(amount);
        }
        Ok(voided)
    }

    /// Stand-in advices and exposure of this issuer.
    pub fn advices(&self) -> &advice::Book {
        &self.advices
    }

    /// Whether advices can be stored for this issuer (it has store-and-forward).
    pub fn takes_advices(&self) -> bool {
        self.saf.is_some()
    }

    /// The spec reversals to this issuer are stored in, when it has store-and-forward.
    pub fn saf_spec(&self) -> Option<&Arc<Spec>> {
        self.saf.as_ref().map(|(_, spec)| spec)
    }

    /// A live link for a reversal: the window does not apply (reversals are never shed).
    fn pick_for_reversal(&self) -> Option<&Arc<Link>> {
        self.links.iter().filter(|l| l.is_up()).min_by_key(|l| (l.inflight(), l.latency_us()))
    }

    /// The live link with the fewest requests in flight, ties broken by recent latency.
    fn pick(&self) -> Option<&Arc<Link>> {
        if let [only] = self.links.as_slice() {
            return only.is_up().then_some(only);
        }
        self.links.iter().filter(|l| l.is_up()).min_by_key(|l| (l.inflight(), l.latency_us()))
    }
}

/// All configured issuers, in configuration order, with their link tasks.
#[derive(Debug)]
pub struct Issuers {
    list: Vec<Arc<Issuer>>,
    tasks: Vec<JoinHandle<()>>,
    /// One session table per issuer (its links share its STAN allocator).
    tables: Vec<Arc<SessionTable>>,
}

impl Issuers {
    /// Build every issuer and start its link tasks; they stop on `shutdown`. With a
    /// store-and-forward store (`options.saf`) timed-out requests are reversed through it,
    /// one worker per issuer (which resumes the reversals already pending in the store);
    /// refused when an issuer's spec cannot carry reversals (no 42-digit field 90, e.g.
    /// `cup-pos`). Without one nothing is reversed. With an in-doubt log
    /// (`options.indoubt`, taken only with a store: it is what a crash's in-doubt requests
    /// are reversed through) each issuer's writers log their reversible requests, and a
    /// task per issuer deletes resolved segments; reconcile what a previous run left in
    /// the log before calling this.
    pub fn start(
        cfgs: &[IssuerConfig],
        timeouts: Timeouts,
        options: StartOptions,
        shutdown: &CancellationToken,
    ) -> Result<Issuers, IssuerError> {
        let StartOptions { saf, indoubt } = options;
        let indoubt = indoubt.filter(|_| saf.is_some());
        let mut tables = Vec::with_capacity(cfgs.len());
        let mut list = Vec::with_capacity(cfgs.len());
        let mut tasks = Vec::new();
        let mut next_id = 0u32;
        for ic in cfgs {
            let name: Arc<str> = Arc::from(ic.name.as_str());
            let fields: Vec<usize> = ic.match_key.iter().filter_map(|k| k.parse().ok()).collect();
            let key = MatchKey::new(&fields);
            let table = Arc::new(SessionTable::for_key(&key, ic.links.iter().map(|l| l.window).sum()));
            tables.push(table.clone());
            // Registered at zero so that dashboards see every issuer from the start.
            metrics::gauge!(crate::metrics::SAF_DEPTH, "issuer" => name.to_string()).set(0.0);
            metrics::gauge!(crate::metrics::SAF_HELD, "issuer" => name.to_string()).set(0.0);
            let ctx = saf.as_ref().map(|(store, policy)| Arc::new(SafCtx::new(store.clone(), *policy)));
            let mut links = Vec::with_capacity(ic.links.len());
            let mut first_spec = None;
            let shared = protocol::Shared {
                key: key.clone(),
                table: table.clone(),
                stans: protocol::stan_allocator(),
                late: ctx.as_ref().map(|c| c.late.clone()),
            };
            let log = match &indoubt {
                Some(cfg) => Some(indoubt::IssuerLog::new(name.clone(), cfg)?),
                None => None,
            };
            for (index, lc) in ic.links.iter().enumerate() {
                let spec = Spec::load(&lc.spec).map_err(|e| IssuerError::Spec {
                    issuer: ic.name.clone(),
                    spec: lc.spec.clone(),
                    message: e.to_string(),
                })?;
                if ctx.is_some() {
                    reversal::check_spec(&spec)
                        .map_err(|source| IssuerError::Reversal { issuer: ic.name.clone(), source })?;
                }
                first_spec.get_or_insert_with(|| spec.clone());
                let tls = match &lc.tls {
                    Some(t) => {
                        let ck = t.cert.as_deref().zip(t.key.as_deref());
                        let cc = crate::tls::client_config(&t.ca, ck)
                            .map_err(|source| IssuerError::Tls { issuer: ic.name.clone(), source })?;
                        Some((Arc::new(cc), t.server_name.clone()))
                    }
                    None => None,
                };
                let setup = LinkSetup {
                    issuer: name.clone(),
                    cfg: lc.clone(),
                    spec,
                    shared: shared.clone(),
                    tls,
                    timeouts,
                    saf: ctx.clone(),
                    logged: log.is_some(),
                };
                let (link, rx) = Link::new(next_id, setup);
                next_id += 1;
                let writer = log.as_ref().map(|l| l.writer(index));
                tasks.push(tokio::spawn(link::run(link.clone(), rx, writer, shutdown.clone())));
                links.push(link);
            }
            let responses = crate::metrics::ResponseCounters::new(&name);
            let failovers = metrics::counter!(crate::metrics::FAILOVER_TOTAL, "issuer" => name.to_string());
            let saf = ctx.zip(first_spec);
            let links_window = ic.links.iter().map(|l| l.window).sum();
            let defaults = Priorities::default();
            let admission = Admission::new(&name, links_window, defaults.queue, defaults.weights);
            let deadline =
                Duration::from_millis(ic.links.iter().map(|l| l.deadline_ms).min().unwrap_or(5000));
            let margin = Duration::from_millis(timeouts.answer_margin_ms).min(deadline / 2);
            let advices = advice::Book::new(&name);
            let issuer = Arc::new(Issuer {
                advices,
                name,
                links,
                responses,
                failovers,
                saf: saf.clone(),
                admission,
                deadline,
                margin,
            });
            if let (Some(log), Some(cfg), Some((ctx, _))) = (log, &indoubt, &saf) {
                let longest = ic.links.iter().map(|l| l.deadline_ms).max().unwrap_or(5000);
                let hold = indoubt::hold_for(Duration::from_millis(longest));
                let (settled, store) = (cfg.settled.clone(), ctx.store.clone());
                tasks.push(tokio::spawn(indoubt::reaper(log, hold, settled, store, shutdown.clone())));
            }
            if let Some((ctx, spec)) = saf {
                tasks.push(tokio::spawn(saf::worker(issuer.clone(), ctx, spec, shutdown.clone())));
            }
            list.push(issuer);
        }
        Ok(Issuers { list, tasks, tables })
    }

    /// Forward to `target.primary`, or to its backup when every link of the primary is
    /// down and the backup has one up (counted in `isoswitch_failover_total{issuer=primary}`).
    /// Returns the issuer that took the request (journal it in the `issuer` column) and
    /// the outcome; `None` when the primary names no issuer. See `Issuer::forward`.
    pub async fn forward(
        &self,
        target: Target<'_>,
        req: &Message,
        options: ForwardOptions,
    ) -> Option<(Arc<Issuer>, Outcome)> {
        let Target { primary, backup } = target;
        let first = self.by_name(primary)?.clone();
        let spare = backup.and_then(|b| self.by_name(b)).filter(|b| b.name != first.name);
        if first.links_up() == 0
            && let Some(b) = spare
            && b.links_up() > 0
        {
            first.failovers.increment(1);
            tracing::info!(issuer = %first.name, backup = %b.name, "every link down; failing over to the backup");
            let b = b.clone();
            let outcome = b.forward(req, options).await;
            return Some((b, outcome));
        }
        let outcome = first.forward(req, options).await;
        Some((first, outcome))
    }

    /// Admission control's queue sizes (taken at start only) and the class weights in
    /// force, for every issuer.
    pub fn configure_admission(&self, queue: QueueConfig, weights: Weights) {
        for i in &self.list {
            if !i.configure_admission(queue, weights) {
                tracing::debug!(issuer = %i.name, "issuer busy: admission queue sizes unchanged, weights updated");
            }
        }
    }

    /// New class weights for every issuer.
    pub fn set_weights(&self, weights: Weights) {
        for i in &self.list {
            i.set_weights(weights);
        }
    }

    /// The issuer at configuration index `i`.
    pub fn get(&self, i: usize) -> Option<&Arc<Issuer>> {
        self.list.get(i)
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Issuer>> {
        self.list.iter().find(|i| &*i.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Issuer>> {
        self.list.iter()
    }

    /// Requests waiting in the session table, all issuers.
    pub fn pending(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum()
    }

    /// Wait (bounded) for the link tasks to end after their shutdown token fired.
    pub async fn join(self, bound: Duration) {
        for t in self.tasks {
            let _ = tokio::time::timeout(bound, t).await;
        }
    }
}

/// How the issuer connector starts (see `Issuers::start`); the default has neither a
/// store-and-forward store nor an in-doubt log.
#[derive(Default)]
pub struct StartOptions {
    pub saf: Option<(Arc<dyn SafStore>, SafPolicy)>,
    pub indoubt: Option<indoubt::InDoubt>,
}

/// Where a request goes: `primary`, or `backup` when every link of the primary is down.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub primary: &'a str,
    pub backup: Option<&'a str>,
}

/// How a request is forwarded (see `Issuer::forward`): its priority class (the routing
/// core's), the caller's reserve after the reply, and where and when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct ForwardOptions {
    pub class: Class,
    pub reserve: Duration,
    pub origin: Origin,
}

impl ForwardOptions {
    /// For a caller without a routing decision or a connection: the class told by the
    /// MTI alone, no reserve, arrived now from source 0.
    pub fn of(req: &Message) -> ForwardOptions {
        ForwardOptions { class: class_of_mti(req.mti()), reserve: Duration::ZERO, origin: Origin::now() }
    }
}

/// Where a terminal's request came from: when it reached the switch (its reply deadline
/// counts from then) and on which terminal connection (`source`: admission is fair
/// between connections; any number unique among the switch's open connections).
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub arrival: Instant,
    pub source: u64,
}

impl Origin {
    /// Arrived now, from source 0 (callers with no connection of their own).
    pub fn now() -> Origin {
        Origin { arrival: Instant::now(), source: 0 }
    }
}

/// A class from the MTI alone, for callers without a routing decision: reversals and
/// advices, network management, else ordinary.
fn class_of_mti(mti: &str) -> Class {
    let b = mti.as_bytes();
    if b.get(1) == Some(&b'4') || b.get(2) == Some(&b'2') {
        Class::Reversal
    } else if b.get(1) == Some(&b'8') {
        Class::Network
    } else {
        Class::Ordinary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer_of(n: usize) -> Issuer {
        let cfg = crate::config::Config::parse(
            "t",
            "[[issuer]]\nname = \"a\"\n[[issuer.link]]\naddr = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let table = Arc::new(SessionTable::for_key(&MatchKey::new(&[11]), 64));
        let spec = crate::iso::spec::shipped("iso87ascii").unwrap();
        let shared = protocol::Shared {
            key: MatchKey::new(&[11]),
            table,
            stans: protocol::stan_allocator(),
            late: None,
        };
        let links = (0..n as u32)
            .map(|id| {
                let setup = LinkSetup {
                    issuer: Arc::from("a"),
                    cfg: cfg.issuers[0].links[0].clone(),
                    spec: spec.clone(),
                    shared: shared.clone(),
                    tls: None,
                    timeouts: Timeouts::default(),
                    saf: None,
                    logged: false,
                };
                Link::new(id, setup).0
            })
            .collect();
        Issuer {
            name: Arc::from("a"),
            links,
            responses: crate::metrics::ResponseCounters::new("a"),
            failovers: metrics::counter!(crate::metrics::FAILOVER_TOTAL, "issuer" => "a"),
            saf: None,
            admission: Admission::new("a", 64, Priorities::default().queue, Priorities::default().weights),
            deadline: Duration::from_secs(5),
            margin: Duration::from_millis(50),
            advices: advice::Book::new("a"),
        }
    }

    #[test]
    fn links_are_chosen_by_fewest_in_flight_then_latency() {
        let i = issuer_of(3);
        i.links[0].set_state(true, 5, 100);
        i.links[1].set_state(true, 2, 900);
        i.links[2].set_state(true, 2, 300);
        assert_eq!(i.pick().map(Arc::as_ptr), Some(Arc::as_ptr(&i.links[2])));
        i.links[2].set_state(false, 0, 1);
        assert_eq!(i.pick().map(Arc::as_ptr), Some(Arc::as_ptr(&i.links[1])));
        for l in &i.links {
            l.set_state(false, 0, 0);
        }
        assert!(i.pick().is_none());
        assert_eq!(i.links_up(), 0);
    }

    #[test]
    fn links_of_one_issuer_never_hand_out_the_same_stan() {
        let i = issuer_of(3);
        let mut seen = std::collections::HashSet::new();
        for n in 0..3000 {
            assert!(seen.insert(i.links[n % 3].next_stan()), "STAN repeated after {n}");
        }
    }
}
