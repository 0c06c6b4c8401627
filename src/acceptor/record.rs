//! The journal rows of terminal requests, made in one place for every handler: `row`
//! makes a request's row from the request and how the switch decided it, `answered`
//! writes what the terminal was told, and `commit` / `commit_by` write it — an approval
//! only reaches the terminal once its row is committed, a row that approves nothing is not
//! waited for past the deadline promised to the terminal. The recorder also keeps the
//! recent commit time that admission control reserves of each deadline.
//! May import: crate::iso, crate::journal, crate::rc, crate::route, crate::time.

use std::sync::Arc;

use compact_str::CompactString;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::iso::Message;
use crate::journal::{
    Decided, Journal, PanHasher, RowType, Status, StoreError, TxnRecord, business_date_text,
};
use crate::rc::ResponseCode;
use crate::route::Router;
use crate::time::UnixMs;

/// Makes and commits the journal rows of a switch's requests.
pub struct Recorder {
    journal: Option<Journal>,
    router: Arc<Router>,
    hasher: PanHasher,
    /// Each row's `switch_id` (a copy of it, inline when 24 bytes or shorter).
    switch_id: CompactString,
    /// Recent time of a journal commit awaited before an approval (microseconds, moving
    /// average): admission control keeps that much of each deadline for it.
    commit_us: AtomicU64,
}

impl Recorder {
    pub fn new(journal: Option<Journal>, router: Arc<Router>, hasher: PanHasher, switch_id: String) -> Self {
        Recorder {
            journal,
            router,
            hasher,
            switch_id: CompactString::new(&switch_id),
            commit_us: AtomicU64::new(0),
        }
    }

    /// Whether rows are written at all (there is a journal).
    #[inline]
    pub fn records(&self) -> bool {
        self.journal.is_some()
    }

    /// The row of `req` (received at `received_at`, the request clock's Unix milliseconds), of transaction type
    /// `txn`, as decided, before its outcome is known. Boxed: the row lives across the
    /// issuer's answer and the commit, and a pointer keeps the request's future (copied
    /// whenever it moves) and each hand-over on the way to the writer small.
    pub fn row(&self, req: &Message, received_at: i64, txn: RowType, decided: Decided) -> Box<TxnRecord> {
        let rules = self.router.rules();
        let mut r = Box::new(TxnRecord::from_request(req, &self.hasher));
        r.switch_id.clone_from(&self.switch_id);
        r.received_at = UnixMs::from_i64(received_at);
        r.business_date = business_date_text(r.received_at, rules.registry.utc_offset_minutes);
        r.txn_type = txn;
        r.decision = decided;
        r.settle_cycle = rules.settle_cycle(&r.merchant_id);
        r
    }

    /// Journal `row` (when there is a journal). An approval must not reach the terminal
    /// unless this succeeded; the caller turns a failure into 96.
    pub async fn commit(&self, row: Box<TxnRecord>) -> bool {
        let Some(j) = &self.journal else { return true };
        match j.record_boxed(row).await {
            Ok(true) => true,
            Ok(false) => {
                // Another row holds this transaction's terminal key: this outcome is not
                // recorded, so it must not be answered as if it were.
                tracing::error!("journal row not written: its terminal key is held by another row");
                false
            }
            Err(e) => {
                write_failed(j, &e);
                false
            }
        }
    }

    /// Journal an approval, timing the commit for `commit_reserve`.
    pub async fn commit_approval(&self, row: Box<TxnRecord>) -> bool {
        let t0 = Instant::now();
        let ok = self.commit(row).await;
        self.commit_seen(t0.elapsed());
        ok
    }

    /// Journal a row that approves nothing (a decline, 91, 68): committed before the
    /// answer when the group commit keeps up, but the answer does not wait past `by`, the
    /// deadline the terminal was promised — under overload a commit can lag by hundreds of
    /// milliseconds, and a 91 or 68 that arrives late is worth less than none. The row is
    /// committed all the same, just after the answer: it is queued before this returns
    /// whenever the queue has room, so a look-up made after the answer (a reversal
    /// matching this request, which waits for it to finish) is answered after its commit
    /// and finds it; with the queue full it waits for room in a task of its own.
    pub async fn commit_by(&self, row: Box<TxnRecord>, by: Instant) {
        let Some(j) = &self.journal else { return };
        let commit = match j.try_submit(row) {
            Ok(commit) => commit,
            Err(row) => {
                // The queue is full (overload): the row waits for room in a task of its own.
                let (tx, rx) = tokio::sync::oneshot::channel();
                let j = j.clone();
                tokio::spawn(async move {
                    let _ = tx.send(j.record_boxed(row).await);
                });
                rx
            }
        };
        match tokio::time::timeout_at(by.into(), commit).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => write_failed(j, &e),
            Ok(Err(_)) => tracing::error!("journal writer gone before the commit"),
            Err(_) => tracing::debug!("journal commit still pending at the deadline; answered first"),
        }
    }

    /// Time to keep, of a forwarded request's deadline, for the journal commit of its
    /// approval (the recent average), so that under a lagging group commit requests are
    /// shed early with 91 rather than approved after their deadline: the issuer ends its
    /// reply wait that much earlier too. It caps it at half the deadline, so some requests
    /// are always admitted and the average follows.
    pub fn commit_reserve(&self) -> Duration {
        Duration::from_micros(self.commit_us.load(Relaxed))
    }

    fn commit_seen(&self, took: Duration) {
        let us = took.as_micros() as u64;
        let old = self.commit_us.load(Relaxed);
        self.commit_us.store(old - old / 16 + us / 16, Relaxed);
    }
}

/// Write the outcome into `row`: the code the terminal was told, the row's status, and
/// the time it was answered.
#[inline]
pub fn answered(row: &mut TxnRecord, rc: ResponseCode, status: Option<Status>) {
    row.rc = Some(rc);
    row.status = status;
    row.answered_at = Some(crate::time::now());
}

/// The status of a row whose terminal was told `rc`: approved on 00, else declined.
#[inline]
pub fn status_of(rc: ResponseCode) -> Option<Status> {
    Some(if rc.is_approved() { Status::Approved } else { Status::Declined })
}

/// Log a failed journal write: at most once in a while, since the journal logs each change
/// of its state and counts every row not written; a row refused while it is down not at all.
pub(super) fn write_failed(j: &Journal, e: &StoreError) {
    if matches!(e, StoreError::Down) {
        return;
    }
    if j.health().log_allowed(crate::time::now().as_i64()) {
        tracing::error!(error = %e, "journal write failed (such failures are logged at most every 10 s)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;
    use crate::journal::SettleCycle;
    use crate::route::RuleSet;
    use crate::route::txn::TxnType;

    fn recorder() -> Recorder {
        let rules =
            RuleSet::open_with_routes("test", "[default]\nissuer = \"bank\"\ncard_type = \"debit\"\n")
                .expect("rules");
        Recorder::new(None, Arc::new(Router::new(rules)), PanHasher::new(b"k"), "node-1".into())
    }

    #[test]
    fn a_row_names_the_request_the_decision_and_the_outcome() {
        let mut m = Message::new(shipped("iso87ascii").unwrap(), "0200").unwrap();
        m.set(2, "4761739001010119").unwrap().set(11, "000042").unwrap().set(41, "TERM0001").unwrap();
        m.set(4, "000000001500").unwrap();
        let r = recorder();
        // 2026-11-24 10:00 UTC.
        let mut row = r.row(&m, 1_795_514_400_000, TxnType::Purchase.into(), Decided::Decline);
        assert_eq!((row.terminal_id.as_str(), row.stan.as_str()), ("TERM0001", "000042"));
        assert_eq!((row.txn_type.as_str(), row.decision.as_str()), ("purchase", "decline"));
        assert_eq!(row.settle_cycle, SettleCycle::T1);
        assert_eq!((row.switch_id.as_str(), row.business_date.as_str()), ("node-1", "20261124"));
        assert_eq!(row.amount, 1500);
        assert!(row.rc.is_none() && row.answered_at.is_none(), "no outcome before it is known");
        answered(&mut row, ResponseCode::DO_NOT_HONOUR, status_of(ResponseCode::DO_NOT_HONOUR));
        assert_eq!((row.rc, row.status), (ResponseCode::parse("05"), Some(Status::Declined)));
        assert!(row.answered_at.is_some());
        answered(&mut row, ResponseCode::APPROVED, status_of(ResponseCode::APPROVED));
        assert_eq!(row.status, Some(Status::Approved));
    }

    #[tokio::test]
    async fn without_a_journal_every_commit_succeeds_at_once() {
        let r = recorder();
        assert!(!r.records());
        let m = Message::new(shipped("iso87ascii").unwrap(), "0200").unwrap();
        assert!(r.commit_approval(r.row(&m, 0, TxnType::Purchase.into(), Decided::Forward)).await);
        r.commit_by(r.row(&m, 0, TxnType::Purchase.into(), Decided::Decline), Instant::now()).await;
    }
}
