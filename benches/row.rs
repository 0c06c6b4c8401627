//! `journal_row`: CPU time to make a request's journal row and drop it, as the switch does:
//! the row made from a decoded purchase on one thread (a request's task: `Recorder::row`,
//! then what forwarding and the answer write into it), dropped on another (the journal's
//! writer), with the switch's allocator (mimalloc). Both threads' CPU is counted
//! (`common/cpu.rs`), per row, in batches of 256 rows handed over at once.
//! - `make_drop_ascii`: the `iso87ascii` purchase of `common/purchase.rs`;
//! - `make_drop_bcd`: the same purchase in `iso87bcd` (numeric fields in BCD).
//!
//! Run with `cargo bench --bench row -- --warm-up-time 1 --measurement-time 5`.
//! May import: the acceptor's recorder, the codec, the journal.

#[path = "common/cpu.rs"]
mod cpu;
#[path = "common/purchase.rs"]
mod purchase;

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use isoswitch::acceptor::record::{Recorder, answered, status_of};
use isoswitch::iso::{Message, spec::shipped};
use isoswitch::journal::{Decided, PanHasher, TxnRecord};
use isoswitch::rc::ResponseCode;
use isoswitch::route::txn::TxnType;
use isoswitch::route::{Router, RuleSet};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 256;

fn make(recorder: &Recorder, req: &Message, at: i64) -> Box<TxnRecord> {
    let mut row = recorder.row(req, at, TxnType::Purchase.into(), Decided::Forward);
    row.issuer = Some("bank".into());
    row.route = Some("bank".into());
    row.switch_stan = req.text(11).map(|s| s.as_ref().into());
    row.auth_code = Some("A1B2C3".into());
    answered(&mut row, ResponseCode::APPROVED, status_of(ResponseCode::APPROVED));
    row
}

fn bench(c: &mut Criterion<cpu::ProcessCpu>) {
    let rules = RuleSet::open_with_routes("bench", "[default]\nissuer = \"bank\"\ncard_type = \"debit\"\n")
        .expect("rules");
    let recorder =
        Recorder::new(None, Arc::new(Router::new(rules)), PanHasher::new(b"bench"), "node-1".into());
    // The writer's side: drops a batch's rows and hands the emptied vector back.
    let (to_writer, batches) = mpsc::sync_channel::<Vec<Box<TxnRecord>>>(1);
    let (give_back, returned) = mpsc::sync_channel::<Vec<Box<TxnRecord>>>(1);
    let writer = thread::spawn(move || {
        for mut rows in batches {
            rows.clear();
            if give_back.send(rows).is_err() {
                break;
            }
        }
    });
    let mut spare = Some(Vec::with_capacity(BATCH));
    let mut g = c.benchmark_group("journal_row");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (label, spec) in [("make_drop_ascii", "iso87ascii"), ("make_drop_bcd", "iso87bcd")] {
        let spec = shipped(spec).expect("spec");
        let (_, wire) = purchase::purchase(&spec);
        if spec.name == "iso87ascii" {
            assert_eq!(hex::encode(&wire), purchase::ISO87ASCII_HEX, "the typical purchase");
        }
        let req = Message::decode(&spec, wire).expect("decode");
        g.bench_function(label, |b| {
            b.iter(|| {
                let mut rows = spare.take().unwrap_or_else(|| returned.recv().expect("writer"));
                for i in 0..BATCH {
                    rows.push(make(&recorder, &req, 1_795_514_400_000 + i as i64));
                }
                to_writer.send(rows).expect("writer");
                spare = Some(returned.recv().expect("writer"));
            })
        });
    }
    g.finish();
    drop(to_writer);
    let _ = writer.join();
}

fn config() -> Criterion<cpu::ProcessCpu> {
    Criterion::default().with_measurement(cpu::ProcessCpu)
}

criterion_group! { name = benches; config = config(); targets = bench }
criterion_main!(benches);
