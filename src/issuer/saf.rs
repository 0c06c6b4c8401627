//! Store-and-forward of reversals. The issuer connector does not know where reversals
//! are kept: it speaks to a `SafStore` (the journal implements it over the same database)
//! and runs one worker per issuer that sends what is due over the issuer's live links —
//! 0400 the first time, 0401 after — with capped exponential backoff, and marks a reversal
//! acknowledged when the issuer's 0410 (matched by the reversal's own switch STAN) comes
//! back; an acknowledged reversal is never sent again. The attempt is made durable before
//! the write, so a crash between the two only costs one repeat. The memory of timed-out
//! keys that recognises late replies (`late`) is kept here, one per issuer.
//!
//! When the store fails (it lives in the journal's database: a full disk fails it too), a
//! reversal is held in memory instead (`held`) and never dropped: the worker sends it from
//! there and moves it into the store once the store writes again. Each change of the
//! store's state is logged once.
//!
//! Stand-in advices (0120/0220) travel the same queue: stored durably by the caller
//! before its approval is answered (never held in memory), first written after
//! `ADVICE_GRACE`, repeated as 0121/0221, and acknowledged by the issuer's 0130/0230,
//! whose response code is recorded (`SafStore::advice_answered`); the issuer's advice
//! book (`advice`) follows each one.
//!
//! The worker does not know the hub's `Issuer`: it sends through what it needs of one
//! (`SafIssuer`: name, links up, advice book, a live link) and of a link (`SafLink`: write
//! a stored message, wait for its answer), which the hub and `link` implement. Names
//! shared with them (`Outcome`, `IssuerError`) live in `outcome`.
//! May import: crate::config, crate::iso, crate::issuer::advice, crate::issuer::held,
//! crate::issuer::late, crate::issuer::outcome, crate::issuer::reversal, crate::issuer::verify,
//! crate::metrics, crate::rc, crate::time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use metrics::{counter, gauge};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::advice::Book;
use super::held::{Held, HeldItem};
use super::late::LateMemory;
use super::outcome::{IssuerError, Outcome};
use super::reversal;
use crate::config::SafConfig;
use crate::iso::{Message, Spec};
use crate::metrics as m;
use crate::rc::ResponseCode;
use crate::time;

/// One reversal waiting for its issuer.
#[derive(Debug)]
pub struct SafItem {
    pub id: i64,
    pub field90: String,
    /// Writes so far (0 = never sent: the next write is the 0400).
    pub attempts: u32,
    /// The 0400 as built (field 2 restored by the store).
    pub reversal: Message,
}

/// Durable storage of reversals. Calls are blocking (a database round trip); the issuer
/// connector makes them from the blocking pool. Every method is idempotent.
pub trait SafStore: Send + Sync + 'static {
    /// Store a new reversal as pending. `Ok(false)` when one with the same issuer and
    /// field 90 is already stored (in any state): one reversal per original.
    fn enqueue(
        &self,
        issuer: &str,
        field90: &str,
        reversal: &Message,
        now_ms: i64,
    ) -> Result<bool, IssuerError>;
    /// Pending reversals of `issuer` due at `now_ms`, oldest first, at most `limit`,
    /// rebuilt in `spec`.
    fn due(
        &self,
        issuer: &str,
        spec: &Arc<Spec>,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<SafItem>, IssuerError>;
    /// Record a write about to happen and when the next one is due.
    fn attempted(&self, id: i64, attempts: u32, next_attempt_at: i64) -> Result<(), IssuerError>;
    /// The issuer acknowledged; `Ok(false)` when it already was.
    fn acked(&self, id: i64, now_ms: i64) -> Result<bool, IssuerError>;
    /// Give up on a reversal (attempt limit reached); kept for the operator.
    fn expired(&self, id: i64, now_ms: i64) -> Result<(), IssuerError>;
    /// Pending reversals of `issuer`.
    fn depth(&self, issuer: &str) -> Result<u64, IssuerError>;
    /// `enqueue` of a reversal already written `attempts` times (held in memory while the
    /// store failed): its next write is then a repeat.
    fn enqueue_attempted(
        &self,
        issuer: &str,
        field90: &str,
        reversal: &Message,
        now_ms: i64,
        attempts: u32,
    ) -> Result<bool, IssuerError> {
        let _ = attempts;
        self.enqueue(issuer, field90, reversal, now_ms)
    }
    /// Returns once every `enqueue` that had begun before the call is durable.
    fn barrier(&self) -> Result<(), IssuerError> {
        Ok(())
    }
    /// Store a stand-in advice (0120/0220) under `key`, pending, first due at
    /// `not_before`; durable when this returns `Ok`. `Ok(false)` when one with the same
    /// issuer and key is already stored.
    fn enqueue_advice(
        &self,
        issuer: &str,
        key: &str,
        advice: &Message,
        now_ms: i64,
        not_before: i64,
    ) -> Result<bool, IssuerError> {
        let _ = not_before;
        self.enqueue(issuer, key, advice, now_ms)
    }
    /// The issuer answered an advice (its 0130/0230) with response code `rc`: the advice is
    /// acknowledged, and the code is recorded on it (and on its transaction, where the store
    /// keeps transactions). `Ok(false)` when it already was.
    fn advice_answered(&self, id: i64, rc: &str, now_ms: i64) -> Result<bool, IssuerError> {
        let _ = rc;
        self.acked(id, now_ms)
    }
    /// Withdraw a pending advice of `issuer` that was never written (its approval was not
    /// recorded, or the terminal reversed it first). `Ok(false)` when it is not pending or
    /// was written at least once.
    fn void_advice(&self, issuer: &str, key: &str, now_ms: i64) -> Result<bool, IssuerError> {
        let _ = (issuer, key, now_ms);
        Ok(false)
    }
    /// Pending advices of `issuer`: how many, and their amounts (field 4) summed.
    fn advices_pending(&self, issuer: &str) -> Result<(u64, i64), IssuerError> {
        let _ = issuer;
        Ok((0, 0))
    }
    /// Withdraw the pending advices of `issuer` stored before `before_ms` whose approval
    /// the journal does not hold (the process died between the two writes): the terminal
    /// never heard of them. Returns how many.
    fn void_orphan_advices(&self, issuer: &str, before_ms: i64) -> Result<u64, IssuerError> {
        let _ = (issuer, before_ms);
        Ok(0)
    }
}

/// Whether a stored message is an advice (0120/0121, 0220/0221), not a reversal.
pub fn is_advice(msg: &Message) -> bool {
    msg.mti().as_bytes().get(2) == Some(&b'2')
}

/// Run a store call on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IssuerError> + Send + 'static,
) -> Result<T, IssuerError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| IssuerError::Saf(e.to_string()))?
}

/// What the worker needs of the issuer it serves (the hub's `Issuer`, or a test's
/// double): its name, whether any link is up, its advice book, and a live link to write a
/// stored message on.
pub(super) trait SafIssuer: Send + Sync + 'static {
    type Link: SafLink;
    fn name(&self) -> &str;
    fn links_up(&self) -> usize;
    fn advices(&self) -> &Book;
    /// A live link for a stored message; the admission window does not apply (reversals
    /// and advices are never shed). `None` when every link is down.
    fn link_for_stored(&self) -> Option<&Self::Link>;
}

/// A link as the worker uses it: write one stored message (`id` is its store key, or the
/// negative id of one held in memory) and wait for the issuer's answer.
pub(super) trait SafLink: Send + Sync {
    fn exchange_stored(&self, msg: &Message, id: i64) -> impl Future<Output = Outcome> + Send;
}

/// Retry bounds of the store-and-forward worker.
#[derive(Debug, Clone, Copy)]
pub struct SafPolicy {
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Writes before a reversal is expired; 0: never.
    pub max_attempts: u32,
    pub late_memory: Duration,
    pub late_capacity: usize,
    /// Reversals loaded and written at once per issuer.
    pub batch: usize,
}

impl From<&SafConfig> for SafPolicy {
    fn from(c: &SafConfig) -> Self {
        SafPolicy {
            retry_min: Duration::from_millis(c.retry_min_ms.max(1)),
            retry_max: Duration::from_millis(c.retry_max_ms.max(c.retry_min_ms).max(1)),
            max_attempts: c.max_attempts,
            late_memory: Duration::from_millis(c.late_memory_ms),
            late_capacity: c.late_capacity,
            batch: c.batch.max(1),
        }
    }
}

impl Default for SafPolicy {
    fn default() -> Self {
        SafPolicy::from(&SafConfig::default())
    }
}

impl SafPolicy {
    /// Wait after the `attempts`-th write: retry_min doubled each time, capped.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(20);
        self.retry_min.saturating_mul(1u32 << shift).min(self.retry_max)
    }
}

/// What an issuer's links share for reversals.
pub struct SafCtx {
    pub(super) store: Arc<dyn SafStore>,
    pub(super) wake: Notify,
    pub(super) late: Arc<LateMemory>,
    pub(super) policy: SafPolicy,
    /// Reversals the store could not take.
    pub(super) held: Held,
    /// The store's last call failed (logged once per change).
    failing: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for SafCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafCtx").field("policy", &self.policy).finish()
    }
}

impl SafCtx {
    pub fn new(store: Arc<dyn SafStore>, policy: SafPolicy) -> SafCtx {
        SafCtx {
            store,
            wake: Notify::new(),
            late: Arc::new(LateMemory::new(policy.late_memory, policy.late_capacity)),
            policy,
            held: Held::default(),
            failing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Store the reversal of the original named by `field90`, or hold it in memory when the
    /// store fails: `Ok(false)` when a reversal of that original is already stored or held.
    /// The worker is woken for a new one.
    pub(super) async fn enqueue(
        &self,
        issuer: &str,
        field90: String,
        rev: Message,
    ) -> Result<bool, IssuerError> {
        if self.held.contains(&field90) {
            return Ok(false);
        }
        let (store, name) = (self.store.clone(), issuer.to_string());
        let stored = tokio::task::spawn_blocking(move || {
            let r = store.enqueue(&name, &field90, &rev, time::now().as_i64());
            (r, field90, rev)
        })
        .await;
        let fresh = match stored {
            Ok((Ok(fresh), ..)) => fresh,
            Ok((Err(e), field90, rev)) => {
                self.store_failed(issuer, &e);
                self.held.hold(&field90, rev, time::now().as_i64())
            }
            Err(e) => return Err(IssuerError::Saf(e.to_string())),
        };
        if fresh {
            self.wake.notify_one();
        }
        Ok(fresh)
    }

    /// A store call failed: logged when the store was working.
    fn store_failed(&self, issuer: &str, e: &IssuerError) {
        if !self.failing.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::error!(issuer, error = %e,
                "store-and-forward store failing; reversals are held in memory and sent from there until it is back");
        } else {
            tracing::debug!(issuer, error = %e, "store-and-forward store still failing");
        }
    }

    /// The store works (and holds everything that was held in memory): logged when it was
    /// failing, with the reversals moved from memory.
    fn store_ok(&self, issuer: &str, moved: usize) {
        if self.failing.swap(false, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(issuer, moved_from_memory = moved, "store-and-forward store back");
        }
    }
}

/// Move the reversals held in memory into the store, with their writes so far; those it
/// does not take stay held. Returns how many moved, or the store's error.
async fn flush_held(ctx: &Arc<SafCtx>, name: &str) -> Result<usize, IssuerError> {
    let items = ctx.held.take_idle();
    if items.is_empty() {
        return Ok(0);
    }
    let (store, n) = (ctx.store.clone(), name.to_string());
    let (moved, left, err) = tokio::task::spawn_blocking(move || {
        let mut left: Vec<HeldItem> = Vec::new();
        let mut moved = 0;
        let mut err = None;
        for item in items {
            if err.is_some() {
                left.push(item);
                continue;
            }
            match store.enqueue_attempted(
                &n,
                &item.field90,
                &item.reversal,
                time::now().as_i64(),
                item.attempts,
            ) {
                // Not fresh: the store already had it (stored before it failed).
                Ok(_) => moved += 1,
                Err(e) => {
                    err = Some(e);
                    left.push(item);
                }
            }
        }
        (moved, left, err)
    })
    .await
    .map_err(|e| IssuerError::Saf(e.to_string()))?;
    ctx.held.restore(left);
    match err {
        Some(e) => Err(e),
        None => Ok(moved),
    }
}

/// One issuer's worker: send what is due until `shutdown`.
pub(super) async fn worker<I: SafIssuer>(
    issuer: Arc<I>,
    ctx: Arc<SafCtx>,
    spec: Arc<Spec>,
    shutdown: CancellationToken,
) {
    let name = issuer.name().to_string();
    let depth = gauge!(m::SAF_DEPTH, "issuer" => name.clone());
    let held = gauge!(m::SAF_HELD, "issuer" => name.clone());
    let poll = ctx.policy.retry_min.min(Duration::from_secs(1));
    let mut stored = 0u64;
    let started = time::now().as_i64();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if !issuer.advices().is_seeded() {
            seed_advices(&*issuer, &ctx, &name, started).await;
        }
        let had = ctx.held.len();
        match flush_held(&ctx, &name).await {
            Ok(moved) if had > 0 && ctx.held.is_empty() => ctx.store_ok(&name, moved),
            Ok(_) => {}
            Err(e) => ctx.store_failed(&name, &e),
        }
        let store = ctx.store.clone();
        let n = name.clone();
        match blocking(move || store.depth(&n)).await {
            Ok(d) => {
                stored = d;
                if ctx.held.is_empty() {
                    ctx.store_ok(&name, 0);
                }
            }
            Err(e) => ctx.store_failed(&name, &e),
        }
        let in_memory = ctx.held.len();
        depth.set((stored + in_memory as u64) as f64);
        held.set(in_memory as f64);
        let mut busy = false;
        if issuer.links_up() > 0 {
            let (store, n, s, limit) = (ctx.store.clone(), name.clone(), spec.clone(), ctx.policy.batch);
            match blocking(move || store.due(&n, &s, time::now().as_i64(), limit)).await {
                Ok(items) => {
                    busy = !items.is_empty();
                    let mut running: FuturesUnordered<_> =
                        items.into_iter().map(|item| send_one(&*issuer, &ctx, item)).collect();
                    while running.next().await.is_some() {}
                }
                Err(e) => ctx.store_failed(&name, &e),
            }
            let items = ctx.held.take_due(time::now().as_i64(), ctx.policy.batch);
            busy |= !items.is_empty();
            let mut running: FuturesUnordered<_> =
                items.into_iter().map(|item| send_held(&*issuer, &ctx, item)).collect();
            while running.next().await.is_some() {}
        }
        if busy {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ctx.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Withdraw the advices a previous run stored without journalling their approval, then
/// count the pending ones into the issuer's book (stand-in reserves exposure only after).
async fn seed_advices(issuer: &impl SafIssuer, ctx: &SafCtx, name: &str, started: i64) {
    let (store, n) = (ctx.store.clone(), name.to_string());
    let seeded = blocking(move || {
        let voided = store.void_orphan_advices(&n, started)?;
        Ok((voided, store.advices_pending(&n)?))
    })
    .await;
    match seeded {
        Ok((voided, (count, amount))) => {
            if voided > 0 {
                tracing::warn!(issuer = %name, voided,
                    "stand-in advices withdrawn: their approvals were never journalled (the terminal was not answered)");
            }
            if count > 0 {
                tracing::info!(issuer = %name, advices = count, exposure = amount, "stand-in advices pending from before");
            }
            issuer.advices().seed(count, amount);
        }
        Err(e) => ctx.store_failed(name, &e),
    }
}

/// Write one stored message (a reversal 0400/0401 or an advice 0120/0121, 0220/0221) and
/// wait for its answer (0410, 0130, 0230).
async fn send_one(issuer: &impl SafIssuer, ctx: &SafCtx, item: SafItem) {
    let SafItem { id, field90, attempts, mut reversal } = item;
    let name = issuer.name().to_string();
    let store = ctx.store.clone();
    let advice = is_advice(&reversal);
    let amount = reversal.amount().and_then(|a| i64::try_from(a).ok()).unwrap_or(0);
    if ctx.policy.max_attempts > 0 && attempts >= ctx.policy.max_attempts {
        if advice {
            tracing::error!(issuer = %name, key = %field90, attempts,
                "stand-in advice expired unacknowledged; the approval stays the acquirer's risk");
            if let Ok(()) = blocking(move || store.expired(id, time::now().as_i64())).await {
                issuer.advices().done(amount);
            }
            return;
        }
        tracing::error!(issuer = %name, field90 = %field90, attempts, "reversal expired unacknowledged");
        let _ = blocking(move || store.expired(id, time::now().as_i64())).await;
        return;
    }
    let Some(expect) = super::verify::answer_mti(reversal.mti().as_bytes()) else { return };
    if advice {
        counter!(m::SAF_SENT_TOTAL, "issuer" => name.clone()).increment(1);
        let item = SafItem { id, field90, attempts, reversal };
        return send_advice(issuer, ctx, item, expect, amount).await;
    }
    let Some(link) = issuer.link_for_stored() else { return };
    let next = attempts.saturating_add(1);
    let due = time::now().as_i64().saturating_add(ctx.policy.backoff(next).as_millis() as i64);
    if let Err(e) = blocking(move || store.attempted(id, next, due)).await {
        tracing::warn!(issuer = %name, error = %e, "store-and-forward attempt not recorded; not sent");
        return;
    }
    if attempts > 0 && reversal::as_repeat(&mut reversal).is_err() {
        return;
    }
    counter!(m::SAF_SENT_TOTAL, "issuer" => name.clone()).increment(1);
    match link.exchange_stored(&reversal, id).await {
        Outcome::Reply(r) if r.mti().as_bytes() == expect => {
            let store = ctx.store.clone();
            match blocking(move || store.acked(id, time::now().as_i64())).await {
                Ok(first) => {
                    if first {
                        counter!(m::SAF_ACKED_TOTAL, "issuer" => name.clone()).increment(1);
                    }
                    tracing::info!(issuer = %name, field90 = %field90, attempts = next, "reversal acknowledged");
                }
                Err(e) => tracing::warn!(issuer = %name, error = %e, "reversal acknowledgement not recorded"),
            }
        }
        other => {
            tracing::info!(issuer = %name, field90 = %field90, attempts = next, outcome = ?other.switch_rc(),
                "reversal unacknowledged; will repeat");
        }
    }
}

/// Write one stand-in advice (0120/0220, repeats 0121/0221) and wait for its answer: the
/// issuer's response code is recorded on the advice (and its transaction); a decline is
/// logged and counted, for that money is now the acquirer's risk.
async fn send_advice(issuer: &impl SafIssuer, ctx: &SafCtx, item: SafItem, expect: [u8; 4], amount: i64) {
    let SafItem { id, field90: key, attempts, reversal: mut advice } = item;
    let name = issuer.name().to_string();
    let Some(link) = issuer.link_for_stored() else { return };
    let next = attempts.saturating_add(1);
    let due = time::now().as_i64().saturating_add(ctx.policy.backoff(next).as_millis() as i64);
    let store = ctx.store.clone();
    if let Err(e) = blocking(move || store.attempted(id, next, due)).await {
        tracing::warn!(issuer = %name, error = %e, "advice attempt not recorded; not sent");
        return;
    }
    if attempts > 0 && reversal::as_repeat(&mut advice).is_err() {
        return;
    }
    match link.exchange_stored(&advice, id).await {
        Outcome::Reply(r) if r.mti().as_bytes() == expect => {
            let rc = r.text(39).map(|c| c.into_owned()).unwrap_or_default();
            let store = ctx.store.clone();
            let code = rc.clone();
            match blocking(move || store.advice_answered(id, &code, time::now().as_i64())).await {
                Ok(first) => {
                    if first {
                        issuer.advices().done(amount);
                        counter!(m::SAF_ACKED_TOTAL, "issuer" => name.clone()).increment(1);
                    }
                    if ResponseCode::parse(&rc).is_some_and(ResponseCode::is_approved) {
                        tracing::info!(issuer = %name, key = %key, attempts = next, "stand-in advice acknowledged");
                    } else {
                        counter!(m::ADVICE_DECLINED_TOTAL, "issuer" => name.clone()).increment(1);
                        tracing::warn!(issuer = %name, key = %key, advice_rc = %rc, amount,
                            "issuer declined a stand-in advice: the approval is the acquirer's risk");
                    }
                }
                Err(e) => {
                    tracing::warn!(issuer = %name, error = %e, "advice answer not recorded; will repeat")
                }
            }
        }
        other => {
            tracing::info!(issuer = %name, key = %key, attempts = next, outcome = ?other.switch_rc(),
                "stand-in advice unacknowledged; will repeat");
        }
    }
}

/// Write one reversal held in memory (0400 or 0401) and wait for its 0410; it stays held
/// until then.
async fn send_held(issuer: &impl SafIssuer, ctx: &SafCtx, item: HeldItem) {
    let HeldItem { id, field90, attempts, next_at, mut reversal } = item;
    let Some(link) = issuer.link_for_stored() else {
        ctx.held.written(id, false, attempts, next_at);
        return;
    };
    let next = attempts.saturating_add(1);
    let due = time::now().as_i64().saturating_add(ctx.policy.backoff(next).as_millis() as i64);
    if attempts > 0 && reversal::as_repeat(&mut reversal).is_err() {
        ctx.held.written(id, false, attempts, due);
        return;
    }
    let name = issuer.name().to_string();
    counter!(m::SAF_SENT_TOTAL, "issuer" => name.clone()).increment(1);
    match link.exchange_stored(&reversal, id).await {
        Outcome::Reply(r) if r.mti() == "0410" => {
            ctx.held.written(id, true, next, due);
            counter!(m::SAF_ACKED_TOTAL, "issuer" => name.clone()).increment(1);
            tracing::info!(issuer = %name, field90 = %field90, attempts = next, "reversal acknowledged (held in memory)");
        }
        other => {
            ctx.held.written(id, false, next, due);
            tracing::info!(issuer = %name, field90 = %field90, attempts = next, outcome = ?other.switch_rc(),
                "reversal held in memory unacknowledged; will repeat");
        }
    }
}

/// A late 0410 for a reversal write that timed out: it acknowledges all the same.
pub(super) fn late_ack(ctx: &Arc<SafCtx>, issuer: &Arc<str>, id: i64) {
    if id < 0 {
        if ctx.held.acked(id) {
            counter!(m::SAF_ACKED_TOTAL, "issuer" => issuer.to_string()).increment(1);
        }
        return;
    }
    let store = ctx.store.clone();
    let name = issuer.to_string();
    tokio::spawn(async move {
        if let Ok(true) = blocking(move || store.acked(id, time::now().as_i64())).await {
            counter!(m::SAF_ACKED_TOTAL, "issuer" => name).increment(1);
        }
    });
}

#[cfg(test)]
#[path = "saf_tests.rs"]
mod tests;
