//! The store-and-forward queue of reversals, in table `saf` of the journal database
//! (SQLite or PostgreSQL, the same SQL). Implements the issuer connector's `SafStore`.
//!
//! A reversal carries the card number (the issuer needs it) but the journal never holds
//! a PAN in clear: the row keeps the message as JSON *without* field 2, and the PAN in
//! its own column `pan_enc`, sealed with AES-256-GCM (hex of nonce ‖ ciphertext ‖ tag;
//! the row's issuer and field 90 are the associated data, so a sealed PAN cannot be moved
//! to another row). The key comes from `[saf] key` or `[saf] key_file`.
//!
//! ```text
//! saf(id, issuer, created_at, next_attempt_at, attempts, state, field90, message, pan_enc, done_at, ack_rc)
//!     state: pending -> acked | expired | void   unique (issuer, field90)
//! ```
//!
//! Stand-in advices (0120/0220) share the table: their `field90` column holds the key
//! `advice <terminal>|<stan>|<txn_key>`, the journal identity of the approval they report,
//! so that the issuer's answer (`ack_rc`) is also written on that transaction
//! (`transactions.advice_rc`), and an advice whose approval never reached the journal (the
//! process died between the two writes) is withdrawn (`void`) at the next start.
//!
//! On PostgreSQL a lost connection (a server restart, a failover) is opened again by the
//! next call after the one that found it lost, in at most `RECONNECT_TIMEOUT`; after a
//! failed attempt calls fail at once for `RECONNECT_EVERY`. A call that fails leaves its
//! reversal to the caller, which holds it in memory (`issuer::held`) until the store
//! takes it.
//!
//! The store has its own connection (WAL lets it share the SQLite file with the journal
//! writer); calls are blocking and made from the blocking pool.
//! May import: crate::config, crate::iso, crate::issuer, crate::journal,
//! crate::journal::pg_tls, crate::journal::postgres, crate::journal::store.

use std::path::Path;
use std::sync::{Arc, Mutex};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, params_from_iter, types::Value};
use tokio_postgres::types::ToSql;

use super::JournalConfig;
use super::store::StoreError;
use crate::iso::json::{from_json, to_json};
use crate::iso::{Message, Spec};
use crate::issuer::{IssuerError, SafItem, SafStore};

/// Schema of `saf` (`{id}` is the key column's type).
pub fn schema(id: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS saf (
            id {id},
            issuer TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            next_attempt_at BIGINT NOT NULL,
            attempts BIGINT NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'pending',
            field90 TEXT NOT NULL,
            message TEXT NOT NULL,
            pan_enc TEXT,
            done_at BIGINT,
            ack_rc TEXT
        );
        CREATE UNIQUE INDEX IF NOT EXISTS saf_once ON saf (issuer, field90);
        CREATE INDEX IF NOT EXISTS saf_due ON saf (issuer, state, next_attempt_at);"
    )
}

const INSERT: &str =
    "INSERT INTO saf (issuer, created_at, next_attempt_at, attempts, state, field90, message, pan_enc)
     VALUES ($1, $2, $2, $6, 'pending', $3, $4, $5) ON CONFLICT DO NOTHING";
const DUE: &str = "SELECT id, attempts, field90, message, pan_enc, issuer FROM saf
     WHERE issuer = $1 AND state = 'pending' AND next_attempt_at <= $2 ORDER BY id LIMIT $3";
const ATTEMPTED: &str =
    "UPDATE saf SET attempts = $2, next_attempt_at = $3 WHERE id = $1 AND state = 'pending'";
const ACKED: &str = "UPDATE saf SET state = 'acked', done_at = $2 WHERE id = $1 AND state = 'pending'";
const EXPIRED: &str = "UPDATE saf SET state = 'expired', done_at = $2 WHERE id = $1 AND state = 'pending'";
const DEPTH: &str = "SELECT COUNT(*) FROM saf WHERE issuer = $1 AND state = 'pending'";
const INSERT_ADVICE: &str =
    "INSERT INTO saf (issuer, created_at, next_attempt_at, attempts, state, field90, message, pan_enc)
     VALUES ($1, $2, $6, 0, 'pending', $3, $4, $5) ON CONFLICT DO NOTHING";
const ADVICE_ACKED: &str =
    "UPDATE saf SET state = 'acked', done_at = $2, ack_rc = $3 WHERE id = $1 AND state = 'pending'";
const ADVICE_KEY: &str = "SELECT field90 FROM saf WHERE id = $1";
const ADVICE_RC: &str =
    "UPDATE transactions SET advice_rc = $1 WHERE terminal_id = $2 AND stan = $3 AND txn_key = $4";
const VOID: &str = "UPDATE saf SET state = 'void', done_at = $3
     WHERE issuer = $1 AND field90 = $2 AND state = 'pending' AND attempts = 0";
const VOID_ID: &str = "UPDATE saf SET state = 'void', done_at = $2 WHERE id = $1 AND state = 'pending'";
const ADVICES: &str = "SELECT id, created_at, field90, message FROM saf
     WHERE issuer = $1 AND state = 'pending' AND field90 LIKE 'advice %' ORDER BY id";
const STOOD_IN: &str = "SELECT COUNT(*) FROM transactions
     WHERE terminal_id = $1 AND stan = $2 AND txn_key = $3 AND decision = 'stand-in' AND rc = '00'";

/// The store key of the advice reporting the stand-in approval journalled as (`terminal`,
/// `stan`, `txn_key`).
pub fn advice_key(terminal: &str, stan: &str, txn_key: &str) -> String {
    format!("advice {terminal}|{stan}|{txn_key}")
}

/// The journal identity an advice key names.
fn advice_identity(key: &str) -> Option<(&str, &str, &str)> {
    let mut parts = key.strip_prefix("advice ")?.splitn(3, '|');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// Field 4 of a stored message's JSON, minor units.
fn json_amount(json: &str) -> i64 {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("fields")?.get("4")?.as_str()?.parse::<i64>().ok())
        .unwrap_or(0)
}

/// A bound value.
#[derive(Debug, Clone)]
enum V {
    T(Option<String>),
    I(i64),
}

/// One returned row; `ints` says which columns are integers.
type Row = Vec<V>;

enum Db {
    Sqlite(Connection),
    /// The runtime is an `Option` only so that `Drop` can shut it down without blocking:
    /// the store is often dropped inside the switch's runtime.
    Pg {
        rt: Option<tokio::runtime::Runtime>,
        client: tokio_postgres::Client,
        /// Where it connects again when the connection was lost (a server restart, a
        /// failover, a terminated backend): the call that found it lost fails, the next
        /// one connects first.
        target: Box<super::pg_tls::PgTarget>,
        /// No attempt to connect again before this (after a failed one).
        retry_at: Option<std::time::Instant>,
    },
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Pg { rt, .. } = self
            && let Some(rt) = rt.take()
        {
            rt.shutdown_background();
        }
    }
}

fn pg_rt(rt: &Option<tokio::runtime::Runtime>) -> Result<&tokio::runtime::Runtime, String> {
    rt.as_ref().ok_or_else(|| "store closed".to_string())
}

/// A new connection for the store, told not to send schema notices.
async fn pg_connect(
    target: &super::pg_tls::PgTarget,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let client = target.connect("store-and-forward").await?;
    client.batch_execute(super::postgres::QUIET_NOTICES).await?;
    Ok(client)
}

/// How long one attempt to connect again may take: the store's lock is held meanwhile, and
/// a reversal being queued waits for it.
const RECONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// After a failed attempt, calls fail at once for this long before the next attempt.
const RECONNECT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Db {
    /// Connect again if the PostgreSQL connection was lost: one attempt of at most
    /// `RECONNECT_TIMEOUT`, and after a failed one none for `RECONNECT_EVERY` (calls fail at
    /// once meanwhile, as they did while it was lost).
    fn ready(&mut self) -> Result<(), String> {
        let Db::Pg { rt, client, target, retry_at } = self else { return Ok(()) };
        if !client.is_closed() {
            return Ok(());
        }
        let now = std::time::Instant::now();
        if retry_at.is_some_and(|at| now < at) {
            return Err("store-and-forward: the postgres connection is lost; connecting again shortly".into());
        }
        let attempt = pg_rt(rt)?.block_on(tokio::time::timeout(RECONNECT_TIMEOUT, pg_connect(target)));
        match attempt {
            Ok(Ok(fresh)) => {
                tracing::info!("store-and-forward: connected to postgres again");
                *client = fresh;
                *retry_at = None;
                Ok(())
            }
            Ok(Err(e)) => {
                *retry_at = Some(now + RECONNECT_EVERY);
                Err(super::postgres::describe(&e))
            }
            Err(_) => {
                *retry_at = Some(now + RECONNECT_EVERY);
                Err(format!("store-and-forward: connecting to postgres took over {RECONNECT_TIMEOUT:?}"))
            }
        }
    }

    fn exec(&mut self, sql: &str, ps: &[V]) -> Result<u64, String> {
        self.ready()?;
        match self {
            Db::Sqlite(c) => {
                let sql = sql.replace('$', "?");
                let vals = ps.iter().map(lite);
                c.execute(&sql, params_from_iter(vals)).map(|n| n as u64).map_err(|e| e.to_string())
            }
            Db::Pg { rt, client, .. } => {
                let owned = pg_params(ps);
                let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| &**b).collect();
                pg_rt(rt)?.block_on(client.execute(sql, &refs)).map_err(|e| e.to_string())
            }
        }
    }

    fn rows(&mut self, sql: &str, ps: &[V], ints: &[bool]) -> Result<Vec<Row>, String> {
        self.ready()?;
        match self {
            Db::Sqlite(c) => {
                let sql = sql.replace('$', "?");
                let mut stmt = c.prepare_cached(&sql).map_err(|e| e.to_string())?;
                let mut rows =
                    stmt.query(params_from_iter(ps.iter().map(lite))).map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(|e| e.to_string())? {
                    let row = (0..ints.len())
                        .map(|i| match ints.get(i) {
                            Some(true) => V::I(r.get::<_, i64>(i).unwrap_or(0)),
                            _ => V::T(r.get::<_, Option<String>>(i).ok().flatten()),
                        })
                        .collect();
                    out.push(row);
                }
                Ok(out)
            }
            Db::Pg { rt, client, .. } => {
                let owned = pg_params(ps);
                let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| &**b).collect();
                let rows = pg_rt(rt)?.block_on(client.query(sql, &refs)).map_err(|e| e.to_string())?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        (0..ints.len())
                            .map(|i| match ints.get(i) {
                                Some(true) => V::I(r.try_get::<_, i64>(i).unwrap_or(0)),
                                _ => V::T(r.try_get::<_, Option<String>>(i).ok().flatten()),
                            })
                            .collect()
                    })
                    .collect())
            }
        }
    }
}

fn lite(v: &V) -> Value {
    match v {
        V::T(Some(s)) => Value::Text(s.clone()),
        V::T(None) => Value::Null,
        V::I(i) => Value::Integer(*i),
    }
}

fn pg_params(ps: &[V]) -> Vec<Box<dyn ToSql + Sync>> {
    ps.iter()
        .map(|v| -> Box<dyn ToSql + Sync> {
            match v {
                V::T(s) => Box::new(s.clone()),
                V::I(i) => Box::new(*i),
            }
        })
        .collect()
}

/// The AES-256-GCM key that seals stored card numbers.
#[derive(Clone)]
pub struct SafKey(LessSafeKey);

impl std::fmt::Debug for SafKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SafKey(..)")
    }
}

impl SafKey {
    pub fn new(raw: &[u8; 32]) -> Result<SafKey, StoreError> {
        UnboundKey::new(&AES_256_GCM, raw)
            .map(|k| SafKey(LessSafeKey::new(k)))
            .map_err(|_| StoreError::Backend("store-and-forward key refused".into()))
    }

    /// From 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<SafKey, StoreError> {
        let bad = || StoreError::Backend("store-and-forward key must be 64 hex digits".into());
        let hex = hex.trim();
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut raw = [0u8; 32];
        hex::decode_to_slice(hex, &mut raw).map_err(|_| bad())?;
        SafKey::new(&raw)
    }

    /// The key in `path`, or a new random key written there (mode 0600) when the file is
    /// missing. The error names the file, never the key.
    pub fn load_or_create(path: &Path) -> Result<SafKey, StoreError> {
        let named = |e: &dyn std::fmt::Display| StoreError::Backend(format!("{}: {e}", path.display()));
        match std::fs::read_to_string(path) {
            Ok(text) => SafKey::from_hex(&text).map_err(|e| named(&e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut raw = [0u8; 32];
                SystemRandom::new().fill(&mut raw).map_err(|_| named(&"no randomness"))?;
                write_private(path, hex::encode(raw).as_bytes()).map_err(|e| named(&e))?;
                SafKey::new(&raw)
            }
            Err(e) => Err(named(&e)),
        }
    }

    /// The AES-256-GCM key itself (the in-doubt log seals its records with it).
    pub fn aead(&self) -> LessSafeKey {
        self.0.clone()
    }

    /// The key `[saf]` names: `key` when given, else `key_file`.
    pub fn from_config(cfg: &crate::config::SafConfig) -> Result<SafKey, StoreError> {
        match &cfg.key {
            Some(k) => SafKey::from_hex(k),
            None => SafKey::load_or_create(&cfg.key_file),
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The journal's store-and-forward queue.
pub struct SqlSaf {
    db: Mutex<Db>,
    key: SafKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SqlSaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqlSaf")
    }
}

fn saf_err(e: impl std::fmt::Display) -> IssuerError {
    IssuerError::Saf(e.to_string())
}

impl SqlSaf {
    /// Open the queue in the journal's database (creating the table). Blocking: call it
    /// outside the runtime or from `spawn_blocking`, like `Journal::open`.
    pub fn open(cfg: &JournalConfig, key: SafKey) -> Result<SqlSaf, StoreError> {
        let db = match cfg {
            JournalConfig::Sqlite { path, full_sync } => {
                let err = |e: rusqlite::Error| StoreError::Backend(e.to_string());
                let conn = Connection::open(path).map_err(err)?;
                conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
                conn.pragma_update(None, "synchronous", if *full_sync { "FULL" } else { "NORMAL" })
                    .map_err(err)?;
                conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
                conn.execute_batch(&schema("INTEGER PRIMARY KEY AUTOINCREMENT")).map_err(err)?;
                // A table made before advices lacks `ack_rc` (SQLite has no ADD COLUMN IF NOT EXISTS).
                let has: i64 = conn
                    .query_row(
                        "SELECT COUNT(*) FROM pragma_table_info('saf') WHERE name = 'ack_rc'",
                        [],
                        |r| r.get(0),
                    )
                    .map_err(err)?;
                if has == 0 {
                    conn.execute_batch("ALTER TABLE saf ADD COLUMN ack_rc TEXT").map_err(err)?;
                }
                Db::Sqlite(conn)
            }
            JournalConfig::Postgres { url } => {
                let err = |e: tokio_postgres::Error| StoreError::Backend(super::postgres::describe(&e));
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                let target = super::pg_tls::PgTarget::parse(url)
                    .map_err(|e| StoreError::Backend(format!("journal_url: {e}")))?;
                let client = rt.block_on(async {
                    let client = pg_connect(&target).await.map_err(err)?;
                    client.batch_execute(&schema("BIGSERIAL PRIMARY KEY")).await.map_err(err)?;
                    client
                        .batch_execute("ALTER TABLE saf ADD COLUMN IF NOT EXISTS ack_rc TEXT")
                        .await
                        .map_err(err)?;
                    Ok::<_, StoreError>(client)
                })?;
                Db::Pg { rt: Some(rt), client, target: Box::new(target), retry_at: None }
            }
        };
        Ok(SqlSaf { db: Mutex::new(db), key, rng: SystemRandom::new() })
    }

    /// As a trait object for `Issuers::start`.
    pub fn shared(self) -> Arc<dyn SafStore> {
        Arc::new(self)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Db) -> Result<T, String>) -> Result<T, IssuerError> {
        let mut g = self.db.lock().map_err(|_| saf_err("store lock poisoned"))?;
        f(&mut g).map_err(saf_err)
    }

    fn seal(&self, issuer: &str, field90: &str, pan: &[u8]) -> Result<String, IssuerError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| saf_err("no randomness"))?;
        let mut buf = pan.to_vec();
        let aad = format!("{issuer}\u{1f}{field90}");
        self.key
            .0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| saf_err("card number could not be sealed"))?;
        let mut sealed = hex::encode_upper(nonce);
        sealed.push_str(&hex::encode_upper(&buf));
        Ok(sealed)
    }

    fn open_pan(&self, issuer: &str, field90: &str, hex: &str) -> Result<Vec<u8>, IssuerError> {
        let bad = || saf_err("sealed card number unreadable (wrong key or altered row)");
        if !hex.len().is_multiple_of(2) || hex.len() < 2 * (NONCE_LEN + 16) {
            return Err(bad());
        }
        let mut raw = hex::decode(hex).map_err(|_| bad())?;
        let (nonce, sealed) = raw.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let aad = format!("{issuer}\u{1f}{field90}");
        let plain = self.key.0.open_in_place(nonce, Aad::from(aad.as_bytes()), sealed).map_err(|_| bad())?;
        Ok(plain.to_vec())
    }
}

impl SafStore for SqlSaf {
    fn enqueue(
        &self,
        issuer: &str,
        field90: &str,
        reversal: &Message,
        now_ms: i64,
    ) -> Result<bool, IssuerError> {
        self.enqueue_attempted(issuer, field90, reversal, now_ms, 0)
    }

    fn enqueue_attempted(
        &self,
        issuer: &str,
        field90: &str,
        reversal: &Message,
        now_ms: i64,
        attempts: u32,
    ) -> Result<bool, IssuerError> {
        let (json, pan_enc) = self.stored_form(issuer, field90, reversal)?;
        let ps = [
            V::T(Some(issuer.into())),
            V::I(now_ms),
            V::T(Some(field90.into())),
            V::T(Some(json)),
            V::T(pan_enc),
            V::I(i64::from(attempts)),
        ];
        self.with(|db| db.exec(INSERT, &ps)).map(|n| n == 1)
    }

    fn enqueue_advice(
        &self,
        issuer: &str,
        key: &str,
        advice: &Message,
        now_ms: i64,
        not_before: i64,
    ) -> Result<bool, IssuerError> {
        let (json, pan_enc) = self.stored_form(issuer, key, advice)?;
        let ps = [
            V::T(Some(issuer.into())),
            V::I(now_ms),
            V::T(Some(key.into())),
            V::T(Some(json)),
            V::T(pan_enc),
            V::I(not_before),
        ];
        self.with(|db| db.exec(INSERT_ADVICE, &ps)).map(|n| n == 1)
    }

    fn advice_answered(&self, id: i64, rc: &str, now_ms: i64) -> Result<bool, IssuerError> {
        self.with(|db| {
            let first = db.exec(ADVICE_ACKED, &[V::I(id), V::I(now_ms), V::T(Some(rc.into()))])? == 1;
            let rows = db.rows(ADVICE_KEY, &[V::I(id)], &[false])?;
            if let Some(V::T(Some(key))) = rows.first().and_then(|r| r.first())
                && let Some((terminal, stan, txn_key)) = advice_identity(key)
            {
                let ps = [
                    V::T(Some(rc.into())),
                    V::T(Some(terminal.into())),
                    V::T(Some(stan.into())),
                    V::T(Some(txn_key.into())),
                ];
                db.exec(ADVICE_RC, &ps)?;
            }
            Ok(first)
        })
    }

    fn void_advice(&self, issuer: &str, key: &str, now_ms: i64) -> Result<bool, IssuerError> {
        let ps = [V::T(Some(issuer.into())), V::T(Some(key.into())), V::I(now_ms)];
        self.with(|db| db.exec(VOID, &ps)).map(|n| n == 1)
    }

    fn advices_pending(&self, issuer: &str) -> Result<(u64, i64), IssuerError> {
        let rows =
            self.with(|db| db.rows(ADVICES, &[V::T(Some(issuer.into()))], &[true, true, false, false]))?;
        let amount = rows
            .iter()
            .filter_map(|r| match r.get(3) {
                Some(V::T(Some(json))) => Some(json_amount(json)),
                _ => None,
            })
            .fold(0i64, i64::saturating_add);
        Ok((rows.len() as u64, amount))
    }

    fn void_orphan_advices(&self, issuer: &str, before_ms: i64) -> Result<u64, IssuerError> {
        self.with(|db| {
            let rows = db.rows(ADVICES, &[V::T(Some(issuer.into()))], &[true, true, false, false])?;
            let mut voided = 0;
            for row in rows {
                let (Some(V::I(id)), Some(V::I(created)), Some(V::T(Some(key)))) =
                    (row.first(), row.get(1), row.get(2))
                else {
                    continue;
                };
                if *created >= before_ms {
                    continue;
                }
                let Some((terminal, stan, txn_key)) = advice_identity(key) else { continue };
                let ps = [V::T(Some(terminal.into())), V::T(Some(stan.into())), V::T(Some(txn_key.into()))];
                let found = db.rows(STOOD_IN, &ps, &[true])?;
                if matches!(found.first().and_then(|r| r.first()), Some(V::I(n)) if *n > 0) {
                    continue;
                }
                voided += db.exec(VOID_ID, &[V::I(*id), V::I(before_ms)])?;
            }
            Ok(voided)
        })
    }
    fn due(
        &self,
        issuer: &str,
        spec: &Arc<Spec>,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<SafItem>, IssuerError> {
        let ps = [V::T(Some(issuer.into())), V::I(now_ms), V::I(limit.min(10_000) as i64)];
        let rows = self.with(|db| db.rows(DUE, &ps, &[true, true, false, false, false, false]))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (
                Some(V::I(id)),
                Some(V::I(attempts)),
                Some(V::T(Some(field90))),
                Some(V::T(Some(json))),
                Some(V::T(pan)),
            ) = (row.first(), row.get(1), row.get(2), row.get(3), row.get(4))
            else {
                continue;
            };
            let value: serde_json::Value = serde_json::from_str(json).map_err(saf_err)?;
            let mut reversal = from_json(spec, &value).map_err(saf_err)?;
            if let Some(hex) = pan {
                let pan = self.open_pan(issuer, field90, hex)?;
                reversal.set_bytes(2, &pan).map_err(saf_err)?;
            }
            out.push(SafItem {
                id: *id,
                field90: field90.clone(),
                attempts: u32::try_from(*attempts).unwrap_or(u32::MAX),
                reversal,
            });
        }
        Ok(out)
    }

    fn attempted(&self, id: i64, attempts: u32, next_attempt_at: i64) -> Result<(), IssuerError> {
        let ps = [V::I(id), V::I(i64::from(attempts)), V::I(next_attempt_at)];
        self.with(|db| db.exec(ATTEMPTED, &ps)).map(|_| ())
    }

    fn acked(&self, id: i64, now_ms: i64) -> Result<bool, IssuerError> {
        self.with(|db| db.exec(ACKED, &[V::I(id), V::I(now_ms)])).map(|n| n == 1)
    }

    fn expired(&self, id: i64, now_ms: i64) -> Result<(), IssuerError> {
        self.with(|db| db.exec(EXPIRED, &[V::I(id), V::I(now_ms)])).map(|_| ())
    }

    fn barrier(&self) -> Result<(), IssuerError> {
        // Each enqueue commits under the lock: holding it once means every one begun
        // before has committed.
        self.with(|_| Ok(()))
    }

    fn depth(&self, issuer: &str) -> Result<u64, IssuerError> {
        let rows = self.with(|db| db.rows(DEPTH, &[V::T(Some(issuer.into()))], &[true]))?;
        Ok(match rows.first().and_then(|r| r.first()) {
            Some(V::I(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        })
    }
}

impl SqlSaf {
    /// A message as stored: its JSON without field 2 and any sensitive field, and the card
    /// number sealed under the row's issuer and key.
    fn stored_form(
        &self,
        issuer: &str,
        field90: &str,
        reversal: &Message,
    ) -> Result<(String, Option<String>), IssuerError> {
        let pan_enc = match reversal.bytes(2) {
            Some(pan) => Some(self.seal(issuer, field90, &pan)?),
            None => None,
        };
        let mut bare = reversal.clone();
        bare.remove(2);
        // A reversal never carries tracks, PIN block or CVV; should one come anyway,
        // it is not stored (every field the spec marks sensitive goes).
        let spec = bare.spec().clone();
        let sensitive: Vec<usize> =
            bare.fields().filter(|&n| spec.field(n).is_some_and(|f| f.sensitive.is_some())).collect();
        for n in sensitive.into_iter().chain([35, 36, 45, 52]) {
            bare.remove(n);
        }
        Ok((to_json(&bare, false), pan_enc))
    }
}
