//! The journal's cost, two ways.
//!
//! `journal_sqlite`: insert rate of the SQLite store's group commit of realistic rows (16
//! terminals, sequential STANs and RRNs, masked PAN and hash, every column the switch
//! fills), in rows per second, for groups of 64, 256 and 1024 rows at `synchronous =
//! NORMAL` and FULL (wall time).
//!
//! `journal_cpu`: CPU time per row in all the process's threads (writer, checkpointer,
//! applier: `common/cpu.rs`), groups of 256 rows, for the designs a durable journal could
//! have:
//! - `row_full`: today's store: one upsert per row into `transactions` (28 columns, text
//!   keys, the unique terminal-key index plus the RRN and day indexes), committed at FULL;
//! - `lean_full`: a lean row: integer columns where the value is a number or a code, two
//!   indexes (RRN; terminal + STAN + day), plain inserts 32 rows to a statement, FULL;
//! - `log_row`: an append-only record log (each row encoded, checksummed and appended, one
//!   `fdatasync` per group) as the durable point, and `transactions` maintained from it by
//!   an applier thread with today's store at `synchronous = NORMAL` in batches of up to
//!   4096 rows (the sum of both threads);
//! - `log_blob_table`: the record log, and the least a SQL table with a row per
//!   transaction can cost: each logged record inserted whole as one blob into a table with
//!   no index but its integer key, at `synchronous = NORMAL`, in batches of up to 4096 rows
//!   (no column is queryable; this is a floor, not a design);
//! - `log_alone`: the record log's share of that (encode, append, `fdatasync`): the floor
//!   of any design that still keeps a SQL table.
//!
//! The database grows as the bench runs, as a journal does; rows are built outside the
//! timed part. Run with
//! `cargo bench --bench journal -- --warm-up-time 1 --measurement-time 5` (add
//! `journal_cpu` to run only the designs).
//! May import: the journal.

#[path = "common/cpu.rs"]
mod cpu;
#[path = "common/rows.rs"]
mod rows;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use isoswitch::journal::record::rc_text;
use isoswitch::journal::sqlite::SqliteStore;
use isoswitch::journal::{PanHasher, Store, TxnRecord};
use rusqlite::Connection;

use cpu::ProcessCpu;
use rows::row;

/// A directory of its own under the system's temporary one, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("isoswitch-bench-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn journal(c: &mut Criterion) {
    let hasher = PanHasher::new(b"bench-key");
    let mut g = c.benchmark_group("journal_sqlite");
    for (sync, full) in [("normal", false), ("full", true)] {
        for group in [64u64, 256, 1024] {
            let dir = Scratch::new(&format!("{sync}-{group}"));
            let mut store = SqliteStore::open(&dir.0.join("journal.db"), full).expect("open journal");
            // Setup check: a group goes in whole, and the same keys again are duplicates.
            let first: Vec<TxnRecord> = (0..group).map(|i| row(i, &hasher)).collect();
            assert!(store.write(&first).expect("write").iter().all(|&inserted| inserted));
            assert!(store.write(&first).expect("write").iter().all(|&inserted| !inserted));
            let mut next = group;
            g.throughput(Throughput::Elements(group));
            g.bench_function(format!("{sync}/group_{group}"), |b| {
                b.iter_batched(
                    || {
                        let rows: Vec<TxnRecord> = (next..next + group).map(|i| row(i, &hasher)).collect();
                        next += group;
                        rows
                    },
                    |rows| store.write(&rows).expect("write"),
                    BatchSize::PerIteration,
                )
            });
        }
    }
    g.finish();
}

/// The lean row's table: numbers and codes as integers, two indexes.
const LEAN_SCHEMA: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
    CREATE TABLE lean (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL, answered_at INTEGER,
      business_date INTEGER NOT NULL, terminal_id TEXT NOT NULL, merchant_id TEXT NOT NULL,
      stan INTEGER NOT NULL, switch_stan INTEGER, rrn TEXT, transmission_time INTEGER NOT NULL,
      mti INTEGER NOT NULL, txn_type INTEGER NOT NULL, amount INTEGER NOT NULL, currency INTEGER,
      pan_masked TEXT, pan_hash TEXT, issuer INTEGER, rc TEXT NOT NULL, auth_code TEXT,
      fee INTEGER NOT NULL, status INTEGER, batch INTEGER);
    CREATE INDEX lean_rrn ON lean (rrn);
    CREATE INDEX lean_terminal ON lean (terminal_id, stan, business_date);";
const LEAN_COLUMNS: usize = 21;
const LEAN_PER_STATEMENT: usize = 32;

fn num(s: &str) -> i64 {
    s.parse().unwrap_or(0)
}

/// The lean insert of `n` rows in one statement.
fn lean_sql(n: usize) -> String {
    let one = format!("({})", vec!["?"; LEAN_COLUMNS].join(","));
    format!(
        "INSERT INTO lean (received_at, answered_at, business_date, terminal_id, merchant_id, stan, \
         switch_stan, rrn, transmission_time, mti, txn_type, amount, currency, pan_masked, pan_hash, \
         issuer, rc, auth_code, fee, status, batch) VALUES {}",
        vec![one; n].join(",")
    )
}

/// Insert `rows` as lean rows in one transaction, `LEAN_PER_STATEMENT` to a statement
/// (the full statement's text built once, `full`), text bound by reference, numbers parsed from the row's
/// digits as a lean row's writer would have them.
fn lean_write(conn: &Connection, full: &str, rows: &[TxnRecord]) {
    use rusqlite::types::{ToSqlOutput, Value, ValueRef};
    fn text(s: &str) -> ToSqlOutput<'_> {
        ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
    }
    fn opt<T: std::ops::Deref<Target = str>>(s: &Option<T>) -> ToSqlOutput<'_> {
        s.as_deref().map_or(ToSqlOutput::Owned(Value::Null), text)
    }
    let int = |n: i64| ToSqlOutput::Owned(Value::Integer(n));
    let null = || ToSqlOutput::Owned(Value::Null);
    conn.execute_batch("BEGIN").expect("begin");
    for chunk in rows.chunks(LEAN_PER_STATEMENT) {
        let partial;
        let statement = if chunk.len() == LEAN_PER_STATEMENT {
            full
        } else {
            partial = lean_sql(chunk.len());
            &partial
        };
        let mut stmt = conn.prepare_cached(statement).expect("prepare");
        let mut vals: Vec<ToSqlOutput<'_>> = Vec::with_capacity(chunk.len() * LEAN_COLUMNS);
        for r in chunk {
            vals.extend([
                int(r.received_at.as_i64()),
                r.answered_at.map_or_else(null, |t| int(t.as_i64())),
                int(num(&r.business_date)),
                text(&r.terminal_id),
                text(&r.merchant_id),
                int(num(&r.stan)),
                r.switch_stan.as_deref().map_or_else(null, |s| int(num(s))),
                opt(&r.rrn),
                int(num(&r.transmission_time)),
                int(num(&r.mti)),
                int(1),
                int(r.amount),
                r.currency.as_deref().map_or_else(null, |s| int(num(s))),
                opt(&r.pan_masked),
                opt(&r.pan_hash),
                int(1),
                text(rc_text(&r.rc)),
                opt(&r.auth_code),
                int(r.fee),
                int(1),
                null(),
            ]);
        }
        let n = stmt.execute(rusqlite::params_from_iter(vals.iter())).expect("insert");
        assert_eq!(n, chunk.len());
    }
    conn.execute_batch("COMMIT").expect("commit");
}

/// One record of the log: length, the fields in `COLUMNS` order (strings as a length and
/// bytes, absent as 0xFFFF; numbers as 8 bytes), and a checksum of it all.
fn encode(r: &TxnRecord, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let s = |out: &mut Vec<u8>, v: Option<&str>| match v {
        Some(v) => {
            out.extend_from_slice(&(v.len() as u16).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        None => out.extend_from_slice(&u16::MAX.to_le_bytes()),
    };
    let i = |out: &mut Vec<u8>, v: i64| out.extend_from_slice(&v.to_le_bytes());
    s(out, Some(&r.switch_id));
    i(out, r.received_at.as_i64());
    i(out, r.forwarded_at.map_or(-1, |t| t.as_i64()));
    i(out, r.answered_at.map_or(-1, |t| t.as_i64()));
    for v in [&r.business_date, &r.terminal_id, &r.merchant_id, &r.stan] {
        s(out, Some(v));
    }
    s(out, r.switch_stan.as_deref());
    s(out, r.rrn.as_deref());
    for v in [&r.transmission_time, &r.mti] {
        s(out, Some(v));
    }
    s(out, Some(r.txn_type.as_str()));
    i(out, r.amount);
    for v in [&r.currency, &r.pan_masked] {
        s(out, v.as_deref());
    }
    s(out, r.pan_hash.as_deref());
    for v in [&r.route, &r.issuer] {
        s(out, v.as_deref());
    }
    s(out, Some(r.decision.as_str()));
    s(out, Some(rc_text(&r.rc)));
    s(out, r.auth_code.as_deref());
    i(out, r.fee);
    s(out, Some(r.settle_cycle.as_str()));
    s(out, r.status.map(|s| s.as_str()));
    for v in [&r.batch, &r.terminal_batch, &r.txn_key] {
        s(out, v.as_deref());
    }
    let len = (out.len() - start + 8) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    // FNV-1a over the record: a torn tail is found at recovery.
    let sum = out[start..]
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    out.extend_from_slice(&sum.to_le_bytes());
}

/// The record log: encode a group, append it, `fdatasync`.
struct Log {
    file: File,
    buf: Vec<u8>,
}

impl Log {
    fn open(path: &Path) -> Log {
        let file = OpenOptions::new().create(true).append(true).open(path).expect("log file");
        Log { file, buf: Vec::with_capacity(1 << 20) }
    }

    fn append(&mut self, rows: &[TxnRecord]) {
        self.buf.clear();
        for r in rows {
            encode(r, &mut self.buf);
        }
        self.file.write_all(&self.buf).and_then(|()| self.file.sync_data()).expect("log append");
    }
}

/// An applier that inserts each record of a logged group (the group's bytes, records
/// found by their length prefix) as one blob row into a table with only its integer key,
/// at NORMAL, in batches of up to 4096 rows.
fn blob_applier(path: PathBuf) -> (mpsc::SyncSender<Vec<u8>>, thread::JoinHandle<u64>) {
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
    let handle = thread::Builder::new()
        .name("journal-apply".into())
        .spawn(move || {
            let conn = Connection::open(&path).expect("blob table");
            conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 CREATE TABLE records (id INTEGER PRIMARY KEY, rec BLOB NOT NULL);",
            )
            .expect("blob schema");
            let mut applied = 0u64;
            while let Ok(first) = rx.recv() {
                let groups = gather(&rx, first);
                conn.execute_batch("BEGIN").expect("begin");
                {
                    let mut stmt =
                        conn.prepare_cached("INSERT INTO records (rec) VALUES (?1)").expect("prepare");
                    for g in &groups {
                        let mut at = 0;
                        while at + 4 <= g.len() {
                            let len = u32::from_le_bytes(g[at..at + 4].try_into().expect("4 bytes")) as usize;
                            stmt.execute([&g[at..at + len]]).expect("insert");
                            applied += 1;
                            at += len;
                        }
                    }
                }
                conn.execute_batch("COMMIT").expect("commit");
            }
            applied
        })
        .expect("applier thread");
    (tx, handle)
}

/// An applier thread: inserts what the log made durable into today's store at NORMAL, in
/// batches of up to 4096 rows (whatever has queued up).
/// The queue to it is short: an applier that falls behind slows the bench down rather than
/// leaving its work for after the last sample.
fn applier(path: PathBuf) -> (mpsc::SyncSender<Vec<TxnRecord>>, thread::JoinHandle<u64>) {
    let (tx, rx) = mpsc::sync_channel::<Vec<TxnRecord>>(4);
    let handle = thread::Builder::new()
        .name("journal-apply".into())
        .spawn(move || {
            let mut store = SqliteStore::open(&path, false).expect("applier store");
            let mut applied = 0u64;
            while let Ok(first) = rx.recv() {
                let batch: Vec<TxnRecord> = gather(&rx, first).into_iter().flatten().collect();
                let done = store.write(&batch).expect("apply");
                applied += done.iter().filter(|&&d| d).count() as u64;
            }
            applied
        })
        .expect("applier thread");
    (tx, handle)
}

const GROUP: u64 = 256;
/// Rows an applier takes into one transaction at most.
const APPLY_BATCH: usize = 4096;

/// `first` and the logged groups (of `GROUP` rows each) queued behind it, up to
/// `APPLY_BATCH` rows: what an applier writes in one transaction.
fn gather<T>(rx: &mpsc::Receiver<T>, first: T) -> Vec<T> {
    let mut groups = vec![first];
    while groups.len() * (GROUP as usize) < APPLY_BATCH {
        match rx.try_recv() {
            Ok(more) => groups.push(more),
            Err(_) => break,
        }
    }
    groups
}

fn designs(c: &mut Criterion<ProcessCpu>) {
    let hasher = PanHasher::new(b"bench-key");
    let mut g = c.benchmark_group("journal_cpu");
    g.throughput(Throughput::Elements(GROUP));
    let batch = |next: &mut u64| {
        let rows: Vec<TxnRecord> = (*next..*next + GROUP).map(|i| row(i, &hasher)).collect();
        *next += GROUP;
        rows
    };

    {
        let dir = Scratch::new("cpu-row");
        let mut store = SqliteStore::open(&dir.0.join("journal.db"), true).expect("open journal");
        let mut next = 0;
        assert!(store.write(&batch(&mut next)).expect("write").iter().all(|&d| d), "setup: rows go in");
        g.bench_function("row_full", |b| {
            b.iter_batched(
                || batch(&mut next),
                |rows| store.write(&rows).expect("write"),
                BatchSize::PerIteration,
            )
        });
    }
    {
        let dir = Scratch::new("cpu-lean");
        let conn = Connection::open(dir.0.join("lean.db")).expect("open lean");
        conn.execute_batch(LEAN_SCHEMA).expect("lean schema");
        let full = lean_sql(LEAN_PER_STATEMENT);
        let mut next = 0;
        lean_write(&conn, &full, &batch(&mut next));
        let n: i64 = conn.query_row("SELECT count(*) FROM lean", [], |r| r.get(0)).expect("count");
        assert_eq!(n as u64, GROUP, "setup: lean rows go in");
        g.bench_function("lean_full", |b| {
            b.iter_batched(
                || batch(&mut next),
                |rows| lean_write(&conn, &full, &rows),
                BatchSize::PerIteration,
            )
        });
    }
    {
        let dir = Scratch::new("cpu-log");
        let mut log = Log::open(&dir.0.join("records.log"));
        let (tx, applier) = applier(dir.0.join("journal.db"));
        let mut next = 0;
        let mut sent = 0u64;
        g.bench_function("log_row", |b| {
            b.iter_batched(
                || batch(&mut next),
                |rows| {
                    log.append(&rows);
                    sent += rows.len() as u64;
                    tx.send(rows).expect("applier alive");
                },
                BatchSize::PerIteration,
            )
        });
        drop(tx);
        let applied = applier.join().expect("applier");
        assert_eq!(applied, sent, "every logged row reached the table");
    }
    {
        let dir = Scratch::new("cpu-log-blob");
        let mut log = Log::open(&dir.0.join("records.log"));
        let (tx, applier) = blob_applier(dir.0.join("blob.db"));
        let mut next = 0;
        let mut sent = 0u64;
        g.bench_function("log_blob_table", |b| {
            b.iter_batched(
                || batch(&mut next),
                |rows| {
                    log.append(&rows);
                    sent += rows.len() as u64;
                    tx.send(log.buf.clone()).expect("applier alive");
                },
                BatchSize::PerIteration,
            )
        });
        drop(tx);
        let applied = applier.join().expect("applier");
        assert_eq!(applied, sent, "every logged record reached the table");
    }
    {
        let dir = Scratch::new("cpu-log-alone");
        let mut log = Log::open(&dir.0.join("records.log"));
        let mut next = 0;
        let mut appended = 0u64;
        g.bench_function("log_alone", |b| {
            b.iter_batched(
                || batch(&mut next),
                |rows| {
                    log.append(&rows);
                    appended += 1;
                },
                BatchSize::PerIteration,
            )
        });
        // (A filter that leaves this bench out appends nothing.)
        let size = std::fs::metadata(dir.0.join("records.log")).map(|m| m.len()).unwrap_or(0);
        assert!(appended == 0 || size > 0, "the log was written");
    }
    g.finish();
}

criterion_group!(wall, journal);
criterion_group! {
    name = cpu_designs;
    config = Criterion::default().with_measurement(ProcessCpu);
    targets = designs
}
criterion_main!(wall, cpu_designs);
