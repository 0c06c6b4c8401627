//! `isoswitch run`: the switch. Loads the configuration (or the embedded default),
//! applies the flags to the first listener and issuer, logs to stderr, and runs until
//! Ctrl-C or SIGTERM, then drains gracefully.
//! May import: crate::acceptor, crate::cli::notify, crate::config, crate::iso,
//! crate::switch, crate::telemetry.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Args, Debug, Default, Clone)]
pub struct RunArgs {
    /// Configuration file (TOML); without it the embedded default is used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address of the first terminal listener.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address of the first issuer's first link.
    #[arg(long)]
    pub issuer: Option<SocketAddr>,
    /// Address for /metrics and /health.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Journal file (SQLite); `off` runs without a journal.
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Directory of rule files (registry.toml, routes.toml, fees.toml, priority.toml, risk.toml).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Spec of the first listener and of the first issuer's links.
    #[arg(long)]
    pub spec: Option<String>,
    /// Deadline of the first issuer's links, in milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Log format on stderr: `text` (coloured only on a terminal) or `json` (one object
    /// per line, for log shippers).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,
}

/// Signals, environment and endpoints of a running switch (`isoswitch run --help`, and
/// the EXTRA section of isoswitch-run(1)).
pub const OPERATING_NOTES: &str = "\
Signals: SIGTERM or SIGINT stops taking connections and drains the requests in flight; \
SIGHUP reloads the rule directory (a bad file is refused and the running rules stay).

Environment: RUST_LOG filters the log (default `info`). NOTIFY_SOCKET, set by systemd for \
Type=notify units, receives READY=1 once the listeners are bound and the journal is open, \
RELOADING=1 around a reload and STOPPING=1 at shutdown; WATCHDOG_USEC (WatchdogSec=) gets \
watchdog pings.

Endpoints on the metrics address: /metrics (Prometheus text), /health (200 while the process \
runs), /ready (503 while the journal cannot write or an issuer has no link up).";

/// The configuration `run` would use: file or default, then the flags.
pub fn effective_config(a: &RunArgs) -> Result<Config, String> {
    let mut cfg = match &a.config {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::embedded(),
    };
    if let Some(m) = a.metrics {
        cfg.metrics = Some(m);
    }
    if let Some(j) = &a.journal {
        cfg.journal = if j.as_os_str() == "off" { None } else { Some(j.clone()) };
        if cfg.journal.is_none() {
            cfg.journal_url = None;
        }
    }
    if let Some(r) = &a.rules {
        if !r.is_dir() {
            return Err(format!("--rules: {} is not a directory", r.display()));
        }
        cfg.rules = Some(r.clone());
    }
    if let Some(l) = cfg.listeners.first_mut() {
        if let Some(addr) = a.listen {
            l.addr = addr;
        }
        if let Some(s) = &a.spec {
            l.spec = s.clone();
        }
    }
    if let Some(i) = cfg.issuers.first_mut() {
        if let (Some(addr), Some(link)) = (a.issuer, i.links.first_mut()) {
            link.addr = addr;
        }
        for link in &mut i.links {
            if let Some(s) = &a.spec {
                link.spec = s.clone();
            }
            if let Some(t) = a.timeout_ms {
                link.deadline_ms = t.max(1);
            }
        }
    }
    if let Some(s) = &a.spec
        && crate::iso::spec::shipped(s).is_none()
        && !std::path::Path::new(s).exists()
    {
        return Err(format!("--spec: unknown spec `{s}`"));
    }
    Ok(cfg)
}

pub fn run(a: RunArgs) -> ExitCode {
    crate::telemetry::init_with(a.log_format);
    let cfg = match effective_config(&a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("isoswitch run: {e}");
            return ExitCode::from(2);
        }
    };
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    if cfg.journal.is_none() && cfg.journal_url.is_none() {
        // A config file without `journal` runs without one: say so, once, loudly.
        tracing::warn!(
            "no journal configured: transactions are not recorded and `settle` has nothing to read"
        );
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("isoswitch run: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rules_dir = cfg.rules.clone();
    rt.block_on(async move {
        // Handlers go in before the listener opens: a signal sent as soon as the switch
        // accepts connections must not take its default action (terminating the process).
        let stop_signal = StopSignal::install();
        // SIGHUP is caught even without a rule directory: `systemctl reload` must not
        // terminate the switch.
        #[cfg(unix)]
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let shutdown = CancellationToken::new();
        let sw = match crate::switch::serve(cfg, shutdown.clone()).await {
            Ok(sw) => sw,
            Err(e) => {
                eprintln!("isoswitch run: {e}");
                return ExitCode::FAILURE;
            }
        };
        let status = serving_status(&sw);
        super::notify::ready(&status);
        super::notify::spawn_watchdog(shutdown.clone());
        #[cfg(unix)]
        if let Some(hup) = hangup {
            tokio::spawn(reload_on_hangup(sw.services().clone(), rules_dir, hup, status));
        }
        #[cfg(not(unix))]
        let _ = rules_dir;
        stop_signal.wait().await;
        super::notify::stopping();
        tracing::info!("shutting down: draining requests in flight");
        shutdown.cancel();
        sw.join().await;
        ExitCode::SUCCESS
    })
}

/// What the service manager shows for a running switch (`systemctl status`).
fn serving_status(sw: &crate::switch::RunningSwitch) -> String {
    let listeners: Vec<String> = sw.listen_addrs().iter().map(ToString::to_string).collect();
    let mut status = format!("accepting terminals on {}", listeners.join(", "));
    if let Some(m) = sw.metrics_addr() {
        status.push_str(&format!("; metrics on {m}"));
    }
    status
}

/// SIGHUP reloads the rule directory; a bad file is refused (file, line and key in the
/// log) and the running rules stay in force. Without a rule directory there is nothing
/// to reload, and the signal is only logged.
#[cfg(unix)]
async fn reload_on_hangup(
    services: std::sync::Arc<crate::acceptor::Services>,
    dir: Option<std::path::PathBuf>,
    mut hup: tokio::signal::unix::Signal,
    status: String,
) {
    while hup.recv().await.is_some() {
        let Some(dir) = dir.clone() else {
            tracing::warn!("SIGHUP: no rule directory configured (`rules` or --rules), nothing to reload");
            continue;
        };
        super::notify::reloading();
        let s = services.clone();
        match tokio::task::spawn_blocking(move || s.reload_rules(&dir)).await {
            Ok(Ok(summary)) => tracing::info!(?summary, "rules reloaded"),
            Ok(Err(e)) => tracing::error!(error = %e, "rules NOT reloaded; the running rules stay"),
            Err(e) => tracing::error!(error = %e, "rules reload failed"),
        }
        super::notify::reloaded(&status);
    }
}

/// SIGTERM and SIGINT (Ctrl-C), caught from the moment this is made.
struct StopSignal {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    fn install() -> StopSignal {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignal {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignal {}
    }

    /// Resolves on the first of them.
    async fn wait(self) {
        #[cfg(unix)]
        if let (Some(mut term), Some(mut int)) = (self.term, self.int) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        wait_for_signal().await;
    }
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_first_listener_and_issuer() {
        let a = RunArgs {
            listen: Some("127.0.0.1:1000".parse().unwrap()),
            issuer: Some("127.0.0.1:2000".parse().unwrap()),
            spec: Some("iso87binbitmap".into()),
            timeout_ms: Some(700),
            ..RunArgs::default()
        };
        let c = effective_config(&a).unwrap();
        assert_eq!(c.listeners[0].addr.port(), 1000);
        assert_eq!(c.listeners[0].spec, "iso87binbitmap");
        assert_eq!(c.issuers[0].links[0].addr.port(), 2000);
        assert_eq!(c.issuers[0].links[0].deadline_ms, 700);
        let bad = RunArgs { spec: Some("nope".into()), ..RunArgs::default() };
        assert!(effective_config(&bad).is_err());
    }
}
