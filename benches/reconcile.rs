//! Reconciling the in-doubt log at start, per logged request: 10,000 requests in one
//! sealed segment, each looked up in a SQLite journal that holds its answer (after a
//! crash most logged requests were answered; one that was not costs a store-and-forward
//! insert besides). The journal rows are written once; the segment is written again before
//! each iteration (untimed), since reconciliation deletes it. What the start of the switch
//! waits for after a crash is about this figure times the requests logged in the last
//! rotation and hold period.
//! Run with `cargo bench --bench reconcile`.
//! May import: the switch's start-up reconciliation, the in-doubt log, the journal, the codec.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use isoswitch::config::Config;
use isoswitch::iso::{Message, spec};
use isoswitch::issuer::SafStore;
use isoswitch::issuer::indoubt::{InDoubt, IssuerLog, lock_dir};
use isoswitch::journal::Decided;
use isoswitch::journal::saf_store::{SafKey, SqlSaf};
use isoswitch::journal::{Journal, JournalConfig, TxnRecord};
use isoswitch::rc::ResponseCode;
use isoswitch::route::txn::TxnType;
use isoswitch::switch::reconcile::{JournalSettled, reconcile};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const N: u32 = 10_000;

/// The request as the switch wrote it to the issuer: switch STAN `t + 1`.
fn written(t: u32) -> Vec<u8> {
    let mut m = Message::new(spec::shipped("iso87ascii").unwrap(), "0200").unwrap();
    m.set(2, "4761739001010135").unwrap().set(3, "000000").unwrap().set_number(4, 1500).unwrap();
    m.set(7, "1124103000").unwrap().set_number(11, u64::from(t + 1)).unwrap();
    m.set(12, "103000").unwrap().set(13, "1124").unwrap().set(22, "051").unwrap();
    m.set(41, "TERM0001").unwrap().set(42, "MERCHANT0000001").unwrap().set(49, "156").unwrap();
    m.to_bytes().unwrap().to_vec()
}

/// The journal row of its answer: terminal STAN `t`, approved, switch STAN `t + 1`.
fn answered(t: u32) -> TxnRecord {
    TxnRecord {
        switch_id: "n".into(),
        business_date: "20261124".into(),
        terminal_id: "TERM0001".into(),
        merchant_id: "MERCHANT0000001".into(),
        stan: format!("{t:06}").into(),
        switch_stan: Some(format!("{:06}", t + 1).into()),
        transmission_time: "1124103000".into(),
        txn_key: Some("0200 1124103000".into()),
        mti: "0200".into(),
        txn_type: TxnType::Purchase.into(),
        decision: Decided::Forward,
        rc: Some(ResponseCode::APPROVED),
        ..TxnRecord::default()
    }
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("isoswitch-bench-reconcile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let jc = JournalConfig::Sqlite { path: dir.join("journal.db"), full_sync: false };
    let journal = Journal::open(&jc).unwrap();
    let saf: Arc<dyn SafStore> = SqlSaf::open(&jc, SafKey::from_hex(KEY).unwrap()).unwrap().shared();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let pending: Vec<_> = (0..N).map(|t| journal.record(answered(t))).collect();
        for p in futures_util::future::join_all(pending).await {
            assert!(p.unwrap());
        }
    });
    let cfg = Config::parse(
        "bench.toml",
        "[[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"127.0.0.1:9\"\nspec = \"iso87ascii\"\n",
    )
    .unwrap();
    let idir = dir.join("indoubt");
    let key = SafKey::from_hex(KEY).unwrap().aead();
    let log_cfg = InDoubt {
        dir: idir.clone(),
        key: key.clone(),
        rotate: Duration::from_secs(600),
        fsync: false,
        settled: Arc::new(JournalSettled(journal.clone())),
        lock: Arc::new(lock_dir(&idir).unwrap()),
    };
    let requests: Vec<Vec<u8>> = (0..N).map(written).collect();
    let write_segment = || {
        let log = IssuerLog::new("bank".into(), &log_cfg).unwrap();
        let mut w = log.writer(0);
        for (t, r) in requests.iter().enumerate() {
            w.add(format!("{t:06}").as_bytes(), r);
            // About ten requests a batch, as the load runs see.
            if t % 10 == 9 {
                w.flush();
            }
        }
        w.flush();
    };

    let mut group = c.benchmark_group("reconcile");
    group.sample_size(10).throughput(Throughput::Elements(u64::from(N)));
    group.bench_function("10,000 logged requests, all answered in the journal", |b| {
        b.iter_batched(
            write_segment,
            |()| {
                let got = reconcile(&cfg, &idir, &key, &journal, &saf).unwrap();
                // What it claims: every request read, found answered, nothing reversed.
                assert_eq!((got.requests, got.answered, got.reversed), (N as usize, N as usize, 0));
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
