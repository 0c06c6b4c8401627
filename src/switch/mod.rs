//! The composition root: [`serve`] builds a running switch from its configuration and
//! [`RunningSwitch::join`] waits for it to stop. The acceptor (terminals), the admin API
//! and the metrics port are siblings under it; none of them starts another.
//!
//! Start, in this order (everything that can fail before any task starts, so that a
//! refused start leaves nothing running):
//!
//! 1. config → services: the rules and the journal ([`serve`]; [`serve_with`] takes them
//!    prepared);
//! 2. the operations ports bound (metrics, admin), retention's export directory checked,
//!    the terminal listeners prepared (`acceptor::prepare`: spec, TLS, bind, security);
//! 3. the retransmission window's terminal keys reloaded from the journal (`start.rs`);
//! 4. the metrics recorder installed, then the in-doubt log of a previous run reconciled
//!    (`start.rs`, `reconcile.rs`) before any issuer link sends;
//! 5. the issuer connector started, its admission weights set and followed (`start.rs`);
//! 6. journal retention (`retention.rs`), after the start-up reads of old rows;
//! 7. the metrics port and the admin API served (`crate::opsport`, one serve loop each),
//!    the admin API reaching the switch through [`control::Control`];
//! 8. the acceptor started on the prepared listeners (`acceptor::start`).
//!
//! Stop, when the shutdown token is cancelled: the listeners stop accepting, their
//! connections drain (each listener up to `[timeouts] drain_ms`, then the rest are closed),
//! and only then the issuer links close, so that draining requests still get their replies.
//! The operations ports and retention stop on the same token.
//! May import: crate::acceptor, crate::admin, crate::config, crate::issuer, crate::journal,
//! crate::metrics, crate::time.

pub mod control;
pub mod reconcile;
pub mod retention;
mod start;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics::gauge;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::acceptor::{self, ServiceError, Services};
use crate::config::Config;
use crate::issuer::{IssuerError, Issuers, StartOptions};
use crate::metrics as m;
use control::Control;

/// Why the switch could not start. The same idea as `acceptor::Error` one layer up (it
/// wraps it): each layer's start-up failure is its module's `Error`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Listener(#[from] acceptor::Error),
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

/// Start the switch: rules and journal as the configuration says.
pub async fn serve(cfg: Config, shutdown: CancellationToken) -> Result<RunningSwitch, Error> {
    let c = cfg.clone();
    let services = tokio::task::spawn_blocking(move || Services::open(&c)).await.map_err(|e| {
        Error::Services(ServiceError::Journal(crate::journal::StoreError::Backend(e.to_string())))
    })??;
    serve_with(cfg, Arc::new(services), shutdown).await
}

/// Bind an operations port when it is configured.
async fn bind_ops(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, Error> {
    match addr {
        Some(addr) => Ok(Some(TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?)),
        None => Ok(None),
    }
}

/// Start the switch with prepared services (rules, journal).
pub async fn serve_with(
    cfg: Config,
    services: Arc<Services>,
    shutdown: CancellationToken,
) -> Result<RunningSwitch, Error> {
    let metrics_listener = bind_ops(cfg.metrics).await?;
    let metrics = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    // The admin API is served only with a token to check.
    let admin_listener = bind_ops(cfg.admin.filter(|_| cfg.admin_token.is_some())).await?;
    let admin = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(r) = &cfg.retention {
        retention::check_export_dir(&r.export_dir)
            .map_err(|source| Error::ExportDir { dir: r.export_dir.clone(), source })?;
    }
    let prepared = acceptor::prepare(&cfg).await?;
    start::load_repeats(&services).await;
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
            let log = start::indoubt(&cfg, &services, &setup.0, key).await?;
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
    tokio::spawn(start::follow_weights(services.router.clone(), issuers.clone(), links_stop.clone()));
    // Shown from the start (the journal was opened before the recorder was installed).
    if services.journal_handle().is_some() {
        gauge!(m::JOURNAL_UP).set(if services.journal_up() { 1.0 } else { 0.0 });
    }
    let control = Arc::new(Control { services: services.clone(), issuers: issuers.clone() });
    let ops_read = Duration::from_millis(cfg.ops.read_timeout_ms);
    let ops_cap = cfg.ops.max_connections;
    if let Some(l) = metrics_listener {
        let c = control.clone();
        let ready: m::Ready = Arc::new(move || c.ready());
        tokio::spawn(m::serve_http(l, handle, ready, ops_cap, ops_read, shutdown.clone()));
    }
    if let (Some(l), Some(token)) = (admin_listener, &cfg.admin_token) {
        let api = crate::admin::Admin { token: token.clone(), switch: control, rules_dir: cfg.rules.clone() };
        tokio::spawn(crate::admin::serve(l, Arc::new(api), ops_cap, ops_read, shutdown.clone()));
    }
    let terminals = acceptor::start(prepared, &cfg, &services, &issuers, &shutdown);
    let listeners = terminals.addrs().to_vec();
    tracing::info!(listeners = ?listeners, max_connections = ?terminals.caps(), metrics = ?metrics, admin = ?admin, issuers = cfg.issuers.len(), "switch started");
    let iss = issuers.clone();
    let join = tokio::spawn(async move {
        shutdown.cancelled().await;
        terminals.drained().await;
        links_stop.cancel();
        tracing::info!(pending = iss.pending(), "switch stopped");
    });
    Ok(RunningSwitch { services, listeners, metrics, admin, issuers, join })
}
