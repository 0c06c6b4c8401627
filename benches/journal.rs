//! Journal insert rate: the SQLite store's group commit of realistic rows (16 terminals,
//! sequential STANs and RRNs, masked PAN and hash, every column the switch fills), in
//! rows per second, for groups of 64, 256 and 1024 rows at `synchronous = NORMAL` and
//! FULL. The database grows as the bench runs, as a journal does; the rows are built
//! outside the timed part. Run with
//! `cargo bench --bench journal -- --warm-up-time 1 --measurement-time 5`.
//! May import: the journal.

use std::path::PathBuf;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use isoswitch::journal::sqlite::SqliteStore;
use isoswitch::journal::{PanHasher, Status, Store, TxnRecord};

const TERMINALS: u64 = 16;

/// Row number `i`: what the switch journals for an approved 0200 forwarded to an issuer.
fn row(i: u64, hasher: &PanHasher) -> TxnRecord {
    let (t, s) = (i % TERMINALS, i / TERMINALS);
    let at = 1_795_479_740_000 + i as i64;
    TxnRecord {
        switch_id: "node-a".into(),
        received_at: at,
        forwarded_at: Some(at + 1),
        answered_at: Some(at + 3),
        business_date: "20261124".into(),
        terminal_id: format!("SIM{t:05}"),
        merchant_id: "SIMMERCHANT0001".into(),
        stan: format!("{:06}", s % 999_999 + 1),
        switch_stan: Some(format!("{:06}", i % 999_999 + 1)),
        rrn: Some(format!("{t:02}{s:010}")),
        transmission_time: format!("1124{:06}", s / 999_999),
        mti: "0200".into(),
        txn_type: "purchase".into(),
        amount: 1_000 + (i % 5_000) as i64,
        currency: Some("156".into()),
        pan_masked: Some("476173******0010".into()),
        pan_hash: Some(hasher.hash(&format!("47617390010{:05}", i % 64))),
        route: Some("default".into()),
        issuer: Some("default".into()),
        decision: "forward".into(),
        rc: "00".into(),
        auth_code: Some("123456".into()),
        fee: 6,
        settle_cycle: "T1".into(),
        status: Some(Status::Approved),
        batch: None,
        terminal_batch: None,
        txn_key: Some(format!("0200 1124{:06}", s / 999_999)),
        advice_rc: None,
    }
}

/// A directory of its own under the system's temporary one, removed when dropped.
struct Scratch(PathBuf);

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
            let dir = Scratch(
                std::env::temp_dir().join(format!("isoswitch-bench-{}-{sync}-{group}", std::process::id())),
            );
            std::fs::create_dir_all(&dir.0).expect("scratch directory");
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

criterion_group!(benches, journal);
criterion_main!(benches);
