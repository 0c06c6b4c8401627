//! Terminal batch settlement (0500): the terminal's own totals against the journal's.
//! ISO 8583:1987 dialects carry the totals in fields 74 (credits, number), 76 (debits,
//! number), 86 (credits, amount) and 88 (debits, amount); UnionPay-style terminals carry
//! them in field 48 (debit amount n12, count n3, credit amount n12, count n3, one result
//! digit; domestic block then foreign block), the reply putting 1 (balanced) or 2 (not
//! balanced) in each block's result digit.
//! May import: crate::iso, crate::journal::record, crate::settle.

use crate::iso::Message;
use crate::journal::TxnRecord;

use super::{Direction, direction};

/// Counts and amounts of a batch, in minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub debit_count: u64,
    pub debit_amount: i64,
    pub credit_count: u64,
    pub credit_amount: i64,
}

/// The journal's totals over a terminal's open batch.
pub fn journal_totals(rows: &[TxnRecord]) -> Totals {
    let mut t = Totals::default();
    for r in rows {
        match direction(r) {
            Some(Direction::Debit) => {
                t.debit_count += 1;
                t.debit_amount = t.debit_amount.saturating_add(r.amount);
            }
            Some(Direction::Credit) => {
                t.credit_count += 1;
                t.credit_amount = t.credit_amount.saturating_add(r.amount);
            }
            None => {}
        }
    }
    t
}

/// Why a 0500 could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("settlement totals: {0}")]
pub struct TotalsError(pub String);

/// The terminal's totals from an ISO 8583:1987 0500 (fields 74, 76, 86, 88; absent = 0).
pub fn iso87_totals(m: &Message) -> Result<Totals, TotalsError> {
    let num = |n: usize| -> Result<u64, TotalsError> {
        if !m.has(n) {
            return Ok(0);
        }
        m.number(n).ok_or_else(|| TotalsError(format!("field {n} is not a number")))
    };
    let amount = |n: usize| -> Result<i64, TotalsError> {
        i64::try_from(num(n)?).map_err(|_| TotalsError(format!("field {n} is too large")))
    };
    Ok(Totals {
        credit_count: num(74)?,
        debit_count: num(76)?,
        credit_amount: amount(86)?,
        debit_amount: amount(88)?,
    })
}

/// The domestic totals of a UnionPay-style field 48.
pub fn cup_totals(field48: &str) -> Result<Totals, TotalsError> {
    let b = field48.as_bytes();
    if b.len() < 30 || !b[..30].iter().all(u8::is_ascii_digit) {
        return Err(TotalsError("field 48 needs at least 30 digits of domestic totals".into()));
    }
    let n =
        |r: std::ops::Range<usize>| -> u64 { b[r].iter().fold(0u64, |v, &c| v * 10 + u64::from(c - b'0')) };
    Ok(Totals {
        debit_amount: n(0..12) as i64,
        debit_count: n(12..15),
        credit_amount: n(15..27) as i64,
        credit_count: n(27..30),
    })
}

/// The reply's field 48: the request's blocks with each result digit set.
pub fn cup_reply_48(field48: &str, balanced: bool) -> String {
    let mut b: Vec<u8> = field48.as_bytes().to_vec();
    let digit = if balanced { b'1' } else { b'2' };
    if b.len() < 31 {
        b.resize(31, b'0');
    }
    b[30] = digit;
    if b.len() >= 62 {
        b[61] = digit;
    }
    String::from_utf8(b).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;

    #[test]
    fn iso87_totals_compare() {
        let mut m = Message::new(shipped("iso87ascii").unwrap(), "0500").unwrap();
        m.set_number(76, 2).unwrap().set_number(88, 15_000).unwrap();
        m.set_number(74, 1).unwrap().set_number(86, 2_000).unwrap();
        let t = iso87_totals(&m).unwrap();
        assert_eq!(t, Totals { debit_count: 2, debit_amount: 15_000, credit_count: 1, credit_amount: 2_000 });
    }

    #[test]
    fn cup_field_48() {
        let req = format!("{:012}{:03}{:012}{:03}0{}", 15_000, 2, 2_000, 1, "0".repeat(31));
        let t = cup_totals(&req).unwrap();
        assert_eq!(t, Totals { debit_count: 2, debit_amount: 15_000, credit_count: 1, credit_amount: 2_000 });
        let rep = cup_reply_48(&req, true);
        assert_eq!(&rep[30..31], "1");
        assert_eq!(&rep[61..62], "1");
        assert_eq!(&cup_reply_48(&req, false)[30..31], "2");
        assert!(cup_totals("12AB").is_err());
    }
}
