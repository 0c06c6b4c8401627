//! Terminal batch settlement (`Plan::Settle`, 0500): the terminal's totals against the
//! journal's for its open batch — on UnionPay-style listeners the batch 60.2 names, with
//! the totals in field 48 and the answer written back there; elsewhere the totals of
//! fields 74 to 89. 00 and the batch closed when they agree, 95 when they do not, 30 when
//! the terminal's totals cannot be read, 96 without a journal or when it fails.
//! May import: crate::acceptor::listener, crate::acceptor::reply, crate::iso, crate::journal,
//! crate::rc, crate::settle, crate::time.

use crate::iso::Message;
use crate::journal::{Query, Update};
use crate::rc::ResponseCode;
use crate::settle::batch;

use super::super::cup::batch_number;
use super::super::listener::ListenerCtx;
use super::super::reply::switch_reply;

/// Settle the batch `req` (a 0500) closes.
pub async fn settle(ctx: &ListenerCtx, req: &Message) -> Option<Box<Message>> {
    let Some(j) = &ctx.services.journal else {
        return switch_reply(req, ResponseCode::SYSTEM_MALFUNCTION).ok().map(Box::new);
    };
    let unionpay = ctx.dialect.is_unionpay();
    let terminal = req.terminal_id().map(|t| t.into_owned()).unwrap_or_default();
    // What the terminal says it did.
    let theirs = if unionpay {
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
            return switch_reply(req, ResponseCode::FORMAT_ERROR).ok().map(Box::new);
        }
    };
    // What the journal says it did. A UnionPay-style 0500 names its batch (60.2): it
    // settles the rows of that batch and those that carry no batch number, not another
    // batch's.
    let number = batch_number(req);
    let rows = match j.query(Query::OpenBatch(terminal.clone())).await {
        Ok(mut r) => {
            if let Some(n) = &number {
                r.retain(|row| row.terminal_batch.as_ref().is_none_or(|b| b == n));
            }
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "journal query failed");
            return switch_reply(req, ResponseCode::SYSTEM_MALFUNCTION).ok().map(Box::new);
        }
    };
    let ours = batch::journal_totals(&rows);
    let balanced = ours == theirs;
    let mut out =
        switch_reply(req, if balanced { ResponseCode::APPROVED } else { ResponseCode::RECONCILE_ERROR })
            .ok()?;
    if unionpay && let Some(t) = req.text(48) {
        let _ = out.set(48, &batch::cup_reply_48(&t, balanced));
    }
    if !balanced {
        tracing::info!(?ours, ?theirs, "batch totals differ");
        return Some(Box::new(out));
    }
    // Balanced: the batch is closed in the journal, named by the terminal's batch number
    // (60.2 on UnionPay-style terminals) beside the terminal and the time it closed.
    let id = match &number {
        Some(n) => format!("{}-{n}-{}", terminal.trim_end(), crate::time::now().0),
        None => format!("{}-{}", terminal.trim_end(), crate::time::now().0),
    };
    if let Err(e) = j
        .update(Update::CloseBatch { terminal, batch: id, terminal_batch: number.map(|n| n.into_string()) })
        .await
    {
        tracing::error!(error = %e, "closing the batch failed");
        return switch_reply(req, ResponseCode::SYSTEM_MALFUNCTION).ok().map(Box::new);
    }
    // Requests of this batch or an earlier one are refused from now on.
    ctx.batches.settled(req);
    Some(Box::new(out))
}
