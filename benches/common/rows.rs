//! Realistic journal rows for the journal's benches and `examples/sync_floor.rs`: what the
//! switch journals for an approved 0200 forwarded to an issuer, from `TERMINALS` terminals
//! with sequential STANs and RRNs, a masked PAN and its keyed hash, every column filled.

use compact_str::format_compact;
use isoswitch::journal::{Decided, SettleCycle};
use isoswitch::journal::{PanHasher, Status, TxnRecord};
use isoswitch::rc::ResponseCode;
use isoswitch::route::txn::TxnType;
use isoswitch::time::UnixMs;

pub const TERMINALS: u64 = 16;

/// Row number `i` (distinct `i` give distinct terminal keys up to ~16 million rows).
pub fn row(i: u64, hasher: &PanHasher) -> TxnRecord {
    let (t, s) = (i % TERMINALS, i / TERMINALS);
    let at = 1_795_479_740_000 + i as i64;
    TxnRecord {
        switch_id: "node-a".into(),
        received_at: UnixMs::from_i64(at),
        forwarded_at: Some(UnixMs::from_i64(at + 1)),
        answered_at: Some(UnixMs::from_i64(at + 3)),
        business_date: "20261124".into(),
        terminal_id: format_compact!("SIM{t:05}"),
        merchant_id: "SIMMERCHANT0001".into(),
        stan: format_compact!("{:06}", s % 999_999 + 1),
        switch_stan: Some(format_compact!("{:06}", i % 999_999 + 1)),
        rrn: Some(format_compact!("{t:02}{s:010}")),
        transmission_time: format_compact!("1124{:06}", s / 999_999),
        mti: "0200".into(),
        txn_type: TxnType::Purchase.into(),
        amount: 1_000 + (i % 5_000) as i64,
        currency: Some("156".into()),
        pan_masked: Some("476173******0010".into()),
        pan_hash: Some(hasher.hash(&std::format!("47617390010{:05}", i % 64))),
        route: Some("default".into()),
        issuer: Some("default".into()),
        decision: Decided::Forward,
        rc: Some(ResponseCode::APPROVED),
        auth_code: Some("123456".into()),
        fee: 6,
        settle_cycle: SettleCycle::T1,
        status: Some(Status::Approved),
        batch: None,
        terminal_batch: None,
        txn_key: Some(format_compact!("0200 1124{:06}", s / 999_999)),
        advice_rc: None,
    }
}
