//! The routing core: the rules an acquirer sets, applied to one message at a time. Pure and
//! synchronous: no sockets, no clock (`now` is a parameter, a `crate::time::UnixMs`), no I/O
//! but reading rule files.
//!
//! - [`rules::RuleSet`]: registry, routes, fee plans, priorities, risk rules and the
//!   transaction type table of one estate, loaded from a directory and cross-checked; its
//!   `decide` gives a [`Decision`] (the order of checks is documented there).
//! - [`Router`]: the entry point for the switch: the current rule set behind a lock that a
//!   reload swaps atomically, plus the [`RiskState`] counters.
//! - [`sched::Scheduler`]: admission control by priority class in front of one issuer, fair
//!   between terminal connections within a class (`fair_queue`).
//! - Files: `txn` (types), `registry`, `routes` (Luhn, the BIN routes of routes.toml), `fees`, `priority`, `risk`,
//!   `risk_state`, `decision`, `error` (the layer's one error type, [`RuleError`]).
//!
//! Example rule files for the demo live in `config/examples/rules/`; the shipped default
//! fee plan and transaction table live in `specs/` and are embedded in the binary.
//! May import: crate::iso, crate::rc, crate::time.

// Rule files and messages are untrusted input: no panicking shortcuts outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)
)]

pub mod decision;
pub mod error;
mod fair_queue;
pub mod fees;
mod intern;
mod open_table;
pub mod priority;
pub mod registry;
pub mod risk;
pub mod risk_state;
pub mod routes;
pub mod rules;
pub mod sched;
pub mod txn;

use std::path::Path;
use std::sync::{Arc, RwLock};

pub use decision::{Decision, FeeSplit, Forward, Reason};
pub use error::RuleError;
pub use priority::Class;
pub use risk_state::RiskState;
pub use rules::{RuleSet, RuleSummary};

use crate::iso::Message;
use crate::rc::ResponseCode;
use crate::time::UnixMs;

/// The current rules and the risk counters: what the switch calls for every message.
#[derive(Debug)]
pub struct Router {
    rules: RwLock<Arc<RuleSet>>,
    risk: RiskState,
    /// Terminals suspended by an operator at run time (admin API), on top of the rules.
    suspended: RwLock<std::collections::HashSet<String>>,
    any_suspended: std::sync::atomic::AtomicBool,
}

impl Router {
    pub fn new(rules: RuleSet) -> Router {
        Router {
            rules: RwLock::new(Arc::new(rules)),
            risk: RiskState::new(),
            suspended: RwLock::default(),
            any_suspended: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Suspend (or lift an operator's suspension of) a terminal in memory (the acceptor's
    /// state file makes it last); a terminal suspended in `registry.toml` stays suspended
    /// until that file changes.
    /// Returns whether anything changed.
    pub fn set_suspended(&self, terminal: &str, suspended: bool) -> bool {
        let mut set = self.suspended.write().unwrap_or_else(|p| p.into_inner());
        let changed = if suspended { set.insert(terminal.to_string()) } else { set.remove(terminal) };
        self.any_suspended.store(!set.is_empty(), std::sync::atomic::Ordering::Release);
        changed
    }

    /// The terminals an operator has suspended, sorted.
    pub fn suspended_terminals(&self) -> std::collections::BTreeSet<String> {
        self.suspended.read().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// Make `terminals` the operator's suspensions (a state file read at start or reload).
    pub fn replace_suspended(&self, terminals: impl IntoIterator<Item = String>) {
        let mut set = self.suspended.write().unwrap_or_else(|p| p.into_inner());
        *set = terminals.into_iter().collect();
        self.any_suspended.store(!set.is_empty(), std::sync::atomic::Ordering::Release);
    }

    fn operator_suspended(&self, msg: &Message) -> bool {
        if !self.any_suspended.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let Some(tid) = msg.terminal_id() else { return false };
        // A reversal undoes what the terminal did while it was allowed to: it still passes.
        let reversal = msg.mti_bytes().starts_with(b"04");
        !reversal && self.suspended.read().unwrap_or_else(|p| p.into_inner()).contains(tid.trim_end())
    }

    /// The rules in force (a reload does not change a set already handed out).
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn risk(&self) -> &RiskState {
        &self.risk
    }

    /// The decision for one message, with every rule, stateful ones included.
    pub fn decide(&self, msg: &Message, now: UnixMs) -> Decision {
        if self.operator_suspended(msg) {
            return Decision::decline(ResponseCode::NOT_PERMITTED, Reason::TerminalSuspended);
        }
        let rules = self.rules.read().unwrap_or_else(|p| p.into_inner());
        rules.decide_with(msg, now, &self.risk)
    }

    /// Load `dir` and swap it in; on error the running rules stay and the error names the
    /// file, line and key. Risk counters carry over.
    pub fn reload(&self, dir: &Path) -> Result<RuleSummary, RuleError> {
        let new = RuleSet::load_dir(dir)?;
        Ok(self.replace(new))
    }

    /// Swap in an already built rule set.
    pub fn replace(&self, rules: RuleSet) -> RuleSummary {
        let summary = rules.summary();
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rules);
        summary
    }
}
