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
//! May import: crate::config, crate::issuer, crate::journal, crate::rc, crate::route.

mod decide;
pub mod limits;
pub mod policy;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::{Config, StandInConfig};
use crate::issuer::Issuers;
use crate::journal::Query;
use crate::route;

use limits::DailyLimits;
use policy::{Policy, Trigger};

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
    limits: DailyLimits,
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
                let approved = rows.iter().filter(|r| r.approved());
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
    pub otherwise: crate::rc::ResponseCode,
    /// A decline's journal row is not waited for past this (the promised deadline).
    pub answer_by: std::time::Instant,
}

/// Every link of `primary` down, and of `backup` when there is one.
pub fn all_down(issuers: &Issuers, primary: &str, backup: Option<&str>) -> bool {
    let down = |n: &str| issuers.by_name(n).is_none_or(|i| i.links_up() == 0);
    down(primary) && backup.is_none_or(down)
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
