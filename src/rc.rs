//! Response codes per dialect, as data. The switch decides a generic code (the codes of the
//! design, kept as they are by the generic dialects); a dialect's table (`specs/rc-<dialect>.toml`)
//! maps some of them to the codes its terminals display, e.g. `cup-pos` answers an unknown
//! terminal with 97 instead of 03. A table also knows which codes a host of its dialect may
//! answer with (`known`) and which of them approve (`approvals`): an issuer's field 39 is
//! checked against them before its reply is believed. A dialect that does not list them
//! takes the standard's table (ISO 8583:1987's two-character codes; `standard =
//! "iso8583-1993"`, the default of `iso93ascii`, its three-digit action codes).
//! The code itself is one type, [`ResponseCode`] (`rc/code.rs`), with a named constant for
//! every code the switch produces: a decline the switch decides itself is one of them, mapped
//! for the terminal with [`map`]. Why the routing core declined (`route::Reason`, for the
//! logs) is another, finer idea: several reasons share one code.
//! Pure: may use `toml` and `serde`, nothing of the crate.
//! May import: nothing.

mod code;

pub use code::ResponseCode;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

/// One dialect's mapping from generic codes to the codes its terminals expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcTable {
    dialect: String,
    codes: BTreeMap<ResponseCode, ResponseCode>,
    /// Codes a host of this dialect may answer with.
    known: BTreeSet<ResponseCode>,
    /// The known codes that approve (money moves): a rejected reply carrying one is reversed.
    approvals: BTreeSet<ResponseCode>,
}

/// A response-code table that could not be loaded: file, line and key named.
#[derive(Debug, thiserror::Error)]
pub enum RcError {
    #[error("{file}: cannot read response-code table: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}:{line}: {key}: {message}")]
    Invalid { file: String, line: usize, key: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    dialect: String,
    #[serde(default)]
    codes: BTreeMap<String, String>,
    /// `iso8583-1987` or `iso8583-1993`: the table `known` and `approvals` default to.
    standard: Option<String>,
    known: Option<Vec<String>>,
    approvals: Option<Vec<String>>,
}

/// ISO 8583:1987 field 39: the codes the standard assigns (00-44, 51-68, 75, 90-96; the
/// rest is reserved for ISO, national or private use) and its approvals (00 approved,
/// 08 honour with identification, 10 partial, 11 VIP, 16 approved with track 3 update).
const ISO_1987_KNOWN: &[(u16, u16)] = &[(0, 44), (51, 68), (75, 75), (90, 96)];
const ISO_1987_APPROVALS: &[(u16, u16)] = &[(0, 0), (8, 8), (10, 11), (16, 16)];
/// ISO 8583:1993 action codes (three digits): approvals 000-007, denials 100-125, pick-up
/// 200-210, file actions 300-309, reversal 400, reconciliation 500-503, administrative
/// 600-601, fee collection 700, network management 800, errors 900-923.
const ISO_1993_KNOWN: &[(u16, u16)] = &[
    (0, 7),
    (100, 125),
    (200, 210),
    (300, 309),
    (400, 400),
    (500, 503),
    (600, 601),
    (700, 700),
    (800, 800),
    (900, 923),
];
const ISO_1993_APPROVALS: &[(u16, u16)] = &[(0, 7)];

/// The codes of `ranges`, written with `width` digits.
fn expand(ranges: &[(u16, u16)], width: usize) -> BTreeSet<ResponseCode> {
    ranges
        .iter()
        .flat_map(|&(lo, hi)| lo..=hi)
        .filter_map(|c| ResponseCode::parse(&format!("{c:0width$}")))
        .collect()
}

/// `(known, approvals)` of a standard: `iso8583-1993` for three-digit action codes, else 1987.
fn standard_codes(standard: &str) -> (BTreeSet<ResponseCode>, BTreeSet<ResponseCode>) {
    if standard == "iso8583-1993" {
        (expand(ISO_1993_KNOWN, 3), expand(ISO_1993_APPROVALS, 3))
    } else {
        (expand(ISO_1987_KNOWN, 2), expand(ISO_1987_APPROVALS, 2))
    }
}

/// The standard a dialect without its own lists follows.
fn default_standard(dialect: &str) -> &'static str {
    if dialect == "iso93ascii" { "iso8583-1993" } else { "iso8583-1987" }
}

const SHIPPED: &[(&str, &str)] = &[("cup-pos", include_str!("../specs/rc-cup-pos.toml"))];

impl RcTable {
    /// The identity table: every generic code is kept (the generic dialects).
    pub fn identity(dialect: &str) -> RcTable {
        let (known, approvals) = standard_codes(default_standard(dialect));
        RcTable { dialect: dialect.to_string(), codes: BTreeMap::new(), known, approvals }
    }

    /// Whether a host of this dialect may answer with `code` (an issuer's field 39).
    pub fn known(&self, code: &str) -> bool {
        ResponseCode::parse(code).is_some_and(|c| self.known.contains(&c))
    }

    /// Whether `code` approves (a known code of the dialect's approval list).
    pub fn approves(&self, code: &str) -> bool {
        ResponseCode::parse(code).is_some_and(|c| self.approvals.contains(&c))
    }

    /// The dialect this table is for.
    pub fn dialect(&self) -> &str {
        &self.dialect
    }

    /// Parses a table; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<RcTable, RcError> {
        let invalid = |line: usize, key: &str, message: String| RcError::Invalid {
            file: file.to_string(),
            line,
            key: key.to_string(),
            message,
        };
        let t: TableFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(text, s.start));
            invalid(line, "(document)", e.message().to_string())
        })?;
        let mut codes = BTreeMap::new();
        for (from, to) in &t.codes {
            if !is_code(from) {
                return Err(invalid(
                    locate(text, from),
                    from,
                    "a generic code is 2 letters or digits".into(),
                ));
            }
            if !is_code(to) {
                return Err(invalid(
                    locate(text, from),
                    from,
                    format!("`{to}` is not a 2-character response code"),
                ));
            }
            if let (Some(from), Some(to)) = (ResponseCode::parse(from), ResponseCode::parse(to)) {
                codes.insert(from, to);
            }
        }
        let standard = match t.standard.as_deref() {
            None => default_standard(&t.dialect),
            Some(s @ ("iso8583-1987" | "iso8583-1993")) => s,
            Some(other) => {
                return Err(invalid(
                    locate(text, "standard"),
                    "standard",
                    format!("`{other}` is not iso8583-1987 or iso8583-1993"),
                ));
            }
        };
        let (mut known, mut approvals) = standard_codes(standard);
        let list = |key: &str, codes: Vec<String>| -> Result<BTreeSet<ResponseCode>, RcError> {
            codes
                .iter()
                .map(|c| {
                    ResponseCode::parse(c).filter(|_| is_listed_code(c)).ok_or_else(|| {
                        invalid(
                            locate(text, key),
                            key,
                            format!("`{c}` is not a 2- or 3-character response code"),
                        )
                    })
                })
                .collect()
        };
        if let Some(k) = t.known {
            known = list("known", k)?;
        }
        if let Some(a) = t.approvals {
            approvals = list("approvals", a)?;
        }
        if let Some(a) = approvals.iter().find(|a| !known.contains(*a)) {
            return Err(invalid(
                locate(text, "approvals"),
                "approvals",
                format!("`{a}` approves but is not among the known codes"),
            ));
        }
        Ok(RcTable { dialect: t.dialect, codes, known, approvals })
    }

    /// Reads a table file.
    pub fn from_file(path: &Path) -> Result<RcTable, RcError> {
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| RcError::Read { file: file.clone(), source })?;
        RcTable::parse(&file, &text)
    }

    /// The shipped table of a dialect (`specs/rc-<dialect>.toml`), or the identity table for a
    /// dialect without one (iso87ascii, iso87binbitmap, iso87bcd, iso93ascii).
    pub fn shipped(dialect: &str) -> Arc<RcTable> {
        static CACHE: OnceLock<Vec<Arc<RcTable>>> = OnceLock::new();
        let all = CACHE.get_or_init(|| {
            SHIPPED
                .iter()
                // A shipped table that fails to parse is caught by the tests; at run time the
                // dialect falls back to generic codes rather than panicking.
                .filter_map(|(n, text)| {
                    RcTable::parse(&format!("specs/rc-{n}.toml"), text).ok().map(Arc::new)
                })
                .collect()
        });
        all.iter()
            .find(|t| t.dialect == dialect)
            .cloned()
            .unwrap_or_else(|| Arc::new(RcTable::identity(dialect)))
    }
}

/// The code to send a terminal of `table`'s dialect for the switch's `generic_rc`.
#[inline]
pub fn map(table: &RcTable, generic_rc: ResponseCode) -> ResponseCode {
    table.codes.get(&generic_rc).copied().unwrap_or(generic_rc)
}

fn is_code(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

fn is_listed_code(s: &str) -> bool {
    (2..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).map_or(0, |b| b.matches('\n').count() + 1)
}

fn locate(text: &str, key: &str) -> usize {
    let quoted = format!("\"{key}\"");
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.strip_prefix(&quoted)
                .or_else(|| t.strip_prefix(key))
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cup_pos_codes() {
        let t = RcTable::shipped("cup-pos");
        assert_eq!(t.dialect(), "cup-pos");
        let cases = [
            (ResponseCode::INVALID_MERCHANT, "97"),
            (ResponseCode::LATE_RESPONSE, "98"),
            (ResponseCode::DUPLICATE, "94"),
            (ResponseCode::SECURITY_VIOLATION, "A0"),
            (ResponseCode::PIN_ERROR, "99"),
            (ResponseCode::ORIGINAL_NOT_FOUND, "25"),
            (ResponseCode::BATCH_MISMATCH, "77"),
            (ResponseCode::ISSUER_UNAVAILABLE, "91"),
            (ResponseCode::SYSTEM_MALFUNCTION, "96"),
            (ResponseCode::FORMAT_ERROR, "30"),
            (ResponseCode::AMOUNT_LIMIT, "61"),
        ];
        for (generic, want) in cases {
            assert_eq!(map(&t, generic), want, "{generic:?}");
        }
        // Issuer codes pass through.
        for rc in ["00", "05", "51", "54", "55"] {
            let rc = ResponseCode::parse(rc).unwrap();
            assert_eq!(map(&t, rc), rc);
        }
    }

    #[test]
    fn generic_dialects_keep_design_codes() {
        for d in ["iso87ascii", "iso87binbitmap", "iso87bcd", "iso93ascii"] {
            let t = RcTable::shipped(d);
            assert_eq!(t.dialect(), d);
            for rc in
                ["00", "03", "12", "13", "14", "30", "58", "61", "65", "68", "91", "94", "96", "63", "81"]
            {
                let rc = ResponseCode::parse(rc).unwrap();
                assert_eq!(map(&t, rc), rc);
            }
        }
    }

    #[test]
    fn known_codes_and_approvals_per_dialect() {
        // (dialect, code, known, approves)
        let cases = [
            ("iso87ascii", "00", true, true),
            ("iso87ascii", "08", true, true),
            ("iso87ascii", "05", true, false),
            ("iso87ascii", "51", true, false),
            ("iso87ascii", "96", true, false),
            ("iso87ascii", "ZZ", false, false),
            ("iso87ascii", "47", false, false),
            ("iso87ascii", "99", false, false),
            ("iso87ascii", "000", false, false),
            ("iso87bcd", "14", true, false),
            ("iso93ascii", "000", true, true),
            ("iso93ascii", "100", true, false),
            ("iso93ascii", "00", false, false),
            ("cup-pos", "00", true, true),
            ("cup-pos", "A0", true, false),
            ("cup-pos", "A2", true, true),
            ("cup-pos", "97", true, false),
            ("cup-pos", "ZZ", false, false),
            ("cup-pos", "", false, false),
        ];
        for (dialect, code, known, approves) in cases {
            let t = RcTable::shipped(dialect);
            assert_eq!(t.known(code), known, "{dialect} {code}");
            assert_eq!(t.approves(code), approves, "{dialect} {code}");
        }
        let t = RcTable::parse("rc.toml", "dialect = \"x\"\nstandard = \"iso8583-1993\"\n").unwrap();
        assert!(t.known("909") && !t.known("09"));
    }

    #[test]
    fn bad_tables_name_file_line_and_key() {
        let cases = [
            ("dialect = \"x\"\n[codes]\n\"03\" = \"977\"\n", 3, "03"),
            ("dialect = \"x\"\n[codes]\n\n\"3\" = \"97\"\n", 4, "3"),
            ("dialect = \"x\"\nextra = 1\n", 2, "(document)"),
            ("dialect = \"x\"\nknown = [\"00\", \"0\"]\n", 2, "known"),
            ("dialect = \"x\"\nknown = [\"00\"]\napprovals = [\"01\"]\n", 3, "approvals"),
            ("dialect = \"x\"\nstandard = \"iso8583-2003\"\n", 2, "standard"),
        ];
        for (text, line, key) in cases {
            let e = RcTable::parse("rc.toml", text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("rc.toml:{line}: {key}: ")), "{e}");
        }
        let e = RcTable::from_file(Path::new("/nonexistent/rc.toml")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/rc.toml"), "{e}");
    }
}
