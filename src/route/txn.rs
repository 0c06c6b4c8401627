//! Transaction types, recognised from the MTI, the first two digits of the processing code
//! (field 3), the POS condition code (field 25) and, for network management, field 70.
//! The table is data: the shipped default is `specs/txn-types-default.toml`; a rule
//! directory may carry its own `txn-types.toml`. Rows are tried in order, the first match
//! wins, and a message no row matches is declined with 12.
//!
//! The default table (ISO 8583:1987 conventions, with the UnionPay-style condition code 06
//! marking pre-authorisation traffic):
//!
//! | MTI            | field 3 (1-2) | field 25 | field 70 | type                 |
//! |----------------|---------------|----------|----------|----------------------|
//! | 0100           | 00, 03        |          |          | pre-auth             |
//! | 0100, 0200     | 30, 31        |          |          | balance inquiry      |
//! | 0200           | 00            | 06       |          | pre-auth completion  |
//! | 0200           | 00            | other    |          | purchase             |
//! | 0200           | 02            |          |          | void                 |
//! | 0200           | 20            |          |          | refund               |
//! | 0220           | 00            |          |          | pre-auth completion (advice) |
//! | 0220           | 20            |          |          | refund (advice)      |
//! | 0400/0401/0420/0421 | any      |          |          | reversal             |
//! | 0800           |               |          | 301      | echo                 |
//! | 0800           |               |          | 001      | sign-on              |
//! | 0800           |               |          | 002      | sign-off             |
//! | 0500           | any           |          |          | batch settlement     |
//! | 0320           | any           |          |          | batch upload         |
//!
//! Rows may also name a `spec` (they then match only messages of that dialect) and the
//! UnionPay-style subfields of field 60: `f60_1` (positions 1-2, the transaction type code)
//! and `f60_3` (positions 9-11, the network management code). The default table starts
//! with such rows for `cup-pos` (void 0200/20 with 60.1 = 23, refund 0220/20 with 25,
//! pre-authorisation and its void 0100 with 10 and 11, completion 0200/0220 with 20 and 24
//! and its void with 21, balance 01, purchase 22; sign-on 0800 with 60.3 = 001, 003 or 004,
//! sign-off 002, echo 0820 with 301).
//! May import: crate::iso, crate::route::error.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::error::{RuleError, Source};
use crate::iso::Message;
use crate::iso::spec::Encoding;

/// What a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxnType {
    Purchase,
    PreAuth,
    PreAuthCompletion,
    Void,
    Refund,
    BalanceInquiry,
    Reversal,
    Echo,
    SignOn,
    SignOff,
    BatchSettlement,
    BatchUpload,
}

impl TxnType {
    pub const ALL: [TxnType; 12] = [
        TxnType::Purchase,
        TxnType::PreAuth,
        TxnType::PreAuthCompletion,
        TxnType::Void,
        TxnType::Refund,
        TxnType::BalanceInquiry,
        TxnType::Reversal,
        TxnType::Echo,
        TxnType::SignOn,
        TxnType::SignOff,
        TxnType::BatchSettlement,
        TxnType::BatchUpload,
    ];

    /// The stable name the journal and settlement use.
    pub fn as_str(self) -> &'static str {
        match self {
            TxnType::Purchase => "purchase",
            TxnType::PreAuth => "preauth",
            TxnType::PreAuthCompletion => "preauth_completion",
            TxnType::Void => "void",
            TxnType::Refund => "refund",
            TxnType::BalanceInquiry => "balance",
            TxnType::Reversal => "reversal",
            TxnType::Echo => "echo",
            TxnType::SignOn => "sign_on",
            TxnType::SignOff => "sign_off",
            TxnType::BatchSettlement => "batch_settlement",
            TxnType::BatchUpload => "batch_upload",
        }
    }

    /// Bit for sets of allowed types.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Answered by the switch itself, never forwarded.
    pub fn is_local(self) -> bool {
        matches!(self, TxnType::Echo | TxnType::SignOn | TxnType::SignOff | TxnType::BatchSettlement)
    }

    /// Moves money and carries an amount that must be present.
    pub fn is_financial(self) -> bool {
        matches!(
            self,
            TxnType::Purchase
                | TxnType::PreAuth
                | TxnType::PreAuthCompletion
                | TxnType::Void
                | TxnType::Refund
        )
    }

    /// Gives money back to the card: the merchant's fee is returned (negative fee).
    pub fn returns_fee(self) -> bool {
        matches!(self, TxnType::Void | TxnType::Refund)
    }

    /// Charged a merchant fee: the captured sales.
    pub fn charges_fee(self) -> bool {
        matches!(self, TxnType::Purchase | TxnType::PreAuthCompletion)
    }
}

/// One compiled row of the table.
#[derive(Debug, Clone)]
struct Row {
    mti: [[u8; 4]; 4],
    mtis: u8,
    pc: Option<Vec<[u8; 2]>>,
    f25: Option<[u8; 2]>,
    f70: Option<[u8; 3]>,
    /// Only messages of this spec (dialect rows, e.g. `cup-pos`).
    spec: Option<String>,
    /// Field 60 positions 1-2 (UnionPay-style 60.1, the transaction type code).
    f60_1: Option<[u8; 2]>,
    /// Field 60 positions 9-11 (UnionPay-style 60.3, the network management code).
    f60_3: Option<[u8; 3]>,
    txn: TxnType,
}

/// The recognition table.
#[derive(Debug, Clone)]
pub struct TxnTable {
    rows: Vec<Row>,
    /// Each MTI any row names, with the rows naming it in table order: a message is tried
    /// only against the rows of its MTI (the first match still wins). Each MTI holds two
    /// lists: every row, and the rows without a `spec` (for messages of a spec no row
    /// names, which no dialect row can match: one name comparison skips them all).
    by_mti: Vec<([u8; 4], Vec<u16>, Vec<u16>)>,
    /// The specs dialect rows name.
    dialects: Vec<String>,
    /// The fields each type must carry, per dialect: the first `[[required]]` entry whose
    /// `spec` matches (or that names none) and whose `type` lists the message's type.
    required: Vec<Required>,
}

/// One `[[required]]` entry: a request of one of `types` (bits of `TxnType::bit`) in
/// `spec` (any when `None`) without one of `fields` is a format error (30).
#[derive(Debug, Clone)]
struct Required {
    spec: Option<String>,
    types: u16,
    fields: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    row: Vec<toml::Spanned<RawRow>>,
    #[serde(default)]
    required: Vec<toml::Spanned<RawRequired>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequired {
    #[serde(default)]
    spec: Option<String>,
    #[serde(rename = "type")]
    types: Vec<TxnType>,
    fields: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRow {
    mti: Vec<String>,
    #[serde(default)]
    pc: Option<Vec<String>>,
    #[serde(default)]
    f25: Option<String>,
    #[serde(default)]
    f70: Option<String>,
    #[serde(default)]
    spec: Option<String>,
    #[serde(default)]
    f60_1: Option<String>,
    #[serde(default)]
    f60_3: Option<String>,
    #[serde(rename = "type")]
    txn: TxnType,
}

/// A field's characters as bytes: borrowed from the frame when the field travels as ASCII
/// (no conversion or UTF-8 check: they are only compared with ASCII rule data), converted
/// from BCD or EBCDIC otherwise.
#[inline]
pub(crate) fn chars(msg: &Message, n: usize) -> Option<Cow<'_, [u8]>> {
    let fs = msg.spec().field(n)?;
    if fs.encoding == Encoding::Ascii { msg.raw(n).map(Cow::Borrowed) } else { converted(msg, n) }
}

/// `chars` of a field that needs converting: kept out of line so that the ASCII path inlines.
#[cold]
#[inline(never)]
fn converted(msg: &Message, n: usize) -> Option<Cow<'_, [u8]>> {
    msg.text(n).map(|t| Cow::Owned(t.into_owned().into_bytes()))
}

/// `s` without trailing spaces (fixed-length fields are space-padded).
pub(crate) fn trim_end(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    s.get(..end).unwrap_or(s)
}

/// The shipped default table.
pub const DEFAULT_TABLE: &str = include_str!("../../specs/txn-types-default.toml");

fn digits<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b: [u8; N] = s.as_bytes().try_into().ok()?;
    b.iter().all(u8::is_ascii_digit).then_some(b)
}

impl TxnTable {
    pub(crate) fn load(src: &Source<'_>) -> Result<TxnTable, RuleError> {
        let raw: RawTable = src.parse()?;
        let mut rows = Vec::with_capacity(raw.row.len());
        for spanned in raw.row {
            let at = spanned.span().start;
            let r = spanned.into_inner();
            if r.mti.is_empty() || r.mti.len() > 4 {
                return Err(src.err(at, "row.mti", "one to four MTIs per row"));
            }
            let mut mti = [[0u8; 4]; 4];
            for (slot, m) in mti.iter_mut().zip(&r.mti) {
                *slot =
                    digits(m).ok_or_else(|| src.err(at, "row.mti", format!("`{m}` is not a 4-digit MTI")))?;
            }
            let pc = match r.pc {
                None => None,
                Some(list) => Some(
                    list.iter()
                        .map(|p| {
                            digits(p).ok_or_else(|| src.err(at, "row.pc", format!("`{p}` is not 2 digits")))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            let f25 = match r.f25 {
                None => None,
                Some(p) => {
                    Some(digits(&p).ok_or_else(|| src.err(at, "row.f25", format!("`{p}` is not 2 digits")))?)
                }
            };
            let f70 = match r.f70 {
                None => None,
                Some(p) => {
                    Some(digits(&p).ok_or_else(|| src.err(at, "row.f70", format!("`{p}` is not 3 digits")))?)
                }
            };
            let f60_1 = match r.f60_1 {
                None => None,
                Some(p) => Some(
                    digits(&p).ok_or_else(|| src.err(at, "row.f60_1", format!("`{p}` is not 2 digits")))?,
                ),
            };
            let f60_3 = match r.f60_3 {
                None => None,
                Some(p) => Some(
                    digits(&p).ok_or_else(|| src.err(at, "row.f60_3", format!("`{p}` is not 3 digits")))?,
                ),
            };
            rows.push(Row {
                mti,
                mtis: r.mti.len() as u8,
                pc,
                f25,
                f70,
                spec: r.spec,
                f60_1,
                f60_3,
                txn: r.txn,
            });
        }
        let mut by_mti: Vec<([u8; 4], Vec<u16>, Vec<u16>)> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            for m in row.mti.iter().take(row.mtis as usize) {
                let i = u16::try_from(i).map_err(|_| src.err(0, "row", "more than 65,535 rows"))?;
                let generic = row.spec.is_none();
                match by_mti.iter_mut().find(|(x, _, _)| x == m) {
                    Some((_, all, plain)) if all.last() != Some(&i) => {
                        all.push(i);
                        if generic {
                            plain.push(i);
                        }
                    }
                    Some(_) => {}
                    None => by_mti.push((*m, vec![i], if generic { vec![i] } else { Vec::new() })),
                }
            }
        }
        let mut dialects: Vec<String> = rows.iter().filter_map(|r| r.spec.clone()).collect();
        dialects.sort();
        dialects.dedup();
        let mut required = Vec::with_capacity(raw.required.len());
        for spanned in raw.required {
            let at = spanned.span().start;
            let r = spanned.into_inner();
            if r.types.is_empty() {
                return Err(src.err(at, "required.type", "name at least one transaction type"));
            }
            if let Some(n) = r.fields.iter().find(|&&n| !(2..=128).contains(&n)) {
                return Err(src.err(at, "required.fields", format!("{n} is not a data field (2 to 128)")));
            }
            let types = r.types.iter().fold(0u16, |acc, t| acc | t.bit());
            required.push(Required { spec: r.spec, types, fields: r.fields });
        }
        Ok(TxnTable { rows, by_mti, dialects, required })
    }

    /// The first field that a request of type `txn` must carry and `msg` lacks: such a
    /// request is a format error (30) and is never forwarded.
    pub fn missing_field(&self, msg: &Message, txn: TxnType) -> Option<u8> {
        let name = &msg.spec().name;
        let entry = self
            .required
            .iter()
            .find(|r| r.types & txn.bit() != 0 && r.spec.as_deref().is_none_or(|s| s == name))?;
        entry.fields.iter().copied().find(|&n| !msg.has(usize::from(n)))
    }

    pub fn default_table() -> Result<TxnTable, RuleError> {
        TxnTable::load(&Source { file: "specs/txn-types-default.toml", text: DEFAULT_TABLE })
    }

    /// The type of `msg`, or `None` (decline 12).
    pub fn classify(&self, msg: &Message) -> Option<TxnType> {
        let mti = msg.mti_bytes();
        let (_, all, plain) = self.by_mti.iter().find(|(m, _, _)| m == mti)?;
        let name = &msg.spec().name;
        let rows = if self.dialects.iter().any(|d| d == name) { all } else { plain };
        let pc_chars = chars(msg, 3);
        let pc: Option<&[u8]> = pc_chars.as_deref().and_then(|t| t.get(..2));
        rows.iter().filter_map(|&i| self.rows.get(usize::from(i))).find_map(|row| {
            // Dialect rows first rule out other specs, before any field is read.
            if row.spec.as_deref().is_some_and(|s| s != msg.spec().name) {
                return None;
            }
            if let Some(list) = &row.pc {
                let p = pc?;
                if !list.iter().any(|x| x.as_slice() == p) {
                    return None;
                }
            }
            // Fields 25 and 70 are read only for the rows that ask for them.
            if let Some(want) = row.f25
                && chars(msg, 25).as_deref() != Some(want.as_slice())
            {
                return None;
            }
            if let Some(want) = row.f70
                && chars(msg, 70).as_deref() != Some(want.as_slice())
            {
                return None;
            }
            if row.f60_1.is_some() || row.f60_3.is_some() {
                let f60 = chars(msg, 60)?;
                if row.f60_1.is_some_and(|w| f60.get(..2) != Some(w.as_slice())) {
                    return None;
                }
                if row.f60_3.is_some_and(|w| f60.get(8..11) != Some(w.as_slice())) {
                    return None;
                }
            }
            Some(row.txn)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;

    fn msg(mti: &str, fields: &[(usize, &str)]) -> Message {
        let mut m = Message::new(shipped("iso87ascii").unwrap(), mti).unwrap();
        for (n, v) in fields {
            m.set(*n, v).unwrap();
        }
        m
    }

    #[test]
    fn default_table_recognises_the_1987_types() {
        let t = TxnTable::default_table().unwrap();
        use TxnType::*;
        type Case<'a> = (&'a str, &'a [(usize, &'a str)], Option<TxnType>);
        let cases: &[Case<'_>] = &[
            ("0200", &[(3, "000000")], Some(Purchase)),
            ("0200", &[(3, "000000"), (25, "00")], Some(Purchase)),
            ("0200", &[(3, "000000"), (25, "06")], Some(PreAuthCompletion)),
            ("0220", &[(3, "000000")], Some(PreAuthCompletion)),
            ("0100", &[(3, "000000")], Some(PreAuth)),
            ("0100", &[(3, "030000")], Some(PreAuth)),
            ("0200", &[(3, "020000")], Some(Void)),
            ("0200", &[(3, "200000")], Some(Refund)),
            ("0220", &[(3, "200000")], Some(Refund)),
            ("0200", &[(3, "310000")], Some(BalanceInquiry)),
            ("0100", &[(3, "310000")], Some(BalanceInquiry)),
            ("0400", &[(3, "000000")], Some(Reversal)),
            ("0401", &[], Some(Reversal)),
            ("0420", &[(3, "000000")], Some(Reversal)),
            ("0421", &[(3, "000000")], Some(Reversal)),
            ("0800", &[(70, "301")], Some(Echo)),
            ("0800", &[(70, "001")], Some(SignOn)),
            ("0800", &[(70, "002")], Some(SignOff)),
            ("0800", &[(70, "999")], None),
            ("0800", &[], None),
            ("0500", &[(3, "920000")], Some(BatchSettlement)),
            ("0320", &[(3, "000000")], Some(BatchUpload)),
            ("0200", &[(3, "990000")], None),
            ("0200", &[], None),
            ("0600", &[(3, "000000")], None),
        ];
        for (mti, fields, want) in cases {
            assert_eq!(t.classify(&msg(mti, fields)), *want, "{mti} {fields:?}");
        }
    }

    #[test]
    fn cup_pos_rows_read_field_60() {
        let t = TxnTable::default_table().unwrap();
        use TxnType::*;
        let cup = |mti: &str, pc: Option<&str>, f60: &str| {
            let mut m = Message::new(shipped("cup-pos").unwrap(), mti).unwrap();
            if let Some(pc) = pc {
                m.set(3, pc).unwrap();
            }
            m.set(60, f60).unwrap();
            t.classify(&m)
        };
        let cases = [
            ("0200", Some("000000"), "22000001000", Some(Purchase)),
            ("0200", Some("200000"), "23000001000", Some(Void)),
            ("0220", Some("200000"), "25000001000", Some(Refund)),
            ("0100", Some("030000"), "10000001000", Some(PreAuth)),
            ("0100", Some("200000"), "11000001000", Some(Void)),
            ("0200", Some("000000"), "20000001000", Some(PreAuthCompletion)),
            ("0220", Some("000000"), "24000001000", Some(PreAuthCompletion)),
            ("0200", Some("200000"), "21000001000", Some(Void)),
            ("0200", Some("310000"), "01000001000", Some(BalanceInquiry)),
            ("0800", None, "00000001001", Some(SignOn)),
            ("0800", None, "00000001003", Some(SignOn)),
            ("0800", None, "00000001002", Some(SignOff)),
            ("0820", None, "00000001301", Some(Echo)),
            ("0800", None, "00000001999", None),
        ];
        for (mti, pc, f60, want) in cases {
            assert_eq!(cup(mti, pc, f60), want, "{mti} {f60}");
        }
        // The same 60.1 in another dialect is not read: 0200/20 there is a refund.
        assert_eq!(t.classify(&msg("0200", &[(3, "200000"), (60, "23000001000")])), Some(Refund));
    }

    #[test]
    fn bad_rows_are_refused_with_line_and_key() {
        let text =
            "[[row]]\nmti = [\"0200\"]\ntype = \"purchase\"\n\n[[row]]\nmti = [\"02x0\"]\ntype = \"void\"\n";
        let e = TxnTable::load(&Source { file: "t.toml", text }).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(5), Some("row.mti")), "{e}");
        let text = "[[row]]\nmti = [\"0200\"]\ntype = \"teleport\"\n";
        let e = TxnTable::load(&Source { file: "t.toml", text }).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("type")), "{e}");
    }
}
