//! What the acceptor does with one decoded request: ask the routing core, forward to the
//! chosen issuer, answer batch settlement from the journal, and journal the outcome
//! before the terminal hears of it. The connection task drives these futures; this file
//! holds the decisions and the journal rows, not the sockets.
//! May import: codec, routing core, issuer connector, journal, settlement, config.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::iso::Message;
use crate::issuer::{Issuers, Origin, Outcome, SafPolicy, SafStore};
use crate::journal::saf::{SafKey, SqlSaf};
use crate::journal::{Journal, JournalConfig, PanHasher, Query, Status, TxnRecord, Update, business_date};
use crate::route::{self, Decision, Now, Rc, RuleSet};
use crate::settle::batch;

use super::repeats::{Answer, Repeats, Window};
use super::reply::{issuer_reply, switch_reply};

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
    shared: bool,
    /// Where the journal lives, for the store-and-forward queue beside it.
    journal_cfg: Option<JournalConfig>,
    /// A store-and-forward store made by the caller (`open_with`), used in place of the
    /// one `saf_store` would open.
    saf_given: Option<Arc<dyn SafStore>>,
    hasher: PanHasher,
    /// Recent time of a journal commit awaited before an approval (microseconds, moving
    /// average): admission control keeps that much of each deadline for it.
    commit_us: std::sync::atomic::AtomicU64,
    /// `journal_budget_ms`: the journal backlog past which new requests are shed.
    journal_budget: std::time::Duration,
    switch_id: String,
    /// Every configured issuer by name (not only those the first rules named: a reload may
    /// route to any of them).
    issuer_index: HashMap<String, usize>,
    /// The terminal keys answered and in flight: retransmissions are never forwarded twice.
    pub repeats: Arc<Repeats>,
    /// The operator's suspensions and the state file that keeps them across restarts.
    pub suspensions: super::suspensions::Suspensions,
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
            Some(hex) => crate::cli::hex_to_bytes(hex).unwrap_or_else(|_| DEV_PAN_KEY.to_vec()),
            None => {
                if journal.is_some() {
                    tracing::warn!("no pan_key configured: the journal's PAN hashes use the development key");
                }
                DEV_PAN_KEY.to_vec()
            }
        };
        let mut s = Services::new(cfg, route::Router::new(rules), journal, PanHasher::new(&key))?;
        s.shared = cfg.journal_url.is_some();
        s.journal_cfg = journal_cfg;
        s.saf_given = saf_given;
        s.suspensions = super::suspensions::Suspensions::new(super::suspensions::state_path(cfg));
        s.suspensions.apply(&s.router)?;
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
        Ok(Services {
            repeats: Repeats::new(window, cfg.repeats.capacity),
            router: Arc::new(router),
            journal,
            shared: false,
            journal_cfg: None,
            saf_given: None,
            hasher,
            commit_us: std::sync::atomic::AtomicU64::new(0),
            journal_budget: std::time::Duration::from_millis(cfg.journal_budget_ms),
            switch_id: cfg.switch_id.clone(),
            issuer_index,
            suspensions: Default::default(),
        })
    }

    /// Load the rule directory `dir` and swap it in (SIGHUP, admin API), with the operator's
    /// suspensions read again from their state file. Refused, with the running rules staying
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
        self.suspensions.apply(&self.router)?;
        Ok(self.router.replace(rules))
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
        let rc = crate::rc::Outcome::SystemMalfunction.generic_rc();
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
        switch_reply(req, Rc::ISSUER_UNAVAILABLE.as_str()).ok().map(Box::new)
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
        match self.router.decide(msg, Now(u64::try_from(now_ms).unwrap_or(0))) {
            Decision::Forward(f) if f.txn_type == route::txn::TxnType::BatchUpload => Plan::Upload,
            Decision::Forward(f) if f.txn_type == route::txn::TxnType::Reversal && self.journal.is_some() => {
                Plan::Reversal { fwd: Box::new(f) }
            }
            Decision::Forward(f) => match self.issuer_index.get(f.issuer) {
                Some(&issuer) => Plan::Forward { issuer, fwd: Box::new(f) },
                None => Plan::Decline { rc: Rc::ISSUER_UNAVAILABLE, field44: None, txn: "unknown" },
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
                let txn = self.router.rules().txn.classify(msg).map_or("other", |t| t.as_str());
                Plan::Decline { rc, field44, txn }
            }
            Decision::Local { rc, txn_type } => match txn_type {
                route::txn::TxnType::BatchSettlement => Plan::Settle,
                _ => Plan::Local(rc),
            },
        }
    }

    /// The journal row of a request, before its outcome is known. Boxed: the row lives
    /// across the issuer's answer and the commit, and a pointer keeps the request's future
    /// (copied whenever it moves) and each hand-over on the way to the writer small.
    fn row(&self, req: &Message, received_at: i64, txn: &str, decision: &str) -> Box<TxnRecord> {
        let rules = self.router.rules();
        let mut r = Box::new(TxnRecord::from_request(req, &self.hasher));
        r.switch_id.clone_from(&self.switch_id);
        r.received_at = received_at;
        r.business_date = business_date(received_at, rules.registry.utc_offset_minutes);
        r.txn_type = txn.to_string();
        r.decision = decision.to_string();
        r.settle_cycle = if rules.settles_same_day(&r.merchant_id) { "T0" } else { "T1" }.to_string();
        r
    }

    /// Journal `row` (when there is a journal). An approval must not reach the terminal
    /// unless this succeeded; the caller turns a failure into 96.
    async fn journal(&self, row: Box<TxnRecord>) -> bool {
        let Some(j) = &self.journal else { return true };
        match j.record_boxed(row).await {
            Ok(true) => true,
            Ok(false) => {
                // Another row holds this transaction's terminal key: this outcome is not
                // recorded, so it must not be answered as if it were.
                tracing::error!("journal row not written: its terminal key is held by another row");
                false
            }
            Err(e) => {
                write_failed(j, &e);
                false
            }
        }
    }

    /// Time to keep, of a forwarded request's deadline, for the journal commit of its
    /// approval (the recent average), so that under a lagging group commit requests are
    /// shed early with 91 rather than approved after their deadline: the issuer ends its
    /// reply wait that much earlier too. It caps it at half the deadline, so some requests
    /// are always admitted and the average follows.
    fn commit_reserve(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.commit_us.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn commit_seen(&self, took: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let us = took.as_micros() as u64;
        let old = self.commit_us.load(Relaxed);
        self.commit_us.store(old - old / 16 + us / 16, Relaxed);
    }

    /// Journal a row that approves nothing (a decline, 91, 68): committed before the
    /// answer when the group commit keeps up, but the answer does not wait past `by`, the
    /// deadline the terminal was promised — under overload a commit can lag by hundreds of
    /// milliseconds, and a 91 or 68 that arrives late is worth less than none. The row is
    /// committed all the same, just after the answer: it is queued before this returns
    /// whenever the queue has room, so a look-up made after the answer (a reversal
    /// matching this request, which waits for it to finish) is answered after its commit
    /// and finds it; with the queue full it waits for room in a task of its own.
    async fn journal_until(&self, row: Box<TxnRecord>, by: std::time::Instant) {
        let Some(j) = &self.journal else { return };
        let commit = match j.try_submit(row) {
            Ok(commit) => commit,
            Err(row) => {
                // The queue is full (overload): the row waits for room in a task of its own.
                let (tx, rx) = tokio::sync::oneshot::channel();
                let j = j.clone();
                tokio::spawn(async move {
                    let _ = tx.send(j.record_boxed(row).await);
                });
                rx
            }
        };
        match tokio::time::timeout_at(by.into(), commit).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => write_failed(j, &e),
            Ok(Err(_)) => tracing::error!("journal writer gone before the commit"),
            Err(_) => tracing::debug!("journal commit still pending at the deadline; answered first"),
        }
    }

    /// Answer a declined request, journalled.
    pub async fn decline(
        &self,
        req: &Message,
        rc: Rc,
        field44: Option<&str>,
        txn: &str,
        at: i64,
    ) -> Option<Message> {
        if self.journal.is_some() {
            let mut row = self.row(req, at, txn, "decline");
            if rc == Rc::DUPLICATE {
                // Another transaction holds this key: the 94 is recorded beside it.
                row.txn_key = None;
            }
            row.rc = rc.as_str().to_string();
            row.status = Some(Status::Declined);
            row.answered_at = Some(now_ms());
            self.journal(row).await;
        }
        let mut out = switch_reply(req, rc.as_str()).ok()?;
        if let Some(text) = field44
            && req.spec().field(44).is_some()
        {
            let max = req.spec().field(44).map_or(0, |f| f.max as usize);
            let text: String = text.chars().filter(|c| (' '..='~').contains(c)).take(max).collect();
            let _ = out.set(44, &text);
        }
        Some(out)
    }

    /// Forward a request and build the terminal's reply, journalled before it is returned.
    /// `out` is sent to the issuer in place of `req` (the request with its PIN block
    /// translated to the issuer's zone key); the reply and the journal row are built from
    /// `req`. The issuer's deadline counts from `arrival`.
    pub async fn forward_as(
        &self,
        issuers: &Issuers,
        req: &Message,
        out: &Message,
        issuer: usize,
        fwd: &route::Forward,
        arrival: Arrival,
    ) -> Option<Box<Message>> {
        let Arrival { at, instant: arrived, source } = arrival;
        if let Some(refused) = self.refuse_unrecordable(req) {
            return Some(refused);
        }
        if let Some(shed) = self.shed_for_journal(req, fwd.class) {
            return Some(shed);
        }
        // Its row counts in the journal's backlog from now on (dropped when it is queued).
        let promise = self.journal.as_ref().map(|j| j.backlog().promise());
        // Without a journal no row is built: its strings and the PAN hash would be wasted.
        let primary = issuers.get(issuer).map_or("", |i| i.name());
        let mut row = self.journal.as_ref().map(|_| {
            let mut row = self.row(req, at, fwd.txn_type.as_str(), "forward");
            row.issuer = Some(primary.to_string());
            row.route = Some(fwd.issuer.to_string());
            row
        });
        if self.shared
            && let (Some(j), Some(row)) = (&self.journal, &row)
        {
            // Another node may have this transaction already: the shared journal decides.
            // Boxed, as is the journal write below: inline they would make the future of
            // every forward (journal or not) kilobytes larger, and it is moved per request.
            match Box::pin(j.claim(TxnRecord::clone(row))).await {
                Ok(true) => {}
                Ok(false) => {
                    // Another node (or an earlier run) holds this key: the request is a
                    // repeat of that transaction, answered as it was, or, with another
                    // amount, a different transaction reusing the key (94).
                    let until =
                        arrived + issuers.get(issuer).map_or(std::time::Duration::ZERO, |i| i.answer_by());
                    let answer = Box::pin(self.answer_in_journal(j, row, until)).await;
                    tracing::info!(
                        rc = answer.as_ref().map(|a| a.rc()),
                        "repeat of a transaction another node holds"
                    );
                    let reply = match answer {
                        Some(a) => super::reply::repeat_reply(req, &a),
                        None => switch_reply(req, Rc::DUPLICATE.as_str()),
                    };
                    return reply.ok().map(Box::new);
                }
                Err(e) => {
                    tracing::error!(error = %e, "journal claim failed");
                    return switch_reply(req, "96").ok().map(Box::new);
                }
            }
        }
        if let Some(row) = &mut row {
            row.forwarded_at = Some(now_ms());
        }
        // Who answered and the STAN it was asked with, should its approval go unrecorded.
        let mut answered = None;
        let mut switch_stan = None;
        let outcome = match issuers
            .forward_with_backup_as(
                primary,
                fwd.backup,
                out,
                fwd.class,
                self.commit_reserve(),
                Origin { arrival: arrived, source },
            )
            .await
        {
            Some((answered_by, outcome)) => {
                if answered_by.name() != primary
                    && let Some(row) = &mut row
                {
                    row.issuer = Some(answered_by.name().to_string());
                }
                answered = Some(answered_by);
                outcome
            }
            None => Outcome::Unavailable,
        };
        let reply = match outcome {
            Outcome::Reply(answer) => {
                switch_stan = answer.stan();
                if let Some(row) = &mut row {
                    row.switch_stan = answer.text(11).map(|s| s.into_owned());
                    row.auth_code = answer.text(38).map(|s| s.into_owned());
                    // A terminal that sent no RRN keeps the one its reply carries: its voids
                    // and refunds name the original by it (field 37).
                    if row.rrn.is_none() {
                        row.rrn = answer.text(37).map(|s| s.into_owned());
                    }
                }
                issuer_reply(req, answer).ok()
            }
            Outcome::Rejected(r) => {
                // Not believed: nothing of the reply (its 38 least of all) reaches the row.
                if let Some(row) = &mut row {
                    row.switch_stan = Some(format!("{:06}", r.switch_stan));
                }
                let name = answered.as_ref().map_or(primary, |i| i.name());
                Box::pin(super::rejected::reverse_rejected(issuers, req, out, name, r)).await;
                switch_reply(req, crate::rc::Outcome::SystemMalfunction.generic_rc()).ok().map(Box::new)
            }
            other => switch_reply(req, other.switch_rc().unwrap_or("96")).ok().map(Box::new),
        };
        let mut reply = reply.or_else(|| switch_reply(req, "96").ok().map(Box::new))?;
        drop(promise);
        let Some(mut row) = row else { return Some(reply) };
        row.answered_at = Some(now_ms());
        row.rc = reply.text(39).map(|s| s.into_owned()).unwrap_or_else(|| "96".into());
        let approved = row.rc == "00";
        row.status = Some(if approved { Status::Approved } else { Status::Declined });
        row.fee = if approved { fwd.fee } else { 0 };
        if approved {
            let t0 = std::time::Instant::now();
            let ok = Box::pin(self.journal(row)).await;
            self.commit_seen(t0.elapsed());
            if !ok {
                // Nothing unrecorded is approved: the terminal is told the switch failed, and
                // the issuer's approval is reversed (held in memory if the store fails too).
                reply = switch_reply(req, "96").ok().map(Box::new)?;
                self.reverse_unrecorded(issuers, req, answered.as_ref().map(|i| i.name()), switch_stan).await;
            }
        } else {
            let by = issuers.get(issuer).map_or(std::time::Duration::ZERO, |i| i.answer_by());
            Box::pin(self.journal_until(row, arrived + by)).await;
        }
        Some(reply)
    }

    /// The plan of a request whose terminal key memory could not prove new: its answer
    /// when the journal holds the key with the same amount, 94 with another amount, the
    /// rules' plan when the journal does not hold it, 96 when the journal cannot say
    /// (the request is then not forwarded: it might be a repeat).
    pub async fn lookup_repeat(&self, req: &Message, at: i64) -> Plan {
        let Some(j) = &self.journal else { return self.plan(req, at) };
        let (Some(terminal), Some(stan), Some(key)) =
            (req.text(41), req.text(11), crate::journal::txn_key(req))
        else {
            return self.plan(req, at);
        };
        let q = Query::ByKey { terminal: terminal.into_owned(), stan: stan.into_owned(), txn_key: key };
        match j.query(q).await {
            Ok(rows) => match rows.first() {
                None => self.plan(req, at),
                Some(o) if req.amount().and_then(|a| i64::try_from(a).ok()) != Some(o.amount) => {
                    Plan::Decline { rc: Rc::DUPLICATE, field44: None, txn: "duplicate" }
                }
                // A claim without its outcome: the transaction is in flight elsewhere.
                Some(o) if o.rc.is_empty() => Plan::Answered(Answer::new("96", None, None)),
                Some(o) => Plan::Answered(Answer::of_row(o)),
            },
            Err(e) => {
                tracing::error!(error = %e, "journal query for a repeated terminal key failed");
                Plan::Answered(Answer::new("96", None, None))
            }
        }
    }

    /// The answer the shared journal holds for the transaction `row` repeats, waiting
    /// (until `until`) while another node has it in flight; `None` when the row there has
    /// another amount (a different transaction reusing the key: 94).
    async fn answer_in_journal(
        &self,
        j: &Journal,
        row: &TxnRecord,
        until: std::time::Instant,
    ) -> Option<Answer> {
        let q = Query::ByKey {
            terminal: row.terminal_id.clone(),
            stan: row.stan.clone(),
            txn_key: row.txn_key.clone().unwrap_or_default(),
        };
        loop {
            match j.query(q.clone()).await {
                Ok(rows) => match rows.first() {
                    Some(o) if o.amount != row.amount => return None,
                    Some(o) if !o.rc.is_empty() => return Some(Answer::of_row(o)),
                    _ => {}
                },
                Err(e) => {
                    tracing::error!(error = %e, "journal query for a repeated terminal key failed");
                    return Some(Answer::new("96", None, None));
                }
            }
            if std::time::Instant::now() + std::time::Duration::from_millis(25) >= until {
                return Some(Answer::new("68", None, None));
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Reverse with `issuer` an approval of `req` that could not be journalled (its switch
    /// STAN `switch_stan`). Counted for the journal's recovery line; a reversal that cannot
    /// even be queued is logged, every time: the issuer then holds an authorisation.
    async fn reverse_unrecorded(
        &self,
        issuers: &Issuers,
        req: &Message,
        issuer: Option<&str>,
        switch_stan: Option<u32>,
    ) {
        let stan = switch_stan.map(|s| format!("{s:06}"));
        let f7 = req.text(7).unwrap_or_default();
        let queued = match issuer {
            Some(name) => reverse_with_issuer(issuers, req, name, stan.as_deref(), req.mti(), &f7).await,
            None => Err("the issuer that approved is unknown".to_string()),
        };
        match queued {
            Ok(_) => {
                if let Some(j) = &self.journal {
                    j.health().reversal_queued();
                }
                tracing::debug!("unrecorded approval reversed with its issuer");
            }
            Err(e) => tracing::error!(error = %e, "approval not recorded and its reversal NOT queued"),
        }
    }

    /// A terminal's reversal (0400/0420). Its original is looked up by terminal, STAN and
    /// amount: unknown originals are acknowledged and recorded without bothering the
    /// issuer; known ones are queued (durably, idempotently by field 90) for the issuer that
    /// answered them and marked reversed. Either way the terminal gets 00 at once.
    pub async fn reversal(
        &self,
        issuers: &Issuers,
        req: &Message,
        fwd: &route::Forward,
        at: i64,
    ) -> Option<Message> {
        let j = self.journal.as_ref()?;
        let mut row = self.row(req, at, "reversal", "reversal");
        let terminal = row.terminal_id.clone();
        let original = j
            .query(Query::Original { terminal: terminal.clone(), stan: row.stan.clone(), amount: row.amount })
            .await
            .map_err(|e| tracing::error!(error = %e, "journal query failed"))
            .ok()?
            .into_iter()
            // 68: the switch timed it out and reversed it with the issuer itself.
            .find(|o| o.rc == "00" || o.rc.is_empty() || o.rc == "68");
        row.answered_at = Some(now_ms());
        row.rc = "00".into();
        row.status = Some(Status::Approved);
        let Some(orig) = original else {
            tracing::info!("reversal of an unknown or declined original acknowledged");
            self.journal(row).await;
            return switch_reply(req, "00").ok();
        };
        let mark_reversed = Update::SetStatus {
            terminal: terminal.clone(),
            stan: orig.stan.clone(),
            transmission_time: orig.transmission_time.clone(),
            mti: orig.mti.clone(),
            status: Status::Reversed,
        };
        if orig.rc == "68" {
            if let Err(e) = j.update(mark_reversed).await {
                tracing::error!(error = %e, "marking the original reversed failed");
            }
            self.journal(row).await;
            return switch_reply(req, "00").ok();
        }
        let issuer_name = orig.issuer.clone().unwrap_or_else(|| fwd.issuer.to_string());
        row.issuer = Some(issuer_name.clone());
        let queued = reverse_with_issuer(
            issuers,
            req,
            &issuer_name,
            orig.switch_stan.as_deref(),
            &orig.mti,
            &orig.transmission_time,
        )
        .await;
        match queued {
            Ok(fresh) => {
                if !fresh {
                    tracing::info!("reversal already queued for this original");
                }
                if let Err(e) = j.update(mark_reversed).await {
                    tracing::error!(error = %e, "marking the original reversed failed");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "terminal reversal could not be queued");
                row.rc = "96".into();
                row.status = Some(Status::Declined);
            }
        }
        let rc = row.rc.clone();
        self.journal(row).await;
        switch_reply(req, &rc).ok()
    }

    /// Batch upload (0320): recorded as the terminal reports it (not settled from: the
    /// journal's own rows are the record of what was approved) and acknowledged with 00.
    pub async fn upload(&self, req: &Message, at: i64) -> Option<Message> {
        let mut row = self.row(req, at, "batch_upload", "local");
        row.rc = "00".into();
        row.answered_at = Some(now_ms());
        if !self.journal(row).await {
            return switch_reply(req, "96").ok();
        }
        switch_reply(req, "00").ok()
    }

    /// Terminal batch settlement (0500): the terminal's totals against the journal's for
    /// its open batch (on UnionPay-style terminals the batch 60.2 names); 00 and the batch
    /// closed when they agree, 95 when they do not.
    pub async fn settle(&self, req: &Message) -> Option<Message> {
        let Some(j) = &self.journal else {
            return switch_reply(req, "96").ok();
        };
        let terminal = req.terminal_id().map(|t| t.into_owned()).unwrap_or_default();
        let cup = req.spec().name == "cup-pos";
        let theirs = if cup {
            req.text(48)
                .ok_or_else(|| batch::TotalsError("field 48 missing".into()))
                .and_then(|t| batch::cup_totals(&t))
        } else {
            batch::iso87_totals(req)
        };
        let theirs = match theirs {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(error = %e, "batch settlement with unreadable totals");
                return switch_reply(req, "30").ok();
            }
        };
        // A UnionPay-style 0500 names its batch (60.2): it settles the rows of that batch
        // and those that carry no batch number, not another batch's.
        let number = super::cup::batch_number(req);
        let rows = match j.query(Query::OpenBatch(terminal.clone())).await {
            Ok(mut r) => {
                if let Some(n) = &number {
                    r.retain(|row| row.terminal_batch.as_ref().is_none_or(|b| b == n));
                }
                r
            }
            Err(e) => {
                tracing::error!(error = %e, "journal query failed");
                return switch_reply(req, "96").ok();
            }
        };
        let ours = batch::journal_totals(&rows);
        let balanced = ours == theirs;
        let mut out = switch_reply(req, if balanced { "00" } else { "95" }).ok()?;
        if cup && let Some(t) = req.text(48) {
            let _ = out.set(48, &batch::cup_reply_48(&t, balanced));
        }
        if balanced {
            // The terminal's batch number (60.2 on UnionPay-style terminals) names the
            // closed batch in the journal, beside the terminal and the time it closed.
            let id = match &number {
                Some(n) => format!("{}-{n}-{}", terminal.trim_end(), now_ms()),
                None => format!("{}-{}", terminal.trim_end(), now_ms()),
            };
            if let Err(e) = j.update(Update::CloseBatch { terminal, batch: id, terminal_batch: number }).await
            {
                tracing::error!(error = %e, "closing the batch failed");
                return switch_reply(req, "96").ok();
            }
        } else {
            tracing::info!(?ours, ?theirs, "batch totals differ");
        }
        Some(out)
    }
}

/// Queue, through the issuer's store-and-forward, the reversal of a financial request
/// the switch forwarded to `issuer_name` with switch STAN `switch_stan` (the terminal's
/// own reversal, a rejected issuer approval, an approval that could not be journalled).
/// `req` is the terminal's message (its request or its reversal): field 90 names the
/// original as the issuer saw it (`orig_mti`, the switch STAN, `orig_f7`, fields 32 and
/// 33). `Ok(false)` when a reversal of that original is already queued.
pub async fn reverse_with_issuer(
    issuers: &Issuers,
    req: &Message,
    issuer_name: &str,
    switch_stan: Option<&str>,
    orig_mti: &str,
    orig_f7: &str,
) -> Result<bool, String> {
    let (Some(issuer), Some(sw_stan)) = (issuers.by_name(issuer_name), switch_stan) else {
        return Err("the original's issuer or switch STAN is missing".to_string());
    };
    if req.spec().field(90).is_none() && issuer.saf_spec().is_none_or(|s| s.field(90).is_none()) {
        return Err("neither the terminal's nor the issuer's spec has a field 90".to_string());
    }
    let acq = |n: usize| format!("{:0>11}", req.text(n).unwrap_or_default());
    // A terminal's own reversal carries field 90 as it saw the original: the STAN in it
    // becomes the switch's.
    let f90 = match req.text(90).and_then(|t| crate::issuer::reversal::rebase_field90(&t, sw_stan)) {
        Some(f) => f,
        None => format!("{orig_mti}{sw_stan}{orig_f7:0>10}{}{}", acq(32), acq(33)),
    };
    // A dialect without field 90 (cup-pos) is carried in the issuer's spec.
    let base = match (req.spec().field(90), issuer.saf_spec()) {
        (None, Some(spec)) => crate::issuer::convert(req, spec),
        _ => Ok(req.clone()),
    };
    match base.and_then(|mut rev| rev.set(90, &f90).map(|_| ()).map(|()| rev)) {
        Ok(rev) => issuer.queue_reversal(&rev).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Log a failed journal write: at most once in a while, since the journal logs each change
/// of its state and counts every row not written; a row refused while it is down not at all.
fn write_failed(j: &Journal, e: &crate::journal::StoreError) {
    if matches!(e, crate::journal::StoreError::Down) {
        return;
    }
    if j.health().log_allowed(now_ms()) {
        tracing::error!(error = %e, "journal write failed (such failures are logged at most every 10 s)");
    }
}

/// The first issuer the rules route to that is not configured.
fn unknown_issuer(rules: &RuleSet, configured: &HashMap<String, usize>) -> Option<&'static str> {
    rules.issuer_names().into_iter().find(|n| !configured.contains_key(*n))
}

/// A store-and-forward queue and how it repeats.
pub type SafSetup = (Arc<dyn SafStore>, SafPolicy);

/// What the connection does with one request.
pub enum Plan {
    /// Answer now with this code (network management).
    Local(Rc),
    /// Decline, journalled.
    Decline { rc: Rc, field44: Option<String>, txn: &'static str },
    /// Forward to the issuer at this index of `Config::issuers` (or its backup when all of
    /// its links are down).
    Forward { issuer: usize, fwd: Box<route::Forward> },
    /// A terminal's reversal: matched to its original in the journal and queued for the
    /// issuer through store-and-forward.
    Reversal { fwd: Box<route::Forward> },
    /// Batch settlement against the journal.
    Settle,
    /// Batch upload (0320): what the terminal says it did, recorded and acknowledged.
    Upload,
    /// A repeat of a request still in flight: answered with the original's answer.
    Repeat(tokio::sync::watch::Receiver<Option<Answer>>),
    /// A repeat of a request answered before (found in the journal).
    Answered(Answer),
    /// Memory cannot prove the request's terminal key new: the journal is asked first
    /// (`Services::lookup_repeat`), then the request is planned.
    Lookup,
}

/// When a request arrived: in Unix milliseconds (for the rules and the journal) and as the
/// instant its reply deadline counts from; and on which terminal connection (`source`,
/// for admission's fairness between connections).
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub at: i64,
    pub instant: std::time::Instant,
    pub source: u64,
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::iso::spec;
    use crate::journal::{Store, StoreError};
    use crate::route::Class;

    /// A store that keeps nothing: the test sets the writer's backlog itself.
    struct Nothing;

    impl Store for Nothing {
        fn begin(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn insert(&mut self, _: &TxnRecord) -> Result<bool, StoreError> {
            Ok(true)
        }
        fn commit(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn rollback(&mut self) {}
        fn query(&mut self, _: &Query) -> Result<Vec<TxnRecord>, StoreError> {
            Ok(Vec::new())
        }
        fn update(&mut self, _: &Update) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    #[test]
    fn a_journal_behind_its_budget_sheds_the_lowest_classes_first_and_never_reversals() {
        let text = "journal_budget_ms = 4\n[[issuer]]\nname = \"default\"\n[[issuer.link]]\naddr = \"127.0.0.1:1\"\n";
        let cfg = Config::parse("t.toml", text).unwrap();
        let rules = RuleSet::open_with_routes("(routes)", &routes_text(&cfg)).unwrap();
        let journal = Journal::start(Nothing);
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
