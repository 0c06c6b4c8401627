//! The journal: a durable record of every transaction, written before the terminal
//! hears of an approval. Callers hand records to `Journal::record` and await it; a single
//! writer thread inserts records into one open transaction as they arrive and commits it
//! once the queue runs dry (group commit, `write_group`), then wakes every caller whose
//! record is now durable. Backends: SQLite
//! (default, one file) and PostgreSQL (several switch nodes).
//!
//! A failed write takes the journal down (`health`): from then on the writer refuses rows
//! at once (`StoreError::Down`) instead of failing each against the store, probes the store
//! every `PROBE_EVERY` with a harmless write, and writes again as soon as a probe commits.
//! Each change is logged once and shown in `isoswitch_journal_up`; rows not written are
//! counted in `isoswitch_journal_write_errors_total`.
//! PostgreSQL connections may be TLS (`pg_tls`: `sslmode=verify-full` with a CA file).
//!
//! Retention (`retention`): settled days exported to a file per day and purged in small
//! batches on a connection of its own, beside the writer.
//!
//! The queue is bounded in time as well as in memory: `Backlog` says how long the writer
//! needs for the rows ahead of a new one (rows queued and promised, times the writer's
//! recent cost per row), and admission control sheds new financial requests with 91 before they
//! reach an issuer once that passes their class's share of the budget (see
//! `acceptor::service`), instead of letting every request wait in the queue.
//! May import: crate::metrics.

pub mod health;
pub mod pg_tls;
pub mod postgres;
pub mod record;
pub mod retention;
pub mod saf_store;
pub mod sqlite;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use metrics::{counter, gauge};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::metrics as m;
pub use compact_str::CompactString;
pub use health::{Change, Health};
pub use record::{
    Decided, PanHash, PanHasher, RowType, SettleCycle, Status, TxnRecord, batch_number, business_date,
    business_date_text, mti_class, txn_key,
};
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
/// Longest a group stays open while rows keep coming: bounds the wait of its first row.
const MAX_GROUP_TIME: Duration = Duration::from_millis(2);
/// A group at least this large means many requests are in flight: when the queue runs
/// dry, the writer then waits `LINGER_STEP` for more rows before it commits (and goes on
/// inserting if some came). Each commit rewrites into the WAL every page its rows touched
/// (the table's last page and a leaf per index insertion point), so under load much of
/// its cost is per commit: bigger groups cost less per row. A small group is committed at
/// once: its terminals wait for it, and with few requests in flight no more rows would
/// come in time to share the commit.
const LOADED: usize = 128;
const LINGER_STEP: Duration = Duration::from_micros(50);
/// Waiting stops this long after the group began.
const LINGER_MAX: Duration = Duration::from_millis(1);
/// Commands queued before callers wait: bounds memory under overload.
const QUEUE: usize = 65_536;
/// While the journal is down: how often the writer probes the store, and how long it
/// sleeps between looks at its queue (it cannot block on the queue and keep time).
const PROBE_EVERY: Duration = Duration::from_millis(500);
const DOWN_POLL: Duration = Duration::from_millis(2);

/// How far behind the writer is: rows queued and not yet taken, rows promised (requests
/// admitted and still with their issuer, whose rows will come), and what a row and a commit
/// have cost it lately (per row the median over its last groups, per commit a moving
/// average; nanoseconds). Shared by the handles
/// (which count rows in), admission (which counts promises) and the writer (which counts
/// rows out and times groups).
#[derive(Debug)]
pub struct Backlog {
    queued: AtomicU64,
    promised: AtomicU64,
    row_ns: AtomicU64,
    commit_ns: AtomicU64,
    /// The writer's last per-row samples (a ring, where the next goes, how many there are);
    /// only the writer takes the lock.
    samples: std::sync::Mutex<([u64; SAMPLES], usize, usize)>,
}

/// What a row is taken to cost before the writer has timed a group: about a small SQLite row.
const FIRST_ROW_NS: u64 = 20_000;
/// Groups whose median insert time per row is the writer's cost per row.
const SAMPLES: usize = 9;

impl Default for Backlog {
    fn default() -> Backlog {
        Backlog {
            queued: AtomicU64::new(0),
            promised: AtomicU64::new(0),
            row_ns: AtomicU64::new(FIRST_ROW_NS),
            commit_ns: AtomicU64::new(0),
            samples: std::sync::Mutex::new(([0; SAMPLES], 0, 0)),
        }
    }
}

/// A row to come: a request admitted to its issuer counts in the backlog until its row is
/// handed to the journal (drop this just before), so that requests admitted together in a
/// burst are not each found room for in the same empty queue.
#[derive(Debug)]
pub struct Promise(Arc<Backlog>);

impl Drop for Promise {
    fn drop(&mut self) {
        let _ = self.0.promised.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| q.checked_sub(1));
    }
}

impl Backlog {
    /// Rows queued for the writer and not yet taken by it.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Rows promised (`Promise`) and not yet queued.
    pub fn promised(&self) -> u64 {
        self.promised.load(Ordering::Relaxed)
    }

    /// Count a row to come until the `Promise` is dropped.
    pub fn promise(self: &Arc<Self>) -> Promise {
        self.promised.fetch_add(1, Ordering::Relaxed);
        Promise(self.clone())
    }

    /// The time the writer needs for the rows queued and promised now, at its recent cost
    /// per row: how long a row queued now waits before its own group can be committed,
    /// beyond that commit (which a row waits for however short the queue).
    pub fn wait(&self) -> Duration {
        let per_row = self.row_ns.load(Ordering::Relaxed);
        let rows = self.queued().saturating_add(self.promised());
        Duration::from_nanos(rows.saturating_mul(per_row))
    }

    /// The writer's recent time per row inserted.
    pub fn per_row(&self) -> Duration {
        Duration::from_nanos(self.row_ns.load(Ordering::Relaxed))
    }

    /// The writer's recent time per commit.
    pub fn commit(&self) -> Duration {
        Duration::from_nanos(self.commit_ns.load(Ordering::Relaxed))
    }

    fn add(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    fn take(&self) {
        // Never below zero, even if a row were counted out twice.
        let _ = self.queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| q.checked_sub(1));
    }

    /// A group of `rows` rows took `inserting` to insert and `committing` to commit. The
    /// cost per row is the median of the last `SAMPLES` groups' (each its insert time over
    /// its rows): one preemption on a busy machine makes a lone 30 us insert look like
    /// 3 ms, and a moving average of such samples had the switch shed at a tenth of its
    /// capacity; a writer that is slow for real is slow in most groups.
    fn group(&self, rows: usize, inserting: Duration, committing: Duration) {
        if rows == 0 {
            return;
        }
        let sample = inserting.as_nanos() as u64 / rows as u64;
        let mut recent = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let (ring, next, filled) = &mut *recent;
        ring[*next] = sample;
        *next = (*next + 1) % SAMPLES;
        *filled = (*filled + 1).min(SAMPLES);
        let mut sorted = *ring;
        let taken = &mut sorted[..*filled];
        taken.sort_unstable();
        self.row_ns.store(taken[taken.len() / 2], Ordering::Relaxed);
        ewma(&self.commit_ns, committing.as_nanos() as u64);
    }

    /// Pretend the writer is `per_row` per row behind `queued` rows (tests of admission).
    #[cfg(test)]
    pub(crate) fn set_for_test(&self, queued: u64, per_row: Duration) {
        self.queued.store(queued, Ordering::Relaxed);
        self.row_ns.store(per_row.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// A row counted into the backlog on its way into the queue: counted out again when
/// dropped before `queued` (from then on the writer counts it out).
struct Entering<'a>(Option<&'a Backlog>);

impl<'a> Entering<'a> {
    fn new(backlog: &'a Backlog) -> Entering<'a> {
        backlog.add();
        Entering(Some(backlog))
    }

    fn queued(mut self) {
        self.0 = None;
    }
}

impl Drop for Entering<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            b.take();
        }
    }
}

/// Moving average, one eighth of each new sample (a zero average takes the sample whole).
fn ewma(avg: &AtomicU64, sample: u64) {
    let old = avg.load(Ordering::Relaxed);
    let new = if old == 0 { sample } else { old - old / 8 + sample / 8 };
    avg.store(new, Ordering::Relaxed);
}

/// The rows of the group being written, with who waits for each.
type Waiters = Vec<(oneshot::Sender<Result<bool, StoreError>>, bool)>;

/// Rows taken from the queue and not yet inserted: the rows queued at one look are
/// inserted together (`Store::insert_rows`, one statement look-up), at most `BURST` at a
/// time so that a long queue still meets `MAX_GROUP_TIME` within a burst's inserts.
#[derive(Default)]
struct Burst {
    // Boxed as they came in `Cmd::Write`: unboxed, each row would be copied.
    #[allow(clippy::vec_box)]
    rows: Vec<Box<TxnRecord>>,
    waiting: Vec<oneshot::Sender<Result<bool, StoreError>>>,
}

/// Rows inserted together at most.
const BURST: usize = 32;

impl Burst {
    /// Insert the rows (none once the group has `failed`: the first error fails it) and
    /// hand their callers to `waiters`; returns the time it took. A row counts in the
    /// backlog's queue until the store takes it to insert (or it is given up).
    fn insert<S: Store>(
        &mut self,
        store: &mut S,
        backlog: &Backlog,
        failed: &mut Option<StoreError>,
        waiters: &mut Waiters,
    ) -> Duration {
        if self.rows.is_empty() {
            return Duration::ZERO;
        }
        let t0 = Instant::now();
        let mut inserted = Vec::with_capacity(self.rows.len());
        let mut taken = 0;
        if failed.is_none() {
            let mut rows = self.rows.iter().map(|r| {
                backlog.take();
                taken += 1;
                &**r
            });
            if let Err(e) = store.insert_rows(&mut rows, &mut inserted) {
                *failed = Some(e);
            }
        }
        for _ in taken..self.rows.len() {
            backlog.take();
        }
        let took = t0.elapsed();
        for (i, tx) in self.waiting.drain(..).enumerate() {
            waiters.push((tx, inserted.get(i).copied().unwrap_or(false)));
        }
        self.rows.clear();
        took
    }
}

/// Write one group: `first` and whatever else arrives while it is open. Rows are inserted
/// as they come (those found queued at one look together, up to `BURST`: `Burst`), so the
/// writer works while the group fills instead of waiting for it, and
/// the group is committed once nothing more is queued (after one `LINGER_STEP` for a
/// `LOADED` group), or when it reaches `MAX_GROUP` rows or `MAX_GROUP_TIME`. Under load,
/// rows arrive while earlier ones are inserted and groups grow by themselves; at light
/// load a lone row is committed at once. Queries and updates (the journal's barrier is a
/// query) wait for the group's commit. While `health` is down a row is refused unwritten.
fn write_group<S: Store>(
    store: &mut S,
    rx: &mut mpsc::Receiver<Cmd>,
    first: Cmd,
    health: &Health,
    backlog: &Backlog,
) {
    if matches!(first, Cmd::Query(..)) {
        answer(store, first);
        // Queries queued right behind it (a reconciliation's look-ups) share one read
        // transaction where the store gains by it; whatever else comes next starts anew.
        if let Ok(next) = rx.try_recv() {
            match next {
                Cmd::Query(..) if store.reads_in_one_transaction() => {
                    if let Some(rest) = read_group(store, rx, next) {
                        write_group(store, rx, rest, health, backlog);
                    }
                }
                other => write_group(store, rx, other, health, backlog),
            }
        }
        return;
    }
    if !matches!(first, Cmd::Write(..)) {
        answer(store, first);
        return;
    }
    if !health.is_up() {
        if let Cmd::Write(_, tx) = first {
            backlog.take();
            health.refused();
            counter!(m::JOURNAL_WRITE_ERRORS_TOTAL).increment(1);
            let _ = tx.send(Err(StoreError::Down));
        }
        return;
    }
    let started = Instant::now();
    let mut waiters: Waiters = Vec::new();
    let mut others = Vec::new();
    let mut failed = store.begin().err();
    let mut next = Some(first);
    let mut inserting = Duration::ZERO;
    let mut burst = Burst::default();
    while let Some(cmd) = next.take() {
        match cmd {
            Cmd::Write(row, tx) => {
                burst.rows.push(row);
                burst.waiting.push(tx);
            }
            other => others.push(other),
        }
        let rows = waiters.len() + burst.rows.len();
        if rows >= MAX_GROUP || started.elapsed() >= MAX_GROUP_TIME {
            break;
        }
        next = rx.try_recv().ok();
        if next.is_none() || burst.rows.len() >= BURST {
            inserting += burst.insert(store, backlog, &mut failed, &mut waiters);
        }
        if next.is_none() && waiters.len() >= LOADED && started.elapsed() < LINGER_MAX {
            std::thread::sleep(LINGER_STEP);
            next = rx.try_recv().ok();
        }
    }
    inserting += burst.insert(store, backlog, &mut failed, &mut waiters);
    let t0 = Instant::now();
    let outcome = match failed {
        None => store.commit(),
        Some(e) => Err(e),
    };
    if outcome.is_ok() {
        backlog.group(waiters.len(), inserting, t0.elapsed());
    }
    match outcome {
        Ok(()) => {
            for (tx, inserted) in waiters {
                let _ = tx.send(Ok(inserted));
            }
        }
        Err(e) => {
            store.rollback();
            counter!(m::JOURNAL_WRITE_ERRORS_TOTAL).increment(waiters.len() as u64);
            report(health.write_failed(&e, Instant::now()));
            for (tx, _) in waiters {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
    for c in others {
        answer(store, c);
    }
}

/// Log a change of the journal's state (once per change) and show it in the gauge.
fn report(change: Option<Change>) {
    match change {
        Some(Change::Down { reason }) => {
            gauge!(m::JOURNAL_UP).set(0.0);
            tracing::error!(
                error = %reason,
                "journal DOWN: writes fail; new financial requests are declined until it writes again"
            );
        }
        Some(Change::Up { down_for, declined, reversals, refused }) => {
            gauge!(m::JOURNAL_UP).set(1.0);
            tracing::warn!(
                down_ms = down_for.as_millis() as u64,
                declined,
                reversals_queued = reversals,
                rows_not_written = refused,
                "journal back: writing again"
            );
        }
        None => {}
    }
}

/// The writer thread: groups while the journal is up; while it is down, refused rows,
/// answered queries and a probe every `PROBE_EVERY` until one commits.
fn run_writer<S: Store>(mut store: S, mut rx: mpsc::Receiver<Cmd>, health: &Health, backlog: &Backlog) {
    let mut next_probe = Instant::now();
    let mut was_up = true;
    loop {
        let up = health.is_up();
        let first = if up {
            was_up = true;
            match rx.blocking_recv() {
                Some(c) => c,
                None => return,
            }
        } else {
            let now = Instant::now();
            if was_up {
                was_up = false;
                next_probe = now + PROBE_EVERY;
            }
            if now >= next_probe {
                next_probe = now + PROBE_EVERY;
                match store.probe() {
                    Ok(()) => report(health.write_ok(now)),
                    Err(e) => tracing::debug!(error = %e, "journal probe failed; still down"),
                }
                continue;
            }
            match rx.try_recv() {
                Ok(c) => c,
                Err(mpsc::error::TryRecvError::Empty) => {
                    thread::sleep(DOWN_POLL);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        };
        write_group(&mut store, &mut rx, first, health, backlog);
    }
}

/// Answer `first` and the queries queued behind it in one read transaction, up to
/// `MAX_GROUP` of them or `MAX_GROUP_TIME`; returns the first command that is not a query.
/// The transaction writes nothing and is rolled back; if it cannot be opened the queries
/// are answered one by one all the same.
fn read_group<S: Store>(store: &mut S, rx: &mut mpsc::Receiver<Cmd>, first: Cmd) -> Option<Cmd> {
    let started = Instant::now();
    let open = store.begin().is_ok();
    let mut next = Some(first);
    let mut answered = 0;
    let mut rest = None;
    while let Some(cmd) = next.take() {
        if !matches!(cmd, Cmd::Query(..)) {
            rest = Some(cmd);
            break;
        }
        answer(store, cmd);
        answered += 1;
        if answered < MAX_GROUP && started.elapsed() < MAX_GROUP_TIME {
            next = rx.try_recv().ok();
        }
    }
    if open {
        store.rollback();
    }
    rest
}

/// Answer a query or an update; a write is never handed here.
fn answer<S: Store>(store: &mut S, cmd: Cmd) {
    match cmd {
        Cmd::Query(q, tx) => {
            let _ = tx.send(store.query(&q));
        }
        Cmd::Update(u, tx) => {
            let _ = tx.send(store.update(&u));
        }
        Cmd::Write(..) => {}
    }
}

/// Handle to the journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Cmd>,
    health: Arc<Health>,
    backlog: Arc<Backlog>,
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
    pub fn start<S: Store>(store: S) -> Journal {
        let (tx, rx) = mpsc::channel::<Cmd>(QUEUE);
        let health = Arc::new(Health::default());
        let backlog = Arc::new(Backlog::default());
        let (h, b) = (health.clone(), backlog.clone());
        let spawned =
            thread::Builder::new().name("journal-writer".into()).spawn(move || run_writer(store, rx, &h, &b));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "journal: cannot start the writer thread");
        }
        Journal { tx, health, backlog }
    }

    /// How far behind the writer is (admission control reads it).
    pub fn backlog(&self) -> &Arc<Backlog> {
        &self.backlog
    }

    /// Whether the journal is writing (see `health`).
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Make `rec` durable. `Ok(true)` once committed, `Ok(false)` when a row with the same
    /// terminal key (terminal, STAN, `txn_key`) was already there: nothing was written.
    pub async fn record(&self, rec: TxnRecord) -> Result<bool, StoreError> {
        self.record_boxed(Box::new(rec)).await
    }

    /// Queue `rec` at once, ahead of anything queued after this call (queries included:
    /// a look-up made afterwards is answered after the row's commit), and hand back the
    /// receiver of its commit; `Err(rec)` when the queue is full or the writer is gone.
    pub fn try_submit(
        &self,
        rec: Box<TxnRecord>,
    ) -> Result<oneshot::Receiver<Result<bool, StoreError>>, Box<TxnRecord>> {
        let (tx, rx) = oneshot::channel();
        self.backlog.add();
        match self.tx.try_send(Cmd::Write(rec, tx)) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::TrySendError::Full(cmd) | mpsc::error::TrySendError::Closed(cmd)) => match cmd {
                Cmd::Write(rec, _) => {
                    self.backlog.take();
                    Err(rec)
                }
                // Only a write was sent.
                Cmd::Query(..) | Cmd::Update(..) => Err(Box::default()),
            },
        }
    }

    /// `record` of a row already boxed (it reaches the writer without being copied).
    pub async fn record_boxed(&self, rec: Box<TxnRecord>) -> Result<bool, StoreError> {
        let (tx, rx) = oneshot::channel();
        // Counted in while it waits for room too; counted out again if it never gets in
        // (the writer gone, or this future dropped while the queue is full).
        let entering = Entering::new(&self.backlog);
        self.tx.send(Cmd::Write(rec, tx)).await.map_err(|_| StoreError::Closed)?;
        entering.queued();
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Claim a transaction's key before forwarding it (journals shared by several nodes):
    /// `Ok(false)` when any node already has it, which makes this request a duplicate. The
    /// row is written with an empty `rc` and completed by `record` of the final row.
    pub async fn claim(&self, mut rec: TxnRecord) -> Result<bool, StoreError> {
        rec.rc = None;
        rec.decision = Decided::Pending;
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
        let nothing = Query::ByKey { terminal: String::new(), stan: String::new(), txn_key: String::new() };
        self.query_blocking(nothing).map(|_| ())
    }

    /// Blocking variants for the CLI (`settle`), outside any runtime.
    pub fn query_blocking(&self, q: Query) -> Result<Vec<TxnRecord>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.blocking_send(Cmd::Query(q, tx)).map_err(|_| StoreError::Closed)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that records what the writer asked of it; `fail_on` makes that insert fail.
    #[derive(Default)]
    struct Probe {
        log: Vec<String>,
        fail_on: Option<String>,
        batch_reads: bool,
    }

    impl Store for Probe {
        fn reads_in_one_transaction(&self) -> bool {
            self.batch_reads
        }
        fn begin(&mut self) -> Result<(), StoreError> {
            self.log.push("begin".into());
            Ok(())
        }
        fn insert(&mut self, row: &TxnRecord) -> Result<bool, StoreError> {
            self.log.push(format!("insert {}", row.stan));
            if self.fail_on.as_deref() == Some(row.stan.as_str()) {
                return Err(StoreError::Backend("disk full".into()));
            }
            Ok(true)
        }
        fn commit(&mut self) -> Result<(), StoreError> {
            self.log.push("commit".into());
            Ok(())
        }
        fn rollback(&mut self) {
            self.log.push("rollback".into());
        }
        fn query(&mut self, _: &Query) -> Result<Vec<TxnRecord>, StoreError> {
            self.log.push("query".into());
            Ok(Vec::new())
        }
        fn update(&mut self, _: &Update) -> Result<u64, StoreError> {
            self.log.push("update".into());
            Ok(0)
        }
    }

    fn write(stan: &str) -> (Cmd, oneshot::Receiver<Result<bool, StoreError>>) {
        let (tx, rx) = oneshot::channel();
        let row = TxnRecord { stan: stan.into(), ..TxnRecord::default() };
        (Cmd::Write(Box::new(row), tx), rx)
    }

    #[test]
    fn rows_queued_while_a_group_is_open_join_it_and_queries_wait_for_its_commit() {
        let (tx, mut rx) = mpsc::channel(16);
        let (first, r1) = write("1");
        let (second, r2) = write("2");
        let (q_tx, mut q_rx) = oneshot::channel();
        tx.try_send(second).unwrap();
        tx.try_send(Cmd::Query(Query::ByRrn("x".into()), q_tx)).unwrap();
        let (third, r3) = write("3");
        tx.try_send(third).unwrap();
        let mut store = Probe::default();
        write_group(&mut store, &mut rx, first, &Health::default(), &Backlog::default());
        assert_eq!(store.log, ["begin", "insert 1", "insert 2", "insert 3", "commit", "query"]);
        for mut r in [r1, r2, r3] {
            assert!(matches!(r.try_recv(), Ok(Ok(true))));
        }
        assert!(matches!(q_rx.try_recv(), Ok(Ok(_))));
    }

    #[test]
    fn a_failed_insert_fails_its_whole_group_and_nothing_of_it_is_committed() {
        let (tx, mut rx) = mpsc::channel(16);
        let (first, r1) = write("1");
        let (second, r2) = write("2");
        let (third, r3) = write("3");
        tx.try_send(second).unwrap();
        tx.try_send(third).unwrap();
        let mut store = Probe { fail_on: Some("2".into()), ..Probe::default() };
        let health = Health::default();
        write_group(&mut store, &mut rx, first, &health, &Backlog::default());
        // The rows after the failure are not tried; the group is rolled back, not committed.
        assert_eq!(store.log, ["begin", "insert 1", "insert 2", "rollback"]);
        for mut r in [r1, r2, r3] {
            assert!(matches!(r.try_recv(), Ok(Err(StoreError::Backend(_)))));
        }
        // The journal is down: the next row is refused without touching the store...
        assert!(!health.is_up());
        let (next, mut r4) = write("4");
        write_group(&mut store, &mut rx, next, &health, &Backlog::default());
        assert_eq!(store.log.len(), 4);
        assert!(matches!(r4.try_recv(), Ok(Err(StoreError::Down))));
        // ...until a probe commits; then groups start afresh.
        store.probe().unwrap();
        assert!(matches!(health.write_ok(Instant::now()), Some(Change::Up { refused: 1, .. })));
        let (next, mut r5) = write("5");
        write_group(&mut store, &mut rx, next, &health, &Backlog::default());
        assert_eq!(store.log[4..], ["begin", "commit", "begin", "insert 5", "commit"]);
        assert!(matches!(r5.try_recv(), Ok(Ok(true))));
    }

    /// A store whose every write fails until `heal` is set: the writer thread refuses rows
    /// while it is down, probes it, and writes again by itself once a probe commits.
    struct Flaky {
        heal: Arc<std::sync::atomic::AtomicBool>,
        probes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Store for Flaky {
        fn begin(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn insert(&mut self, _: &TxnRecord) -> Result<bool, StoreError> {
            if self.heal.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(true)
            } else {
                Err(StoreError::Backend("disk full".into()))
            }
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
        fn probe(&mut self) -> Result<(), StoreError> {
            self.probes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.insert(&TxnRecord::default()).map(|_| ())
        }
    }

    #[test]
    fn the_writer_refuses_rows_while_down_and_resumes_by_itself() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
        let heal = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(AtomicUsize::new(0));
        let j = Journal::start(Flaky { heal: heal.clone(), probes: probes.clone() });
        let row = || TxnRecord { stan: "1".into(), ..TxnRecord::default() };
        assert!(j.query_blocking(Query::All).is_ok());
        let (tx, rx) = oneshot::channel();
        j.tx.blocking_send(Cmd::Write(Box::new(row()), tx)).unwrap();
        assert!(matches!(rx.blocking_recv(), Ok(Err(StoreError::Backend(_)))));
        assert!(!j.health().is_up());
        let (tx, rx) = oneshot::channel();
        j.tx.blocking_send(Cmd::Write(Box::new(row()), tx)).unwrap();
        assert!(matches!(rx.blocking_recv(), Ok(Err(StoreError::Down))));
        // Reads still work while down.
        assert!(j.query_blocking(Query::All).is_ok());
        heal.store(true, SeqCst);
        let until = Instant::now() + Duration::from_secs(5);
        while !j.health().is_up() && Instant::now() < until {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(j.health().is_up(), "a probe brought the journal back");
        assert!(probes.load(SeqCst) >= 1);
        let (tx, rx) = oneshot::channel();
        j.tx.blocking_send(Cmd::Write(Box::new(row()), tx)).unwrap();
        assert!(matches!(rx.blocking_recv(), Ok(Ok(true))));
    }

    /// A store whose inserts wait at a gate, then take `INSERT` each.
    struct Gated(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

    const INSERT: Duration = Duration::from_micros(100);

    impl Store for Gated {
        fn begin(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn insert(&mut self, _: &TxnRecord) -> Result<bool, StoreError> {
            let (open, cv) = &*self.0;
            let guard = open.lock().unwrap();
            let _open = cv.wait_timeout_while(guard, Duration::from_secs(10), |o| !*o).unwrap();
            thread::sleep(INSERT);
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

    #[test]
    fn the_backlog_counts_rows_in_and_out_and_learns_what_a_row_costs() {
        let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let j = Journal::start(Gated(gate.clone()));
        let commits: Vec<_> = (0..50)
            .map(|i| {
                j.try_submit(Box::new(TxnRecord { stan: i.to_string().into(), ..TxnRecord::default() }))
                    .unwrap()
            })
            .collect();
        // The writer took the first row and waits at the gate: the others are queued.
        let until = Instant::now() + Duration::from_secs(5);
        while j.backlog().queued() != 49 && Instant::now() < until {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(j.backlog().queued(), 49);
        let first_guess = j.backlog().wait();
        assert_eq!(first_guess, Duration::from_nanos(49 * FIRST_ROW_NS), "before a group is timed");
        let promise = j.backlog().promise();
        assert_eq!(j.backlog().wait(), Duration::from_nanos(50 * FIRST_ROW_NS), "a promised row counts");
        drop(promise);
        assert_eq!(j.backlog().promised(), 0);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        for c in commits {
            assert!(matches!(c.blocking_recv(), Ok(Ok(true))));
        }
        assert_eq!(j.backlog().queued(), 0);
        assert!(j.backlog().per_row() >= INSERT, "{:?} per row", j.backlog().per_row());
        j.backlog().set_for_test(100, j.backlog().per_row());
        assert!(j.backlog().wait() >= INSERT * 100);
    }

    #[test]
    fn a_query_alone_opens_no_group() {
        let (_tx, mut rx) = mpsc::channel::<Cmd>(1);
        let (q_tx, mut q_rx) = oneshot::channel();
        let mut store = Probe::default();
        write_group(
            &mut store,
            &mut rx,
            Cmd::Query(Query::ByRrn("x".into()), q_tx),
            &Health::default(),
            &Backlog::default(),
        );
        assert_eq!(store.log, ["query"]);
        assert!(matches!(q_rx.try_recv(), Ok(Ok(_))));
    }

    #[test]
    fn queries_queued_back_to_back_share_one_read_transaction_where_the_store_gains() {
        let query = || {
            let (q_tx, q_rx) = oneshot::channel();
            (Cmd::Query(Query::ByRrn("x".into()), q_tx), q_rx)
        };
        for batch_reads in [true, false] {
            let (tx, mut rx) = mpsc::channel(16);
            let (first, a1) = query();
            let (second, a2) = query();
            let (third, a3) = query();
            let (w, r) = write("1");
            tx.try_send(second).unwrap();
            tx.try_send(third).unwrap();
            tx.try_send(w).unwrap();
            let mut store = Probe { batch_reads, ..Probe::default() };
            write_group(&mut store, &mut rx, first, &Health::default(), &Backlog::default());
            let want: &[&str] = if batch_reads {
                // The first is answered before anything is known to follow it; the write
                // after the queries gets a group of its own.
                &["query", "begin", "query", "query", "rollback", "begin", "insert 1", "commit"]
            } else {
                &["query", "query", "query", "begin", "insert 1", "commit"]
            };
            assert_eq!(store.log, want, "batch_reads {batch_reads}");
            for mut a in [a1, a2, a3] {
                assert!(matches!(a.try_recv(), Ok(Ok(_))));
            }
            let mut r = r;
            assert!(matches!(r.try_recv(), Ok(Ok(true))));
        }
    }
}
