//! The acceptor: terminal listeners (TCP or TLS, optional client-certificate
//! verification), connection limits, keepalive and idle timeout, and [`serve`], the
//! switch's entry point that wires config, metrics, the issuer connector and the router
//! together and stops gracefully on a cancellation token (stop accepting, drain the
//! requests in flight up to a bound, then close the issuer links).
//!
//! Where each kind of request is handled:
//!
//! | request | file |
//! |---------|------|
//! | every frame: decode, MAC check, repeat check, plan, hold, reply | `conn.rs` |
//! | network management (sign-on, echo): answered at once | `conn.rs`, `security.rs` |
//! | the plan of a request (rules → `Plan`) | `service.rs` `Services::plan` |
//! | financial requests for an issuer (0100/0200/0220…) | `handlers/forward.rs` |
//! | … decided on the issuer's behalf (stand-in) | `standin/` |
//! | reversals (0400/0420) | `handlers/reversal.rs` |
//! | batch settlement (0500) | `handlers/settle.rs` |
//! | batch upload (0320) | `handlers/upload.rs` |
//! | the switch's own declines | `handlers/decline.rs` |
//! | retransmissions and repeats | `handlers/repeat.rs`, `repeats.rs` |
//!
//! A request travels as a `Request` (`request.rs`); every handler journals through the
//! services' `Recorder` (`record.rs`) and builds its reply with `reply.rs`. The estate
//! rules of UnionPay-style terminals (batches, originals named by field 61) are in
//! `cup.rs`, applied where the listener's `Dialect` (`dialect.rs`) says so; reversals that
//! overtake their original wait through `inflight.rs`.
//! May import: crate::accept, crate::admin, crate::config, crate::fdlimit, crate::iso,
//! crate::issuer, crate::journal, crate::metrics, crate::route, crate::telemetry, crate::time,
//! crate::tls.

mod conn;
mod control;
mod cup;
pub mod dialect;
mod handlers;
mod inflight;
mod late;
mod listener;
mod queue_reversal;
pub mod reconcile;
pub mod record;
mod rejected;
pub mod repeats;
pub mod reply;
pub mod request;
pub mod retention;
pub mod security;
pub mod service;
pub mod standin;
pub mod suspensions;

pub use cup::read_request_fields;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accept::Backoff;
use crate::config::Config;
use crate::iso::Spec;
use crate::issuer::{IssuerError, Issuers, StartOptions};
use crate::metrics as m;
use crate::telemetry::{THROTTLE_INTERVAL, Throttle};
pub use dialect::Dialect;
use listener::ListenerCtx;
pub use request::Plan;
pub use service::{ServiceError, Services};

/// Why the switch could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listener {addr}: spec {spec}: {message}")]
    Spec { addr: SocketAddr, spec: String, message: String },
    #[error("listener {addr}: {source}")]
    Tls { addr: SocketAddr, source: crate::tls::TlsError },
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    #[error(transparent)]
    Services(#[from] ServiceError),
    #[error("retention.export_dir {}: {source}", dir.display())]
    ExportDir { dir: std::path::PathBuf, source: std::io::Error },
}

/// A started switch.
pub struct RunningSwitch {
    services: Arc<Services>,
    listeners: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    issuers: Arc<Issuers>,
    join: JoinHandle<()>,
}

impl RunningSwitch {
    /// The bound address of each listener, in configuration order (port 0 resolved).
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.listeners
    }

    /// The bound admin API address, when it is served.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The bound metrics address, when metrics are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// The routing core and the journal the switch runs with (reload the rules here).
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// The issuer connector (link state, requests in flight).
    pub fn issuers(&self) -> &Arc<Issuers> {
        &self.issuers
    }

    /// Wait until every issuer has at least one link up, at most `bound`; returns whether so.
    pub async fn wait_issuers_up(&self, bound: Duration) -> bool {
        let until = tokio::time::Instant::now() + bound;
        loop {
            if self.issuers.iter().all(|i| i.links_up() > 0) {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait for the switch to finish after its shutdown token was cancelled.
    pub async fn join(self) {
        let _ = self.join.await;
    }
}

/// Reconcile what the in-doubt log of a previous run holds (before any link sends), and
/// the log for this run. `None` without a journal or with `[saf] indoubt = false`.
async fn start_indoubt(
    cfg: &Config,
    services: &Arc<Services>,
    store: &Arc<dyn crate::issuer::SafStore>,
    key: crate::journal::saf_store::SafKey,
) -> Result<Option<crate::issuer::indoubt::InDoubt>, Error> {
    let (Some(dir), Some(journal)) = (services.indoubt_dir(cfg), services.journal_handle().cloned()) else {
        return Ok(None);
    };
    // Before reading anything: another switch on this directory would have its requests
    // in flight reversed by this one's reconciliation.
    let lock = Arc::new(crate::issuer::indoubt::lock_dir(&dir)?);
    let key = key.aead();
    let (c, d, k, j, s) = (cfg.clone(), dir.clone(), key.clone(), journal.clone(), store.clone());
    tokio::task::spawn_blocking(move || reconcile::reconcile(&c, &d, &k, &j, &s))
        .await
        .map_err(|e| Error::Issuer(crate::issuer::IssuerError::Saf(e.to_string())))??;
    Ok(Some(crate::issuer::indoubt::InDoubt {
        dir,
        key,
        rotate: Duration::from_millis(cfg.saf.indoubt_rotate_ms),
        fsync: cfg.saf.indoubt_fsync,
        settled: Arc::new(reconcile::JournalSettled(journal)),
        lock,
    }))
}

/// Start the switch: rules and journal as the configuration says.
pub async fn serve(cfg: Config, shutdown: CancellationToken) -> Result<RunningSwitch, Error> {
    let c = cfg.clone();
    let services = tokio::task::spawn_blocking(move || Services::open(&c)).await.map_err(|e| {
        Error::Services(ServiceError::Journal(crate::journal::StoreError::Backend(e.to_string())))
    })??;
    serve_with(cfg, Arc::new(services), shutdown).await
}

/// Start the switch with prepared services (rules, journal).
pub async fn serve_with(
    cfg: Config,
    services: Arc<Services>,
    shutdown: CancellationToken,
) -> Result<RunningSwitch, Error> {
    // Everything that can fail (specs, TLS files, binds) happens before any task starts,
    // so a refused start leaves nothing running.
    let metrics_listener = match cfg.metrics {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?),
        None => None,
    };
    let metrics = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(r) = &cfg.retention {
        retention::check_export_dir(&r.export_dir)
            .map_err(|source| Error::ExportDir { dir: r.export_dir.clone(), source })?;
    }
    let mut prepared = Vec::with_capacity(cfg.listeners.len());
    for lc in &cfg.listeners {
        let spec = Spec::load(&lc.spec).map_err(|e| Error::Spec {
            addr: lc.addr,
            spec: lc.spec.clone(),
            message: e.to_string(),
        })?;
        let tls = match &lc.tls {
            Some(t) => {
                let sc = crate::tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())
                    .map_err(|source| Error::Tls { addr: lc.addr, source })?;
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(sc)))
            }
            None => None,
        };
        let listener =
            TcpListener::bind(lc.addr).await.map_err(|source| Error::Bind { addr: lc.addr, source })?;
        let bound = listener.local_addr().map_err(|source| Error::Bind { addr: lc.addr, source })?;
        let sec = security::Security::load(lc)
            .map_err(|message| Error::Spec { addr: lc.addr, spec: lc.spec.clone(), message })?
            .with_zones(&cfg.issuers);
        prepared.push((lc.clone(), spec, tls, listener, bound, sec));
    }
    load_repeats(&services).await;
    // Links outlive the listeners so that draining requests still get their replies.
    let links_stop = CancellationToken::new();
    let (svc, c) = (services.clone(), cfg.clone());
    let saf = tokio::task::spawn_blocking(move || svc.saf_store(&c)).await.map_err(|e| {
        Error::Services(ServiceError::Journal(crate::journal::StoreError::Backend(e.to_string())))
    })??;
    // The recorder first: the issuers look up their metric handles once, when built.
    let handle = m::install();
    let (saf, indoubt) = match saf {
        Some((setup, key)) => {
            let log = start_indoubt(&cfg, &services, &setup.0, key).await?;
            (Some(setup), log)
        }
        None => (None, None),
    };
    let issuers =
        Arc::new(Issuers::start(&cfg.issuers, cfg.timeouts, StartOptions { saf, indoubt }, &links_stop)?);
    m::zero_counters(cfg.issuers.iter().map(|i| i.name.as_str()));
    // After the start-up reads of old rows (in-doubt reconciliation, retransmission keys).
    match (&cfg.retention, services.journal_config()) {
        (Some(r), Some(jc)) => {
            retention::spawn(r.clone(), jc.clone(), services.clone(), shutdown.clone());
        }
        (Some(_), None) => tracing::warn!("[retention] ignored: the switch runs without a journal"),
        (None, _) => {}
    }
    let rules = services.router.rules();
    let now = crate::time::now();
    issuers.configure_admission(rules.priorities.queue, rules.weights_at(now).0);
    tokio::spawn(follow_weights(services.router.clone(), issuers.clone(), links_stop.clone()));
    // Shown from the start (the journal was opened before the recorder was installed).
    if services.journal_handle().is_some() {
        gauge!(m::JOURNAL_UP).set(if services.journal_up() { 1.0 } else { 0.0 });
    }
    let ops_read = Duration::from_millis(cfg.ops.read_timeout_ms);
    if let Some(l) = metrics_listener {
        let (svc, iss) = (services.clone(), issuers.clone());
        let ready: m::Ready = Arc::new(move || svc.journal_up() && iss.iter().all(|i| i.links_up() > 0));
        tokio::spawn(m::serve_http(l, handle, ready, cfg.ops.max_connections, ops_read, shutdown.clone()));
    }
    let (caps, warnings) = crate::fdlimit::terminal_caps(&cfg, crate::fdlimit::raise_nofile());
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let hard = CancellationToken::new();
    let mut addrs = Vec::with_capacity(prepared.len());
    let mut tasks = Vec::with_capacity(prepared.len());
    for ((lc, spec, tls, listener, bound, security), cap) in prepared.into_iter().zip(caps.iter().copied()) {
        addrs.push(bound);
        let ctx = Arc::new(ListenerCtx {
            dialect: Dialect::of(&spec),
            cfg: lc,
            spec,
            services: services.clone(),
            issuers: issuers.clone(),
            security,
            inflight: Arc::default(),
            batches: cup::Batches::default(),
            write_bound: Duration::from_millis(cfg.timeouts.write_ms),
            requests: m::RequestCounters::new(),
            local: m::ResponseCounters::new("switch"),
            end_to_end: metrics::histogram!(m::END_TO_END_LATENCY_SECONDS),
        });
        let handshake = Duration::from_millis(cfg.timeouts.handshake_ms);
        let drain = Duration::from_millis(cfg.timeouts.drain_ms);
        tasks.push(tokio::spawn(accept_loop(
            listener,
            ctx,
            cap,
            tls,
            handshake,
            drain,
            shutdown.clone(),
            hard.clone(),
        )));
    }
    let admin = match (cfg.admin, &cfg.admin_token) {
        (Some(addr), Some(token)) => {
            let l = TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
            let bound = l.local_addr().map_err(|source| Error::Bind { addr, source })?;
            let api = crate::admin::Admin {
                token: token.clone(),
                switch: services.clone(),
                issuers: issuers.clone(),
                rules_dir: cfg.rules.clone(),
            };
            let cap = cfg.ops.max_connections;
            tokio::spawn(crate::admin::serve(l, Arc::new(api), cap, ops_read, shutdown.clone()));
            Some(bound)
        }
        _ => None,
    };
    tracing::info!(listeners = ?addrs, max_connections = ?caps, metrics = ?metrics, admin = ?admin, issuers = cfg.issuers.len(), "switch started");
    let iss = issuers.clone();
    let join = tokio::spawn(async move {
        shutdown.cancelled().await;
        for t in tasks {
            let _ = t.await;
        }
        hard.cancel();
        links_stop.cancel();
        tracing::info!(pending = iss.pending(), "switch stopped");
    });
    Ok(RunningSwitch { services, listeners: addrs, metrics, admin, issuers, join })
}

/// Reload the terminal keys the journal answered in the current business day (the window
/// of retransmissions), so that a restart forwards no repeat of them. When the journal
/// cannot say, every key not in memory is checked against the journal until the window
/// has passed the start.
async fn load_repeats(services: &Arc<Services>) {
    let Some(j) = services.journal_handle() else { return };
    let now = crate::time::now().as_i64();
    let offset = services.router.rules().registry.utc_offset_minutes;
    // The business days the window reaches back into (one, unless a window in seconds
    // spans midnight), oldest first.
    let mut days = Vec::new();
    let mut at = services.repeats.window_start(now);
    while at < now {
        days.push(crate::journal::business_date(at, offset));
        at = at.saturating_add(86_400_000);
    }
    days.push(crate::journal::business_date(now, offset));
    days.dedup();
    let mut n = 0;
    for day in days {
        match j.query(crate::journal::Query::KeysOfDay(day)).await {
            Ok(rows) => n += services.repeats.load(&rows, now),
            Err(e) => {
                tracing::warn!(error = %e, "terminal keys not reloaded: repeats are checked against the journal instead");
                services.repeats.unsure_until(services.repeats.window_end(now));
                return;
            }
        }
    }
    if n > 0 {
        tracing::info!(keys = n, "terminal keys of the retransmission window reloaded from the journal");
    }
}

/// Keep admission control's class weights on the rules in force: a peak window opens or
/// closes, or a reload (SIGHUP, admin API) brings new weights. Checked once a second: a
/// lookup of the rules and a comparison, and the schedulers are touched only on a change.
async fn follow_weights(router: Arc<crate::route::Router>, issuers: Arc<Issuers>, stop: CancellationToken) {
    let mut current = None;
    loop {
        let now = crate::time::now();
        let rules = router.rules();
        let (weights, peak) = rules.weights_at(now);
        if current != Some(weights) {
            if current.is_some() {
                tracing::info!(?weights, peak, "admission weights changed");
            }
            issuers.set_weights(weights);
            current = Some(weights);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Accept terminals until `shutdown`: at most `cap` open at once (more are closed as soon
/// as they are accepted), backing off while accepts fail; then drain.
#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<ListenerCtx>,
    cap: usize,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshake: Duration,
    drain: Duration,
    shutdown: CancellationToken,
    hard: CancellationToken,
) {
    static HANDSHAKE_FAILED: Throttle = Throttle::new(THROTTLE_INTERVAL);
    static HANDSHAKE_TIMED_OUT: Throttle = Throttle::new(THROTTLE_INTERVAL);
    let limit = Arc::new(Semaphore::new(cap.max(1)));
    let mut backoff = Backoff::new("terminal", counter!(m::ACCEPT_ERRORS_TOTAL, "listener" => "terminal"));
    let tracker = TaskTracker::new();
    let conns = gauge!(m::TERMINAL_CONNECTIONS);
    let stop = conn::Stop::new(shutdown.clone(), hard.clone());
    let watcher = tokio::spawn(stop.clone().watch());
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff.accepted();
                a
            }
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            counter!(m::REFUSED_CONNECTIONS_TOTAL).increment(1);
            drop(stream);
            continue;
        };
        tune(&stream);
        let (ctx, tls, stop, conns) = (ctx.clone(), tls.clone(), stop.clone(), conns.clone());
        tracker.spawn(async move {
            conns.increment(1.0);
            match tls {
                None => {
                    let (r, w) = stream.into_split();
                    conn::serve(ctx, r, w, stop).await;
                }
                Some(acc) => match tokio::time::timeout(handshake, acc.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let (r, w) = tokio::io::split(s);
                        conn::serve(ctx, r, w, stop).await;
                    }
                    Ok(Err(e)) => {
                        if let Some(suppressed) = HANDSHAKE_FAILED.hit() {
                            tracing::info!(%peer, error = %e, suppressed, "terminal TLS handshake failed");
                        }
                    }
                    Err(_) => {
                        if let Some(suppressed) = HANDSHAKE_TIMED_OUT.hit() {
                            tracing::info!(%peer, suppressed, "terminal TLS handshake timed out");
                        }
                    }
                },
            }
            conns.decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!("drain bound reached; closing remaining terminal connections");
        hard.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    }
    watcher.abort();
}

/// Nodelay for latency; keepalive so a terminal gone behind a NAT reset frees its slot.
fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10));
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&ka);
}
