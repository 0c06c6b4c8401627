//! The session table's cost per request, two threads at once (two links of one issuer,
//! one STAN allocator, one table, as the reader tasks and the requests share it): each
//! thread inserts an entry, and with 64 of its own in flight takes the oldest back, by its
//! reply (15 in 16) or by its deadline (1 in 16). `dashmap` is the table as it was (a
//! sharded-lock map, `SessionTable::new`); `slots` is the default-key table
//! (`SessionTable::for_key` with field 11: slots indexed by the switch STAN). One
//! iteration = one insert and one take on each thread; the time is wall time over both.
//! The same with one thread separates the table's own cost from cross-core traffic.
//! Run with `cargo bench --bench session -- --warm-up-time 1 --measurement-time 5`.
//! May import: the issuer connector's session table.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use isoswitch::issuer::session::{Key, MatchKey, Pending, SessionTable, Ticket};

const DEPTH: usize = 64;

fn pending() -> Pending {
    // Nothing is ever sent: the receiver is not needed.
    let (tx, _) = tokio::sync::oneshot::channel();
    let now = Instant::now();
    Pending {
        reply: tx,
        sent: now,
        deadline: now + Duration::from_secs(5),
        reply_mti: *b"0210",
        terminal_stan: Some(1),
        terminal_rrn: None,
    }
}

fn key(link: u32, stan: u32) -> Key {
    Key { link, stan, extra: Bytes::new() }
}

/// One thread's part: `iters` inserts and as many takes; returns its wall time.
fn worker(table: &SessionTable, stans: &AtomicU32, link: u32, iters: u64, start: &Barrier) -> Duration {
    let mut pool: Vec<Pending> = (0..=DEPTH).map(|_| pending()).collect();
    let mut flight: VecDeque<(Ticket, u64)> = VecDeque::with_capacity(DEPTH + 1);
    start.wait();
    let t0 = Instant::now();
    let mut i = 0u64;
    while i < iters {
        let stan = stans.fetch_add(1, Ordering::Relaxed) % 999_999 + 1;
        if table.busy(stan) {
            continue;
        }
        let Some(p) = pool.pop() else { break };
        match table.insert(key(link, stan), p) {
            Ok(t) => flight.push_back((t, i)),
            Err(p) => {
                pool.push(p);
                continue;
            }
        }
        if flight.len() > DEPTH
            && let Some((t, n)) = flight.pop_front()
        {
            let back =
                if n % 16 == 0 { table.take(&t) } else { table.take_reply(t.key(), b"0210").map(|(p, _)| p) };
            pool.push(black_box(back).expect("the entry waits until taken"));
        }
        i += 1;
    }
    let took = t0.elapsed();
    for (t, _) in flight {
        table.take(&t);
    }
    took
}

fn run(table: &Arc<SessionTable>, threads: u32, iters: u64) -> Duration {
    let stans = Arc::new(AtomicU32::new(0));
    let start = Arc::new(Barrier::new(threads as usize));
    let handles: Vec<_> = (0..threads)
        .map(|link| {
            let (table, stans, start) = (table.clone(), stans.clone(), start.clone());
            std::thread::spawn(move || worker(&table, &stans, link, iters, &start))
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("worker")).max().unwrap_or_default()
}

/// The tables are what they claim, and an entry comes back by its reply and by its ticket.
fn check(name: &str, table: &SessionTable, slotted: bool) {
    let t = table.insert(key(0, 42), pending()).expect("insert into an empty table");
    assert_eq!(table.busy(42), slotted, "{name}: slots say a STAN is busy, a map does not");
    assert!(table.take_reply(&key(1, 42), b"0210").is_none(), "{name}: another link's reply");
    let (_, expected) = table.take_reply(&key(0, 42), b"0210").expect("the reply matches");
    assert!(expected);
    assert!(table.take(&t).is_none(), "{name}: taken twice");
    assert!(table.is_empty());
}

fn bench(c: &mut Criterion) {
    let tables = [
        ("dashmap", Arc::new(SessionTable::new()), false),
        ("slots", Arc::new(SessionTable::for_key(&MatchKey::new(&[11]), 4096)), true),
    ];
    for threads in [2, 1] {
        let mut g = c.benchmark_group(format!("session_insert_match_remove_{threads}_threads"));
        g.throughput(Throughput::Elements(u64::from(threads)));
        for (name, table, slotted) in &tables {
            check(name, table, *slotted);
            run(table, threads, 10_000);
            assert!(table.is_empty(), "{name}: a trial run left entries behind");
            g.bench_function(*name, |b| b.iter_custom(|iters| run(table, threads, iters)));
            assert!(table.is_empty(), "{name}: every entry left");
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
