//! PostgreSQL backend, for several switch nodes sharing one estate: the same schema and
//! statements as SQLite. The writer thread drives tokio-postgres on a small runtime of
//! its own so that the store stays synchronous like the SQLite one. The connection string
//! may ask for TLS (`sslmode=verify-full sslrootcert=...`, see `pg_tls`).
//! May import: crate::journal::pg_tls, crate::journal::record, crate::journal::store.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::pg_tls::PgTarget;

use super::record::TxnRecord;
use super::store::{self, Query, Store, StoreError, Update, Val};

pub struct PgStore {
    rt: tokio::runtime::Runtime,
    client: Client,
    /// To connect again when the connection is lost (see `probe`).
    target: PgTarget,
    /// The insert, prepared on first use.
    insert: Option<Statement>,
}

fn err(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(describe(&e))
}

/// What went wrong, in the server's own words: `tokio_postgres::Error`'s display says only
/// "db error" for an error the server sent, so the server's message, SQLSTATE code, detail
/// and hint are taken from it (`database "estate" does not exist (SQLSTATE 3D000)`). A
/// detail may quote a row; journal rows never hold a full PAN, only the masked one and a
/// keyed hash. Other errors (connecting, I/O) get their chain of causes, which says
/// e.g. "Connection refused".
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str("; detail: ");
            s.push_str(d);
        }
        if let Some(h) = db.hint() {
            s.push_str("; hint: ");
            s.push_str(h);
        }
        return s;
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

impl PgStore {
    /// Connect with a libpq-style string (`host=127.0.0.1 port=5432 user=... dbname=...`,
    /// TLS keys as in `pg_tls`).
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let target = PgTarget::parse(url).map_err(|e| StoreError::Backend(format!("journal_url: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let client = Self::open_client(&rt, &target)?;
        Ok(PgStore { rt, client, target, insert: None })
    }

    fn open_client(rt: &tokio::runtime::Runtime, target: &PgTarget) -> Result<Client, StoreError> {
        rt.block_on(async {
            let client = target.connect("journal").await.map_err(err)?;
            // The schema statements are idempotent (`IF NOT EXISTS`): the server's NOTICE that
            // a table "already exists, skipping" is not news, and the driver logs every notice
            // at INFO. Warnings and errors still come.
            client.batch_execute(QUIET_NOTICES).await.map_err(err)?;
            client.batch_execute(&store::schema("BIGSERIAL PRIMARY KEY")).await.map_err(err)?;
            for (col, ty) in store::ADDED_COLUMNS {
                let sql = format!("ALTER TABLE transactions ADD COLUMN IF NOT EXISTS {col} {ty}");
                client.batch_execute(&sql).await.map_err(err)?;
            }
            client.batch_execute(store::INDEXES).await.map_err(err)?;
            client.batch_execute(PROBE_TABLE).await.map_err(err)?;
            Ok::<_, StoreError>(client)
        })
    }
}

/// Sent first on every connection: the server sends no notice below WARNING.
pub const QUIET_NOTICES: &str = "SET client_min_messages = warning";

/// The probe's table: empty between probes (see `Store::probe`).
const PROBE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS journal_probe (id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL)";

enum PgVal {
    Text(Option<String>),
    Int(Option<i64>),
}

impl PgVal {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            PgVal::Text(v) => v,
            PgVal::Int(v) => v,
        }
    }
}

impl Store for PgStore {
    fn begin(&mut self) -> Result<(), StoreError> {
        self.rt.block_on(self.client.batch_execute("BEGIN")).map_err(err)
    }

    fn insert(&mut self, r: &TxnRecord) -> Result<bool, StoreError> {
        let client = &self.client;
        let cached = &mut self.insert;
        self.rt.block_on(async {
            let stmt = match cached {
                Some(s) => s.clone(),
                None => {
                    let s = client.prepare(&store::insert_sql('$')).await.map_err(err)?;
                    cached.insert(s).clone()
                }
            };
            let vals: Vec<PgVal> = store::to_vals(r)
                .into_iter()
                .map(|v| match v {
                    Val::Text(t) => PgVal::Text(t),
                    Val::Int(i) => PgVal::Int(i),
                })
                .collect();
            let params: Vec<&(dyn ToSql + Sync)> = vals.iter().map(PgVal::as_sql).collect();
            let n = client.execute(&stmt, &params).await.map_err(err)?;
            Ok(n == 1)
        })
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.rt.block_on(self.client.batch_execute("COMMIT")).map_err(err)
    }

    fn rollback(&mut self) {
        if let Err(e) = self.rt.block_on(self.client.batch_execute("ROLLBACK")) {
            tracing::error!(error = %e, "journal: rollback failed");
        }
    }

    fn query(&mut self, q: &Query) -> Result<Vec<TxnRecord>, StoreError> {
        let (tail, params) = store::query_sql(q, '$');
        let sql = store::select_sql(&tail);
        let client = &self.client;
        self.rt.block_on(async {
            let ps: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let rows = client.query(&sql, &ps).await.map_err(err)?;
            Ok(rows
                .iter()
                .map(|row| {
                    store::from_row(
                        |i| {
                            if store::is_int(i) {
                                None
                            } else {
                                row.try_get::<_, Option<String>>(i).ok().flatten()
                            }
                        },
                        |i| {
                            if store::is_int(i) {
                                row.try_get::<_, Option<i64>>(i).ok().flatten()
                            } else {
                                None
                            }
                        },
                    )
                })
                .collect())
        })
    }

    /// A row into `journal_probe`, deleted, committed; a lost connection is opened again
    /// first (the writer probes only while the journal is down).
    fn probe(&mut self) -> Result<(), StoreError> {
        if self.client.is_closed() {
            self.client = Self::open_client(&self.rt, &self.target)?;
            self.insert = None;
        }
        let probe = "BEGIN; INSERT INTO journal_probe (at) VALUES (0); DELETE FROM journal_probe; COMMIT";
        match self.rt.block_on(self.client.batch_execute(probe)) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.rollback();
                Err(err(e))
            }
        }
    }

    fn update(&mut self, u: &Update) -> Result<u64, StoreError> {
        let (sql, params) = store::update_sql(u, '$');
        let client = &self.client;
        self.rt.block_on(async {
            let ps: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            client.execute(&sql, &ps).await.map_err(err)
        })
    }
}
