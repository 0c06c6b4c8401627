//! The terminal-estate steps around a forwarded request, as UnionPay-style POS terminals
//! need them: voids, refunds and completions find their original in the journal through
//! fields 37 (RRN), 38 (authorisation code) and 61 (original batch, trace and date) and
//! are declined with 25 when it does not exist; a request in a batch (60.2) its terminal
//! has already settled is declined with 77; a PIN block is translated to the chosen
//! issuer's zone key (or the request declined, never forwarded); an approved void marks
//! its original voided, a refund refunded, a completion its pre-authorisation completed
//! (so that it is not completed twice); and requests in flight are known per terminal
//! and STAN, so that a reversal that overtakes its original (the terminal timed out first)
//! waits for the original's outcome before it is matched.
//! May import: codec, routing core, issuer connector, journal, and the acceptor's services.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::ListenerCtx;
use super::service::Arrival;
use crate::iso::Message;
use crate::journal::{Journal, Query, Status, TxnRecord, Update};
use crate::route::{Forward, Rc, txn::TxnType};

/// How long a reversal waits at most for its original to finish (the original is itself
/// bounded by its issuer deadline; this only guards against a deadline configured longer).
const WAIT_FOR_ORIGINAL: Duration = Duration::from_secs(60);

/// Requests in flight per (terminal, STAN) on a listener: a reversal that overtakes its
/// original (the terminal gave up first) waits for it, and for it alone. Noting a request
/// costs one lock of one of 16 shards and no allocation: the channel a reversal waits on
/// is made by the reversal.
#[derive(Default)]
pub struct Pending {
    shards: [Mutex<HashMap<PendingKey, Slot, std::hash::BuildHasherDefault<Fold>>>; 16],
    next: std::sync::atomic::AtomicU64,
}

/// A cheap hash for the in-flight map: it holds only requests in flight (bounded by the
/// connections' in-flight caps), so a terminal choosing colliding keys slows its own
/// listener's lookups at most, never grows anything.
#[derive(Default)]
struct Fold(u64);

impl std::hash::Hasher for Fold {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(w)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
}

/// Field 41 (trimmed, at most 16 bytes: a longer one is cut, which only makes a reversal
/// wait for a request that shares its first 16 bytes and STAN) and field 11.
type PendingKey = ([u8; 16], u32);

struct Slot {
    /// Which request holds the slot (a retransmission may take it over).
    id: u64,
    /// Dropped when the request ends: a waiting reversal then goes on.
    done: Option<watch::Sender<()>>,
}

/// Held while a request is in flight; dropping it tells waiting reversals it is done.
pub struct InFlight {
    pending: Arc<Pending>,
    key: PendingKey,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self.pending.shard(&self.key);
        // A retransmission with the same key may have taken the slot since: it keeps it.
        if map.get(&self.key).is_some_and(|slot| slot.id == self.id) {
            map.remove(&self.key);
        }
    }
}

impl Pending {
    fn shard(
        &self,
        key: &PendingKey,
    ) -> std::sync::MutexGuard<'_, HashMap<PendingKey, Slot, std::hash::BuildHasherDefault<Fold>>> {
        let i = (key.1 as usize ^ usize::from(key.0[key.0.len() - 1])) % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(req: &Message) -> PendingKey {
        let mut tid = [0u8; 16];
        if let Some(t) = req.terminal_id() {
            let t = t.trim_end().as_bytes();
            let n = t.len().min(tid.len());
            tid[..n].copy_from_slice(&t[..n]);
        }
        (tid, req.stan().unwrap_or(u32::MAX))
    }

    /// Note `req` as in flight until the returned guard drops. Called when the request is
    /// read, before any later frame of its connection is: a reversal read after it finds it.
    pub fn start(self: &Arc<Self>, req: &Message) -> InFlight {
        let key = Self::key(req);
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.shard(&key).insert(key, Slot { id, done: None });
        InFlight { pending: self.clone(), key, id }
    }

    /// Wait until the request with the terminal and STAN of `rev` is no longer in flight.
    pub async fn wait_for(&self, rev: &Message) {
        let key = Self::key(rev);
        let rx = self.shard(&key).get_mut(&key).map(|slot| match &slot.done {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(());
                slot.done = Some(tx);
                rx
            }
        });
        if let Some(mut rx) = rx {
            tracing::info!("reversal waits for its original, still in flight");
            // `changed` errs once the sender (the original's slot) is dropped.
            let _ =
                tokio::time::timeout(WAIT_FOR_ORIGINAL, async { while rx.changed().await.is_ok() {} }).await;
        }
    }
}

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

fn terminal_of(req: &Message) -> String {
    req.terminal_id().map(|t| t.trim_end().to_string()).unwrap_or_default()
}

impl Batches {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<u32>>> {
        self.closed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Note a balanced settlement (`req` the 0500).
    pub fn settled(&self, req: &Message) {
        if let Some(b) = batch_of(req) {
            self.lock().insert(terminal_of(req), Some(b));
        }
    }

    /// Whether `req` belongs to a batch its terminal has already settled.
    async fn stale(&self, req: &Message, journal: Option<&Journal>) -> bool {
        let Some(b) = batch_of(req) else { return false };
        let terminal = terminal_of(req);
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
fn original_types(txn: TxnType, req: &Message) -> Option<&'static [&'static str]> {
    Some(match txn {
        TxnType::Void => match req.text(60).as_deref().and_then(|f| f.get(..2)) {
            Some("11") => &["preauth"],
            Some("21") => &["preauth_completion"],
            _ => &["purchase", "preauth_completion"],
        },
        TxnType::Refund => &["purchase", "preauth_completion"],
        TxnType::PreAuthCompletion => &["preauth"],
        _ => return None,
    })
}

fn matches(o: &TxnRecord, terminal: &str, n: &Names, types: &[&str]) -> bool {
    o.terminal_id.trim_end() == terminal
        && o.rc == "00"
        && matches!(o.status, Some(Status::Approved) | None)
        && types.contains(&o.txn_type.as_str())
        && n.trace.as_deref().is_none_or(|t| o.stan == t)
        // A row journalled without a batch number (another dialect, an older journal)
        // cannot contradict the batch named.
        && n.batch.as_deref().is_none_or(|b| o.terminal_batch.as_deref().is_none_or(|ob| ob == b))
        && n.rrn.as_deref().is_none_or(|r| o.rrn.as_deref() == Some(r))
        && n.auth.as_deref().is_none_or(|a| o.auth_code.as_deref().map(str::trim) == Some(a))
        && n.date.as_deref().is_none_or(|d| o.business_date.get(4..8) == Some(d))
}

/// Forward `req` as planned, with the estate's steps around it; `None` only when no reply
/// could be built. The bool says whether the issuer was asked (for response metrics).
pub async fn forward(
    ctx: &ListenerCtx,
    req: &Message,
    issuer: usize,
    fwd: &Forward,
    arrival: Arrival,
) -> (Option<Box<Message>>, bool) {
    let at = arrival.at;
    let svc = &ctx.services;
    let txn = fwd.txn_type.as_str();
    let decline = |rc: &str| Rc::parse(rc).unwrap_or(Rc(*b"96"));
    // The journal cannot write: no issuer is asked for what could not be recorded.
    if let Some(refused) = svc.refuse_unrecordable(req) {
        return (Some(refused), false);
    }
    if ctx.batches.stale(req, svc.journal.as_ref()).await {
        tracing::info!(txn, "request in a batch already settled");
        let rc = crate::rc::Outcome::BatchMismatch.generic_rc();
        return (Box::pin(svc.decline(req, decline(rc), None, txn, at)).await.map(Box::new), false);
    }
    // Only requests that name an original (field 61) are held to one: generic dialects'
    // voids without it go to the issuer as before.
    let mut original = None;
    if let (Some(j), Some(types), true) = (&svc.journal, original_types(fwd.txn_type, req), req.has(61)) {
        let n = names(req);
        let terminal = req.terminal_id().map(|t| t.trim_end().to_string()).unwrap_or_default();
        let q = match &n.rrn {
            Some(r) => Query::ByRrn(r.clone()),
            None => Query::Recent { terminal: terminal.clone(), limit: 1000 },
        };
        match Box::pin(j.query(q)).await {
            // Boxed, as is the translated request below: both live across the forward's
            // await, and inline they would add a kilobyte to every forward's future.
            Ok(rows) => {
                original = rows.into_iter().rev().find(|o| matches(o, &terminal, &n, types)).map(Box::new)
            }
            Err(e) => {
                tracing::error!(error = %e, "journal query for an original failed");
                return (Box::pin(svc.decline(req, decline("96"), None, txn, at)).await.map(Box::new), false);
            }
        }
        if original.is_none() {
            tracing::info!(txn, "original transaction not found");
            let rc = crate::rc::Outcome::OriginalNotFound.generic_rc();
            return (Box::pin(svc.decline(req, decline(rc), None, txn, at)).await.map(Box::new), false);
        }
    }
    let translated = match ctx.security.translate_pin(req, issuer) {
        Ok(t) => t.map(Box::new),
        Err(rc) => {
            return (Box::pin(svc.decline(req, decline(rc), None, txn, at)).await.map(Box::new), false);
        }
    };
    let mut plan = fwd.clone();
    if translated.is_some() && plan.backup.is_some() {
        // The block is under this issuer's zone key only: no failover with it.
        plan.backup = None;
    }
    if original.as_ref().is_some_and(|o| o.txn_type == "preauth") {
        // Releasing a hold gives back no fee: none was charged.
        plan.fee = 0;
        plan.split = Default::default();
    }
    let out = translated.as_deref().unwrap_or(req);
    let reply = svc.forward_as(&ctx.issuers, req, out, issuer, &plan, arrival).await;
    let approved = reply.as_ref().is_some_and(|r| r.raw(39) == Some(b"00"));
    if let (true, Some(o), Some(j)) = (approved, &original, &svc.journal) {
        let status = match fwd.txn_type {
            TxnType::Void => Some(Status::Voided),
            TxnType::Refund => Some(Status::Refunded),
            TxnType::PreAuthCompletion => Some(Status::Completed),
            _ => None,
        };
        if let Some(status) = status {
            let upd = Update::SetStatus {
                terminal: o.terminal_id.clone(),
                stan: o.stan.clone(),
                transmission_time: o.transmission_time.clone(),
                mti: o.mti.clone(),
                status,
            };
            if let Err(e) = Box::pin(j.update(upd)).await {
                tracing::error!(error = %e, "marking the original failed");
            }
        }
    }
    (reply, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;

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
            rc: "00".into(),
            status: Some(Status::Approved),
            txn_type: "purchase".into(),
            business_date: "20261124".into(),
            ..TxnRecord::default()
        };
        assert!(matches(&o, "10000001", &n, &["purchase"]));
        assert!(!matches(&o, "10000002", &n, &["purchase"]));
        assert!(!matches(&o, "10000001", &n, &["preauth"]));
        let voided = TxnRecord { status: Some(Status::Voided), ..o.clone() };
        assert!(!matches(&voided, "10000001", &n, &["purchase"]));
        let other_day = TxnRecord { business_date: "20261123".into(), ..o.clone() };
        assert!(!matches(&other_day, "10000001", &n, &["purchase"]));
        // 61.1 names the original's batch: the same trace in another batch is not it; a row
        // journalled without a batch number cannot contradict it.
        assert_eq!(n.batch.as_deref(), Some("000001"));
        let same_batch = TxnRecord { terminal_batch: Some("000001".into()), ..o.clone() };
        assert!(matches(&same_batch, "10000001", &n, &["purchase"]));
        let other_batch = TxnRecord { terminal_batch: Some("000002".into()), ..o };
        assert!(!matches(&other_batch, "10000001", &n, &["purchase"]));
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
