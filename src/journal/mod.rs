//! The journal: a durable record of every transaction, written before the terminal
//! hears of an approval. Callers hand records to `Journal::record` and await it; a single
//! writer thread takes everything queued, writes it in one transaction and commits once
//! (group commit), then wakes every caller whose record is now durable. Backends: SQLite
//! (default, one file) and PostgreSQL (several switch nodes). May import: the codec.

pub mod postgres;
pub mod record;
pub mod saf;
pub mod sqlite;
pub mod store;

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

pub use record::{PanHasher, Status, TxnRecord, business_date};
pub use store::{Query, Store, StoreError, Update};

/// Where the journal lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum JournalConfig {
    Sqlite {
        path: PathBuf,
        /// FULL (durable against power loss, the default) or NORMAL (against a crash only).
        #[serde(default = "yes")]
        full_sync: bool,
    },
    Postgres {
        /// libpq-style connection string.
        url: String,
    },
}

fn yes() -> bool {
    true
}

enum Cmd {
    Write(Box<TxnRecord>, oneshot::Sender<Result<bool, StoreError>>),
    Query(Query, oneshot::Sender<Result<Vec<TxnRecord>, StoreError>>),
    Update(Update, oneshot::Sender<Result<u64, StoreError>>),
}

/// Largest group committed at once.
const MAX_GROUP: usize = 4096;
/// A group this large (or following one this large) means the switch is under load: the
/// writer then lingers for more rows before committing. Each commit rewrites into the WAL
/// every page its rows touched (the table's last page and a leaf per index insert point),
/// so much of its cost is per commit, not per row: with the switch's rows, groups of 512
/// took about 30% less CPU per row than groups of 128. A lone row at light load is
/// committed at once.
const LOADED: usize = 16;
/// While lingering, the writer looks for new rows this often, and commits as soon as one
/// look finds none (the terminals are then waiting for this group) ...
const LINGER_STEP: Duration = Duration::from_micros(100);
/// ... or when this much time has passed since the group began.
const LINGER_MAX: Duration = Duration::from_millis(1);
/// Commands queued before callers wait: bounds memory under overload.
const QUEUE: usize = 65_536;

/// Move queued commands into `pending`, up to `MAX_GROUP`; how many came.
fn drain(rx: &mut mpsc::Receiver<Cmd>, pending: &mut Vec<Cmd>) -> usize {
    let before = pending.len();
    while pending.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(c) => pending.push(c),
            Err(_) => break,
        }
    }
    pending.len() - before
}

/// Handle to the journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Cmd>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Journal")
    }
}

impl Journal {
    /// Open the configured backend and start its writer thread.
    pub fn open(cfg: &JournalConfig) -> Result<Journal, StoreError> {
        match cfg {
            JournalConfig::Sqlite { path, full_sync } => {
                Ok(Journal::start(sqlite::SqliteStore::open(path, *full_sync)?))
            }
            JournalConfig::Postgres { url } => Ok(Journal::start(postgres::PgStore::connect(url)?)),
        }
    }

    /// Start a writer thread over any store.
    pub fn start<S: Store>(mut store: S) -> Journal {
        let (tx, mut rx) = mpsc::channel::<Cmd>(QUEUE);
        let spawned = thread::Builder::new().name("journal-writer".into()).spawn(move || {
            let mut last = 0;
            while let Some(first) = rx.blocking_recv() {
                let mut writes: Vec<(Box<TxnRecord>, oneshot::Sender<_>)> = Vec::new();
                let mut others = Vec::new();
                let mut pending = vec![first];
                drain(&mut rx, &mut pending);
                if pending.len() >= LOADED || last >= LOADED {
                    let until = Instant::now() + LINGER_MAX;
                    while pending.len() < MAX_GROUP && Instant::now() < until {
                        thread::sleep(LINGER_STEP);
                        if drain(&mut rx, &mut pending) == 0 {
                            break;
                        }
                    }
                }
                last = pending.len();
                for c in pending {
                    match c {
                        Cmd::Write(r, done) => writes.push((r, done)),
                        other => others.push(other),
                    }
                }
                if !writes.is_empty() {
                    // The records move out of their boxes: nothing is copied on the way to the store.
                    let (rows, waiters): (Vec<TxnRecord>, Vec<_>) =
                        writes.into_iter().map(|(r, tx)| (*r, tx)).unzip();
                    match store.write(&rows) {
                        Ok(done) => {
                            for (tx, inserted) in waiters.into_iter().zip(done) {
                                let _ = tx.send(Ok(inserted));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, rows = rows.len(), "journal: group commit failed");
                            for tx in waiters {
                                let _ = tx.send(Err(e.clone()));
                            }
                        }
                    }
                }
                for c in others {
                    match c {
                        Cmd::Query(q, tx) => {
                            let _ = tx.send(store.query(&q));
                        }
                        Cmd::Update(u, tx) => {
                            let _ = tx.send(store.update(&u));
                        }
                        Cmd::Write(..) => {}
                    }
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "journal: cannot start the writer thread");
        }
        Journal { tx }
    }

    /// Make `rec` durable. `Ok(true)` once committed, `Ok(false)` when a row with the same
    /// terminal, STAN, transmission time and MTI was already there (nothing duplicated).
    pub async fn record(&self, rec: TxnRecord) -> Result<bool, StoreError> {
        self.record_boxed(Box::new(rec)).await
    }

    /// `record` of a row already boxed (it reaches the writer without being copied).
    pub async fn record_boxed(&self, rec: Box<TxnRecord>) -> Result<bool, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Cmd::Write(rec, tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Claim a transaction's key before forwarding it (journals shared by several nodes):
    /// `Ok(false)` when any node already has it, which makes this request a duplicate. The
    /// row is written with an empty `rc` and completed by `record` of the final row.
    pub async fn claim(&self, mut rec: TxnRecord) -> Result<bool, StoreError> {
        rec.rc.clear();
        rec.decision = "pending".into();
        rec.status = None;
        rec.fee = 0;
        self.record(rec).await
    }

    pub async fn query(&self, q: Query) -> Result<Vec<TxnRecord>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Cmd::Query(q, tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn update(&self, u: Update) -> Result<u64, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Cmd::Update(u, tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The answers to several queries, in order. They are all queued before the first
    /// answer is awaited, so the writer runs them back to back. Blocking: outside the
    /// runtime's workers.
    pub fn query_many_blocking(&self, qs: Vec<Query>) -> Result<Vec<Vec<TxnRecord>>, StoreError> {
        let mut pending = Vec::with_capacity(qs.len());
        for q in qs {
            let (tx, rx) = oneshot::channel();
            self.tx.blocking_send(Cmd::Query(q, tx)).map_err(|_| StoreError::Closed)?;
            pending.push(rx);
        }
        pending.into_iter().map(|rx| rx.blocking_recv().map_err(|_| StoreError::Closed)?).collect()
    }

    /// Blocks until every record handed to the journal before this call is committed
    /// (or its commit failed, which its caller was told). A query is answered only after
    /// the commit of every row queued before it (the writer's queue is first in, first
    /// out), so a query that finds nothing serves as the barrier. Outside the runtime's
    /// workers.
    pub fn barrier_blocking(&self) -> Result<(), StoreError> {
        let nothing =
            Query::Exists { terminal: String::new(), stan: String::new(), transmission_time: String::new() };
        self.query_blocking(nothing).map(|_| ())
    }

    /// Blocking variants for the CLI (`settle`), outside any runtime.
    pub fn query_blocking(&self, q: Query) -> Result<Vec<TxnRecord>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.blocking_send(Cmd::Query(q, tx)).map_err(|_| StoreError::Closed)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)?
    }
}
