//! SQLite backend (the embedded default): one file, WAL mode, writes batched into one
//! transaction per group commit. `synchronous = FULL` makes a commit durable against
//! power loss; `NORMAL` only against a crash of the process. Checkpoints (copying the
//! WAL back into the database file, with its fsyncs) run on a thread of their own with its
//! own connection, so the writer never waits for one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use rusqlite::{Connection, params_from_iter};

use super::record::TxnRecord;
use super::store::{self, Query, Store, StoreError, Update};

pub struct SqliteStore {
    conn: Connection,
    /// The checkpoint thread runs while this lives.
    _alive: Arc<()>,
}

/// How often the checkpoint thread looks at the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL frames (pages) past which a checkpoint may make the writer wait, so that the WAL
/// stays bounded (~256 MB) even when the writer never pauses.
const WAL_BOUND: i64 = 65_536;

/// Checkpoint `path` until `alive` is gone. A PASSIVE checkpoint never blocks the writer;
/// when the WAL has grown past `WAL_BOUND` a RESTART checkpoint brings it back to the start.
fn checkpoints(path: PathBuf, full_sync: bool, alive: Weak<()>) {
    let conn = match Connection::open(&path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "journal: checkpoint connection failed; the writer checkpoints");
            return;
        }
    };
    let _ = conn.pragma_update(None, "synchronous", if full_sync { "FULL" } else { "NORMAL" });
    let _ = conn.busy_timeout(Duration::from_secs(5));
    let mut mode = "PASSIVE";
    while alive.strong_count() > 0 {
        thread::sleep(CHECKPOINT_EVERY);
        let sql = format!("PRAGMA wal_checkpoint({mode})");
        match conn.query_row(&sql, [], |r| r.get::<_, i64>(1)) {
            Ok(frames) => mode = if frames > WAL_BOUND { "RESTART" } else { "PASSIVE" },
            Err(e) => tracing::warn!(error = %e, "journal: checkpoint failed"),
        }
    }
}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Open (creating if needed) the journal file. `full_sync` chooses FULL over NORMAL.
    pub fn open(path: &Path, full_sync: bool) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", if full_sync { "FULL" } else { "NORMAL" }).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        conn.execute_batch(&store::schema("INTEGER PRIMARY KEY AUTOINCREMENT")).map_err(err)?;
        // Under load the writer spent most of its time in automatic checkpoints: they move
        // to their own thread.
        let alive = Arc::new(());
        let weak = Arc::downgrade(&alive);
        let owned = path.to_path_buf();
        let spawned = thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || checkpoints(owned, full_sync, weak));
        if spawned.is_ok() {
            conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(err)?;
        }
        Ok(SqliteStore { conn, _alive: alive })
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
    fn write(&mut self, rows: &[TxnRecord]) -> Result<Vec<bool>, StoreError> {
        let tx = self.conn.transaction().map_err(err)?;
        let mut done = Vec::with_capacity(rows.len());
        {
            let mut stmt = tx.prepare_cached(&store::insert_sql('?')).map_err(err)?;
            for r in rows {
                // Bound by reference, in `store::COLUMNS` order: no value is copied per row.
                let n = stmt
                    .execute(rusqlite::params![
                        r.switch_id,
                        r.received_at,
                        r.forwarded_at,
                        r.answered_at,
                        r.business_date,
                        r.terminal_id,
                        r.merchant_id,
                        r.stan,
                        r.switch_stan,
                        r.rrn,
                        r.transmission_time,
                        r.mti,
                        r.txn_type,
                        r.amount,
                        r.currency,
                        r.pan_masked,
                        r.pan_hash,
                        r.route,
                        r.issuer,
                        r.decision,
                        r.rc,
                        r.auth_code,
                        r.fee,
                        r.settle_cycle,
                        r.status.map(|s| s.as_str()),
                        r.batch,
                    ])
                    .map_err(err)?;
                done.push(n == 1);
            }
        }
        tx.commit().map_err(err)?;
        Ok(done)
    }

    fn query(&mut self, q: &Query) -> Result<Vec<TxnRecord>, StoreError> {
        let (tail, params) = store::query_sql(q, '?');
        self.rows(&store::select_sql(&tail), params)
    }

    fn update(&mut self, u: &Update) -> Result<u64, StoreError> {
        let (sql, params) = store::update_sql(u, '?');
        let n = self.conn.execute(&sql, params_from_iter(params)).map_err(err)?;
        Ok(n as u64)
    }
}
