//! The switch's own declines (`Plan::Decline`): the rules refused the request (unknown
//! card, a field its type requires missing, a limit, a suspension), its terminal key
//! names another transaction (94), or an estate check on the forward path refused it.
//! Journalled, then answered with the code and, where the dialect has it, field 44
//! saying why.
//! May import: crate::acceptor::record, crate::acceptor::reply, crate::acceptor::service,
//! crate::iso, crate::journal, crate::rc.

use crate::iso::Message;
use crate::journal::{Decided, RowType, Status};
use crate::rc::ResponseCode;

use super::super::Services;
use super::super::record::answered;
use super::super::reply::switch_reply;

/// Decline `req` (received at `at`, of transaction type `txn`) with `rc`, journalled.
pub async fn decline(
    svc: &Services,
    req: &Message,
    rc: ResponseCode,
    field44: Option<&str>,
    txn: RowType,
    at: i64,
) -> Option<Box<Message>> {
    let recorder = &svc.recorder;
    if recorder.records() {
        let mut row = recorder.row(req, at, txn, Decided::Decline);
        if rc == ResponseCode::DUPLICATE {
            // Another transaction holds this key: the 94 is recorded beside it.
            row.txn_key = None;
        }
        answered(&mut row, rc, Some(Status::Declined));
        recorder.commit(row).await;
    }
    let mut out = switch_reply(req, rc).ok()?;
    if let Some(text) = field44
        && let Some(f44) = req.spec().field(44)
    {
        let max = f44.max as usize;
        let text: String = text.chars().filter(|c| (' '..='~').contains(c)).take(max).collect();
        let _ = out.set(44, &text);
    }
    Some(Box::new(out))
}
