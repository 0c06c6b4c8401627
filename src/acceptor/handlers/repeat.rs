//! Repeats and retransmissions (`Plan::Repeat`, `Plan::Answered`, `Plan::Lookup`): one
//! terminal transaction gets one authorisation, so a request whose terminal key was seen
//! is answered as its original was, never forwarded again. A repeat of a request still in
//! flight waits for its answer; one answered before gets that answer at once; where memory
//! cannot prove a key new, the journal is asked before the request is planned. Nodes
//! sharing a journal see each other's keys through the journal's claim (the forward
//! handler asks `answer_in_journal` when its claim is refused).
//! May import: crate::acceptor::repeats, crate::acceptor::reply, crate::acceptor::request,
//! crate::acceptor::service, crate::iso, crate::journal, crate::rc.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::iso::Message;
use crate::journal::{Journal, Query, RowType, TxnRecord, txn_key};
use crate::rc::ResponseCode;

use super::super::Services;
use super::super::repeats::{Answer, answer_of};
use super::super::reply::{repeat_reply, switch_reply};
use super::super::request::Plan;

/// How long a repeat waits at most for its original (itself bounded by its deadline).
const WAIT_FOR_ORIGINAL: Duration = Duration::from_secs(60);

/// How often a repeat of a transaction in flight on another node looks at the journal.
const POLL: Duration = Duration::from_millis(25);

/// A repeat of a request still in flight: the original's answer once it has one; 96 when
/// the original ended without one, 68 when it did not end in time (its outcome unknown
/// here, this one is not approved).
pub async fn in_flight(req: &Message, original: watch::Receiver<Option<Answer>>) -> Option<Box<Message>> {
    let reply = match tokio::time::timeout(WAIT_FOR_ORIGINAL, answer_of(original)).await {
        Ok(Some(a)) => repeat_reply(req, &a),
        Ok(None) => switch_reply(req, ResponseCode::SYSTEM_MALFUNCTION),
        Err(_) => switch_reply(req, ResponseCode::LATE_RESPONSE),
    };
    reply.ok().map(Box::new)
}

/// A repeat of a request answered before: the same code, authorisation code and RRN.
pub fn answered(req: &Message, answer: &Answer) -> Option<Box<Message>> {
    repeat_reply(req, answer).ok().map(Box::new)
}

/// The plan of a request whose terminal key memory could not prove new: its answer
/// when the journal holds the key with the same amount, 94 with another amount, the
/// rules' plan when the journal does not hold it, 96 when the journal cannot say
/// (the request is then not forwarded: it might be a repeat).
pub async fn lookup(svc: &Services, req: &Message, at: i64) -> Plan {
    let Some(j) = &svc.journal else { return svc.plan(req, at) };
    let (Some(terminal), Some(stan), Some(key)) = (req.text(41), req.text(11), txn_key(req)) else {
        return svc.plan(req, at);
    };
    let q =
        Query::ByKey { terminal: terminal.into_owned(), stan: stan.into_owned(), txn_key: key.into_string() };
    match j.query(q).await {
        Ok(rows) => match rows.first() {
            None => svc.plan(req, at),
            Some(o) if req.amount().and_then(|a| i64::try_from(a).ok()) != Some(o.amount) => {
                Plan::Decline { rc: ResponseCode::DUPLICATE, field44: None, txn: RowType::Duplicate }
            }
            // A claim without its outcome: the transaction is in flight elsewhere.
            Some(o) if o.rc.is_none() => {
                Plan::Answered(Answer::new(ResponseCode::SYSTEM_MALFUNCTION, None, None))
            }
            Some(o) => Plan::Answered(Answer::of_row(o)),
        },
        Err(e) => {
            tracing::error!(error = %e, "journal query for a repeated terminal key failed");
            Plan::Answered(Answer::new(ResponseCode::SYSTEM_MALFUNCTION, None, None))
        }
    }
}

/// The answer the shared journal holds for the transaction `row` repeats, waiting
/// (until `until`) while another node has it in flight; `None` when the row there has
/// another amount (a different transaction reusing the key: 94).
pub async fn answer_in_journal(j: &Journal, row: &TxnRecord, until: Instant) -> Option<Answer> {
    let q = Query::ByKey {
        terminal: row.terminal_id.to_string(),
        stan: row.stan.to_string(),
        txn_key: row.txn_key.as_deref().unwrap_or_default().to_string(),
    };
    loop {
        match j.query(q.clone()).await {
            Ok(rows) => match rows.first() {
                Some(o) if o.amount != row.amount => return None,
                Some(o) if o.rc.is_some() => return Some(Answer::of_row(o)),
                _ => {}
            },
            Err(e) => {
                tracing::error!(error = %e, "journal query for a repeated terminal key failed");
                return Some(Answer::new(ResponseCode::SYSTEM_MALFUNCTION, None, None));
            }
        }
        if Instant::now() + POLL >= until {
            return Some(Answer::new(ResponseCode::LATE_RESPONSE, None, None));
        }
        tokio::time::sleep(POLL).await;
    }
}
