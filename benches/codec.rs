//! Codec throughput: decode and encode of a typical 0200 purchase in `iso87ascii` and
//! `iso87bcd`, reported in messages per second. Encoding is timed three ways: a message
//! built field by field (`encode_built`, what pyiso8583's encode does), a decoded message
//! (`encode_decoded`: its fields are copied from the frame in one piece) and a decoded
//! message with its STAN and RRN overridden (`encode_forward`, as the switch forwards a
//! request). Run with
//! `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3`.
//! The setup is checked before anything is timed. May import: the codec.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use isoswitch::iso::{Message, spec::shipped};

#[path = "common/purchase.rs"]
mod purchase;

fn codec(c: &mut Criterion) {
    for name in ["iso87ascii", "iso87bcd"] {
        let spec = shipped(name).expect("shipped spec");
        let (built, wire) = purchase::purchase(&spec);

        // Setup check: the bytes decode, to the same 16 fields, and encode back exactly.
        let decoded = Message::decode(&spec, wire.clone()).expect("purchase decodes");
        assert_eq!(decoded.field_count(), 16, "{name}: field count");
        assert_eq!(decoded, built, "{name}: decoded message");
        let mut out = BytesMut::with_capacity(512);
        decoded.encode(&mut out).expect("purchase encodes");
        assert_eq!(&out[..], &wire[..], "{name}: re-encoded bytes");
        if name == "iso87ascii" {
            let hex = hex::encode(&wire);
            assert_eq!(hex, purchase::ISO87ASCII_HEX, "the bytes pyiso8583_compare.py times");
        }

        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(1));
        g.bench_function("decode", |b| {
            b.iter(|| match &Message::decode(&spec, black_box(wire.clone())) {
                Ok(m) => black_box(m).field_count(),
                Err(_) => 0,
            })
        });
        // Setup check: the three encodings the bench times give the expected bytes.
        let overrides: &[(usize, &str)] = &[(11, "654321"), (37, "000000000042")];
        let mut forward = decoded.clone();
        forward.set(11, "654321").expect("STAN").set(37, "000000000042").expect("RRN");
        let mut with = BytesMut::new();
        decoded.encode_with(overrides, &mut with).expect("forward encodes");
        assert_eq!(&with[..], &forward.to_bytes().expect("patched message encodes")[..], "{name}: forward");
        out.clear();
        built.encode(&mut out).expect("built encodes");
        assert_eq!(&out[..], &wire[..], "{name}: built message's bytes");
        g.bench_function("encode_built", |b| {
            b.iter(|| {
                out.clear();
                black_box(&built).encode(&mut out).map(|()| black_box(out.len()))
            })
        });
        g.bench_function("encode_decoded", |b| {
            b.iter(|| {
                out.clear();
                black_box(&decoded).encode(&mut out).map(|()| black_box(out.len()))
            })
        });
        g.bench_function("encode_forward", |b| {
            b.iter(|| {
                out.clear();
                black_box(&decoded).encode_with(black_box(overrides), &mut out).map(|()| black_box(out.len()))
            })
        });
        g.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
