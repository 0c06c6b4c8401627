//! What a listener's connections share: its configuration, spec and dialect, the
//! switch's services and issuers, its security context, the requests in flight and the
//! settled batches, and its metric handles. Built once per listener at start; the
//! connection and the handlers read it.
//! May import: crate::acceptor::cup, crate::acceptor::dialect, crate::acceptor::inflight,
//! crate::acceptor::security, crate::acceptor::service, crate::config, crate::iso,
//! crate::issuer, crate::metrics.

use std::sync::Arc;
use std::time::Duration;

use crate::config::ListenerConfig;
use crate::iso::Spec;
use crate::metrics as m;

use super::dialect::Dialect;
use super::service::Services;
use super::{cup, inflight, security};
use crate::issuer::Issuers;

/// What a listener's connections share.
pub(crate) struct ListenerCtx {
    pub(super) cfg: ListenerConfig,
    pub(super) spec: Arc<Spec>,
    /// The estate rules its terminals follow, decided once at start.
    pub(super) dialect: Dialect,
    pub(super) services: Arc<Services>,
    pub(super) issuers: Arc<Issuers>,
    pub(super) security: security::Security,
    /// Terminals' requests in flight, for reversals that overtake their original.
    pub(super) inflight: Arc<inflight::InFlightTable>,
    /// Batches terminals have settled, for their batch numbers (60.2).
    pub(super) batches: cup::Batches,
    pub(super) write_bound: Duration,
    pub(super) requests: m::RequestCounters,
    /// Responses the switch made itself (echo, declines, format errors).
    pub(super) local: m::ResponseCounters,
    pub(super) end_to_end: metrics::Histogram,
}
