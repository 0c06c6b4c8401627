//! The estate rules of UnionPay-style POS terminals (`Dialect::UnionPay`), which the
//! forward and settlement handlers apply on such listeners only: voids, refunds and
//! completions find their original in the journal through fields 37 (RRN), 38
//! (authorisation code) and 61 (original batch, trace and date) and are declined with 25
//! when it does not exist; a request in a batch (60.2) its terminal has already settled
//! is declined with 77; an approved void marks its original voided, a refund refunded, a
//! completion its pre-authorisation completed (so that it is not completed twice).
//! May import: crate::iso, crate::journal, crate::route.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::iso::Message;
use crate::journal::{Journal, Query, Status, TxnRecord, Update};
use crate::route::txn::TxnType;

/// The last batch each terminal settled (60.2 of its balanced 0500): a request in that
/// batch or an earlier one is refused with 77 (sign on again). A terminal not seen since
/// start is looked up once in the journal (its newest closed row with a batch number), so
/// the check survives a restart; only UnionPay-style requests pay for it.
#[derive(Default)]
pub struct Batches {
    /// Per terminal: its last settled batch, `None` when the journal knows of none.
    closed: Mutex<HashMap<String, Option<u32>>>,
}

pub(crate) use crate::journal::batch_number;

fn batch_of(req: &Message) -> Option<u32> {
    batch_number(req)?.parse().ok()
}

impl Batches {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<u32>>> {
        self.closed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Note a balanced settlement (`req` the 0500).
    pub fn settled(&self, req: &Message) {
        if let Some(b) = batch_of(req) {
            self.lock().insert(req.terminal_key(), Some(b));
        }
    }

    /// Whether `req` belongs to a batch its terminal has already settled.
    pub async fn stale(&self, req: &Message, journal: Option<&Journal>) -> bool {
        let Some(b) = batch_of(req) else { return false };
        let terminal = req.terminal_key();
        let known = self.lock().get(&terminal).copied();
        let closed = match (known, journal) {
            (Some(c), _) => c,
            (None, None) => None,
            (None, Some(j)) => {
                // The journal keeps the terminal ID as sent (padded); the map trims it.
                let sent = req.terminal_id().map(|t| t.into_owned()).unwrap_or_default();
                match Box::pin(j.query(Query::LastClosed(sent))).await {
                    Ok(rows) => {
                        let c = rows.first().and_then(|r| r.terminal_batch.as_deref()?.parse().ok());
                        // A settlement noted meanwhile is newer than what the journal said.
                        *self.lock().entry(terminal).or_insert(c)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "journal query for the last settled batch failed");
                        None
                    }
                }
            }
        };
        closed.is_some_and(|c| b <= c)
    }
}

/// The original a request names, read from fields 37, 38 and 61.
#[derive(Debug, Default, PartialEq, Eq)]
struct Names {
    rrn: Option<String>,
    auth: Option<String>,
    /// 61.1: the original's batch number.
    batch: Option<String>,
    /// 61.2: the original's trace (STAN).
    trace: Option<String>,
    /// 61.3: the original's date, MMDD.
    date: Option<String>,
}

fn names(req: &Message) -> Names {
    let text = |n: usize| req.text(n).map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let f61 = text(61).unwrap_or_default();
    let part = |r: std::ops::Range<usize>| f61.get(r).map(str::to_string).filter(|p| p.len() > 1);
    Names { rrn: text(37), auth: text(38), batch: part(0..6), trace: part(6..12), date: part(12..16) }
}

/// What the estate's request handling reads from a terminal's own fields (60.1, 60.2 and
/// 61), without a journal: the fuzz targets call it on whatever the `cup-pos` decoder
/// accepts, so these readers meet hostile bytes too. Returns how many parts were found.
pub fn read_request_fields(req: &Message) -> usize {
    let n = names(req);
    let parts = [n.rrn, n.auth, n.batch, n.trace, n.date].into_iter().flatten().count();
    let kinds = [TxnType::Void, TxnType::Refund, TxnType::PreAuthCompletion]
        .into_iter()
        .filter_map(|t| original_types(t, req))
        .count();
    parts + kinds + usize::from(batch_number(req).is_some()) + usize::from(batch_of(req).is_some())
}

/// The transaction types an original of `txn` may have, by the request's 60.1 where it
/// says (void of a purchase 23, of a pre-authorisation 11, of a completion 21).
fn original_types(txn: TxnType, req: &Message) -> Option<&'static [TxnType]> {
    Some(match txn {
        TxnType::Void => match req.text(60).as_deref().and_then(|f| f.get(..2)) {
            Some("11") => &[TxnType::PreAuth],
            Some("21") => &[TxnType::PreAuthCompletion],
            _ => &[TxnType::Purchase, TxnType::PreAuthCompletion],
        },
        TxnType::Refund => &[TxnType::Purchase, TxnType::PreAuthCompletion],
        TxnType::PreAuthCompletion => &[TxnType::PreAuth],
        _ => return None,
    })
}

fn matches(o: &TxnRecord, terminal: &str, n: &Names, types: &[TxnType]) -> bool {
    o.terminal_id.trim_end() == terminal
        && o.approved()
        && matches!(o.status, Some(Status::Approved) | None)
        && types.iter().any(|&t| o.txn_type.is(t))
        && n.trace.as_deref().is_none_or(|t| o.stan == t)
        // A row journalled without a batch number (another dialect, an older journal)
        // cannot contradict the batch named.
        && n.batch.as_deref().is_none_or(|b| o.terminal_batch.as_deref().is_none_or(|ob| ob == b))
        && n.rrn.as_deref().is_none_or(|r| o.rrn.as_deref() == Some(r))
        && n.auth.as_deref().is_none_or(|a| o.auth_code.as_deref().map(str::trim) == Some(a))
        && n.date.as_deref().is_none_or(|d| o.business_date.get(4..8) == Some(d))
}

/// What the journal says of the original a request names.
pub enum Original {
    /// The request names none (not a void, refund or completion, or no field 61).
    NotNamed,
    /// The approved original, still open to this request.
    Found(Box<TxnRecord>),
    /// Named but not found (or no longer open): the request is declined.
    Missing,
    /// The journal could not say: the request is declined with 96.
    Unknown,
}

/// The original a void, refund or completion names through fields 37, 38 and 61. Only
/// requests that carry field 61 are held to one: voids without it go to the issuer.
pub async fn find_original(journal: &Journal, req: &Message, txn: TxnType) -> Original {
    let (Some(types), true) = (original_types(txn, req), req.has(61)) else { return Original::NotNamed };
    let n = names(req);
    let terminal = req.terminal_key();
    let q = match &n.rrn {
        Some(r) => Query::ByRrn(r.clone()),
        None => Query::Recent { terminal: terminal.clone(), limit: 1000 },
    };
    match Box::pin(journal.query(q)).await {
        // Boxed: the original lives across the forward's await, and inline it would add
        // to every forward's future.
        Ok(rows) => match rows.into_iter().rev().find(|o| matches(o, &terminal, &n, types)) {
            Some(o) => Original::Found(Box::new(o)),
            None => Original::Missing,
        },
        Err(e) => {
            tracing::error!(error = %e, "journal query for an original failed");
            Original::Unknown
        }
    }
}

/// After an approved void, refund or completion: its original marked voided, refunded or
/// completed, so that it is not undone or completed twice.
pub async fn mark_original(journal: &Journal, original: &TxnRecord, txn: TxnType) {
    let status = match txn {
        TxnType::Void => Status::Voided,
        TxnType::Refund => Status::Refunded,
        TxnType::PreAuthCompletion => Status::Completed,
        _ => return,
    };
    let upd = Update::SetStatus {
        terminal: original.terminal_id.to_string(),
        stan: original.stan.to_string(),
        transmission_time: original.transmission_time.to_string(),
        mti: original.mti.to_string(),
        status,
    };
    if let Err(e) = Box::pin(journal.update(upd)).await {
        tracing::error!(error = %e, "marking the original failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;
    use crate::rc::ResponseCode;

    #[test]
    fn field_61_names_the_original() {
        let mut m = Message::new(shipped("cup-pos").unwrap(), "0220").unwrap();
        m.set(61, "0000010000121124").unwrap().set(37, "123456789012").unwrap().set(38, "AUTH01").unwrap();
        let n = names(&m);
        assert_eq!(n.trace.as_deref(), Some("000012"));
        assert_eq!(n.date.as_deref(), Some("1124"));
        assert_eq!(n.rrn.as_deref(), Some("123456789012"));
        let o = TxnRecord {
            terminal_id: "10000001".into(),
            stan: "000012".into(),
            rrn: Some("123456789012".into()),
            auth_code: Some("AUTH01".into()),
            rc: Some(ResponseCode::APPROVED),
            status: Some(Status::Approved),
            txn_type: TxnType::Purchase.into(),
            business_date: "20261124".into(),
            ..TxnRecord::default()
        };
        assert!(matches(&o, "10000001", &n, &[TxnType::Purchase]));
        assert!(!matches(&o, "10000002", &n, &[TxnType::Purchase]));
        assert!(!matches(&o, "10000001", &n, &[TxnType::PreAuth]));
        let voided = TxnRecord { status: Some(Status::Voided), ..o.clone() };
        assert!(!matches(&voided, "10000001", &n, &[TxnType::Purchase]));
        let other_day = TxnRecord { business_date: "20261123".into(), ..o.clone() };
        assert!(!matches(&other_day, "10000001", &n, &[TxnType::Purchase]));
        // 61.1 names the original's batch: the same trace in another batch is not it; a row
        // journalled without a batch number cannot contradict it.
        assert_eq!(n.batch.as_deref(), Some("000001"));
        let same_batch = TxnRecord { terminal_batch: Some("000001".into()), ..o.clone() };
        assert!(matches(&same_batch, "10000001", &n, &[TxnType::Purchase]));
        let other_batch = TxnRecord { terminal_batch: Some("000002".into()), ..o };
        assert!(!matches(&other_batch, "10000001", &n, &[TxnType::Purchase]));
    }

    #[test]
    fn batch_number_is_60_2_of_cup_pos_only() {
        let mut m = Message::new(shipped("cup-pos").unwrap(), "0200").unwrap();
        m.set(60, "22000123000").unwrap();
        assert_eq!(batch_number(&m).as_deref(), Some("000123"));
        assert_eq!(batch_of(&m), Some(123));
        m.set(60, "22").unwrap();
        assert_eq!(batch_number(&m), None, "too short to hold 60.2");
        let mut other = Message::new(shipped("iso87ascii").unwrap(), "0200").unwrap();
        other.set(60, "22000123000").unwrap();
        assert_eq!(batch_number(&other), None, "other dialects have no batch number");
    }

    #[test]
    fn short_and_odd_fields_read_as_absent() {
        let mut m = Message::new(shipped("cup-pos").unwrap(), "0200").unwrap();
        assert_eq!(read_request_fields(&m), 3, "a bare request: only the three original types");
        m.set(60, "2").unwrap().set(61, "1").unwrap();
        assert_eq!(read_request_fields(&m), 3, "too short for 60.2 and for any part of 61");
        m.set(61, "000001000012").unwrap();
        let n = names(&m);
        assert_eq!((n.batch.as_deref(), n.trace.as_deref(), n.date), (Some("000001"), Some("000012"), None));
    }

    #[tokio::test]
    async fn the_settled_batch_is_known_without_a_journal_once_noted() {
        let b = Batches::default();
        let mut m = Message::new(shipped("cup-pos").unwrap(), "0500").unwrap();
        m.set(41, "10000001").unwrap().set(60, "00000005201").unwrap();
        assert!(!b.stale(&m, None).await, "nothing settled yet");
        b.settled(&m);
        assert!(b.stale(&m, None).await);
        m.set(60, "22000006000").unwrap();
        assert!(!b.stale(&m, None).await, "the next batch is open");
    }
}
