//! Telling the service manager (systemd `Type=notify`) how the switch is doing, through the
//! datagram socket named by `NOTIFY_SOCKET`: `READY=1` once the listeners are bound and the
//! journal is open, `RELOADING=1` .. `READY=1` around a rule reload, `STOPPING=1` when the
//! drain starts, and `WATCHDOG=1` pings when the unit sets `WatchdogSec=`. Without
//! `NOTIFY_SOCKET` (a shell, a container) every call here does nothing.
//! May import: nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// Send `states`; a failure is logged, never fatal (the switch serves either way, and a
/// service manager that misses READY=1 says so itself).
fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// The switch takes connections: its listeners are bound and its journal is open.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload of the rule directory starts; `reloaded` ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now, NotifyState::Status("reloading the rules")]),
        Err(e) => tracing::warn!(error = %e, "cannot read the monotonic clock for RELOADING=1"),
    }
}

/// The reload ended (applied or refused: either way the switch serves with the rules in force).
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The switch stops taking connections and drains what is in flight.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining requests in flight")]);
}

/// Ping the watchdog at half its interval until `stop`, when the unit asks for one
/// (`WatchdogSec=`). The pings come from the runtime's own tasks: a runtime that no longer
/// schedules them gets the process restarted.
pub fn spawn_watchdog(stop: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else { return };
    let every = (interval / 2).max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => send(&[NotifyState::Watchdog]),
            }
        }
    });
}
