//! Decoding allocates nothing: a decoded message is the frame (`Bytes`, whose clone is a
//! reference-count increment) plus inline fixed storage. Counted with dhat's testing
//! profiler for the typical purchase in `iso87ascii` and `iso87bcd`. This file holds a
//! single test because the profiler is process-wide.

use bytes::Bytes;
use isoswitch::iso::{Message, spec::shipped};

#[path = "../benches/common/purchase.rs"]
mod purchase;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[test]
fn decode_of_a_purchase_allocates_nothing() {
    // Specs and frames are prepared before the profiler starts counting.
    let cases: Vec<(_, Bytes)> = ["iso87ascii", "iso87bcd"]
        .into_iter()
        .map(|name| {
            let spec = shipped(name).unwrap();
            let (_, wire) = purchase::purchase(&spec);
            if name == "iso87ascii" {
                let hex = hex::encode(&wire);
                assert_eq!(hex, purchase::ISO87ASCII_HEX);
            }
            (spec, wire)
        })
        .collect();

    let _profiler = dhat::Profiler::builder().testing().build();
    for (spec, wire) in &cases {
        let before = dhat::HeapStats::get();
        let m = Message::decode(spec, wire.clone()).unwrap();
        let count = m.field_count();
        let pan_len = m.raw(2).map(<[u8]>::len);
        drop(m);
        let after = dhat::HeapStats::get();
        assert_eq!(count, 16);
        assert!(pan_len.is_some());
        assert_eq!(after.total_blocks - before.total_blocks, 0, "{} allocated while decoding", spec.name);
        assert_eq!(after.total_bytes - before.total_bytes, 0);
    }
    // Control: the profiler does see an allocation made here.
    let before = dhat::HeapStats::get();
    let v = std::hint::black_box(vec![0u8; 16]);
    drop(v);
    assert_eq!(dhat::HeapStats::get().total_blocks - before.total_blocks, 1);
}
