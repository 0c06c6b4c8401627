//! A terminal's reversal (`Plan::Reversal`, 0400/0420). It first waits for its original
//! when that is still in flight (the terminal gave up first), then finds it in the
//! journal by terminal, STAN and amount:
//!
//! - none, or a declined one: acknowledged and recorded, the issuer not bothered;
//! - a stand-in approval: its advice withdrawn, or a reversal naming it queued;
//! - one the switch timed out (68): already reversed with the issuer; marked reversed;
//! - an approval: a reversal queued (durably, idempotently by field 90) for the issuer
//!   that answered it, and the original marked reversed.
//!
//! The terminal gets 00 at once, or 96 when nothing could be queued. Without a journal
//! the plan is never made (reversals are forwarded like any request).
//! May import: crate::acceptor::listener, crate::acceptor::queue_reversal, crate::acceptor::record,
//! crate::acceptor::reply, crate::iso, crate::journal, crate::rc, crate::route.

use crate::iso::Message;
use crate::journal::{Decided, Query, Status, Update};
use crate::rc::ResponseCode;
use crate::route;
use crate::route::txn::TxnType;

use super::super::listener::ListenerCtx;
use super::super::queue_reversal::reverse_with_issuer;
use super::super::record::answered;
use super::super::reply::switch_reply;

/// Answer the reversal `req` (received at `at`).
pub async fn reversal(
    ctx: &ListenerCtx,
    req: &Message,
    fwd: &route::Forward,
    at: i64,
) -> Option<Box<Message>> {
    let svc = &ctx.services;
    let j = svc.journal.as_ref()?;
    // A reversal that overtook its original is matched against the original's outcome,
    // not against its absence.
    ctx.inflight.wait_for(req).await;
    let mut row = svc.recorder.row(req, at, TxnType::Reversal.into(), Decided::Reversal);
    let terminal = row.terminal_id.to_string();
    let original = j
        .query(Query::Original { terminal: terminal.clone(), stan: row.stan.to_string(), amount: row.amount })
        .await
        .map_err(|e| tracing::error!(error = %e, "journal query failed"))
        .ok()?
        .into_iter()
        // 68: the switch timed it out and reversed it with the issuer itself.
        .find(|o| o.rc.is_none_or(|rc| rc.is_approved() || rc == ResponseCode::LATE_RESPONSE));
    answered(&mut row, ResponseCode::APPROVED, Some(Status::Approved));
    let Some(orig) = original else {
        tracing::info!("reversal of an unknown or declined original acknowledged");
        svc.recorder.commit(row).await;
        return switch_reply(req, ResponseCode::APPROVED).ok().map(Box::new);
    };
    let mark_reversed = Update::SetStatus {
        terminal: terminal.clone(),
        stan: orig.stan.to_string(),
        transmission_time: orig.transmission_time.to_string(),
        mti: orig.mti.to_string(),
        status: Status::Reversed,
    };
    let rc = if orig.decision == Decided::StandIn {
        let rc = Box::pin(svc.reverse_stand_in(&ctx.issuers, req, &orig)).await;
        row.issuer.clone_from(&orig.issuer);
        rc
    } else if orig.rc == Some(ResponseCode::LATE_RESPONSE) {
        ResponseCode::APPROVED
    } else {
        let issuer_name = orig.issuer.clone().unwrap_or_else(|| fwd.issuer.into());
        row.issuer = Some(issuer_name.clone());
        let queued = reverse_with_issuer(
            &ctx.issuers,
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
                ResponseCode::APPROVED
            }
            Err(e) => {
                tracing::error!(error = %e, "terminal reversal could not be queued");
                ResponseCode::SYSTEM_MALFUNCTION
            }
        }
    };
    if rc.is_approved() {
        if let Err(e) = j.update(mark_reversed).await {
            tracing::error!(error = %e, "marking the original reversed failed");
        }
    } else {
        row.rc = Some(rc);
        row.status = Some(Status::Declined);
    }
    svc.recorder.commit(row).await;
    switch_reply(req, rc).ok().map(Box::new)
}
