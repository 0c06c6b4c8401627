//! The running switch as the admin API and the metrics port see it: [`Control`] holds the
//! acceptor's `Services` and the issuer connector and answers [`crate::admin::SwitchControl`],
//! so that the admin API needs none of the acceptor's or the connector's types.
//! May import: crate::acceptor::service, crate::admin, crate::issuer, crate::journal,
//! crate::route.

use std::path::Path;
use std::sync::Arc;

use crate::acceptor::service::Services;
use crate::admin::SwitchControl;
use crate::issuer::Issuers;
use crate::journal::Journal;
use crate::route::{Router, RuleSummary};

/// The parts of a running switch that operations reach.
pub struct Control {
    pub services: Arc<Services>,
    pub issuers: Arc<Issuers>,
}

impl Control {
    /// Ready to take traffic: every issuer has a link up and the journal writes (the
    /// answer of `/ready` on both operations ports).
    pub fn ready(&self) -> bool {
        self.services.journal_up() && self.issuers.iter().all(|i| i.links_up() > 0)
    }
}

impl SwitchControl for Control {
    fn router(&self) -> &Router {
        &self.services.router
    }

    fn journal(&self) -> Option<&Journal> {
        self.services.journal.as_ref()
    }

    fn journal_up(&self) -> bool {
        self.services.journal_up()
    }

    fn issuers_down(&self) -> Vec<String> {
        self.issuers.iter().filter(|i| i.links_up() == 0).map(|i| i.name().to_string()).collect()
    }

    fn issuer_known(&self, issuer: &str) -> bool {
        self.issuers.by_name(issuer).is_some()
    }

    fn reload_rules(&self, dir: &Path) -> Result<RuleSummary, String> {
        self.services.reload_rules(dir).map_err(|e| e.to_string())
    }

    fn set_suspended(&self, terminal: &str, suspend: bool) -> Result<bool, String> {
        self.services.suspensions.set(&self.services.router, terminal, suspend).map_err(|e| e.to_string())
    }

    fn suspensions_persisted(&self) -> bool {
        self.services.suspensions.path().is_some()
    }

    fn set_standin_forced(&self, issuer: &str, on: bool) -> Option<bool> {
        self.services.standin.set_forced(issuer, on)
    }

    fn standin_status(&self, issuer: &str) -> Option<serde_json::Value> {
        self.services.standin.status(&self.issuers, issuer).and_then(|s| serde_json::to_value(s).ok())
    }
}
