//! The admin API's view of the switch: [`crate::admin::SwitchControl`] for the acceptor's
//! `Services`, so that the admin API needs none of the acceptor's types.
//! May import: crate::acceptor::service, crate::admin, crate::issuer, crate::journal,
//! crate::route.

use std::path::Path;

use super::service::Services;
use crate::admin::SwitchControl;
use crate::issuer::Issuers;
use crate::journal::Journal;
use crate::route::{Router, RuleSummary};

impl SwitchControl for Services {
    fn router(&self) -> &Router {
        &self.router
    }

    fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    fn journal_up(&self) -> bool {
        Services::journal_up(self)
    }

    fn reload_rules(&self, dir: &Path) -> Result<RuleSummary, String> {
        Services::reload_rules(self, dir).map_err(|e| e.to_string())
    }

    fn set_suspended(&self, terminal: &str, suspend: bool) -> Result<bool, String> {
        self.suspensions.set(&self.router, terminal, suspend).map_err(|e| e.to_string())
    }

    fn suspensions_persisted(&self) -> bool {
        self.suspensions.path().is_some()
    }

    fn set_standin_forced(&self, issuer: &str, on: bool) -> Option<bool> {
        self.standin.set_forced(issuer, on)
    }

    fn standin_status(&self, issuers: &Issuers, issuer: &str) -> Option<serde_json::Value> {
        self.standin.status(issuers, issuer).and_then(|s| serde_json::to_value(s).ok())
    }
}
