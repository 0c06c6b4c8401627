//! The stand-in decisions the acceptor's services make on an issuer's behalf: approve
//! or decline a request (`Services::stand_in`, in the order the module above describes)
//! and take back an approval its terminal reverses (`Services::reverse_stand_in`).
//! May import: crate::acceptor::queue_reversal, crate::acceptor::record, crate::acceptor::reply,
//! crate::acceptor::service, crate::acceptor::standin, crate::acceptor::standin::policy,
//! crate::iso, crate::issuer, crate::journal, crate::metrics, crate::rc, crate::route.

use crate::iso::Message;
use crate::issuer::{Issuer, Issuers};
use crate::journal::saf_store::advice_key;
use crate::journal::{Decided, Status, TxnRecord};
use crate::metrics as m;
use crate::rc::ResponseCode;
use crate::route;

use super::super::queue_reversal::reverse_with_issuer;
use super::super::record::answered;
use super::super::reply::switch_reply;
use super::super::service::Services;
use super::Occasion;
use super::policy::{Policy, Refusal, StandinFacts, Trigger};

impl Services {
    /// Decide `req` on `issuer`'s behalf (its policy applies to `trigger`): approve it,
    /// with its advice durable and its row journalled before the reply, or answer
    /// `otherwise` (the code it would have had without stand-in), journalled as a stand-in
    /// decline. `row` is the request's journal row (none without a journal: nothing can
    /// be stood in for then).
    pub(in crate::acceptor) async fn stand_in(
        &self,
        issuer: &Issuer,
        req: &Message,
        fwd: &route::Forward,
        row: Option<Box<TxnRecord>>,
        occasion: Occasion,
    ) -> Option<Box<Message>> {
        let Occasion { trigger, otherwise, answer_by } = occasion;
        let name = issuer.name();
        let policy = self.standin.policy(name)?;
        self.standin.activated(name, trigger);
        let decided = match row {
            Some(row) => self.approve(issuer, &policy, req, fwd, row, trigger).await,
            None => Err((Refusal::Unrecordable, None)),
        };
        match decided {
            Ok(reply) => Some(reply),
            Err((why, row)) => {
                metrics::counter!(m::STANDIN_TOTAL, "issuer" => name.to_string(), "decision" => "declined")
                    .increment(1);
                tracing::debug!(
                    issuer = name,
                    trigger = trigger.as_str(),
                    reason = why.as_str(),
                    rc = %otherwise,
                    "stand-in declined"
                );
                if let Some(mut row) = row {
                    row.decision = Decided::StandIn;
                    answered(&mut row, otherwise, Some(Status::Declined));
                    self.recorder.commit_by(row, answer_by).await;
                }
                switch_reply(req, otherwise).ok().map(Box::new)
            }
        }
    }

    /// The approval path of `stand_in`; on refusal the reason and the row (for its decline).
    async fn approve(
        &self,
        issuer: &Issuer,
        policy: &Policy,
        req: &Message,
        fwd: &route::Forward,
        mut row: Box<TxnRecord>,
        trigger: Trigger,
    ) -> Result<Box<Message>, (Refusal, Option<Box<TxnRecord>>)> {
        let Some(journal) = self.journal.as_ref() else { return Err((Refusal::Unrecordable, Some(row))) };
        if !issuer.takes_advices() {
            return Err((Refusal::Unrecordable, Some(row)));
        }
        let (pan, mcc) = (req.pan(), req.text(18));
        let facts = StandinFacts {
            txn: fwd.txn_type,
            card_type: fwd.card_type,
            mcc: mcc.as_deref(),
            amount: req.amount().and_then(|a| i64::try_from(a).ok()),
            pin_block: req.has(52),
            pan: pan.as_deref(),
            pan_hash: row.pan_hash.as_deref(),
        };
        let amount = match policy.admits(&facts) {
            Ok(a) => a,
            Err(why) => return Err((why, Some(row))),
        };
        let Some(txn_key) = row.txn_key.clone() else { return Err((Refusal::Unrecordable, Some(row))) };
        let date = row.business_date.clone();
        if !self.standin.seed(journal, &date).await {
            return Err((Refusal::Unrecordable, Some(row)));
        }
        let hash = row.pan_hash;
        let ticket = match self.standin.limits.reserve(
            policy,
            &date,
            hash.as_deref().unwrap_or_default(),
            &row.merchant_id,
            amount,
        ) {
            Ok(t) => t,
            Err(why) => return Err((why, Some(row))),
        };
        if !issuer.advices().try_reserve(amount, policy.max_exposure) {
            self.standin.limits.release(&ticket);
            return Err((Refusal::Exposure, Some(row)));
        }
        let code = self.standin.limits.next_code(&date);
        // A terminal that sent no RRN gets one the switch makes, unique like the code.
        let rrn = row
            .rrn
            .clone()
            .unwrap_or_else(|| compact_str::format_compact!("{}{code}", date.get(2..).unwrap_or("000000")));
        let key = advice_key(&row.terminal_id, &row.stan, &txn_key);
        let undo = |why| {
            self.standin.limits.release(&ticket);
            issuer.advices().release(amount);
            why
        };
        let advice = match advice_of(req, policy.advice_mti(req.mti()), &code, &rrn) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(issuer = issuer.name(), error = %e, "stand-in advice not built");
                return Err((undo(Refusal::Unrecordable), Some(row)));
            }
        };
        match issuer.queue_advice(&advice, &key).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(issuer = issuer.name(), "an advice for this transaction is already stored");
                return Err((undo(Refusal::Unrecordable), Some(row)));
            }
            Err(e) => {
                tracing::error!(issuer = issuer.name(), error = %e, "stand-in advice not stored; declined");
                return Err((undo(Refusal::Unrecordable), Some(row)));
            }
        }
        // The advice is durable; its reserved exposure now belongs to it.
        row.decision = Decided::StandIn;
        row.auth_code = Some(code.as_str().into());
        row.rrn = Some(rrn.clone());
        row.fee = fwd.fee;
        answered(&mut row, ResponseCode::APPROVED, Some(Status::Approved));
        if !self.recorder.commit(row).await {
            self.standin.limits.release(&ticket);
            match issuer.void_advice(&key, amount).await {
                Ok(true) => {}
                Ok(false) => tracing::error!(
                    issuer = issuer.name(),
                    "stand-in approval not journalled and its advice could not be withdrawn"
                ),
                Err(e) => tracing::error!(issuer = issuer.name(), error = %e,
                    "stand-in approval not journalled and its advice could not be withdrawn"),
            }
            return switch_reply(req, ResponseCode::SYSTEM_MALFUNCTION)
                .ok()
                .map(Box::new)
                .ok_or((Refusal::Unrecordable, None));
        }
        metrics::counter!(m::STANDIN_TOTAL, "issuer" => issuer.name().to_string(), "decision" => "approved")
            .increment(1);
        tracing::info!(issuer = issuer.name(), trigger = trigger.as_str(), auth_code = %code, amount,
            "stand-in approval");
        let mut out = switch_reply(req, ResponseCode::APPROVED).map_err(|_| (Refusal::Unrecordable, None))?;
        if req.spec().field(38).is_some() {
            let _ = out.set(38, &code);
        }
        if !req.has(37) && req.spec().field(37).is_some() {
            let _ = out.set(37, &rrn);
        }
        Ok(Box::new(out))
    }
}

impl Services {
    /// A terminal's reversal of a stand-in approval `orig`: its advice is withdrawn while it
    /// was never written (the issuer never hears of the transaction, and the exposure is
    /// given back); once written, a reversal is queued for the issuer naming the advice
    /// in field 90 (its MTI, the terminal's STAN, field 7 of the original, fields 32 and
    /// 33). The code for the terminal: 00, or 96 when neither could be done.
    pub(in crate::acceptor) async fn reverse_stand_in(
        &self,
        issuers: &Issuers,
        req: &Message,
        orig: &TxnRecord,
    ) -> ResponseCode {
        let Some(issuer) = orig.issuer.as_deref().and_then(|n| issuers.by_name(n)) else {
            tracing::error!("reversal of a stand-in approval whose issuer is not configured");
            return ResponseCode::SYSTEM_MALFUNCTION;
        };
        let key = advice_key(&orig.terminal_id, &orig.stan, orig.txn_key.as_deref().unwrap_or(""));
        match issuer.void_advice(&key, orig.amount).await {
            Ok(true) => {
                tracing::info!(
                    issuer = issuer.name(),
                    "stand-in approval reversed before its advice was sent"
                );
                return ResponseCode::APPROVED;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(issuer = issuer.name(), error = %e, "stand-in advice could not be withdrawn");
                return ResponseCode::SYSTEM_MALFUNCTION;
            }
        }
        let mti = self
            .standin
            .policy(issuer.name())
            .map_or("0220".to_string(), |p| p.advice_mti(&orig.mti).to_string());
        match reverse_with_issuer(
            issuers,
            req,
            issuer.name(),
            Some(&orig.stan),
            &mti,
            &orig.transmission_time,
        )
        .await
        {
            Ok(_) => ResponseCode::APPROVED,
            Err(e) => {
                tracing::error!(issuer = issuer.name(), error = %e, "reversal of a stand-in advice not queued");
                ResponseCode::SYSTEM_MALFUNCTION
            }
        }
    }
}

/// The advice reporting a stand-in approval of `req`: the request with MTI `mti`, the
/// switch's authorisation code (38), its RRN (37) and 39 = 00.
fn advice_of(req: &Message, mti: &str, code: &str, rrn: &str) -> Result<Message, crate::iso::EncodeError> {
    let mut adv = req.clone();
    adv.set_mti(mti)?;
    for n in [35, 36, 45, 52, 53] {
        adv.remove(n);
    }
    if adv.spec().field(38).is_some() {
        adv.set(38, code)?;
    }
    if adv.spec().field(39).is_some() {
        adv.set(39, ResponseCode::APPROVED.as_str())?;
    }
    if !adv.has(37) && adv.spec().field(37).is_some() {
        adv.set(37, rrn)?;
    }
    Ok(adv)
}
