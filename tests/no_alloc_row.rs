//! Making a request's journal row allocates nothing but the row's box: its text fields are
//! inline strings read straight from the decoded request (ASCII, BCD or UnionPay-style),
//! its PAN hash 32 inline hex digits. A row is made on a request's task and dropped on the
//! journal's writer thread, so every allocation in it was a cross-thread free. Counted
//! with dhat's testing profiler; this file holds a single test because the profiler is
//! process-wide.

use std::sync::Arc;

use bytes::Bytes;
use compact_str::{CompactString, format_compact};
use isoswitch::acceptor::record::{Recorder, answered, status_of};
use isoswitch::iso::{Message, spec::shipped};
use isoswitch::journal::{Decided, PanHasher, SettleCycle};
use isoswitch::rc::ResponseCode;
use isoswitch::route::txn::TxnType;
use isoswitch::route::{Router, RuleSet};

#[path = "../benches/common/purchase.rs"]
mod purchase;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// A UnionPay-style purchase: no field 7, its batch number in 60.2, numeric fields in BCD.
fn cup_purchase() -> Bytes {
    let mut m = Message::new(shipped("cup-pos").unwrap(), "0200").unwrap();
    for (n, v) in [
        (2, "6228480402564890018"),
        (3, "000000"),
        (4, "000000002500"),
        (11, "000321"),
        (22, "051"),
        (25, "00"),
        (41, "10000001"),
        (42, "898340158120001"),
        (49, "156"),
        (60, "22000123000"),
    ] {
        m.set(n, v).unwrap_or_else(|e| panic!("field {n}: {e}"));
    }
    m.to_bytes().unwrap()
}

#[test]
fn making_and_dropping_a_row_allocates_only_its_box() {
    // Everything but the row is prepared before the profiler starts counting: the
    // decoded requests (as the switch holds them) and the recorder.
    let requests: Vec<Message> = ["iso87ascii", "iso87bcd"]
        .into_iter()
        .map(|name| {
            let spec = shipped(name).unwrap();
            let (_, wire) = purchase::purchase(&spec);
            if name == "iso87ascii" {
                assert_eq!(hex::encode(&wire), purchase::ISO87ASCII_HEX);
            }
            Message::decode(&spec, wire).unwrap()
        })
        .chain([Message::decode(&shipped("cup-pos").unwrap(), cup_purchase()).unwrap()])
        .collect();
    let rules =
        RuleSet::open_with_routes("test", "[default]\nissuer = \"bank\"\ncard_type = \"debit\"\n").unwrap();
    let recorder = Recorder::new(None, Arc::new(Router::new(rules)), PanHasher::new(b"k"), "node-1".into());
    let hasher = PanHasher::new(b"k");

    let _profiler = dhat::Profiler::builder().testing().build();
    for req in &requests {
        let name = &req.spec().name;
        let before = dhat::HeapStats::get();
        // 2026-11-24 10:00 UTC; what the forwarding handler and the outcome add.
        let mut row = recorder.row(req, 1_795_514_400_000, TxnType::Purchase.into(), Decided::Forward);
        row.issuer = Some("bank".into());
        row.route = Some("bank".into());
        row.switch_stan = Some(format_compact!("{:06}", 42));
        row.auth_code = Some(CompactString::new("A1B2C3"));
        answered(&mut row, ResponseCode::APPROVED, status_of(ResponseCode::APPROVED));
        let made = dhat::HeapStats::get();
        // The row is filled (and not by allocating): checked before it is dropped.
        assert_eq!((row.switch_id.as_str(), row.business_date.as_str()), ("node-1", "20261124"), "{name}");
        assert_eq!(row.settle_cycle, SettleCycle::T1);
        assert!(row.approved());
        let pan = req.pan().unwrap().into_owned();
        assert_eq!(row.pan_hash, Some(hasher.hash(&pan)), "{name}");
        assert_eq!(row.pan_masked.as_deref(), Some(isoswitch::iso::mask::mask_pan(&pan).as_str()), "{name}");
        if *name == "cup-pos" {
            assert_eq!((row.stan.as_str(), row.terminal_id.as_str()), ("000321", "10000001"));
            assert_eq!(row.terminal_batch.as_deref(), Some("000123"));
            assert_eq!(row.txn_key.as_deref(), Some("0200 b000123"));
            assert_eq!((row.amount, row.currency.as_deref()), (2500, Some("156")));
        } else {
            assert_eq!((row.stan.as_str(), row.terminal_id.as_str()), ("123456", "TERM0001"), "{name}");
            assert_eq!(row.merchant_id, "MERCHANT0000001", "{name}");
            assert_eq!((row.rrn.as_deref(), row.mti.as_str()), (Some("432812345678"), "0200"), "{name}");
            assert_eq!(row.txn_key.as_deref(), Some("0200 1124003400"), "{name}");
            assert_eq!((row.amount, row.currency.as_deref()), (1000, Some("840")), "{name}");
        }
        // Checked before the asserts above allocated (their `pan`).
        let counted =
            |s: dhat::HeapStats| (s.total_blocks - before.total_blocks, s.total_bytes - before.total_bytes);
        let (blocks, bytes) = counted(made);
        assert_eq!(
            blocks, 1,
            "{name}: making a row allocated {blocks} blocks ({bytes} bytes), only its box expected"
        );
        assert_eq!(bytes as usize, size_of::<isoswitch::journal::TxnRecord>(), "{name}");
        let live = dhat::HeapStats::get().curr_blocks;
        drop(row);
        assert_eq!(
            dhat::HeapStats::get().curr_blocks,
            live - 1,
            "{name}: dropping the row freed only its box"
        );
        drop(pan);
    }
    // Control: the profiler does see an allocation of the kind a `String` field made.
    let before = dhat::HeapStats::get();
    let s = std::hint::black_box(String::from("TERM0001"));
    drop(s);
    assert_eq!(dhat::HeapStats::get().total_blocks - before.total_blocks, 1);
}
