//! The switch's shared services and what a request is planned to be: the routing core,
//! the journal and its recorder, the repeat table, the operator's suspensions and the
//! stand-in policies (`Services`, opened from the configuration and reloaded on SIGHUP or
//! through the admin API), and `Services::plan`, which turns a decoded request into the
//! `Plan` whose kind picks its handler (see `handlers`).
//! May import: crate::acceptor::record, crate::acceptor::repeats, crate::acceptor::reply,
//! crate::acceptor::request, crate::acceptor::standin, crate::acceptor::suspensions,
//! crate::config, crate::iso, crate::issuer, crate::journal, crate::metrics, crate::rc,
//! crate::route, crate::time.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::iso::Message;
use crate::issuer::{SafPolicy, SafStore};
use crate::journal::saf_store::{SafKey, SqlSaf};
use crate::journal::{Journal, JournalConfig, PanHasher, RowType};
use crate::rc::ResponseCode;
use crate::route::{self, Decision, RuleSet};
use crate::time::UnixMs;

use super::record::Recorder;
use super::repeats::{Repeats, Window};
use super::reply::switch_reply;
use super::request::Plan;

/// Key of the keyed PAN hash when the configuration names none (development only).
const DEV_PAN_KEY: &[u8] = b"isoswitch development PAN key";

/// Why the switch's services could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("rules: {0}")]
    Rules(#[from] route::RuleError),
    #[error("journal: {0}")]
    Journal(#[from] crate::journal::StoreError),
    #[error("rules route to issuer `{0}`, which the configuration does not define")]
    UnknownIssuer(String),
    #[error("{0}")]
    Suspensions(#[from] super::suspensions::SuspensionError),
}

/// The routing core, the journal and how issuer names map to connections.
pub struct Services {
    pub router: Arc<route::Router>,
    pub journal: Option<Journal>,
    /// The journal is shared with other switch nodes: keys are claimed before forwarding.
    pub(super) shared: bool,
    /// Where the journal lives, for the store-and-forward queue beside it.
    journal_cfg: Option<JournalConfig>,
    /// A store-and-forward store made by the caller (`open_with`), used in place of the
    /// one `saf_store` would open.
    saf_given: Option<Arc<dyn SafStore>>,
    /// Makes and commits the journal rows of requests, for every handler.
    pub recorder: Recorder,
    /// `journal_budget_ms`: the journal backlog past which new requests are shed.
    journal_budget: std::time::Duration,
    /// Every configured issuer by name (not only those the first rules named: a reload may
    /// route to any of them).
    issuer_index: HashMap<String, usize>,
    /// The terminal keys answered and in flight: retransmissions are never forwarded twice.
    pub repeats: Arc<Repeats>,
    /// The operator's suspensions and the state file that keeps them across restarts.
    pub suspensions: super::suspensions::Suspensions,
    /// Stand-in policies and their daily limits.
    pub standin: super::standin::StandIn,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").field("journal", &self.journal.is_some()).finish_non_exhaustive()
    }
}

/// The routes of a configuration without a rule directory, as a `routes.toml` text.
fn routes_text(cfg: &Config) -> String {
    let mut t = String::new();
    let default = cfg.default_issuer.clone().or_else(|| match cfg.issuers.as_slice() {
        [only] => Some(only.name.clone()),
        _ => None,
    });
    if let Some(d) = default {
        t.push_str(&format!("[default]\nissuer = {d:?}\ncard_type = \"debit\"\n"));
    }
    for r in &cfg.routes {
        t.push_str(&format!(
            "[[route]]\nprefix = {:?}\nissuer = {:?}\ncard_type = \"debit\"\n",
            r.prefix, r.issuer
        ));
    }
    t
}

impl Services {
    /// Rules (the configured directory, or an open estate with the configured routes), the
    /// journal (SQLite file or PostgreSQL), checked against the configured issuers.
    pub fn open(cfg: &Config) -> Result<Services, ServiceError> {
        Services::open_with(cfg, None)
    }

    /// As `open`, with the journal and the store-and-forward store made by the caller over
    /// the configured database (a store that fails on demand, to test a full disk).
    pub fn open_with(
        cfg: &Config,
        given: Option<(Journal, Arc<dyn SafStore>)>,
    ) -> Result<Services, ServiceError> {
        let rules = match &cfg.rules {
            Some(dir) => RuleSet::load_dir(dir)?,
            None => RuleSet::open_with_routes("(configuration routes)", &routes_text(cfg))?,
        };
        let journal_cfg = match (&cfg.journal_url, &cfg.journal) {
            (Some(url), _) => Some(JournalConfig::Postgres { url: url.clone() }),
            (None, Some(path)) if path.as_os_str() != "off" => {
                Some(JournalConfig::Sqlite { path: path.clone(), full_sync: cfg.journal_sync != "normal" })
            }
            _ => None,
        };
        let (given_journal, saf_given) = given.unzip();
        let journal = match (&journal_cfg, given_journal) {
            (Some(_), Some(j)) => Some(j),
            (Some(jc), None) => Some(Journal::open(jc)?),
            (None, _) => None,
        };
        let key = match &cfg.pan_key {
            Some(hex) => hex::decode(hex).unwrap_or_else(|_| DEV_PAN_KEY.to_vec()),
            None => {
                if journal.is_some() {
                    tracing::warn!("no pan_key configured: the journal's PAN hashes use the development key");
                }
                DEV_PAN_KEY.to_vec()
            }
        };
        if !cfg.standin.is_empty() && journal.is_none() {
            tracing::warn!(
                "stand-in is off: approvals on an issuer's behalf need a journal and its advice queue"
            );
        }
        let mut s = Services::new(cfg, route::Router::new(rules), journal, PanHasher::new(&key))?;
        s.shared = cfg.journal_url.is_some();
        s.journal_cfg = journal_cfg;
        s.saf_given = saf_given;
        s.suspensions = super::suspensions::Suspensions::new(super::suspensions::state_path(cfg));
        s.suspensions.apply(&s.router)?;
        if let Some(dir) = &cfg.rules {
            let overrides = super::standin::load_overrides(dir, &s.issuer_names())?;
            s.standin.apply(&overrides);
        }
        Ok(s)
    }

    /// Services from parts (tests, demo).
    pub fn new(
        cfg: &Config,
        router: route::Router,
        journal: Option<Journal>,
        hasher: PanHasher,
    ) -> Result<Services, ServiceError> {
        let issuer_index: HashMap<String, usize> =
            cfg.issuers.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect();
        if let Some(name) = unknown_issuer(&router.rules(), &issuer_index) {
            return Err(ServiceError::UnknownIssuer(name.to_string()));
        }
        let window = match cfg.repeats.window_s {
            Some(s) => Window::Millis(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)),
            None => Window::BusinessDay { utc_offset_minutes: router.rules().registry.utc_offset_minutes },
        };
        let router = Arc::new(router);
        Ok(Services {
            repeats: Repeats::new(window, cfg.repeats.capacity),
            recorder: Recorder::new(journal.clone(), router.clone(), hasher, cfg.switch_id.clone()),
            router,
            journal,
            shared: false,
            journal_cfg: None,
            saf_given: None,
            journal_budget: std::time::Duration::from_millis(cfg.journal_budget_ms),
            issuer_index,
            suspensions: Default::default(),
            standin: super::standin::StandIn::new(cfg),
        })
    }

    /// Load the rule directory `dir` and swap it in (SIGHUP, admin API), with the operator's
    /// suspensions read again from their state file and the stand-in policies of its
    /// `standin.toml` (when there is one) in place of the configuration's. Refused, with the running rules staying
    /// in force, when a file is bad or a route names an issuer the configuration does not
    /// define. Blocking (reads files).
    pub fn reload_rules(&self, dir: &std::path::Path) -> Result<route::RuleSummary, ServiceError> {
        let rules = RuleSet::load_dir(dir)?;
        if let Some(name) = unknown_issuer(&rules, &self.issuer_index) {
            return Err(ServiceError::Rules(route::RuleError {
                file: dir.join("routes.toml").display().to_string(),
                line: None,
                key: Some("issuer".into()),
                message: format!("issuer `{name}` is not configured in the switch"),
            }));
        }
        let standin = super::standin::load_overrides(dir, &self.issuer_names())?;
        self.suspensions.apply(&self.router)?;
        let summary = self.router.replace(rules);
        let policies = self.standin.apply(&standin);
        tracing::info!(policies, from_rules = standin.len(), "stand-in policies in force");
        Ok(summary)
    }

    /// The configured issuers' names.
    fn issuer_names(&self) -> Vec<&str> {
        self.issuer_index.keys().map(String::as_str).collect()
    }

    /// The store-and-forward queue for reversals, in the journal's database, when there is a
    /// journal and every issuer's spec can carry a reversal's field 90. Blocking (opens a
    /// connection); `None` means reversals are not stored (logged once).
    pub fn saf_store(&self, cfg: &Config) -> Result<Option<(SafSetup, SafKey)>, ServiceError> {
        let Some(jc) = &self.journal_cfg else { return Ok(None) };
        for i in &cfg.issuers {
            for l in &i.links {
                let ok = crate::iso::Spec::load(&l.spec)
                    .ok()
                    .is_some_and(|s| crate::issuer::reversal::check_spec(&s).is_ok());
                if !ok {
                    tracing::warn!(
                        issuer = %i.name,
                        spec = %l.spec,
                        "store-and-forward reversals are off: this issuer's spec has no 42-digit field 90"
                    );
                    if !cfg.standin.is_empty() {
                        tracing::warn!("stand-in is off: its advices travel through store-and-forward");
                    }
                    return Ok(None);
                }
            }
        }
        let mut saf = cfg.saf.clone();
        if saf.key.is_none()
            && saf.key_file == crate::config::SafConfig::default().key_file
            && let JournalConfig::Sqlite { path, .. } = jc
        {
            // The generated key lives beside the journal it protects.
            saf.key_file = path.with_file_name("isoswitch-saf.key");
        }
        let key = SafKey::from_config(&saf)?;
        let store = match &self.saf_given {
            Some(given) => given.clone(),
            None => SqlSaf::open(jc, key.clone())?.shared(),
        };
        Ok(Some(((store, SafPolicy::from(&saf)), key)))
    }

    /// Where the journal lives (when configured): the retention pass connects there.
    pub fn journal_config(&self) -> Option<&JournalConfig> {
        self.journal_cfg.as_ref()
    }

    /// The journal (when configured).
    pub fn journal_handle(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// Whether the journal writes (always without one): readiness, and whether new
    /// financial requests may be forwarded.
    pub fn journal_up(&self) -> bool {
        self.journal.as_ref().is_none_or(|j| j.health().is_up())
    }

    /// The answer to a new financial request while the journal cannot write: 96 (the
    /// dialect's code for it, mapped at the listener), before it reaches an issuer, since
    /// an approval could not be recorded. `None` while the journal writes (an atomic load).
    pub fn refuse_unrecordable(&self, req: &Message) -> Option<Box<Message>> {
        let health = self.journal.as_ref()?.health();
        if health.is_up() {
            return None;
        }
        health.declined();
        tracing::debug!("financial request declined: the journal is down");
        let rc = ResponseCode::SYSTEM_MALFUNCTION;
        switch_reply(req, rc).ok().map(Box::new)
    }

    /// The answer to a new request of `class` while the journal writer is too far behind
    /// to commit its row in time: 91 at once, before any issuer. The rows queued ahead of it
    /// would take the writer longer than the class's share of `journal_budget_ms` (batch
    /// uploads half, ordinary requests three quarters, priority merchants and network
    /// management all of it), so the lowest classes are shed first and the queue stops
    /// growing where its rows can still be committed within the budget; reversals and
    /// advices are never shed. `None` otherwise (two atomic loads).
    ///
    /// The 91 is not journalled (a row per shed request would cost the writer the very time
    /// that shedding saves); it is counted in `isoswitch_shed_total{class}` and
    /// `isoswitch_journal_shed_total{class}`. Nothing reached an issuer, so nothing needs
    /// settling or reversing.
    pub fn shed_for_journal(&self, req: &Message, class: route::Class) -> Option<Box<Message>> {
        let j = self.journal.as_ref()?;
        let quarters: u32 = match class {
            route::Class::Reversal => return None,
            route::Class::Network | route::Class::Priority => 4,
            route::Class::Ordinary => 3,
            route::Class::Batch => 2,
        };
        if j.backlog().wait() <= self.journal_budget * quarters / 4 {
            return None;
        }
        metrics::counter!(crate::metrics::SHED_TOTAL, "class" => class.name()).increment(1);
        metrics::counter!(crate::metrics::JOURNAL_SHED_TOTAL, "class" => class.name()).increment(1);
        tracing::debug!(class = class.name(), "request shed: the journal writer is behind");
        switch_reply(req, ResponseCode::ISSUER_UNAVAILABLE).ok().map(Box::new)
    }

    /// Where the in-doubt log lives: `[saf] indoubt_dir`, else beside the SQLite journal
    /// (`<journal file>.indoubt`), else `./isoswitch-indoubt/<switch_id>`. `None` without a journal or
    /// with `[saf] indoubt = false`.
    pub fn indoubt_dir(&self, cfg: &Config) -> Option<std::path::PathBuf> {
        let jc = self.journal_cfg.as_ref()?;
        if !cfg.saf.indoubt {
            return None;
        }
        Some(match (&cfg.saf.indoubt_dir, jc) {
            (Some(d), _) => d.clone(),
            (None, JournalConfig::Sqlite { path, .. }) => {
                let mut name = path.file_name().unwrap_or_default().to_os_string();
                name.push(".indoubt");
                path.with_file_name(name)
            }
            // Nodes sharing a PostgreSQL journal may share a working directory: each keeps
            // (and reconciles) its own log.
            (None, JournalConfig::Postgres { .. }) => crate::issuer::indoubt::issuer_dir(
                std::path::Path::new("./isoswitch-indoubt"),
                &cfg.switch_id,
            ),
        })
    }

    /// Decide what to do with a decoded request.
    pub fn plan(&self, msg: &Message, now_ms: i64) -> Plan {
        match self.router.decide(msg, UnixMs::from_i64(now_ms)) {
            Decision::Forward(f) if f.txn_type == route::txn::TxnType::BatchUpload => Plan::Upload,
            Decision::Forward(f) if f.txn_type == route::txn::TxnType::Reversal && self.journal.is_some() => {
                Plan::Reversal { fwd: Box::new(f) }
            }
            Decision::Forward(f) => match self.issuer_index.get(f.issuer) {
                Some(&issuer) => Plan::Forward { issuer, fwd: Box::new(f) },
                None => Plan::Decline {
                    rc: ResponseCode::ISSUER_UNAVAILABLE,
                    field44: None,
                    txn: RowType::NoIssuer,
                },
            },
            Decision::Decline { rc, reason, field44 } => {
                match reason {
                    route::Reason::MissingField(field) => {
                        tracing::info!(
                            mti = msg.mti(),
                            field,
                            "request lacks a field its type requires; answered 30, not forwarded"
                        )
                    }
                    _ => tracing::debug!(rc = %rc, ?reason, "request declined by the rules"),
                }
                // The journal names the type as the routing core recognised it.
                let txn = self.router.rules().txn.classify(msg).map_or(RowType::Unrecognised, RowType::Txn);
                Plan::Decline { rc, field44, txn }
            }
            Decision::Local { rc, txn_type } => match txn_type {
                route::txn::TxnType::BatchSettlement => Plan::Settle,
                _ => Plan::Local(rc),
            },
        }
    }
}

/// The first issuer the rules route to that is not configured.
fn unknown_issuer(rules: &RuleSet, configured: &HashMap<String, usize>) -> Option<&'static str> {
    rules.issuer_names().into_iter().find(|n| !configured.contains_key(*n))
}

/// A store-and-forward queue and how it repeats.
pub type SafSetup = (Arc<dyn SafStore>, SafPolicy);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::iso::spec;
    use crate::journal::store::Discard;
    use crate::route::Class;

    #[test]
    fn a_journal_behind_its_budget_sheds_the_lowest_classes_first_and_never_reversals() {
        let text = "journal_budget_ms = 4\n[[issuer]]\nname = \"default\"\n[[issuer.link]]\naddr = \"127.0.0.1:1\"\n";
        let cfg = Config::parse("t.toml", text).unwrap();
        let rules = RuleSet::open_with_routes("(routes)", &routes_text(&cfg)).unwrap();
        let journal = Journal::start(Discard);
        let s = Services::new(&cfg, route::Router::new(rules), Some(journal.clone()), PanHasher::new(b"k"))
            .unwrap();
        let mut req = Message::new(spec::shipped("iso87ascii").unwrap(), "0200").unwrap();
        req.set(11, "000123").unwrap().set(41, "TERM0001").unwrap();
        // Budget 4 ms; the writer needs 10 us a row: (rows queued, classes shed).
        let us = Duration::from_micros;
        let cases: &[(u64, &[Class])] = &[
            (0, &[]),
            (200, &[]),
            (201, &[Class::Batch]),
            (300, &[Class::Batch]),
            (301, &[Class::Batch, Class::Ordinary]),
            (400, &[Class::Batch, Class::Ordinary]),
            (401, &[Class::Batch, Class::Ordinary, Class::Priority, Class::Network]),
            (1_000_000, &[Class::Batch, Class::Ordinary, Class::Priority, Class::Network]),
        ];
        for &(queued, shed) in cases {
            journal.backlog().set_for_test(queued, us(10));
            for class in Class::ALL {
                let answer = s.shed_for_journal(&req, class);
                assert_eq!(answer.is_some(), shed.contains(&class), "{queued} rows queued, {class:?}");
                if let Some(a) = answer {
                    assert_eq!(a.text(39).as_deref(), Some("91"));
                    assert_eq!(a.stan(), Some(123));
                }
            }
        }
        // Without a journal nothing is shed.
        let cfg = Config::parse("t.toml", text).unwrap();
        let rules = RuleSet::open_with_routes("(routes)", &routes_text(&cfg)).unwrap();
        let none = Services::new(&cfg, route::Router::new(rules), None, PanHasher::new(b"k")).unwrap();
        assert!(none.shed_for_journal(&req, Class::Batch).is_none());
    }
}
