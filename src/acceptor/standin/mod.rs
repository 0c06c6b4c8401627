//! Stand-in: approving on an issuer's behalf, within the limits its `[[standin]]` policy
//! sets, when it cannot answer — every link down, no answer by the deadline (after the
//! request was reversed), or the operator's "stand in now" — and telling it afterwards
//! with an advice.
//!
//! One approval, in order: the policy's request rules (`policy`), the card's and the
//! merchant's daily limits (`limits`, reserved under one lock), the issuer's exposure cap
//! (the issuer's advice book, compare-and-swap); then the advice is stored durably in
//! store-and-forward, then the journal row (decision `stand-in`, the switch's `S…`
//! authorisation code) is committed, and only then does the terminal hear 00. An approval
//! whose row fails to commit withdraws its advice (never written: its first write waits
//! `ADVICE_GRACE`) and answers 96; one the process dies before journalling has its advice
//! withdrawn at the next start. A request the policy does not cover gets the code it would
//! have got without stand-in (91 when the issuer is down, 68 after a timeout).
//! May import: crate::acceptor::queue_reversal, crate::acceptor::record,
//! crate::acceptor::reply, crate::acceptor::service, crate::config, crate::iso, crate::issuer,
//! crate::journal, crate::metrics, crate::route.

pub mod limits;
pub mod policy;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::{Config, StandInConfig};
use crate::iso::Message;
use crate::issuer::{Issuer, Issuers};
use crate::journal::saf_store::advice_key;
use crate::journal::{Query, Status, TxnRecord};
use crate::metrics as m;
use crate::route;

use super::record::{Decided, answered};
use super::reply::switch_reply;
use super::service::Services;
use limits::Limits;
use policy::{Facts, Policy, Refusal, Trigger};

/// The stand-in policies of the configured issuers and their state. Read on every
/// forwarded request: a read lock, a map look-up and atomic loads (an estate without
/// `[[standin]]` finds an empty map). The policies come from the switch configuration;
/// a rule directory's `standin.toml` replaces them issuer by issuer, and reloads with it.
#[derive(Debug, Default)]
pub struct StandIn {
    /// The configuration's policies.
    base: Vec<StandInConfig>,
    policies: RwLock<Arc<HashMap<String, Arc<Policy>>>>,
    /// Some issuer has a policy: without one a request costs one atomic load here.
    any: AtomicBool,
    /// Every configured issuer's state (an issuer may gain a policy at a reload).
    states: HashMap<String, PerIssuer>,
    limits: Limits,
    /// The business date the limits were last started from the journal.
    seeded: tokio::sync::Mutex<Option<String>>,
}

#[derive(Debug, Default)]
struct PerIssuer {
    /// The operator put the issuer in stand-in.
    forced: AtomicBool,
    /// The switch is deciding for the issuer now (a log line at each change).
    active: AtomicBool,
}

/// What the admin API shows of one issuer's stand-in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StandInStatus {
    pub issuer: String,
    pub policy: bool,
    pub forced: bool,
    pub active: bool,
    pub exposure: i64,
    pub max_exposure: Option<i64>,
    pub advices_pending: i64,
    pub links_up: usize,
}

impl StandIn {
    pub fn new(cfg: &Config) -> StandIn {
        let states = cfg.issuers.iter().map(|i| (i.name.clone(), PerIssuer::default())).collect();
        let si = StandIn { base: cfg.standin.clone(), states, ..StandIn::default() };
        si.apply(&[]);
        si
    }

    /// The configuration's policies with `overrides` (a rule directory's `standin.toml`,
    /// checked) in place of theirs for the issuers they name; returns how many issuers
    /// have a policy now.
    pub fn apply(&self, overrides: &[StandInConfig]) -> usize {
        let mut map: HashMap<String, Arc<Policy>> =
            self.base.iter().map(|c| (c.issuer.clone(), Arc::new(Policy::from_config(c)))).collect();
        for c in overrides {
            map.insert(c.issuer.clone(), Arc::new(Policy::from_config(c)));
        }
        let n = map.len();
        *self.policies.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
        self.any.store(n > 0, Ordering::SeqCst);
        n
    }

    pub fn policy(&self, issuer: &str) -> Option<Arc<Policy>> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        self.policies.read().unwrap_or_else(|p| p.into_inner()).get(issuer).cloned()
    }

    fn has_policy(&self, issuer: &str) -> bool {
        self.policies.read().unwrap_or_else(|p| p.into_inner()).contains_key(issuer)
    }

    /// Whether the operator put `issuer` in stand-in (and it has a policy).
    pub fn forced(&self, issuer: &str) -> bool {
        self.states.get(issuer).is_some_and(|s| s.forced.load(Ordering::Relaxed)) && self.has_policy(issuer)
    }

    /// Put `issuer` in stand-in (its requests are no longer sent to it) or take it out;
    /// `None` when the issuer has no policy, else whether this changed anything. Logged.
    pub fn set_forced(&self, issuer: &str, on: bool) -> Option<bool> {
        if !self.has_policy(issuer) {
            return None;
        }
        let s = self.states.get(issuer)?;
        let changed = s.forced.swap(on, Ordering::SeqCst) != on;
        if changed && on {
            tracing::warn!(issuer, "stand-in started by the operator: requests are decided by the switch");
        } else if changed {
            tracing::warn!(issuer, "stand-in stopped by the operator: requests go to the issuer again");
        }
        Some(changed)
    }

    /// The trigger for a request to `primary` before it is forwarded: the operator's, or
    /// every link down (of the issuer and of its backup) when the policy covers that.
    pub fn trigger_before(&self, issuers: &Issuers, primary: &str, backup: Option<&str>) -> Option<Trigger> {
        let policy = self.policy(primary)?;
        if self.states.get(primary).is_some_and(|s| s.forced.load(Ordering::Relaxed)) {
            return Some(Trigger::Forced);
        }
        (policy.on_down && all_down(issuers, primary, backup)).then_some(Trigger::Down)
    }

    /// The issuer answered again: the end of a stand-in period is logged.
    pub fn answered(&self, issuer: &str) {
        if let Some(s) = self.states.get(issuer)
            && s.active.load(Ordering::Relaxed)
            && s.active.swap(false, Ordering::SeqCst)
        {
            tracing::warn!(issuer, "stand-in ended: the issuer answers again; its advices follow");
        }
    }

    fn activated(&self, issuer: &str, t: Trigger) {
        if let Some(s) = self.states.get(issuer)
            && !s.active.load(Ordering::Relaxed)
            && !s.active.swap(true, Ordering::SeqCst)
        {
            tracing::warn!(
                issuer,
                trigger = t.as_str(),
                "stand-in active: the switch decides for this issuer"
            );
        }
    }

    /// One issuer's stand-in, for the admin API; `None` for an unknown issuer.
    pub fn status(&self, issuers: &Issuers, issuer: &str) -> Option<StandInStatus> {
        let i = issuers.by_name(issuer)?;
        let p = self.policy(issuer);
        Some(StandInStatus {
            issuer: issuer.to_string(),
            policy: p.is_some(),
            forced: self.forced(issuer),
            active: self.states.get(issuer).is_some_and(|s| s.active.load(Ordering::Relaxed)),
            exposure: i.advices().exposure(),
            max_exposure: p.map(|p| p.max_exposure),
            advices_pending: i.advices().depth(),
            links_up: i.links_up(),
        })
    }

    /// Start the day's limits and codes from the journal, once per business date.
    async fn seed(&self, journal: &crate::journal::Journal, date: &str) -> bool {
        let mut seeded = self.seeded.lock().await;
        if seeded.as_deref() == Some(date) {
            return true;
        }
        match journal.query(Query::StandInOfDay(date.to_string())).await {
            Ok(rows) => {
                let approved = rows.iter().filter(|r| r.rc == "00");
                self.limits.seed(
                    date,
                    approved.map(|r| {
                        (
                            r.issuer.as_deref().unwrap_or(""),
                            r.pan_hash.as_deref().unwrap_or(""),
                            r.merchant_id.as_str(),
                            r.amount,
                            r.auth_code.as_deref().unwrap_or(""),
                        )
                    }),
                );
                *seeded = Some(date.to_string());
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "stand-in limits not started: the journal query failed");
                false
            }
        }
    }
}

/// The `[[standin]]` tables of a rule directory's `standin.toml`, checked against the
/// configured issuers; none when the file is absent. Blocking (reads a file).
pub fn load_overrides(
    dir: &std::path::Path,
    issuers: &[&str],
) -> Result<Vec<StandInConfig>, route::RuleError> {
    let path = dir.join("standin.toml");
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(route::RuleError { file, line: None, key: None, message: e.to_string() }),
    };
    crate::config::parse_standin_file(&file, &text, issuers).map_err(|e| match e {
        crate::config::ConfigError::Invalid { file, line, key, message, .. } => {
            route::RuleError { file, line: Some(line), key: Some(key), message }
        }
        crate::config::ConfigError::Read { file, source } => {
            route::RuleError { file, line: None, key: None, message: source.to_string() }
        }
    })
}

/// Why the switch decides a request itself, and what the terminal gets otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Occasion {
    pub trigger: Trigger,
    /// The code without stand-in: 91 (issuer down), 68 (timed out).
    pub otherwise: &'static str,
    /// A decline's journal row is not waited for past this (the promised deadline).
    pub answer_by: std::time::Instant,
}

/// Every link of `primary` down, and of `backup` when there is one.
pub fn all_down(issuers: &Issuers, primary: &str, backup: Option<&str>) -> bool {
    let down = |n: &str| issuers.by_name(n).is_none_or(|i| i.links_up() == 0);
    down(primary) && backup.is_none_or(down)
}

impl Services {
    /// Decide `req` on `issuer`'s behalf (its policy applies to `trigger`): approve it,
    /// with its advice durable and its row journalled before the reply, or answer
    /// `otherwise` (the code it would have had without stand-in), journalled as a stand-in
    /// decline. `row` is the request's journal row (none without a journal: nothing can
    /// be stood in for then).
    pub(super) async fn stand_in(
        &self,
        issuer: &Issuer,
        req: &Message,
        fwd: &route::Forward,
        row: Option<Box<TxnRecord>>,
        occasion: Occasion,
    ) -> Option<Box<Message>> {
        let Occasion { trigger, otherwise, answer_by } = occasion;
        let name = issuer.name();
        let policy = self.standin.policy(name)?;
        self.standin.activated(name, trigger);
        let decided = match row {
            Some(row) => self.approve(issuer, &policy, req, fwd, row, trigger).await,
            None => Err((Refusal::Unrecordable, None)),
        };
        match decided {
            Ok(reply) => Some(reply),
            Err((why, row)) => {
                metrics::counter!(m::STANDIN_TOTAL, "issuer" => name.to_string(), "decision" => "declined")
                    .increment(1);
                tracing::debug!(
                    issuer = name,
                    trigger = trigger.as_str(),
                    reason = why.as_str(),
                    rc = otherwise,
                    "stand-in declined"
                );
                if let Some(mut row) = row {
                    row.decision = Decided::StandIn.as_str().into();
                    answered(&mut row, otherwise, Some(Status::Declined));
                    self.recorder.commit_by(row, answer_by).await;
                }
                switch_reply(req, otherwise).ok().map(Box::new)
            }
        }
    }

    /// The approval path of `stand_in`; on refusal the reason and the row (for its decline).
    async fn approve(
        &self,
        issuer: &Issuer,
        policy: &Policy,
        req: &Message,
        fwd: &route::Forward,
        mut row: Box<TxnRecord>,
        trigger: Trigger,
    ) -> Result<Box<Message>, (Refusal, Option<Box<TxnRecord>>)> {
        let Some(journal) = self.journal.as_ref() else { return Err((Refusal::Unrecordable, Some(row))) };
        if !issuer.takes_advices() {
            return Err((Refusal::Unrecordable, Some(row)));
        }
        let (pan, mcc) = (req.pan(), req.text(18));
        let facts = Facts {
            txn: fwd.txn_type,
            card_type: fwd.card_type,
            mcc: mcc.as_deref(),
            amount: req.amount().and_then(|a| i64::try_from(a).ok()),
            pin_block: req.has(52),
            pan: pan.as_deref(),
            pan_hash: row.pan_hash.as_deref(),
        };
        let amount = match policy.admits(&facts) {
            Ok(a) => a,
            Err(why) => return Err((why, Some(row))),
        };
        let Some(txn_key) = row.txn_key.clone() else { return Err((Refusal::Unrecordable, Some(row))) };
        let date = row.business_date.clone();
        if !self.standin.seed(journal, &date).await {
            return Err((Refusal::Unrecordable, Some(row)));
        }
        let hash = row.pan_hash.clone().unwrap_or_default();
        let ticket = match self.standin.limits.reserve(policy, &date, &hash, &row.merchant_id, amount) {
            Ok(t) => t,
            Err(why) => return Err((why, Some(row))),
        };
        if !issuer.advices().try_reserve(amount, policy.max_exposure) {
            self.standin.limits.release(&ticket);
            return Err((Refusal::Exposure, Some(row)));
        }
        let code = self.standin.limits.next_code(&date);
        // A terminal that sent no RRN gets one the switch makes, unique like the code.
        let rrn = row.rrn.clone().unwrap_or_else(|| format!("{}{code}", date.get(2..).unwrap_or("000000")));
        let key = advice_key(&row.terminal_id, &row.stan, &txn_key);
        let undo = |why| {
            self.standin.limits.release(&ticket);
            issuer.advices().release(amount);
            why
        };
        let advice = match advice_of(req, policy.advice_mti(req.mti()), &code, &rrn) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(issuer = issuer.name(), error = %e, "stand-in advice not built");
                return Err((undo(Refusal::Unrecordable), Some(row)));
            }
        };
        match issuer.queue_advice(&advice, &key).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(issuer = issuer.name(), "an advice for this transaction is already stored");
                return Err((undo(Refusal::Unrecordable), Some(row)));
            }
            Err(e) => {
                tracing::error!(issuer = issuer.name(), error = %e, "stand-in advice not stored; declined");
                return Err((undo(Refusal::Unrecordable), Some(row)));
            }
        }
        // The advice is durable; its reserved exposure now belongs to it.
        row.decision = Decided::StandIn.as_str().into();
        row.auth_code = Some(code.clone());
        row.rrn = Some(rrn.clone());
        row.fee = fwd.fee;
        answered(&mut row, "00", Some(Status::Approved));
        if !self.recorder.commit(row).await {
            self.standin.limits.release(&ticket);
            match issuer.void_advice(&key, amount).await {
                Ok(true) => {}
                Ok(false) => tracing::error!(
                    issuer = issuer.name(),
                    "stand-in approval not journalled and its advice could not be withdrawn"
                ),
                Err(e) => tracing::error!(issuer = issuer.name(), error = %e,
                    "stand-in approval not journalled and its advice could not be withdrawn"),
            }
            return switch_reply(req, "96").ok().map(Box::new).ok_or((Refusal::Unrecordable, None));
        }
        metrics::counter!(m::STANDIN_TOTAL, "issuer" => issuer.name().to_string(), "decision" => "approved")
            .increment(1);
        tracing::info!(issuer = issuer.name(), trigger = trigger.as_str(), auth_code = %code, amount,
            "stand-in approval");
        let mut out = switch_reply(req, "00").map_err(|_| (Refusal::Unrecordable, None))?;
        if req.spec().field(38).is_some() {
            let _ = out.set(38, &code);
        }
        if !req.has(37) && req.spec().field(37).is_some() {
            let _ = out.set(37, &rrn);
        }
        Ok(Box::new(out))
    }
}

impl Services {
    /// A terminal's reversal of a stand-in approval `orig`: its advice is withdrawn while it
    /// was never written (the issuer never hears of the transaction, and the exposure is
    /// given back); once written, a reversal is queued for the issuer naming the advice
    /// in field 90 (its MTI, the terminal's STAN, field 7 of the original, fields 32 and
    /// 33). The code for the terminal: 00, or 96 when neither could be done.
    pub(super) async fn reverse_stand_in(
        &self,
        issuers: &Issuers,
        req: &Message,
        orig: &TxnRecord,
    ) -> &'static str {
        let Some(issuer) = orig.issuer.as_deref().and_then(|n| issuers.by_name(n)) else {
            tracing::error!("reversal of a stand-in approval whose issuer is not configured");
            return "96";
        };
        let key = advice_key(&orig.terminal_id, &orig.stan, orig.txn_key.as_deref().unwrap_or(""));
        match issuer.void_advice(&key, orig.amount).await {
            Ok(true) => {
                tracing::info!(
                    issuer = issuer.name(),
                    "stand-in approval reversed before its advice was sent"
                );
                return "00";
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(issuer = issuer.name(), error = %e, "stand-in advice could not be withdrawn");
                return "96";
            }
        }
        let mti = self
            .standin
            .policy(issuer.name())
            .map_or("0220".to_string(), |p| p.advice_mti(&orig.mti).to_string());
        match super::queue_reversal::reverse_with_issuer(
            issuers,
            req,
            issuer.name(),
            Some(&orig.stan),
            &mti,
            &orig.transmission_time,
        )
        .await
        {
            Ok(_) => "00",
            Err(e) => {
                tracing::error!(issuer = issuer.name(), error = %e, "reversal of a stand-in advice not queued");
                "96"
            }
        }
    }
}

/// The advice reporting a stand-in approval of `req`: the request with MTI `mti`, the
/// switch's authorisation code (38), its RRN (37) and 39 = 00.
fn advice_of(req: &Message, mti: &str, code: &str, rrn: &str) -> Result<Message, crate::iso::EncodeError> {
    let mut adv = req.clone();
    adv.set_mti(mti)?;
    for n in [35, 36, 45, 52, 53] {
        adv.remove(n);
    }
    if adv.spec().field(38).is_some() {
        adv.set(38, code)?;
    }
    if adv.spec().field(39).is_some() {
        adv.set(39, "00")?;
    }
    if !adv.has(37) && adv.spec().field(37).is_some() {
        adv.set(37, rrn)?;
    }
    Ok(adv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            "[[issuer]]\nname = \"a\"\n[[issuer.link]]\naddr = \"127.0.0.1:1\"\n\
             [[issuer]]\nname = \"b\"\n[[issuer.link]]\naddr = \"127.0.0.1:2\"\n{extra}"
        );
        Config::parse("t.toml", &text).unwrap()
    }

    #[test]
    fn a_rule_directory_replaces_policies_issuer_by_issuer_and_reloads() {
        let si = StandIn::new(&cfg("[[standin]]\nissuer = \"a\"\nmax_amount = 100\n"));
        assert_eq!(si.policy("a").map(|p| p.max_amount), Some(100));
        assert!(si.policy("b").is_none());
        assert_eq!(si.set_forced("b", true), None, "no policy, no stand-in");
        let dir = std::env::temp_dir().join(format!("isoswitch-standin-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(load_overrides(&dir, &["a", "b"]).unwrap().is_empty(), "no file: no override");
        std::fs::write(
            dir.join("standin.toml"),
            "[[standin]]\nissuer = \"b\"\nmax_amount = 700\nwhen = [\"timeout\"]\n",
        )
        .unwrap();
        let o = load_overrides(&dir, &["a", "b"]).unwrap();
        assert_eq!(si.apply(&o), 2);
        assert_eq!(si.policy("b").map(|p| (p.max_amount, p.on_down, p.on_timeout)), Some((700, false, true)));
        assert_eq!(si.policy("a").map(|p| p.max_amount), Some(100), "the configuration's stays");
        assert_eq!(si.set_forced("b", true), Some(true));
        assert!(si.forced("b"));
        std::fs::write(
            dir.join("standin.toml"),
            "[[standin]]\nissuer = \"b\"\nmax_amount = 700\n\ntypes = [\"refund\"]\n",
        )
        .unwrap();
        let e = load_overrides(&dir, &["a", "b"]).unwrap_err();
        assert!(
            e.file.ends_with("standin.toml") && e.line == Some(5) && e.key.as_deref() == Some("types"),
            "{e}"
        );
        std::fs::write(dir.join("standin.toml"), "[[standin]]\nissuer = \"c\"\nmax_amount = 1\n").unwrap();
        assert!(load_overrides(&dir, &["a", "b"]).unwrap_err().message.contains("no issuer named `c`"));
        si.apply(&[]);
        assert!(si.policy("b").is_none() && !si.forced("b"), "a policy gone takes its stand-in with it");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
