//! A request for an issuer (`Plan::Forward`): purchases, authorisations, voids, refunds,
//! completions, balance enquiries, for every dialect. In order:
//!
//! 1. checked: the journal must be able to record the outcome (else 96, nothing asked);
//!    on UnionPay-style listeners a request in a batch already settled is declined (77),
//!    and a void, refund or completion must find the original its field 61 names (25);
//!    a PIN block is translated to the issuer's zone key (or the request declined);
//! 2. claimed: with a journal shared between nodes, the terminal key is claimed first — a
//!    key another node holds is answered as that node answered it;
//! 3. sent: to the issuer (its backup when all its links are down), unless its stand-in
//!    policy decides first (issuer known down, or the operator's "stand in now"), or after
//!    it could not answer (every link down, no answer by the deadline);
//! 4. journalled: an approval is committed before the terminal hears of it — one that
//!    cannot be is answered 96 and reversed with the issuer; anything else is committed
//!    without waiting past the deadline promised to the terminal;
//! 5. answered: the issuer's reply as the terminal's dialect allows it, or the switch's
//!    code; an approved void, refund or completion marks its original.
//!
//! May import: crate::acceptor::cup, crate::acceptor::handlers::decline,
//! crate::acceptor::handlers::repeat, crate::acceptor::listener,
//! crate::acceptor::queue_reversal, crate::acceptor::record, crate::acceptor::rejected,
//! crate::acceptor::reply, crate::acceptor::request, crate::acceptor::standin, crate::iso,
//! crate::issuer, crate::journal, crate::rc, crate::route, crate::time.

use std::time::Duration;

use compact_str::CompactString;

use crate::iso::Message;
use crate::issuer::{ForwardOptions, Origin, Outcome, Target};
use crate::journal::{Decided, RowType, TxnRecord};
use crate::rc::ResponseCode;
use crate::route::Forward;
use crate::route::txn::TxnType;

use super::super::cup::{Original, find_original, mark_original};
use super::super::listener::ListenerCtx;
use super::super::queue_reversal::reverse_with_issuer;
use super::super::record::{answered, status_of};
use super::super::rejected::reverse_rejected;
use super::super::reply::{issuer_reply, repeat_reply, switch_reply};
use super::super::request::Arrival;
use super::super::standin::{Occasion, all_down, policy::Trigger};
use super::decline::decline;
use super::repeat::answer_in_journal;

/// Forward `msg` to the issuer at index `issuer` as `fwd` plans. The reply is `None` only
/// when none could be built; the bool says whether the issuer was asked (its response
/// metrics and its deadline then apply).
pub async fn forward(
    ctx: &ListenerCtx,
    msg: &Message,
    issuer: usize,
    fwd: &Forward,
    arrival: Arrival,
) -> (Option<Box<Message>>, bool) {
    let (svc, at, txn) = (&ctx.services, arrival.at, RowType::Txn(fwd.txn_type));
    // 1. Checked. The journal cannot write: no issuer is asked for what could not be
    // recorded.
    if let Some(refused) = svc.refuse_unrecordable(msg) {
        return (Some(refused), false);
    }
    // The journal writer is too far behind to commit this row in time: shed at once.
    if let Some(shed) = svc.shed_for_journal(msg, fwd.class) {
        return (Some(shed), false);
    }
    let mut original = None;
    if ctx.dialect.is_unionpay() {
        if ctx.batches.stale(msg, svc.journal.as_ref()).await {
            tracing::info!(txn = txn.as_str(), "request in a batch already settled");
            let rc = ResponseCode::BATCH_MISMATCH;
            return (Box::pin(decline(svc, msg, rc, None, txn, at)).await, false);
        }
        if let Some(j) = &svc.journal {
            match find_original(j, msg, fwd.txn_type).await {
                Original::NotNamed => {}
                Original::Found(o) => original = Some(o),
                Original::Missing => {
                    tracing::info!(txn = txn.as_str(), "original transaction not found");
                    let rc = ResponseCode::ORIGINAL_NOT_FOUND;
                    return (Box::pin(decline(svc, msg, rc, None, txn, at)).await, false);
                }
                Original::Unknown => {
                    let rc = ResponseCode::SYSTEM_MALFUNCTION;
                    return (Box::pin(decline(svc, msg, rc, None, txn, at)).await, false);
                }
            }
        }
    }
    // Boxed: it lives across the issuer's await, and inline it would add a kilobyte to
    // every forward's future.
    let translated = match ctx.security.translate_pin(msg, issuer) {
        Ok(t) => t.map(Box::new),
        Err(rc) => return (Box::pin(decline(svc, msg, rc, None, txn, at)).await, false),
    };
    let mut plan = fwd.clone();
    if translated.is_some() && plan.backup.is_some() {
        // The block is under this issuer's zone key only: no failover with it.
        plan.backup = None;
    }
    if original.as_ref().is_some_and(|o| o.txn_type.is(TxnType::PreAuth)) {
        // Releasing a hold gives back no fee: none was charged.
        plan.fee = 0;
        plan.split = Default::default();
    }
    // 2.-4. Claimed, sent, journalled.
    let out = translated.as_deref().unwrap_or(msg);
    let reply = ask_issuer(ctx, msg, out, issuer, &plan, arrival).await;
    // 5. Answered; an approved void, refund or completion closes its original.
    let approved = reply.as_ref().is_some_and(|r| r.raw(39) == Some(ResponseCode::APPROVED.as_bytes()));
    if let (true, Some(o), Some(j)) = (approved, &original, &svc.journal) {
        mark_original(j, o, fwd.txn_type).await;
    }
    (reply, true)
}

/// Steps 2 to 4 for `req` as the terminal sent it: `out` is what the issuer is sent (the
/// request with its PIN block translated to the issuer's zone key); the reply and the
/// journal row are built from `req`. The issuer's deadline counts from `arrival`.
async fn ask_issuer(
    ctx: &ListenerCtx,
    req: &Message,
    out: &Message,
    issuer: usize,
    fwd: &Forward,
    arrival: Arrival,
) -> Option<Box<Message>> {
    let (svc, issuers) = (&ctx.services, &*ctx.issuers);
    let Arrival { at, instant: arrived, source } = arrival;
    let primary = issuers.get(issuer).map_or("", |i| i.name());
    let answer_by = arrived + issuers.get(issuer).map_or(Duration::ZERO, |i| i.answer_by());
    // Its row counts in the journal's backlog from now on (dropped when it is queued).
    let promise = svc.journal.as_ref().map(|j| j.backlog().promise());
    // Without a journal no row is built: its strings and the PAN hash would be wasted.
    let mut row = svc.recorder.records().then(|| {
        let mut row = svc.recorder.row(req, at, fwd.txn_type.into(), Decided::Forward);
        row.issuer = Some(primary.into());
        row.route = Some(fwd.issuer.into());
        row
    });
    // 2. Claimed. Another node may have this transaction already: the shared journal
    // decides. Boxed, as is the journal write below: inline they would make the future of
    // every forward (journal or not) kilobytes larger, and it is moved per request.
    if svc.shared
        && let (Some(j), Some(row)) = (&svc.journal, &row)
    {
        match Box::pin(j.claim(TxnRecord::clone(row))).await {
            Ok(true) => {}
            Ok(false) => {
                // Another node (or an earlier run) holds this key: the request is a repeat
                // of that transaction, answered as it was, or, with another amount, a
                // different transaction reusing the key (94).
                let answer = Box::pin(answer_in_journal(j, row, answer_by)).await;
                tracing::info!(
                    rc = answer.as_ref().map(|a| a.rc().to_string()),
                    "repeat of a transaction another node holds"
                );
                let reply = match answer {
                    Some(a) => repeat_reply(req, &a),
                    None => switch_reply(req, ResponseCode::DUPLICATE),
                };
                return reply.ok().map(Box::new);
            }
            Err(e) => {
                tracing::error!(error = %e, "journal claim failed");
                return switch_reply(req, ResponseCode::SYSTEM_MALFUNCTION).ok().map(Box::new);
            }
        }
    }
    // 3. Sent, unless stand-in decides first: the issuer is known down (or the operator
    // stands in for it), so it is decided now, not at the deadline.
    if let Some(trigger) = svc.standin.trigger_before(issuers, primary, fwd.backup)
        && let Some(i) = issuers.get(issuer)
    {
        let occasion = Occasion { trigger, otherwise: ResponseCode::ISSUER_UNAVAILABLE, answer_by };
        return Box::pin(svc.stand_in(i, req, fwd, row, occasion)).await;
    }
    if let Some(row) = &mut row {
        row.forwarded_at = Some(crate::time::now());
    }
    let origin = Origin { arrival: arrived, source };
    let reserve = svc.recorder.commit_reserve();
    // Who answered, should its approval go unrecorded.
    let mut answered_by = None;
    let outcome = match issuers
        .forward(
            Target { primary, backup: fwd.backup },
            out,
            ForwardOptions { class: fwd.class, reserve, origin },
        )
        .await
    {
        Some((by, outcome)) => {
            if by.name() != primary
                && let Some(row) = &mut row
            {
                row.issuer = Some(by.name().into());
            }
            answered_by = Some(by);
            outcome
        }
        None => Outcome::Unavailable,
    };
    // The issuer could not answer: its stand-in policy may decide instead. After a
    // timeout the request was reversed (stored) before the outcome came back, so the
    // issuer's possible approval is undone before the switch approves in its place.
    let stand_in = match &outcome {
        Outcome::Reply(_) => {
            svc.standin.answered(primary);
            None
        }
        Outcome::Unavailable if all_down(issuers, primary, fwd.backup) => {
            Some((Trigger::Down, ResponseCode::ISSUER_UNAVAILABLE))
        }
        Outcome::Timeout | Outcome::LinkLost => Some((Trigger::Timeout, ResponseCode::LATE_RESPONSE)),
        _ => None,
    };
    if let Some((trigger, otherwise)) = stand_in
        && let Some(i) = issuers.get(issuer)
        && svc.standin.policy(primary).is_some_and(|p| p.applies(trigger))
    {
        let occasion = Occasion { trigger, otherwise, answer_by };
        return Box::pin(svc.stand_in(i, req, fwd, row, occasion)).await;
    }
    // The terminal's reply, from the issuer's answer or the switch's code.
    let mut switch_stan = None;
    let reply = match outcome {
        Outcome::Reply(answer) => {
            switch_stan = answer.stan();
            if let Some(row) = &mut row {
                row.switch_stan = answer.text(11).map(|s| CompactString::new(&s));
                row.auth_code = answer.text(38).map(|s| CompactString::new(&s));
                // A terminal that sent no RRN keeps the one its reply carries: its voids
                // and refunds name the original by it (field 37).
                if row.rrn.is_none() {
                    row.rrn = answer.text(37).map(|s| CompactString::new(&s));
                }
            }
            issuer_reply(req, answer).ok()
        }
        Outcome::Rejected(r) => {
            // Not believed: nothing of the reply (its 38 least of all) reaches the row.
            if let Some(row) = &mut row {
                row.switch_stan = Some(compact_str::format_compact!("{:06}", r.switch_stan));
            }
            let name = answered_by.as_ref().map_or(primary, |i| i.name());
            Box::pin(reverse_rejected(issuers, req, out, name, r)).await;
            switch_reply(req, ResponseCode::SYSTEM_MALFUNCTION).ok().map(Box::new)
        }
        other => {
            let rc = other.switch_rc().unwrap_or(ResponseCode::SYSTEM_MALFUNCTION);
            switch_reply(req, rc).ok().map(Box::new)
        }
    };
    let mut reply =
        reply.or_else(|| switch_reply(req, ResponseCode::SYSTEM_MALFUNCTION).ok().map(Box::new))?;
    drop(promise);
    // 4. Journalled.
    let Some(mut row) = row else { return Some(reply) };
    let rc = reply.text(39).as_deref().and_then(ResponseCode::parse);
    let rc = rc.unwrap_or(ResponseCode::SYSTEM_MALFUNCTION);
    answered(&mut row, rc, status_of(rc));
    let approved = rc.is_approved();
    row.fee = if approved { fwd.fee } else { 0 };
    if !approved {
        Box::pin(svc.recorder.commit_by(row, answer_by)).await;
        return Some(reply);
    }
    if !Box::pin(svc.recorder.commit_approval(row)).await {
        // Nothing unrecorded is approved: the terminal is told the switch failed, and the
        // issuer's approval is reversed (held in memory if the store fails too).
        reply = switch_reply(req, ResponseCode::SYSTEM_MALFUNCTION).ok().map(Box::new)?;
        let by = answered_by.as_ref().map(|i| i.name());
        reverse_unrecorded(ctx, req, by, switch_stan).await;
    }
    Some(reply)
}

/// Reverse with `issuer` an approval of `req` that could not be journalled (its switch
/// STAN `switch_stan`). Counted for the journal's recovery line; a reversal that cannot
/// even be queued is logged, every time: the issuer then holds an authorisation.
async fn reverse_unrecorded(
    ctx: &ListenerCtx,
    req: &Message,
    issuer: Option<&str>,
    switch_stan: Option<u32>,
) {
    let stan = switch_stan.map(|s| format!("{s:06}"));
    let f7 = req.text(7).unwrap_or_default();
    let queued = match issuer {
        Some(name) => reverse_with_issuer(&ctx.issuers, req, name, stan.as_deref(), req.mti(), &f7).await,
        None => Err("the issuer that approved is unknown".to_string()),
    };
    match queued {
        Ok(_) => {
            if let Some(j) = &ctx.services.journal {
                j.health().reversal_queued();
            }
            tracing::debug!("unrecorded approval reversed with its issuer");
        }
        Err(e) => tracing::error!(error = %e, "approval not recorded and its reversal NOT queued"),
    }
}
