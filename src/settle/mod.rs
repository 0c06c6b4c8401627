//! Settlement from the journal: per-merchant settlement lines (gross, refunds, fees, net)
//! for T+1 merchants per business day and for T+0 merchants per cut-off window, and the
//! terminal batch totals a 0500 is compared with. Pure functions over journal rows, in
//! integer minor units with checked arithmetic.
//! May import: crate::journal, crate::route.

pub mod batch;

use serde::Serialize;

use crate::journal::record::minute_of_day;
use crate::journal::{RowType, SettleCycle, Status, TxnRecord};
use crate::route::txn::TxnType;

/// Transaction types that move money from the cardholder to the merchant.
pub const DEBIT_TYPES: &[TxnType] = &[TxnType::Purchase, TxnType::PreAuthCompletion];
/// Transaction types that move money back to the cardholder.
pub const CREDIT_TYPES: &[TxnType] = &[TxnType::Refund];

/// How a journal row counts in settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Debit,
    Credit,
}

/// Whether a row settles, and which way: approved (or already settled) financial
/// transactions that were not reversed or voided afterwards.
pub fn direction(r: &TxnRecord) -> Option<Direction> {
    if !r.approved() {
        return None;
    }
    match r.status {
        Some(Status::Approved | Status::Settled | Status::Refunded | Status::Completed) | None => {}
        Some(Status::Reversed) | Some(Status::Voided) | Some(Status::Declined) => return None,
    }
    let RowType::Txn(t) = r.txn_type else { return None };
    if DEBIT_TYPES.contains(&t) {
        Some(Direction::Debit)
    } else if CREDIT_TYPES.contains(&t) {
        Some(Direction::Credit)
    } else {
        None
    }
}

/// One merchant's settlement for one cycle window. Money is in integer minor units of the
/// transaction currency (fen for CNY), and the serialised names say so (`gross_minor`):
/// one format in CSV, JSON and the demo, no floats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub merchant_id: String,
    pub cycle: SettleCycle,
    /// `day` for T+1; `HH:MM-HH:MM` for a T+0 window.
    pub window: String,
    pub count: u64,
    #[serde(rename = "gross_minor")]
    pub gross: i64,
    #[serde(rename = "refunds_minor")]
    pub refunds: i64,
    #[serde(rename = "fees_minor")]
    pub fees: i64,
    #[serde(rename = "net_minor")]
    pub net: i64,
}

/// The CSV header, and the column names of every money figure the CLI prints.
pub const CSV_HEADER: &str = "merchant_id,cycle,window,count,gross_minor,refunds_minor,fees_minor,net_minor";

/// Settlement failed: an amount overflowed (a corrupt journal, never real traffic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("settlement arithmetic overflow for merchant {merchant}")]
pub struct Overflow {
    pub merchant: String,
}

fn window_of(minute: u32, cutoffs: &[u32]) -> String {
    let mut start = 0u32;
    for &c in cutoffs {
        if minute < c {
            return format!("{:02}:{:02}-{:02}:{:02}", start / 60, start % 60, c / 60, c % 60);
        }
        start = c;
    }
    format!("{:02}:{:02}-24:00", start / 60, start % 60)
}

/// Settle `rows` of business day `date`. T+0 merchants get one line per window between
/// `cutoffs` (minutes past local midnight, ascending); T+1 merchants one line for the day.
pub fn settle(
    rows: &[TxnRecord],
    date: &str,
    cutoffs: &[u32],
    utc_offset_min: i32,
) -> Result<Vec<Line>, Overflow> {
    use std::collections::BTreeMap;
    let mut lines: BTreeMap<(String, SettleCycle, String), Line> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.business_date == date) {
        let Some(dir) = direction(r) else { continue };
        let window = if r.settle_cycle == SettleCycle::T0 {
            window_of(minute_of_day(r.received_at, utc_offset_min), cutoffs)
        } else {
            "day".into()
        };
        let key = (r.merchant_id.to_string(), r.settle_cycle, window.clone());
        let line = lines.entry(key).or_insert_with(|| Line {
            merchant_id: r.merchant_id.to_string(),
            cycle: r.settle_cycle,
            window,
            count: 0,
            gross: 0,
            refunds: 0,
            fees: 0,
            net: 0,
        });
        let of = || Overflow { merchant: r.merchant_id.to_string() };
        line.count += 1;
        match dir {
            Direction::Debit => line.gross = line.gross.checked_add(r.amount).ok_or_else(of)?,
            Direction::Credit => line.refunds = line.refunds.checked_add(r.amount).ok_or_else(of)?,
        }
        line.fees = line.fees.checked_add(r.fee).ok_or_else(of)?;
    }
    let mut out: Vec<Line> = lines.into_values().collect();
    for l in &mut out {
        l.net = l
            .gross
            .checked_sub(l.refunds)
            .and_then(|v| v.checked_sub(l.fees))
            .ok_or_else(|| Overflow { merchant: l.merchant_id.clone() })?;
    }
    Ok(out)
}

/// CSV with a header line.
pub fn to_csv(lines: &[Line]) -> String {
    let mut s = format!("{CSV_HEADER}\n");
    for l in lines {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            csv_field(&l.merchant_id),
            l.cycle.as_str(),
            l.window,
            l.count,
            l.gross,
            l.refunds,
            l.fees,
            l.net
        ));
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rc::ResponseCode;
    use crate::time::UnixMs;

    #[allow(clippy::too_many_arguments)]
    fn row(
        merchant: &str,
        cycle: &str,
        t: &str,
        amount: i64,
        fee: i64,
        rc: &str,
        status: Status,
        at: i64,
    ) -> TxnRecord {
        TxnRecord {
            merchant_id: merchant.into(),
            settle_cycle: SettleCycle::parse(cycle),
            txn_type: RowType::parse(t),
            amount,
            fee,
            rc: ResponseCode::parse(rc),
            status: Some(status),
            received_at: UnixMs::from_i64(at),
            business_date: crate::journal::business_date_text(UnixMs::from_i64(at), 0),
            ..TxnRecord::default()
        }
    }

    #[test]
    fn lines_add_up_and_skip_what_does_not_settle() {
        let day = 1_795_479_740_000 - 22 * 60_000; // 2026-11-24 00:00Z
        let h = 3_600_000;
        let rows = vec![
            row("M1", "T1", "purchase", 10_000, 60, "00", Status::Approved, day + h),
            row("M1", "T1", "purchase", 5_000, 30, "00", Status::Approved, day + 2 * h),
            row("M1", "T1", "refund", 2_000, -12, "00", Status::Approved, day + 3 * h),
            row("M1", "T1", "purchase", 7_000, 42, "00", Status::Reversed, day + 3 * h),
            row("M1", "T1", "purchase", 7_000, 0, "51", Status::Declined, day + 3 * h),
            row("M1", "T1", "balance", 0, 0, "00", Status::Approved, day + 3 * h),
            row("M2", "T0", "purchase", 1_000, 4, "00", Status::Approved, day + 9 * h),
            row("M2", "T0", "purchase", 3_000, 11, "00", Status::Approved, day + 13 * h),
            row("M2", "T0", "purchase", 9_999, 38, "00", Status::Approved, day + 25 * h),
        ];
        let lines = settle(&rows, "20261124", &[12 * 60, 18 * 60], 0).unwrap();
        assert_eq!(lines.len(), 3);
        let m1 = &lines[0];
        assert_eq!((m1.count, m1.gross, m1.refunds, m1.fees, m1.net), (3, 15_000, 2_000, 78, 12_922));
        assert_eq!(lines[1].window, "00:00-12:00");
        assert_eq!((lines[1].gross, lines[1].net), (1_000, 996));
        assert_eq!(lines[2].window, "12:00-18:00");
        assert_eq!((lines[2].gross, lines[2].net), (3_000, 2_989));
        let csv = to_csv(&lines);
        assert!(csv.starts_with(
            "merchant_id,cycle,window,count,gross_minor,refunds_minor,fees_minor,net_minor\nM1,T1,day,3,15000,2000,78,12922\n"
        ));
    }
}
