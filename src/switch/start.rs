//! The start-up work on the journal's past and the switch's one follower of the rules:
//! the in-doubt reconciliation of a previous run (before any issuer link sends), the
//! reload of the retransmission window's terminal keys (before any terminal is heard), and
//! the task that keeps admission control's class weights on the rules in force.
//! May import: crate::acceptor::service, crate::config, crate::issuer, crate::journal,
//! crate::route, crate::switch::reconcile, crate::time.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::acceptor::service::Services;
use crate::config::Config;
use crate::issuer::indoubt::InDoubt;
use crate::issuer::{IssuerError, Issuers, SafStore};
use crate::journal::saf_store::SafKey;
use crate::switch::reconcile;
use crate::time::UnixMs;

/// Reconcile what the in-doubt log of a previous run holds (before any link sends), and
/// the log for this run. `None` without a journal or with `[saf] indoubt = false`.
pub async fn indoubt(
    cfg: &Config,
    services: &Arc<Services>,
    store: &Arc<dyn SafStore>,
    key: SafKey,
) -> Result<Option<InDoubt>, IssuerError> {
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
        .map_err(|e| IssuerError::Saf(e.to_string()))??;
    Ok(Some(InDoubt {
        dir,
        key,
        rotate: Duration::from_millis(cfg.saf.indoubt_rotate_ms),
        fsync: cfg.saf.indoubt_fsync,
        settled: Arc::new(reconcile::JournalSettled(journal)),
        lock,
    }))
}

/// Reload the terminal keys the journal answered in the current business day (the window
/// of retransmissions), so that a restart forwards no repeat of them. When the journal
/// cannot say, every key not in memory is checked against the journal until the window
/// has passed the start.
pub async fn load_repeats(services: &Arc<Services>) {
    let Some(j) = services.journal_handle() else { return };
    let now = crate::time::now().as_i64();
    let offset = services.router.rules().registry.utc_offset_minutes;
    // The business days the window reaches back into (one, unless a window in seconds
    // spans midnight), oldest first.
    let mut days = Vec::new();
    let mut at = services.repeats.window_start(now);
    while at < now {
        days.push(crate::journal::business_date(UnixMs::from_i64(at), offset));
        at = at.saturating_add(86_400_000);
    }
    days.push(crate::journal::business_date(UnixMs::from_i64(now), offset));
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
pub async fn follow_weights(
    router: Arc<crate::route::Router>,
    issuers: Arc<Issuers>,
    stop: CancellationToken,
) {
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
