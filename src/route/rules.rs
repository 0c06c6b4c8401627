//! `RuleSet`: every rule file of one estate loaded and cross-checked, and the pure decision
//! for one message. A rule directory holds `registry.toml` and `routes.toml` (required),
//! and optionally `fees.toml` (plans added to the shipped `specs/fees-default.toml`, which
//! is always loaded; a newer version of plan `default` replaces it from its date), `priority.toml`,
//! `risk.toml` and `txn-types.toml` (else the shipped `specs/txn-types-default.toml`).
//!
//! The checks run in this order; the first that fails decides:
//! 1. transaction type from the table (12); an echo is answered at once (00);
//! 2. terminal known (03) or the estate open; merchant known and, when the message carries
//!    field 42, the terminal's own (03); terminal active (58); type allowed on the terminal
//!    (58); terminal or merchant not blocked (58). A reversal from a known terminal skips
//!    the status, type and block checks: it undoes what the terminal did while allowed;
//! 3. sign-on, sign-off and batch settlement are answered locally;
//! 4. card number from field 2 (or the PAN in track 2, field 35) passes Luhn (14) and has a
//!    route or a default (14); reversals and batch uploads without a PAN take the default;
//! 5. financial types carry a non-zero amount (13);
//! 6. per-transaction limit (61) and supplementary data (configured code, field 44) for
//!    purchases, pre-auths, completions and refunds;
//! 7. with a `RiskState`: duplicate (94), terminal frequency (65), card frequency (65), card
//!    daily total (61), for authorisations (priority and ordinary classes) only, so that
//!    reversals, advices, network traffic and batch uploads always pass.
//!
//! The merchant's MCC comes from the registry, not from field 18: the terminal does not
//! choose its own price.
//! May import: crate::iso, crate::rc, crate::route::routes, crate::route::decision,
//! crate::route::error, crate::route::fees, crate::route::priority, crate::route::registry,
//! crate::route::risk, crate::route::risk_state, crate::route::sched, crate::route::txn,
//! crate::time.

use std::borrow::Cow;
use std::path::Path;

use super::decision::{Decision, Forward, Reason};
use super::error::{RuleError, Source};
use super::fees::{DEFAULT_PLAN, FeeBook};
use super::priority::{Class, Priorities, Weights};
use super::registry::{Entry, Hot, InlineId, Registry, TerminalStatus};
use super::risk::RiskRules;
use super::risk_state::{Facts, RiskState};
use super::routes::{CardType, Routes, luhn_ok};
use super::sched::Scheduler;
use super::txn::{DEFAULT_TABLE, TxnTable, TxnType, chars, trim_end};
use crate::iso::Message;
use crate::rc::ResponseCode;
use crate::time::UnixMs;

/// One estate's rules, immutable once built; reload builds a new one.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub registry: Registry,
    pub routes: Routes,
    pub fees: FeeBook,
    pub priorities: Priorities,
    pub risk: RiskRules,
    pub txn: TxnTable,
}

/// The text of each rule file, named as errors should name it. `None` takes the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleTexts<'a> {
    pub registry: Option<(&'a str, &'a str)>,
    pub routes: Option<(&'a str, &'a str)>,
    pub fees: Option<(&'a str, &'a str)>,
    pub priority: Option<(&'a str, &'a str)>,
    pub risk: Option<(&'a str, &'a str)>,
    pub txn_types: Option<(&'a str, &'a str)>,
}

/// Counts for an operator after a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RuleSummary {
    pub terminals: usize,
    pub merchants: usize,
    pub routes: usize,
}

fn read(dir: &Path, name: &str, required: bool) -> Result<Option<(String, String)>, RuleError> {
    let path = dir.join(name);
    let file = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some((file, text))),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RuleError { file, line: None, key: None, message: format!("cannot read: {e}") }),
    }
}

/// The PAN from field 2, or from track 2 (field 35) up to its separator.
fn pan_of(msg: &Message) -> Option<Cow<'_, [u8]>> {
    if let Some(p) = chars(msg, 2) {
        return Some(p);
    }
    let track = chars(msg, 35)?;
    let end = track.iter().position(|&b| matches!(b, b'=' | b'D' | b'd' | b'^')).unwrap_or(track.len());
    Some(match track {
        Cow::Borrowed(t) => Cow::Borrowed(t.get(..end).unwrap_or(t)),
        Cow::Owned(mut t) => {
            t.truncate(end);
            Cow::Owned(t)
        }
    })
}

impl RuleSet {
    /// Load a rule directory.
    pub fn load_dir(dir: &Path) -> Result<RuleSet, RuleError> {
        let files = [
            read(dir, "registry.toml", true)?,
            read(dir, "routes.toml", true)?,
            read(dir, "fees.toml", false)?,
            read(dir, "priority.toml", false)?,
            read(dir, "risk.toml", false)?,
            read(dir, "txn-types.toml", false)?,
        ];
        let r = |i: usize| files.get(i).and_then(|f| f.as_ref()).map(|(n, t)| (n.as_str(), t.as_str()));
        RuleSet::from_texts(&RuleTexts {
            registry: r(0),
            routes: r(1),
            fees: r(2),
            priority: r(3),
            risk: r(4),
            txn_types: r(5),
        })
    }

    /// Build from file texts (embedded configurations, tests).
    pub fn from_texts(t: &RuleTexts<'_>) -> Result<RuleSet, RuleError> {
        let load_src = |x: Option<(&str, &str)>, dflt_file: &str, dflt: &str| -> (String, String) {
            x.map_or((dflt_file.to_string(), dflt.to_string()), |(a, b)| (a.to_string(), b.to_string()))
        };
        let (rf, rt) = load_src(t.registry, "registry.toml", "");
        let registry = Registry::load(&Source { file: &rf, text: &rt })?;
        let (f, x) = load_src(t.routes, "routes.toml", "");
        let routes = Routes::load(&Source { file: &f, text: &x })?;
        let mut fees = FeeBook::load(&Source { file: "specs/fees-default.toml", text: DEFAULT_PLAN })?;
        if let Some((f, x)) = t.fees {
            fees.extend(&Source { file: f, text: x })?;
        }
        let (f, x) = load_src(t.priority, "priority.toml", "");
        let priorities = Priorities::load(&Source { file: &f, text: &x })?;
        let (f, x) = load_src(t.risk, "risk.toml", "");
        let risk = RiskRules::load(&Source { file: &f, text: &x })?;
        let (f, x) = load_src(t.txn_types, "specs/txn-types-default.toml", DEFAULT_TABLE);
        let txn = TxnTable::load(&Source { file: &f, text: &x })?;
        RuleSet { registry, routes, fees, priorities, risk, txn }.resolve(&rf)
    }

    /// The embedded default: every terminal accepted as a general merchant (MCC 5999) on the
    /// default fee plan, every card routed to `issuer` as debit, no risk limits.
    pub fn open_default(issuer: &str) -> Result<RuleSet, RuleError> {
        let rules = RuleSet {
            registry: Registry::open("Open estate", 5999),
            routes: Routes::single(issuer, CardType::Debit),
            fees: FeeBook::load(&Source { file: "specs/fees-default.toml", text: DEFAULT_PLAN })?,
            priorities: Priorities::default(),
            risk: RiskRules::default(),
            txn: TxnTable::default_table()?,
        };
        rules.resolve("(embedded)")
    }

    /// An open estate (every terminal accepted on the default fee plan, no risk limits)
    /// with the BIN routes of a `routes.toml` text.
    pub fn open_with_routes(file: &str, routes: &str) -> Result<RuleSet, RuleError> {
        let rules = RuleSet {
            registry: Registry::open("Open estate", 5999),
            routes: Routes::load(&Source { file, text: routes })?,
            fees: FeeBook::load(&Source { file: "specs/fees-default.toml", text: DEFAULT_PLAN })?,
            priorities: Priorities::default(),
            risk: RiskRules::default(),
            txn: TxnTable::default_table()?,
        };
        rules.resolve("(embedded)")
    }

    /// The settlement cycle of the merchant with this id: T+1 unless it is listed as T+0.
    pub fn settle_cycle(&self, merchant_id: &str) -> crate::route::registry::SettleCycle {
        self.registry.merchant_by_id(merchant_id.trim_end()).map(|m| m.settlement).unwrap_or_default()
    }

    /// Issuer names any route or default may pick.
    pub fn issuer_names(&self) -> Vec<&'static str> {
        self.routes.issuer_names()
    }

    /// Resolve the registry's references into the other files.
    fn resolve(mut self, registry_file: &str) -> Result<RuleSet, RuleError> {
        let (fees, risk, prio) = (&self.fees, &self.risk, &self.priorities);
        for m in self.registry.all_merchants_mut() {
            let err = |key: &str, message: String| RuleError {
                file: registry_file.to_string(),
                line: Some(m.line).filter(|&l| l > 0),
                key: Some(key.to_string()),
                message,
            };
            m.plan_idx = fees
                .plan_index(&m.plan)
                .ok_or_else(|| err("merchant.plan", format!("no fee plan `{}`", m.plan)))?;
            m.risk_idx = risk
                .group_index(&m.risk_group)
                .ok_or_else(|| err("merchant.risk_group", format!("no risk group `{}`", m.risk_group)))?;
            m.priority = m.priority_group.as_deref().is_some_and(|g| prio.is_priority_group(g));
        }
        self.registry.refresh_hot();
        Ok(self)
    }

    pub fn summary(&self) -> RuleSummary {
        RuleSummary {
            terminals: self.registry.terminal_count(),
            merchants: self.registry.merchants.len(),
            routes: self.routes.len(),
        }
    }

    /// The class weights in force at `now` (the estate's local time), and the name of the
    /// open peak window, if any: the issuer connector feeds them to its schedulers.
    pub fn weights_at(&self, now: UnixMs) -> (Weights, Option<&str>) {
        self.priorities.weights_at(&now.civil(self.registry.utc_offset_minutes))
    }

    /// A scheduler for one issuer, sized by `priority.toml`, with the weights in force at `now`.
    pub fn scheduler<T>(&self, now: UnixMs) -> Scheduler<T> {
        Scheduler::new(self.priorities.queue, self.weights_at(now).0)
    }

    /// The decision for one message with the pure rules only (no counters).
    pub fn decide(&self, msg: &Message, now: UnixMs) -> Decision {
        self.decide_inner(msg, now, None)
    }

    /// The decision with the stateful risk rules too.
    pub fn decide_with(&self, msg: &Message, now: UnixMs, state: &RiskState) -> Decision {
        self.decide_inner(msg, now, Some(state))
    }

    /// The merchant's `Hot` and its index in the registry (`None`: the open estate's).
    fn merchant_for(
        &self,
        msg: &Message,
        entry: Option<&Entry>,
        txn: TxnType,
    ) -> Result<(Hot, Option<u32>), Decision> {
        let reg = &self.registry;
        let Some(entry) = entry else {
            return reg
                .unknown
                .as_ref()
                .map(|m| (m.hot(), None))
                .ok_or(Decision::decline(ResponseCode::INVALID_MERCHANT, Reason::UnknownTerminal));
        };
        let (term, merchant) = (&entry.terminal, entry.merchant);
        if reg.merchant(term.merchant).is_none() {
            return Err(Decision::decline(ResponseCode::INVALID_MERCHANT, Reason::UnknownMerchant));
        }
        if chars(msg, 42).is_some_and(|mid| InlineId::of(trim_end(&mid)) != Some(merchant.id)) {
            return Err(Decision::decline(ResponseCode::INVALID_MERCHANT, Reason::UnknownMerchant));
        }
        let merchant = (merchant, Some(term.merchant));
        // A reversal undoes what the terminal did while it was allowed to: it must reach
        // the issuer even if the terminal has been suspended or blocked since.
        if txn == TxnType::Reversal {
            return Ok(merchant);
        }
        if term.status == TerminalStatus::Suspended {
            return Err(Decision::decline(ResponseCode::NOT_PERMITTED, Reason::TerminalSuspended));
        }
        if term.allowed & txn.bit() == 0 {
            return Err(Decision::decline(ResponseCode::NOT_PERMITTED, Reason::TxnNotAllowed));
        }
        Ok(merchant)
    }

    fn decide_inner(&self, msg: &Message, now: UnixMs, state: Option<&RiskState>) -> Decision {
        // The terminal's registry entry is looked up first (a read, wasted only on an echo or
        // an unknown type): its likely cache miss then overlaps the typing of the message.
        let tid_chars = chars(msg, 41);
        let tid = tid_chars.as_deref().map(trim_end);
        let entry = tid.and_then(|t| self.registry.terminal_entry(t));
        let Some(txn) = self.txn.classify(msg) else {
            return Decision::decline(ResponseCode::INVALID_TXN, Reason::UnknownTxnType);
        };
        if txn == TxnType::Echo {
            return Decision::Local { rc: ResponseCode::APPROVED, txn_type: txn };
        }
        if let Some(n) = self.txn.missing_field(msg, txn) {
            return Decision::decline(ResponseCode::FORMAT_ERROR, Reason::MissingField(n));
        }
        let (merchant, merchant_idx) = match self.merchant_for(msg, entry, txn) {
            Ok(m) => m,
            Err(d) => return d,
        };
        let risk = &self.risk;
        if txn != TxnType::Reversal
            && !risk.blocked_terminals.is_empty()
            && tid
                .and_then(|t| std::str::from_utf8(t).ok())
                .is_some_and(|t| risk.blocked_terminals.contains(t))
        {
            return Decision::decline(ResponseCode::NOT_PERMITTED, Reason::TerminalBlocked);
        }
        if txn != TxnType::Reversal && !risk.blocked_merchants.is_empty() {
            // An open estate's merchant is whoever field 42 says.
            let from_msg = msg.merchant_id();
            let id = match merchant_idx.and_then(|i| self.registry.merchant(i)) {
                Some(m) if !m.id.is_empty() => Some(&*m.id),
                _ => from_msg.as_deref().map(str::trim_end),
            };
            if id.is_some_and(|id| risk.blocked_merchants.contains(id)) {
                return Decision::decline(ResponseCode::NOT_PERMITTED, Reason::MerchantBlocked);
            }
        }
        if txn.is_local() {
            return Decision::Local { rc: ResponseCode::APPROVED, txn_type: txn };
        }
        let class = Class::of_bytes(msg.mti_bytes(), txn, merchant.priority);
        let pan_chars = pan_of(msg);
        let pan = pan_chars.as_deref();
        let route = match pan {
            Some(p) if !luhn_ok(p) => {
                return Decision::decline(ResponseCode::INVALID_CARD, Reason::LuhnFailed);
            }
            Some(p) => self.routes.lookup(p),
            None if matches!(txn, TxnType::Reversal | TxnType::BatchUpload) => self.routes.lookup(b""),
            None => return Decision::decline(ResponseCode::INVALID_CARD, Reason::MissingPan),
        };
        let Some(route) = route else {
            return Decision::decline(ResponseCode::INVALID_CARD, Reason::NoRoute);
        };
        let amount = msg.amount().unwrap_or(0);
        if txn.is_financial() && amount == 0 {
            return Decision::decline(ResponseCode::INVALID_AMOUNT, Reason::MissingAmount);
        }
        if matches!(txn, TxnType::Purchase | TxnType::PreAuth | TxnType::PreAuthCompletion | TxnType::Refund)
            && let Some(d) = risk.check_amount(merchant.risk_idx as usize, amount, msg)
        {
            return d;
        }
        let day = now.day_number(self.registry.utc_offset_minutes);
        if let Some(state) = state.filter(|_| matches!(class, Class::Priority | Class::Ordinary)) {
            let stan = msg.stan();
            let f7 = chars(msg, 7);
            let facts = Facts {
                terminal: tid.unwrap_or(b""),
                pan: pan.unwrap_or(b""),
                amount,
                stan,
                transmission_time: f7.as_deref(),
                card_daily_max: risk.groups.get(merchant.risk_idx as usize).and_then(|g| g.card_daily_max),
                debits: matches!(txn, TxnType::Purchase | TxnType::PreAuth),
                day,
            };
            if let Some(d) = state.check(risk, &facts, now) {
                return d;
            }
        }
        let sign = if txn.charges_fee() {
            1
        } else if txn.returns_fee() {
            -1
        } else {
            0
        };
        let (fee, split, plan) = if sign == 0 {
            (0, Default::default(), None)
        } else {
            match self.fees.price(merchant.plan_idx as usize, day, merchant.mcc, route.card_type, amount) {
                Some((priced, plan)) => {
                    let (fee, split) = priced.signed(sign);
                    (fee, split, Some(plan))
                }
                None => (0, Default::default(), None),
            }
        };
        Decision::Forward(Forward {
            issuer: route.issuer,
            backup: route.backup,
            class,
            fee,
            split,
            card_type: route.card_type,
            txn_type: txn,
            plan,
        })
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
