//! What durability costs on this disk, measured side by side: the floor under the durable
//! journal's latency at light load (one request in flight). Each round, in turn:
//!
//! - `fdatasync append 4k`: append 4 KiB to a file and `fdatasync` it (the file grows, so
//!   the file system commits its size too, as it does for a growing WAL);
//! - `fdatasync overwrite 4k`: rewrite 4 KiB in place and `fdatasync` (no metadata);
//! - `sqlite full 1 row`: one row committed by the journal's SQLite store at
//!   `synchronous = FULL` (the shipped default), called directly;
//! - `sqlite normal 1 row`: the same at NORMAL (no sync at commit): the CPU part;
//! - `journal full 1 row`: one row through `Journal` (queue, writer thread, group commit,
//!   the caller woken), as the switch records an approval;
//! - `journal hop, no store`: the same through a `Journal` whose store does nothing: what
//!   handing a row to the writer thread and being woken by it costs.
//!
//! Interleaving keeps a busy disk's slow moments shared by all. Prints one line per
//! measure: `NAME: p50 X us, p99 Y us, p999 Z us (N samples)`.
//!
//! `cargo build --release --example sync_floor`
//! `target/release/examples/sync_floor DIR [ROUNDS]` (DIR: on the journal's disk; files
//! named `sync-floor*` are made there and removed)

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use isoswitch::journal::Store;
use isoswitch::journal::sqlite::SqliteStore;
use isoswitch::journal::store::Discard;
use isoswitch::journal::{Journal, PanHasher, TxnRecord};

#[path = "../benches/common/rows.rs"]
mod rows;

/// One row through `journal`: queued, committed by its writer thread, the caller woken.
fn through(journal: &Journal, row: Box<TxnRecord>) -> Result<bool, String> {
    match journal.try_submit(row) {
        Ok(rx) => {
            rx.blocking_recv().map_err(|_| "journal writer gone".to_string())?.map_err(|e| e.to_string())
        }
        Err(_) => Err("journal queue full".to_string()),
    }
}

struct Series {
    name: &'static str,
    took: Vec<Duration>,
}

impl Series {
    fn new(name: &'static str) -> Series {
        Series { name, took: Vec::new() }
    }

    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let out = f();
        self.took.push(t0.elapsed());
        out
    }

    fn report(&mut self) {
        self.took.sort();
        let n = self.took.len();
        let at = |q: f64| self.took[((n as f64 * q) as usize).min(n - 1)].as_secs_f64() * 1e6;
        println!(
            "{}: p50 {:.0} us, p99 {:.0} us, p999 {:.0} us ({n} samples)",
            self.name,
            at(0.5),
            at(0.99),
            at(0.999)
        );
    }
}

/// Removes the files made in the directory, also on an early return.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            for suffix in ["", "-wal", "-shm"] {
                let mut s = p.as_os_str().to_os_string();
                s.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(s));
            }
        }
    }
}

fn run(dir: &Path, rounds: u64) -> Result<(), String> {
    let names = [
        "sync-floor.append",
        "sync-floor.overwrite",
        "sync-floor-full.db",
        "sync-floor-normal.db",
        "sync-floor-journal.db",
    ];
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    let _cleanup = Cleanup(paths.clone());
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let mut append = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&paths[0])
        .map_err(|e| io("append file", e))?;
    let mut over: File = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&paths[1])
        .map_err(|e| io("overwrite file", e))?;
    let page = vec![0x5au8; 4096];
    over.write_all(&page).and_then(|()| over.sync_all()).map_err(|e| io("overwrite file", e))?;
    let open = |p: &Path, full: bool| SqliteStore::open(p, full).map_err(|e| format!("{}: {e}", p.display()));
    let mut full = open(&paths[2], true)?;
    let mut normal = open(&paths[3], false)?;
    let journal = Journal::start(open(&paths[4], true)?);
    let hasher = PanHasher::new(b"sync-floor");

    let mut series = [
        Series::new("fdatasync append 4k"),
        Series::new("fdatasync overwrite 4k"),
        Series::new("sqlite full 1 row"),
        Series::new("sqlite normal 1 row"),
        Series::new("journal full 1 row"),
        Series::new("journal hop, no store"),
    ];
    let nothing = Journal::start(Discard);
    for i in 0..rounds {
        series[0]
            .time(|| append.write_all(&page).and_then(|()| append.sync_data()))
            .map_err(|e| io("append", e))?;
        series[1]
            .time(|| {
                over.seek(SeekFrom::Start(0))
                    .and_then(|_| over.write_all(&page))
                    .and_then(|()| over.sync_data())
            })
            .map_err(|e| io("overwrite", e))?;
        let row = [rows::row(i, &hasher)];
        let done = series[2].time(|| full.write(&row)).map_err(|e| e.to_string())?;
        let done2 = series[3].time(|| normal.write(&row)).map_err(|e| e.to_string())?;
        let boxed = Box::new(row[0].clone());
        let done3 = series[4].time(|| through(&journal, boxed))?;
        let boxed = Box::new(row[0].clone());
        let done4 = series[5].time(|| through(&nothing, boxed))?;
        // Setup check: every row is new and was inserted.
        if done != [true] || done2 != [true] || !done3 || !done4 {
            return Err(format!("round {i}: a row was not inserted"));
        }
    }
    for s in &mut series {
        s.report();
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: sync_floor DIR [ROUNDS]");
        return ExitCode::from(2);
    };
    let rounds = match args.next().map(|r| r.parse::<u64>()) {
        None => 300,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("sync_floor: ROUNDS must be a positive integer");
            return ExitCode::from(2);
        }
    };
    match run(Path::new(&dir), rounds) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sync_floor: {e}");
            ExitCode::from(1)
        }
    }
}
