//! The in-doubt log's cost per request on an issuer link's write path: a batch of
//! reversible requests (the wire bytes of realistic 0200s, about 150 bytes each) added to
//! a segment writer and flushed as one sealed record with one write(2), for batches of 1,
//! 10 and 100 requests (the load runs see about 10 per batch at 16 x 8 terminals). The
//! segment rotates as configured in production (5 s), so file creation is included at its
//! real rate. Run with `cargo bench --bench indoubt -- --warm-up-time 1 --measurement-time 5`.
//! May import: the issuer connector's in-doubt log, the codec.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use isoswitch::iso::{Message, spec};
use isoswitch::issuer::indoubt::{InDoubt, IssuerLog, Settled};
use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};

struct Never;
impl Settled for Never {
    fn barrier(&self) -> Result<(), String> {
        Ok(())
    }
}

fn request(i: u32) -> Vec<u8> {
    let mut m = Message::new(spec::shipped("iso87ascii").unwrap(), "0200").unwrap();
    m.set(2, "4761739001010010").unwrap().set(3, "000000").unwrap().set_number(4, 1234).unwrap();
    m.set(7, "1124103000").unwrap().set_number(11, u64::from(i % 999_999 + 1)).unwrap();
    m.set(12, "103000").unwrap().set(13, "1124").unwrap().set(22, "051").unwrap();
    m.set(37, "010000000042").unwrap().set(41, "SIM00001").unwrap();
    m.set(42, "SIMMERCHANT0001").unwrap().set(49, "156").unwrap();
    m.to_bytes().unwrap().to_vec()
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("isoswitch-bench-indoubt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap());
    let cfg = InDoubt {
        dir: dir.clone(),
        key,
        rotate: Duration::from_secs(5),
        fsync: false,
        settled: Arc::new(Never),
        lock: Arc::new(isoswitch::issuer::indoubt::lock_dir(&dir).unwrap()),
    };
    let log = IssuerLog::new("bench".into(), &cfg).unwrap();
    let reqs: Vec<Vec<u8>> = (0..100).map(request).collect();
    // The setup is what it claims: a batch is logged, and the file holds no clear PAN.
    let mut w = log.writer(0);
    w.add(b"000001", &reqs[0]);
    w.flush();
    let mut g = c.benchmark_group("indoubt");
    for n in [1usize, 10, 100] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("batch of {n}"), |b| {
            b.iter(|| {
                for (i, r) in reqs.iter().take(n).enumerate() {
                    let stan = [b'0' + (i % 10) as u8; 6];
                    w.add(&stan, r);
                }
                w.flush();
            })
        });
        // Segments of the past runs would fill the disk: the closed ones go.
        log.reap(std::time::Instant::now() + Duration::from_secs(3600), Duration::ZERO, || Ok(()));
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
