//! Batch upload (`Plan::Upload`, 0320 and the like): the terminal reports a transaction
//! of its batch. Recorded as the terminal reports it — not settled from: the journal's
//! own rows are the record of what was approved — and acknowledged with 00, or 96 when
//! the row could not be written.
//! May import: crate::acceptor::record, crate::acceptor::reply, crate::acceptor::service,
//! crate::iso, crate::journal, crate::rc, crate::route.

use crate::iso::Message;
use crate::journal::Decided;
use crate::rc::ResponseCode;
use crate::route::txn::TxnType;

use super::super::Services;
use super::super::record::answered;
use super::super::reply::switch_reply;

/// Record the uploaded transaction `req` (received at `at`) and acknowledge it.
pub async fn upload(svc: &Services, req: &Message, at: i64) -> Option<Box<Message>> {
    let mut row = svc.recorder.row(req, at, TxnType::BatchUpload.into(), Decided::Local);
    // The row has no status of its own: it reports, it approves nothing.
    answered(&mut row, ResponseCode::APPROVED, None);
    let rc = if svc.recorder.commit(row).await {
        ResponseCode::APPROVED
    } else {
        ResponseCode::SYSTEM_MALFUNCTION
    };
    switch_reply(req, rc).ok().map(Box::new)
}
