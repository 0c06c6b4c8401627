//! SQLite backend (the embedded default): one file, WAL mode, writes batched into one
//! transaction per group commit. `synchronous = FULL` makes a commit durable against
//! power loss; `NORMAL` only against a crash of the process. Checkpoints (copying the
//! WAL back into the database file, with its fsyncs) run on a thread of their own with its
//! own connection, so the writer never waits for one, and only once `CHECKPOINT_ROWS` rows
//! were committed since the last, or `CHECKPOINT_IDLE` has passed: each checkpoint syncs
//! the WAL and the database file while commits are syncing the WAL, and once it has copied
//! the whole WAL the next commit starts it over, which at FULL costs that commit a second
//! sync (of the new WAL header). At light load a checkpoint every 50 ms meant twenty a
//! second, each with two syncs of its own beside the commits' and one more in the commit
//! after it. Not much rarer either: with a checkpoint a second (and the WAL grown to a
//! thousand commits) the writer's CPU per commit and the light-load p50 rose by about 15%
//! in A/B runs; at five a second they did not.
//! May import: crate::journal::record, crate::journal::store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use rusqlite::{Connection, params_from_iter};

use super::record::{TxnRecord, rc_text};
use super::store::{self, Query, Store, StoreError, Update};

pub struct SqliteStore {
    conn: Connection,
    /// Set by the checkpoint thread when the writer should finish a checkpoint; the
    /// thread runs while this lives.
    finish: Arc<AtomicBool>,
    /// Rows committed so far: the checkpoint thread's measure of how much the WAL grew.
    committed: Arc<AtomicU64>,
    /// Rows inserted in the open group.
    in_group: u64,
    /// The insert statement's text, built once (it is also the prepared-statement cache key).
    insert: String,
}

/// How often the checkpoint thread looks at the rows committed.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// Rows committed since the last checkpoint that call for the next one.
const CHECKPOINT_ROWS: u64 = 512;
/// Longest time between checkpoints while rows are committed.
const CHECKPOINT_IDLE: Duration = Duration::from_millis(200);
/// WAL frames (pages, ~32 MB) past which the writer finishes a checkpoint itself.
const WAL_BOUND: i64 = 8192;

/// Checkpoint `path` until `alive` is gone. A PASSIVE checkpoint never blocks the writer,
/// but while the writer keeps appending, the WAL never starts over and grows without end.
/// Once it passes `WAL_BOUND`, `finish` asks the writer to checkpoint after its next commit:
/// only the frames appended since this thread's checkpoint are left to copy, and the
/// writer's next transaction then starts the WAL over.
fn checkpoints(path: PathBuf, full_sync: bool, alive: Weak<AtomicBool>, committed: Arc<AtomicU64>) {
    let conn = match Connection::open(&path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "journal: checkpoint connection failed");
            return;
        }
    };
    let _ = conn.pragma_update(None, "synchronous", if full_sync { "FULL" } else { "NORMAL" });
    let _ = conn.busy_timeout(Duration::from_secs(5));
    let (mut rows_then, mut then) = (committed.load(Ordering::Relaxed), std::time::Instant::now());
    loop {
        thread::sleep(CHECKPOINT_EVERY);
        let Some(finish) = alive.upgrade() else { return };
        let rows = committed.load(Ordering::Relaxed);
        if !checkpoint_due(rows - rows_then, then.elapsed()) {
            continue;
        }
        (rows_then, then) = (rows, std::time::Instant::now());
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
            Ok(frames) if frames > WAL_BOUND => finish.store(true, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "journal: checkpoint failed"),
        }
    }
}

/// Whether the checkpoint thread copies the WAL now, `rows` committed and `since` elapsed
/// since its last checkpoint.
fn checkpoint_due(rows: u64, since: Duration) -> bool {
    rows >= CHECKPOINT_ROWS || (rows > 0 && since >= CHECKPOINT_IDLE)
}

/// The probe's table: empty between probes (see `Store::probe`).
const PROBE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS journal_probe (id INTEGER PRIMARY KEY, at BIGINT NOT NULL, pad BLOB)";
/// The probe writes this much, so that it needs new pages as a group of rows would: a full
/// database (or disk) fails it, where an empty transaction would commit.
const PROBE_BYTES: i64 = 16 * 1024;

/// How long the writer waits for a lock another connection holds (a retention purge's
/// batch, the store-and-forward store), retrying every `BUSY_STEP`: SQLite's own busy
/// timeout backs off to 10, 25, 50 and 100 ms sleeps, which would keep the writer asleep
/// well after a short batch let go of the lock.
const BUSY_STEP: Duration = Duration::from_micros(200);
const BUSY_TRIES: i32 = 25_000; // 5 s

fn writer_busy(tries: i32) -> bool {
    if tries >= BUSY_TRIES {
        return false;
    }
    thread::sleep(BUSY_STEP);
    true
}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Add the columns a journal written by an earlier version lacks.
fn add_columns(conn: &Connection) -> Result<(), StoreError> {
    let mut have = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('transactions')").map_err(err)?;
        let mut rows = stmt.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            have.push(row.get::<_, String>(0).map_err(err)?);
        }
    }
    for (col, ty) in store::ADDED_COLUMNS {
        if !have.iter().any(|h| h == col) {
            conn.execute_batch(&format!("ALTER TABLE transactions ADD COLUMN {col} {ty}")).map_err(err)?;
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Open (creating if needed) the journal file. `full_sync` chooses FULL over NORMAL.
    pub fn open(path: &Path, full_sync: bool) -> Result<SqliteStore, StoreError> {
        let mut conn = Connection::open(path).map_err(err)?;
        // Only a new, empty file takes this (an existing one keeps its mode): pages the
        // retention purge frees can then be given back to the file system a step at a time
        // (`PRAGMA incremental_vacuum`); without it they are reused by new rows.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", if full_sync { "FULL" } else { "NORMAL" }).map_err(err)?;
        conn.busy_handler(Some(writer_busy)).map_err(err)?;
        conn.execute_batch(&store::schema("INTEGER PRIMARY KEY AUTOINCREMENT")).map_err(err)?;
        conn.execute_batch(PROBE_TABLE).map_err(err)?;
        add_columns(&conn)?;
        conn.execute_batch(store::INDEXES).map_err(err)?;
        // Under load the writer spent most of its time in automatic checkpoints: they move
        // to their own thread.
        let finish = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicU64::new(0));
        let (weak, rows) = (Arc::downgrade(&finish), committed.clone());
        let owned = path.to_path_buf();
        let spawned = thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || checkpoints(owned, full_sync, weak, rows));
        if spawned.is_ok() {
            conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(err)?;
        }
        Ok(SqliteStore { conn, finish, committed, in_group: 0, insert: store::insert_sql('?') })
    }

    /// Cap the database at `pages` pages (`PRAGMA max_page_count`, on the writer's
    /// connection; never below the current size): inserts past it fail with SQLITE_FULL as
    /// on a full disk. Returns the cap in force.
    pub fn set_max_page_count(&mut self, pages: u64) -> Result<u64, StoreError> {
        let pages = i64::try_from(pages).unwrap_or(i64::MAX);
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| r.get::<_, i64>(0))
            .map_err(err)
            .map(|n| u64::try_from(n).unwrap_or(0))
    }

    fn rows(&mut self, sql: &str, params: Vec<String>) -> Result<Vec<TxnRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(err)?;
        let mut rows = stmt.query(params_from_iter(params)).map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let rec = store::from_row(
                |i| row.get::<_, Option<String>>(i).ok().flatten(),
                |i| row.get::<_, Option<i64>>(i).ok().flatten(),
            );
            out.push(rec);
        }
        Ok(out)
    }
}

impl Store for SqliteStore {
    fn begin(&mut self) -> Result<(), StoreError> {
        self.in_group = 0;
        self.conn.execute_batch("BEGIN").map_err(err)
    }

    fn insert(&mut self, r: &TxnRecord) -> Result<bool, StoreError> {
        let mut out = Vec::with_capacity(1);
        self.insert_rows(&mut std::iter::once(r), &mut out)?;
        Ok(out.first().copied().unwrap_or(false))
    }

    /// One look-up of the statement cache for all of `rows`: its key is the insert's text
    /// (hundreds of bytes, hashed and compared on every look-up and hashed again when the
    /// statement goes back, which also resets and clears it). Per row, that was a few
    /// percent of the writer's time in a profile; `journal_cpu/row_full` (256 rows a
    /// group) went from 8.2 to 7.7 us of CPU per row, and the writer's CPU per transaction
    /// at capacity (`benches/load.sh full 16 32 5`, six interleaved pairs) from 5.9 to
    /// 5.4 us.
    fn insert_rows(
        &mut self,
        rows: &mut dyn Iterator<Item = &TxnRecord>,
        out: &mut Vec<bool>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(&self.insert).map_err(err)?;
        for r in rows {
            // Bound by reference, in `store::COLUMNS` order: no value is copied.
            let n = stmt
                .execute(rusqlite::params![
                    r.switch_id.as_str(),
                    r.received_at.as_i64(),
                    r.forwarded_at.map(|t| t.as_i64()),
                    r.answered_at.map(|t| t.as_i64()),
                    r.business_date.as_str(),
                    r.terminal_id.as_str(),
                    r.merchant_id.as_str(),
                    r.stan.as_str(),
                    r.switch_stan.as_deref(),
                    r.rrn.as_deref(),
                    r.transmission_time.as_str(),
                    r.mti.as_str(),
                    r.txn_type.as_str(),
                    r.amount,
                    r.currency.as_deref(),
                    r.pan_masked.as_deref(),
                    r.pan_hash.as_deref(),
                    r.route.as_deref(),
                    r.issuer.as_deref(),
                    r.decision.as_str(),
                    rc_text(&r.rc),
                    r.auth_code.as_deref(),
                    r.fee,
                    r.settle_cycle.as_str(),
                    r.status.map(|s| s.as_str()),
                    r.batch.as_deref(),
                    r.terminal_batch.as_deref(),
                    r.txn_key.as_deref(),
                    r.advice_rc.as_ref().map(|c| c.as_str()),
                ])
                .map_err(err)?;
            self.in_group += 1;
            out.push(n == 1);
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT").map_err(err)?;
        self.committed.fetch_add(self.in_group, Ordering::Relaxed);
        self.in_group = 0;
        if self.finish.swap(false, Ordering::Relaxed)
            && let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "journal: checkpoint failed");
        }
        Ok(())
    }

    fn reads_in_one_transaction(&self) -> bool {
        true
    }

    fn rollback(&mut self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(error = %e, "journal: rollback failed");
        }
    }

    fn query(&mut self, q: &Query) -> Result<Vec<TxnRecord>, StoreError> {
        let (tail, params) = store::query_sql(q, '?');
        self.rows(&store::select_sql(&tail), params)
    }

    fn update(&mut self, u: &Update) -> Result<u64, StoreError> {
        let (sql, params) = store::update_sql(u, '?');
        let n = self.conn.execute(&sql, params_from_iter(params)).map_err(err)?;
        self.committed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n as u64)
    }

    /// Insert `PROBE_BYTES` into `journal_probe`, delete it and commit: new pages are
    /// needed (the freed ones are reused by the next rows).
    fn probe(&mut self) -> Result<(), StoreError> {
        self.begin()?;
        let wrote = self
            .conn
            .execute(
                "INSERT INTO journal_probe (at, pad) VALUES (strftime('%s', 'now'), zeroblob(?1))",
                [PROBE_BYTES],
            )
            .and_then(|_| self.conn.execute("DELETE FROM journal_probe", []))
            .map_err(err);
        match wrote.and_then(|_| self.commit()) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_after_enough_rows_or_a_quiet_second_with_rows() {
        let ms = Duration::from_millis;
        let idle = CHECKPOINT_IDLE;
        for (rows, since, due) in [
            (0, ms(60_000), false),
            (1, idle - ms(1), false),
            (1, idle, true),
            (CHECKPOINT_ROWS - 1, ms(50), false),
            (CHECKPOINT_ROWS, ms(50), true),
        ] {
            assert_eq!(checkpoint_due(rows, since), due, "{rows} rows after {since:?}");
        }
    }
}
