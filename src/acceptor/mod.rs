//! The acceptor: what is about terminals. Listeners are prepared ([`prepare`]: spec, TLS,
//! bind, security) before anything starts, then [`start`]ed by the composition root
//! (`crate::switch`) with the services and the issuer connector: one accept loop each,
//! with a connection cap, keepalive and idle timeout; on shutdown a loop stops accepting
//! and drains its connections up to a bound ([`Terminals::drained`]).
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
//! May import: crate::accept, crate::config, crate::fdlimit, crate::iso, crate::issuer,
//! crate::metrics, crate::telemetry, crate::tls.

mod conn;
mod cup;
pub mod dialect;
mod handlers;
mod inflight;
mod late;
mod listener;
mod queue_reversal;
pub mod record;
mod rejected;
pub mod repeats;
pub mod reply;
pub mod request;
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
use crate::config::{Config, ListenerConfig};
use crate::iso::Spec;
use crate::issuer::Issuers;
use crate::metrics as m;
use crate::telemetry::{THROTTLE_INTERVAL, Throttle};
pub use dialect::Dialect;
use listener::ListenerCtx;
pub use request::Plan;
pub use service::{ServiceError, Services};

/// Why a terminal listener could not be prepared (wrapped by the composition root's
/// `switch::Error`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listener {addr}: spec {spec}: {message}")]
    Spec { addr: SocketAddr, spec: String, message: String },
    #[error("listener {addr}: {source}")]
    Tls { addr: SocketAddr, source: crate::tls::TlsError },
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A terminal listener ready to accept: its spec, TLS and security loaded, its port bound.
pub struct PreparedListener {
    cfg: ListenerConfig,
    spec: Arc<Spec>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    listener: TcpListener,
    addr: SocketAddr,
    security: security::Security,
}

impl PreparedListener {
    /// The bound address (port 0 resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Prepare every configured listener, in configuration order: everything about terminals
/// that can fail (specs, TLS files, binds, terminal keys) happens here, before any task
/// starts, so that a refused start leaves nothing running.
pub async fn prepare(cfg: &Config) -> Result<Vec<PreparedListener>, Error> {
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
        let addr = listener.local_addr().map_err(|source| Error::Bind { addr: lc.addr, source })?;
        let security = security::Security::load(lc)
            .map_err(|message| Error::Spec { addr: lc.addr, spec: lc.spec.clone(), message })?
            .with_zones(&cfg.issuers);
        prepared.push(PreparedListener { cfg: lc.clone(), spec, tls, listener, addr, security });
    }
    Ok(prepared)
}

/// The started acceptor: one accept loop per listener.
pub struct Terminals {
    addrs: Vec<SocketAddr>,
    caps: Vec<usize>,
    tasks: Vec<JoinHandle<()>>,
    hard: CancellationToken,
}

impl Terminals {
    /// The bound address of each listener, in configuration order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The connection cap in force on each listener (fitted into the descriptor limit).
    pub fn caps(&self) -> &[usize] {
        &self.caps
    }

    /// Once `shutdown` is cancelled: wait until every listener has stopped accepting and
    /// drained its connections (each up to `[timeouts] drain_ms`), then close any left.
    pub async fn drained(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        self.hard.cancel();
    }
}

/// Start accepting terminals on the prepared listeners until `shutdown`. The metrics
/// recorder must be installed first: each listener looks its metric handles up once, here.
pub fn start(
    prepared: Vec<PreparedListener>,
    cfg: &Config,
    services: &Arc<Services>,
    issuers: &Arc<Issuers>,
    shutdown: &CancellationToken,
) -> Terminals {
    let (caps, warnings) = crate::fdlimit::terminal_caps(cfg, crate::fdlimit::raise_nofile());
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let hard = CancellationToken::new();
    let mut addrs = Vec::with_capacity(prepared.len());
    let mut tasks = Vec::with_capacity(prepared.len());
    for (p, cap) in prepared.into_iter().zip(caps.iter().copied()) {
        addrs.push(p.addr);
        let ctx = Arc::new(ListenerCtx {
            dialect: Dialect::of(&p.spec),
            cfg: p.cfg,
            spec: p.spec,
            services: services.clone(),
            issuers: issuers.clone(),
            security: p.security,
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
            p.listener,
            ctx,
            cap,
            p.tls,
            handshake,
            drain,
            shutdown.clone(),
            hard.clone(),
        )));
    }
    Terminals { addrs, caps, tasks, hard }
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
