//! Batch upload (`Plan::Upload`, 0320 and the like): the terminal reports a transaction
//! of its batch. Recorded as the terminal reports it — not settled from: the journal's
//! own rows are the record of what was approved — and acknowledged with 00, or 96 when
//! the row could not be written.
//! May import: crate::acceptor::record, crate::acceptor::reply, crate::acceptor::service,
//! crate::iso.

use crate::iso::Message;

use super::super::Services;
use super::super::record::{Decided, answered};
use super::super::reply::switch_reply;

/// Record the uploaded transaction `req` (received at `at`) and acknowledge it.
pub async fn upload(svc: &Services, req: &Message, at: i64) -> Option<Box<Message>> {
    let mut row = svc.recorder.row(req, at, "batch_upload", Decided::Local);
    // The row has no status of its own: it reports, it approves nothing.
    answered(&mut row, "00", None);
    let rc = if svc.recorder.commit(row).await { "00" } else { "96" };
    switch_reply(req, rc).ok().map(Box::new)
}
