//! The retention pass's own connection to the journal database (never the writer's): the
//! business days older than a cut-off, a day's rows in `id` order for the export, the
//! counts that check an export covers a day, deletes in small batches, space reclaimed
//! where the store allows, finished store-and-forward rows, and (PostgreSQL) a lock that
//! lets one node of a shared journal retain at a time.
//!
//! SQLite: every statement is its own short transaction (WAL lets it run beside the
//! writer; a long read transaction would keep the checkpoint from starting the WAL over),
//! and each delete batch takes the write lock for one batch only (`BEGIN IMMEDIATE`).
//! PostgreSQL: a day is read through a cursor in one read transaction (its index on
//! `business_date` does not give `id` order, so keyset pages would each sort the day).
//! May import: crate::journal, crate::journal::postgres, crate::journal::record,
//! crate::journal::store.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio_postgres::Client;

use super::super::JournalConfig;
use super::super::postgres::{QUIET_NOTICES, describe};
use super::super::record::TxnRecord;
use super::super::store::{self, StoreError};

/// Rows fetched at once while exporting.
const PAGE: i64 = 2000;
/// PostgreSQL advisory lock key of the retention pass ("isoswitch retention").
const PG_LOCK: i64 = 0x1505_7e7e_0001;

fn rt_of(rt: &Option<tokio::runtime::Runtime>) -> Result<&tokio::runtime::Runtime, StoreError> {
    rt.as_ref().ok_or_else(|| StoreError::Backend("retention connection closed".into()))
}

fn lite(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(describe(&e))
}

/// A connection of the retention pass.
pub enum Db {
    Sqlite(Connection),
    /// The runtime is an `Option` only so that `Drop` can take it.
    Pg {
        rt: Option<tokio::runtime::Runtime>,
        client: Client,
    },
}

impl Drop for Db {
    /// The PostgreSQL connection's runtime is shut down without waiting: a `Db` may be
    /// dropped inside another runtime, where blocking is not allowed.
    fn drop(&mut self) {
        if let Db::Pg { rt, .. } = self
            && let Some(rt) = rt.take()
        {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Db::Sqlite(_) => "Db(sqlite)",
            Db::Pg { .. } => "Db(postgres)",
        })
    }
}

impl Db {
    /// Connect to an existing journal (a missing SQLite file is an error, not a new journal).
    pub fn open(cfg: &JournalConfig) -> Result<Db, StoreError> {
        match cfg {
            JournalConfig::Sqlite { path, .. } => Self::open_sqlite(path),
            JournalConfig::Postgres { url } => Self::open_pg(url),
        }
    }

    fn open_sqlite(path: &Path) -> Result<Db, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(lite)?;
        // A batch deleted but lost in a power cut is deleted again by the next pass.
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(lite)?;
        let has: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'transactions'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(lite)?;
        if has.is_none() {
            return Err(StoreError::Backend(format!(
                "{}: not an isoswitch journal (no table `transactions`)",
                path.display()
            )));
        }
        Ok(Db::Sqlite(conn))
    }

    fn open_pg(url: &str) -> Result<Db, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(pg)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::warn!(error = %e, "journal retention: postgres connection closed");
                }
            });
            client.batch_execute(QUIET_NOTICES).await.map_err(pg)?;
            let row =
                client.query_one("SELECT to_regclass('transactions') IS NOT NULL", &[]).await.map_err(pg)?;
            if !row.get::<_, bool>(0) {
                return Err(StoreError::Backend("not an isoswitch journal (no table `transactions`)".into()));
            }
            Ok(client)
        })?;
        Ok(Db::Pg { rt: Some(rt), client })
    }

    /// Take the retention lock: `false` when another node of a shared PostgreSQL journal
    /// holds it (it is retaining now). Held until the connection closes. SQLite: always
    /// `true` (each step is safe to repeat, so a pass beside `isoswitch journal purge` only
    /// does some work twice).
    pub fn try_lock(&mut self) -> Result<bool, StoreError> {
        match self {
            Db::Sqlite(_) => Ok(true),
            Db::Pg { rt, client } => {
                let row = rt_of(rt)?
                    .block_on(client.query_one("SELECT pg_try_advisory_lock($1)", &[&PG_LOCK]))
                    .map_err(pg)?;
                Ok(row.get::<_, bool>(0))
            }
        }
    }

    /// The business days with rows strictly before `cutoff` (YYYYMMDD), oldest first: one
    /// index seek per day.
    pub fn days_before(&mut self, cutoff: &str) -> Result<Vec<String>, StoreError> {
        const NEXT: &str =
            "SELECT MIN(business_date) FROM transactions WHERE business_date > $1 AND business_date < $2";
        let mut days = Vec::new();
        let mut after = String::new();
        // A journal of more than a century of days is not one the switch wrote.
        for _ in 0..40_000 {
            let next: Option<String> = match self {
                Db::Sqlite(c) => c
                    .query_row(&NEXT.replace('$', "?"), params![after, cutoff], |r| r.get(0))
                    .map_err(lite)?,
                Db::Pg { rt, client } => {
                    rt_of(rt)?.block_on(client.query_one(NEXT, &[&after, &cutoff])).map_err(pg)?.get(0)
                }
            };
            match next {
                Some(d) => {
                    after = d.clone();
                    days.push(d);
                }
                None => break,
            }
        }
        Ok(days)
    }

    /// Hand every row of `day` to `sink`, in `id` order, with its `id`. `sink`'s error
    /// stops the reading and is returned as is.
    pub fn each_row<E: From<StoreError>>(
        &mut self,
        day: &str,
        mut sink: impl FnMut(i64, &TxnRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let select = format!(
            "SELECT id, {} FROM transactions WHERE business_date = $1 AND id > $2 ORDER BY id LIMIT {PAGE}",
            store::COLUMNS.join(", ")
        );
        match self {
            Db::Sqlite(c) => {
                let sql = select.replace('$', "?");
                let mut after = i64::MIN;
                loop {
                    let page = {
                        let mut stmt = c.prepare_cached(&sql).map_err(lite)?;
                        let mut rows = stmt.query(params![day, after]).map_err(lite)?;
                        let mut page = Vec::new();
                        while let Some(row) = rows.next().map_err(lite)? {
                            let id: i64 = row.get(0).map_err(lite)?;
                            let rec = store::from_row(
                                |i| row.get::<_, Option<String>>(i + 1).ok().flatten(),
                                |i| row.get::<_, Option<i64>>(i + 1).ok().flatten(),
                            );
                            page.push((id, rec));
                        }
                        page
                    };
                    let Some(&(last, _)) = page.last() else { return Ok(()) };
                    for (id, rec) in &page {
                        sink(*id, rec)?;
                    }
                    after = last;
                }
            }
            Db::Pg { rt, client } => {
                let cursor = format!(
                    "SELECT id, {} FROM transactions WHERE business_date = $1 ORDER BY id",
                    store::COLUMNS.join(", ")
                );
                rt_of(rt)?.block_on(async {
                    let tx = client.transaction().await.map_err(pg)?;
                    let stmt = tx.prepare(&cursor).await.map_err(pg)?;
                    let portal = tx.bind(&stmt, &[&day]).await.map_err(pg)?;
                    loop {
                        let rows = tx.query_portal(&portal, PAGE as i32).await.map_err(pg)?;
                        if rows.is_empty() {
                            break;
                        }
                        for row in &rows {
                            let id: i64 = row.try_get(0).map_err(pg)?;
                            let rec = store::from_row(
                                |i| {
                                    if store::is_int(i) {
                                        None
                                    } else {
                                        row.try_get::<_, Option<String>>(i + 1).ok().flatten()
                                    }
                                },
                                |i| {
                                    if store::is_int(i) {
                                        row.try_get::<_, Option<i64>>(i + 1).ok().flatten()
                                    } else {
                                        None
                                    }
                                },
                            );
                            sink(id, &rec)?;
                        }
                    }
                    tx.rollback().await.map_err(pg)?;
                    Ok(())
                })
            }
        }
    }

    /// Rows of `day` with `id <= last_id`, and rows of it with a larger `id`.
    pub fn count(&mut self, day: &str, last_id: i64) -> Result<(u64, u64), StoreError> {
        const COUNT: &str = "SELECT COUNT(CASE WHEN id <= $2 THEN 1 END), COUNT(CASE WHEN id > $2 THEN 1 END) \
                             FROM transactions WHERE business_date = $1";
        let (within, beyond): (i64, i64) = match self {
            Db::Sqlite(c) => c
                .query_row(&COUNT.replace('$', "?"), params![day, last_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(lite)?,
            Db::Pg { rt, client } => {
                let row = rt_of(rt)?.block_on(client.query_one(COUNT, &[&day, &last_id])).map_err(pg)?;
                (row.get(0), row.get(1))
            }
        };
        Ok((u64::try_from(within).unwrap_or(0), u64::try_from(beyond).unwrap_or(0)))
    }

    /// Delete at most `limit` rows of `day` with `id <= last_id`, in one short
    /// transaction; returns how many went.
    pub fn delete_batch(&mut self, day: &str, last_id: i64, limit: u32) -> Result<u64, StoreError> {
        const DELETE: &str = "DELETE FROM transactions WHERE id IN \
                              (SELECT id FROM transactions WHERE business_date = $1 AND id <= $2 LIMIT $3)";
        let limit = i64::from(limit);
        match self {
            Db::Sqlite(c) => {
                // The write lock is taken up front: the batch never fails half-way for a
                // lock the writer holds (the busy timeout waits out the writer's group).
                c.execute_batch("BEGIN IMMEDIATE").map_err(lite)?;
                match c.execute(&DELETE.replace('$', "?"), params![day, last_id, limit]) {
                    Ok(n) => {
                        c.execute_batch("COMMIT").map_err(lite)?;
                        Ok(n as u64)
                    }
                    Err(e) => {
                        let _ = c.execute_batch("ROLLBACK");
                        Err(lite(e))
                    }
                }
            }
            Db::Pg { rt, client } => {
                rt_of(rt)?.block_on(client.execute(DELETE, &[&day, &last_id, &limit])).map_err(pg)
            }
        }
    }

    /// Delete at most `limit` finished store-and-forward rows (acknowledged or expired)
    /// finished before `before_ms`; pending ones are never touched. 0 without a `saf` table.
    pub fn delete_saf_batch(&mut self, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
        const DELETE: &str = "DELETE FROM saf WHERE id IN (SELECT id FROM saf WHERE state IN ('acked', 'expired') \
                              AND done_at IS NOT NULL AND done_at < $1 LIMIT $2)";
        let limit = i64::from(limit);
        match self {
            Db::Sqlite(c) => {
                let has: Option<String> = c
                    .query_row(
                        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'saf'",
                        [],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(lite)?;
                if has.is_none() {
                    return Ok(0);
                }
                c.execute_batch("BEGIN IMMEDIATE").map_err(lite)?;
                match c.execute(&DELETE.replace('$', "?"), params![before_ms, limit]) {
                    Ok(n) => {
                        c.execute_batch("COMMIT").map_err(lite)?;
                        Ok(n as u64)
                    }
                    Err(e) => {
                        let _ = c.execute_batch("ROLLBACK");
                        Err(lite(e))
                    }
                }
            }
            Db::Pg { rt, client } => rt_of(rt)?.block_on(async {
                let has = client.query_one("SELECT to_regclass('saf') IS NOT NULL", &[]).await.map_err(pg)?;
                if !has.get::<_, bool>(0) {
                    return Ok(0);
                }
                client.execute(DELETE, &[&before_ms, &limit]).await.map_err(pg)
            }),
        }
    }

    /// Whether freed pages can be given back to the file system step by step: a SQLite
    /// journal created with `auto_vacuum = INCREMENTAL` (every journal this version creates).
    /// Otherwise freed pages are reused by new rows and the file keeps its size.
    pub fn reclaims(&mut self) -> Result<bool, StoreError> {
        match self {
            Db::Sqlite(c) => {
                Ok(c.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0)).map_err(lite)? == 2)
            }
            Db::Pg { .. } => Ok(false),
        }
    }

    /// Give back at most `pages` free pages (SQLite, incremental auto-vacuum); returns the
    /// free pages left. The file shrinks at the next checkpoint.
    pub fn reclaim_step(&mut self, pages: u32) -> Result<u64, StoreError> {
        match self {
            Db::Sqlite(c) => {
                // The pragma returns no row; stepping it through does the work.
                c.execute_batch(&format!("PRAGMA incremental_vacuum({pages})")).map_err(lite)?;
                let left: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0)).map_err(lite)?;
                Ok(u64::try_from(left).unwrap_or(0))
            }
            Db::Pg { .. } => Ok(0),
        }
    }

    /// Free pages in the SQLite file (0 for PostgreSQL).
    pub fn free_pages(&mut self) -> Result<u64, StoreError> {
        match self {
            Db::Sqlite(c) => {
                let n: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0)).map_err(lite)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
            Db::Pg { .. } => Ok(0),
        }
    }
}
