//! What a journal backend must do, and the schema both backends share. A backend is
//! synchronous and owned by the journal's writer thread; the thread batches writes so
//! that one commit (one fsync) makes many records durable at once.
//! May import: crate::journal::record, crate::rc, crate::route, crate::time.

use compact_str::CompactString;

use super::record::{Decided, PanHash, RowType, SettleCycle, Status, TxnRecord, rc_text};
use crate::rc::ResponseCode;
use crate::time::UnixMs;

/// Columns of `transactions`, in the order used by inserts and selects.
pub const COLUMNS: &[&str] = &[
    "switch_id",
    "received_at",
    "forwarded_at",
    "answered_at",
    "business_date",
    "terminal_id",
    "merchant_id",
    "stan",
    "switch_stan",
    "rrn",
    "transmission_time",
    "mti",
    "txn_type",
    "amount",
    "currency",
    "pan_masked",
    "pan_hash",
    "route",
    "issuer",
    "decision",
    "rc",
    "auth_code",
    "fee",
    "settle_cycle",
    "status",
    "batch",
    "terminal_batch",
    "txn_key",
    "advice_rc",
];

/// Columns added after the first schema, with their SQL type: each backend adds the ones
/// an existing table lacks when it opens (SQLite has no `ADD COLUMN IF NOT EXISTS`).
pub const ADDED_COLUMNS: &[(&str, &str)] =
    &[("terminal_batch", "TEXT"), ("txn_key", "TEXT"), ("advice_rc", "TEXT")];

/// Indexes, created after `ADDED_COLUMNS` (they name added columns). A transaction's
/// identity is its row (`id`, unique in the journal, shared by all nodes of a PostgreSQL
/// journal); the terminal's key for it is `(terminal_id, stan, txn_key)`, unique among the
/// rows that hold one: `txn_key` is the request's MTI class and date-time (field 7, or the
/// UnionPay-style batch 60.2), NULL on rows that answered a request without taking its
/// key (a duplicate's 94, a format error), which therefore never collide with the
/// transaction they repeat. The index also serves every look-up by terminal (its first
/// column). It replaces `transactions_once (terminal_id, stan, transmission_time, mti)`,
/// which let two different purchases without field 7 collide and dropped the second.
pub const INDEXES: &str = "DROP INDEX IF EXISTS transactions_once;
        CREATE UNIQUE INDEX IF NOT EXISTS transactions_identity ON transactions (terminal_id, stan, txn_key);";

/// Schema, in SQL both SQLite and PostgreSQL accept (`{id}` is the key column's type).
/// Every index costs each insert a B-tree descent and, at commit, the pages it dirtied.
/// `transactions_identity` (see `INDEXES`) serves every look-up by terminal (its first
/// column), so the former `transactions_terminal (terminal_id, received_at)` is dropped: a
/// terminal's recent rows are sorted from its entries there, which only the admin API asks for.
pub fn schema(id: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS transactions (
            id {id},
            switch_id TEXT NOT NULL,
            received_at BIGINT NOT NULL,
            forwarded_at BIGINT,
            answered_at BIGINT,
            business_date TEXT NOT NULL,
            terminal_id TEXT NOT NULL,
            merchant_id TEXT NOT NULL,
            stan TEXT NOT NULL,
            switch_stan TEXT,
            rrn TEXT,
            transmission_time TEXT NOT NULL,
            mti TEXT NOT NULL,
            txn_type TEXT NOT NULL,
            amount BIGINT NOT NULL,
            currency TEXT,
            pan_masked TEXT,
            pan_hash TEXT,
            route TEXT,
            issuer TEXT,
            decision TEXT NOT NULL,
            rc TEXT NOT NULL,
            auth_code TEXT,
            fee BIGINT NOT NULL DEFAULT 0,
            settle_cycle TEXT NOT NULL DEFAULT 'T1',
            status TEXT,
            batch TEXT,
            terminal_batch TEXT,
            txn_key TEXT,
            advice_rc TEXT
        );
        CREATE INDEX IF NOT EXISTS transactions_rrn ON transactions (rrn);
        CREATE INDEX IF NOT EXISTS transactions_day ON transactions (business_date);
        DROP INDEX IF EXISTS transactions_terminal;"
    )
}

/// Read queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    ByRrn(String),
    ByTerminalStan {
        terminal: String,
        stan: String,
        date: String,
    },
    Recent {
        terminal: String,
        limit: u32,
    },
    Day(String),
    /// Approved financial transactions of a terminal not yet in a closed batch.
    OpenBatch(String),
    /// The newest row of a terminal's closed batches that carries the terminal's own
    /// batch number (`terminal_batch`): the last batch it settled.
    LastClosed(String),
    /// The financial originals (0100, 0200, 0220) a terminal's reversal names: same
    /// terminal, STAN and amount (minor units), newest first.
    Original {
        terminal: String,
        stan: String,
        amount: i64,
    },
    /// The transaction holding this terminal key (see `INDEXES`), on any node.
    ByKey {
        terminal: String,
        stan: String,
        txn_key: String,
    },
    /// The rows of a business day that hold a terminal key, oldest first: what a switch
    /// reloads at start to recognise retransmissions of transactions it answered before.
    KeysOfDay(String),
    /// The stand-in approvals of a business day, oldest first: what the stand-in limits
    /// and authorisation codes start the day from after a restart.
    StandInOfDay(String),
    All,
}

/// Changes to existing rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    SetStatus {
        terminal: String,
        stan: String,
        transmission_time: String,
        mti: String,
        status: Status,
    },
    /// Close a terminal's open batch: its approved rows get `batch`. With `terminal_batch`,
    /// only the rows of that terminal batch number and those without one.
    CloseBatch {
        terminal: String,
        batch: String,
        terminal_batch: Option<String>,
    },
}

/// Storage failures; the message never carries row data.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("journal storage: {0}")]
    Backend(String),
    #[error("journal writer has stopped")]
    Closed,
    /// Refused unwritten: the journal is down (its writes failed) and not yet back.
    #[error("journal is down; row not written")]
    Down,
}

/// A journal backend.
pub trait Store: Send + 'static {
    /// Open a group: rows `insert`ed from now on become durable together at `commit`.
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Insert one row of the open group; `true` when inserted, `false` when a row with its
    /// key was already there.
    fn insert(&mut self, row: &TxnRecord) -> Result<bool, StoreError>;
    /// Insert `rows` into the open group in order, pushing for each whether it was inserted
    /// (as `insert`) onto `out`; the first error stops it. The default inserts them one by
    /// one; a backend may prepare its statement once for all of them.
    fn insert_rows(
        &mut self,
        rows: &mut dyn Iterator<Item = &TxnRecord>,
        out: &mut Vec<bool>,
    ) -> Result<(), StoreError> {
        for r in rows {
            out.push(self.insert(r)?);
        }
        Ok(())
    }
    /// Make the open group durable.
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Drop the open group (after a failed insert or commit); nothing of it is kept.
    fn rollback(&mut self);
    /// Insert `rows` in one group; `true` for each row inserted, `false` for one already there.
    fn write(&mut self, rows: &[TxnRecord]) -> Result<Vec<bool>, StoreError> {
        self.begin()?;
        let mut done = Vec::with_capacity(rows.len());
        let inserted = self.insert_rows(&mut rows.iter(), &mut done);
        match inserted.and_then(|()| self.commit().map(|()| done)) {
            Ok(d) => Ok(d),
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }
    fn query(&mut self, q: &Query) -> Result<Vec<TxnRecord>, StoreError>;
    /// Whether queries that arrive back to back are better answered inside one read
    /// transaction (`begin`, the queries, `rollback`): SQLite then takes its shared lock
    /// once for all of them instead of locking and unlocking the file for each.
    fn reads_in_one_transaction(&self) -> bool {
        false
    }
    fn update(&mut self, u: &Update) -> Result<u64, StoreError>;
    /// A harmless write, committed, that fails when a row could not be written (the writer
    /// probes with it while the journal is down, to notice that writes succeed again).
    /// Backends write something real: an empty transaction succeeds on a full disk. The
    /// default only opens and commits a transaction.
    fn probe(&mut self) -> Result<(), StoreError> {
        self.begin()?;
        self.commit().inspect_err(|_| self.rollback())
    }
}

/// A store that keeps nothing: what the journal costs without a backend (the writer
/// thread's hand-over alone), and a journal for tests that set its backlog themselves.
#[derive(Debug, Default)]
pub struct Discard;

impl Store for Discard {
    fn begin(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    fn insert(&mut self, _: &TxnRecord) -> Result<bool, StoreError> {
        Ok(true)
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    fn rollback(&mut self) {}
    fn query(&mut self, _: &Query) -> Result<Vec<TxnRecord>, StoreError> {
        Ok(Vec::new())
    }
    fn update(&mut self, _: &Update) -> Result<u64, StoreError> {
        Ok(0)
    }
}

/// The WHERE/ORDER tail of a query with numbered placeholders (`$1` style; SQLite accepts
/// `?1`, the caller swaps the sigil) and its parameters.
pub fn query_sql(q: &Query, sigil: char) -> (String, Vec<String>) {
    let p = |n: usize| format!("{sigil}{n}");
    match q {
        Query::ByRrn(r) => (format!("WHERE rrn = {} ORDER BY id", p(1)), vec![r.clone()]),
        Query::ByTerminalStan { terminal, stan, date } => (
            format!(
                "WHERE terminal_id = {} AND stan = {} AND business_date = {} ORDER BY id",
                p(1),
                p(2),
                p(3)
            ),
            vec![terminal.clone(), stan.clone(), date.clone()],
        ),
        Query::Recent { terminal, limit } => (
            format!("WHERE terminal_id = {} ORDER BY received_at DESC, id DESC LIMIT {limit}", p(1)),
            vec![terminal.clone()],
        ),
        Query::Day(d) => (format!("WHERE business_date = {} ORDER BY id", p(1)), vec![d.clone()]),
        Query::OpenBatch(t) => (
            format!(
                "WHERE terminal_id = {} AND batch IS NULL AND rc = '00' AND status IN ('approved', 'refunded') ORDER BY id",
                p(1)
            ),
            vec![t.clone()],
        ),
        Query::LastClosed(t) => (
            format!(
                "WHERE terminal_id = {} AND batch IS NOT NULL AND terminal_batch IS NOT NULL ORDER BY id DESC LIMIT 1",
                p(1)
            ),
            vec![t.clone()],
        ),
        Query::ByKey { terminal, stan, txn_key } => (
            format!("WHERE terminal_id = {} AND stan = {} AND txn_key = {}", p(1), p(2), p(3)),
            vec![terminal.clone(), stan.clone(), txn_key.clone()],
        ),
        Query::KeysOfDay(d) => {
            (format!("WHERE business_date = {} AND txn_key IS NOT NULL ORDER BY id", p(1)), vec![d.clone()])
        }
        Query::StandInOfDay(d) => {
            (format!("WHERE business_date = {} AND decision = 'stand-in' ORDER BY id", p(1)), vec![d.clone()])
        }
        Query::Original { terminal, stan, amount } => (
            // The amount is compared as text so that both backends bind every parameter
            // as text.
            format!(
                "WHERE terminal_id = {} AND stan = {} AND CAST(amount AS TEXT) = {} AND mti IN ('0100', '0200', '0220') ORDER BY id DESC",
                p(1),
                p(2),
                p(3)
            ),
            vec![terminal.clone(), stan.clone(), amount.to_string()],
        ),
        Query::All => ("ORDER BY id".into(), vec![]),
    }
}

/// An update statement with numbered placeholders and its parameters.
pub fn update_sql(u: &Update, sigil: char) -> (String, Vec<String>) {
    let p = |n: usize| format!("{sigil}{n}");
    match u {
        Update::SetStatus { terminal, stan, transmission_time, mti, status } => (
            format!(
                // Only the transaction itself: a duplicate's 94 or a format error with the
                // same fields is not it.
                "UPDATE transactions SET status = {} WHERE terminal_id = {} AND stan = {} AND transmission_time = {} AND mti = {} \
                 AND rc IN ('00', '', '68')",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5)
            ),
            vec![
                status.as_str().into(),
                terminal.clone(),
                stan.clone(),
                transmission_time.clone(),
                mti.clone(),
            ],
        ),
        Update::CloseBatch { terminal, batch, terminal_batch: None } => (
            format!(
                "UPDATE transactions SET batch = {} WHERE terminal_id = {} AND batch IS NULL AND rc = '00'",
                p(1),
                p(2)
            ),
            vec![batch.clone(), terminal.clone()],
        ),
        Update::CloseBatch { terminal, batch, terminal_batch: Some(n) } => (
            format!(
                "UPDATE transactions SET batch = {} WHERE terminal_id = {} AND batch IS NULL AND rc = '00' \
                 AND (terminal_batch IS NULL OR terminal_batch = {})",
                p(1),
                p(2),
                p(3)
            ),
            vec![batch.clone(), terminal.clone(), n.clone()],
        ),
    }
}

/// Insert a row, with numbered placeholders. A row whose terminal key (terminal, STAN,
/// `txn_key`) is already there is left alone (the insert reports `false`: an approval
/// that meets it is not recorded and must not be answered 00), except that a *claim* (a
/// row with an empty `rc`, written before forwarding when several nodes share the journal)
/// is completed by the final row of the same transaction. A claim never overwrites
/// anything, so a second node's claim of the same key finds it taken: that is a repeat.
/// A row without a `txn_key` never conflicts.
pub fn insert_sql(sigil: char) -> String {
    let ps: Vec<String> = (1..=COLUMNS.len()).map(|i| format!("{sigil}{i}")).collect();
    let set: Vec<String> = COLUMNS.iter().map(|c| format!("{c} = excluded.{c}")).collect();
    format!(
        "INSERT INTO transactions ({}) VALUES ({}) ON CONFLICT (terminal_id, stan, txn_key) \
         DO UPDATE SET {} WHERE transactions.rc = '' AND excluded.rc <> ''",
        COLUMNS.join(", "),
        ps.join(", "),
        set.join(", ")
    )
}

pub fn select_sql(tail: &str) -> String {
    format!("SELECT {} FROM transactions {tail}", COLUMNS.join(", "))
}

/// One column value, as both backends bind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Text(Option<String>),
    Int(Option<i64>),
}

/// A record's values in `COLUMNS` order.
pub fn to_vals(r: &TxnRecord) -> Vec<Val> {
    use Val::{Int, Text};
    let t = |s: &str| Text(Some(s.to_string()));
    vec![
        t(&r.switch_id),
        Int(Some(r.received_at.as_i64())),
        Int(r.forwarded_at.map(UnixMs::as_i64)),
        Int(r.answered_at.map(UnixMs::as_i64)),
        t(&r.business_date),
        t(&r.terminal_id),
        t(&r.merchant_id),
        t(&r.stan),
        Text(r.switch_stan.as_deref().map(str::to_string)),
        Text(r.rrn.as_deref().map(str::to_string)),
        t(&r.transmission_time),
        t(&r.mti),
        t(r.txn_type.as_str()),
        Int(Some(r.amount)),
        Text(r.currency.as_deref().map(str::to_string)),
        Text(r.pan_masked.as_deref().map(str::to_string)),
        Text(r.pan_hash.as_deref().map(str::to_string)),
        Text(r.route.as_deref().map(str::to_string)),
        Text(r.issuer.as_deref().map(str::to_string)),
        t(r.decision.as_str()),
        t(rc_text(&r.rc)),
        Text(r.auth_code.as_deref().map(str::to_string)),
        Int(Some(r.fee)),
        t(r.settle_cycle.as_str()),
        Text(r.status.map(|s| s.as_str().to_string())),
        Text(r.batch.as_deref().map(str::to_string)),
        Text(r.terminal_batch.as_deref().map(str::to_string)),
        Text(r.txn_key.as_deref().map(str::to_string)),
        Text(r.advice_rc.map(|c| c.as_str().to_string())),
    ]
}

/// A record from column getters in `COLUMNS` order.
pub fn from_row(text: impl Fn(usize) -> Option<String>, int: impl Fn(usize) -> Option<i64>) -> TxnRecord {
    let s = |i: usize| text(i).unwrap_or_default();
    let c = |i: usize| text(i).map(|t| CompactString::new(&t));
    let cs = |i: usize| c(i).unwrap_or_default();
    TxnRecord {
        switch_id: cs(0),
        received_at: UnixMs::from_i64(int(1).unwrap_or(0)),
        forwarded_at: int(2).map(UnixMs::from_i64),
        answered_at: int(3).map(UnixMs::from_i64),
        business_date: cs(4),
        terminal_id: cs(5),
        merchant_id: cs(6),
        stan: cs(7),
        switch_stan: c(8),
        rrn: c(9),
        transmission_time: cs(10),
        mti: cs(11),
        txn_type: RowType::parse(&s(12)),
        amount: int(13).unwrap_or(0),
        currency: c(14),
        pan_masked: c(15),
        pan_hash: text(16).as_deref().and_then(PanHash::parse),
        route: c(17),
        issuer: c(18),
        decision: Decided::parse(&s(19)),
        rc: text(20).as_deref().and_then(ResponseCode::parse),
        auth_code: c(21),
        fee: int(22).unwrap_or(0),
        settle_cycle: SettleCycle::parse(&s(23)),
        status: text(24).as_deref().and_then(Status::parse),
        batch: c(25),
        terminal_batch: c(26),
        txn_key: c(27),
        advice_rc: text(28).as_deref().and_then(ResponseCode::parse),
    }
}

/// Whether column `i` holds an integer.
pub fn is_int(i: usize) -> bool {
    matches!(i, 1 | 2 | 3 | 13 | 22)
}
