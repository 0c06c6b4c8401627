//! What follows an issuer reply that was not believed (`issuer::verify`): the terminal is
//! told 96 by the caller, and a request the issuer may have approved is reversed with it
//! through store-and-forward, exactly as an unanswered one is after its deadline, so that
//! no approval the terminal never saw stays on the cardholder's account.
//! May import: crate::acceptor::queue_reversal, crate::iso, crate::issuer.

use crate::iso::Message;
use crate::issuer::{Issuers, Rejected, reversal};

use super::queue_reversal::reverse_with_issuer;

/// Queue the reversal of `out` (the request as forwarded to `issuer_name`; `req` is the
/// terminal's) after the issuer's reply to it was rejected, when that reply may have
/// approved a reversible request. Durable before this returns; failures are logged.
pub async fn reverse_rejected(
    issuers: &Issuers,
    req: &Message,
    out: &Message,
    issuer_name: &str,
    r: Rejected,
) {
    if !r.why.may_have_approved || !reversal::is_reversible(out.mti()) {
        return;
    }
    let stan = format!("{:06}", r.switch_stan);
    let f7 = out.text(7).map(|t| t.into_owned()).unwrap_or_default();
    match reverse_with_issuer(issuers, req, issuer_name, Some(&stan), out.mti(), &f7).await {
        Ok(true) => {
            tracing::info!(issuer = %issuer_name, switch_stan = %stan, "rejected issuer reply reversed")
        }
        Ok(false) => {
            tracing::info!(issuer = %issuer_name, switch_stan = %stan, "reversal of a rejected reply already queued")
        }
        Err(e) => tracing::error!(issuer = %issuer_name, switch_stan = %stan, error = %e,
            "rejected issuer reply that may have approved could NOT be reversed"),
    }
}
