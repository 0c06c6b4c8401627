//! Codec throughput: decode and encode of a typical 0200 purchase in `iso87ascii` and
//! `iso87bcd`, reported in messages per second. Encoding is timed three ways: a message
//! built field by field (`encode_built`, what pyiso8583's encode does), a decoded message
//! (`encode_decoded`: its fields are copied from the frame in one piece) and a decoded
//! message with its STAN and RRN overridden (`encode_forward`, as the switch forwards a
//! request). `tlv/parse` times the EMV field 55 of a chip purchase (18 items, one of them
//! a two-byte tag with a long-form length) parsed into its items. Run with
//! `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3`.
//! The setup is checked before anything is timed. May import: the codec.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use isoswitch::iso::{Message, spec::shipped, tlv};

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

/// Field 55 of a chip purchase: the tags a terminal sends with an ARQC.
fn field55() -> BytesMut {
    let items: [(u32, &[u8]); 18] = [
        (0x9F26, &[0x1A, 0x2B, 0x3C, 0x4D, 0x5E, 0x6F, 0x70, 0x81]),
        (0x9F27, &[0x80]),
        (0x9F10, &[0x07, 0x01, 0x01, 0x03, 0xA0, 0x00, 0x00, 0x01, 0x0A, 0x01]),
        (0x9F37, &[0x12, 0x34, 0x56, 0x78]),
        (0x9F36, &[0x00, 0x2A]),
        (0x95, &[0x00, 0x00, 0x00, 0x08, 0x00]),
        (0x9A, &[0x26, 0x12, 0x07]),
        (0x9C, &[0x00]),
        (0x9F02, &[0x00, 0x00, 0x00, 0x00, 0x10, 0x00]),
        (0x5F2A, &[0x08, 0x40]),
        (0x82, &[0x7C, 0x00]),
        (0x9F1A, &[0x08, 0x40]),
        (0x9F03, &[0x00; 6]),
        (0x9F33, &[0xE0, 0xF8, 0xC8]),
        (0x9F34, &[0x1E, 0x03, 0x00]),
        (0x9F35, &[0x22]),
        (0x84, &[0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10]),
        (0xDF8101, &[0xAB; 130]),
    ];
    let mut out = BytesMut::new();
    for (tag, value) in items {
        tlv::put(&mut out, tag, value);
    }
    out
}

fn emv(c: &mut Criterion) {
    let data = field55();
    // Setup check: every item parses back, the long one last.
    let items = tlv::parse(&data).expect("field 55 parses");
    assert_eq!(items.len(), 18);
    assert_eq!((items[17].tag, items[17].value.len()), (0xDF8101, 130));
    assert_eq!(tlv::build(&items), data);
    let mut g = c.benchmark_group("tlv");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| b.iter(|| tlv::parse(black_box(&data)).map_or(0, |v| v.len())));
    g.finish();
}

criterion_group!(benches, codec, emv);
criterion_main!(benches);
