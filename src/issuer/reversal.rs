//! Reversals toward an issuer, built from the request exactly as the switch sent it
//! (switch STAN, switch RRN). Pure: the caller passes the new transmission time.
//!
//! Field 90 (original data elements, 42 digits):
//!
//! ```text
//! +------+--------+------------+-------------+-------------+
//! | MTI  | STAN   | field 7    | field 32    | field 33    |
//! | 4    | 6      | 10         | 11, zero-   | 11, zero-   |
//! |      | switch | original   | filled left | filled left |
//! +------+--------+------------+-------------+-------------+
//! ```
//!
//! The reversal (0400; its repeats 0401 keep the same field 90) carries fields 2, 3, 4,
//! 12, 13, 32, 37, 41, 42 and 49 of the original, a new field 7 (the time the reversal
//! was made: the original's is in field 90), field 11 = the original's switch STAN (the
//! link replaces it with a fresh STAN of its own allocator each time the reversal is
//! written, so that its 0410 is matched like any reply), and field 39 = the reason
//! (68 = no reply in time). Track data (35, 36, 45), the PIN block (52) and anything else
//! are never copied.
//! May import: crate::iso, crate::rc.

use crate::iso::{EncodeError, Message, Spec};
use crate::rc::ResponseCode;

/// Fields copied from the original as sent.
const KEPT: [usize; 11] = [2, 3, 4, 11, 12, 13, 32, 37, 41, 42, 49];

/// Reason (field 39) of a reversal for a request unanswered by its deadline.
pub const REASON_TIMEOUT: ResponseCode = ResponseCode::LATE_RESPONSE;

/// Why a reversal could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReversalError {
    #[error("spec {0} has no 42-digit field 90 (original data elements); reversals cannot be sent")]
    NoField90(String),
    #[error("MTI {0} is not reversed")]
    NotReversible(String),
    #[error("reversal field {field}: {message}")]
    Field { field: usize, message: String },
}

/// Whether a spec can carry reversals (fixed 42-digit field 90).
pub fn check_spec(spec: &Spec) -> Result<(), ReversalError> {
    match spec.field(90) {
        Some(f) if f.max == 42 => Ok(()),
        _ => Err(ReversalError::NoField90(spec.name.clone())),
    }
}

/// Requests that move money or hold funds and are reversed when unanswered.
pub fn is_reversible(mti: &str) -> bool {
    matches!(mti, "0100" | "0200" | "0220")
}

/// Field 90 of the reversal of `sent` (the request as written to the issuer).
pub fn field90(sent: &Message) -> String {
    let mut out = String::with_capacity(42);
    out.push_str(sent.mti());
    digits_into(&mut out, sent.text(11).as_deref().unwrap_or(""), 6);
    digits_into(&mut out, sent.text(7).as_deref().unwrap_or(""), 10);
    digits_into(&mut out, sent.text(32).as_deref().unwrap_or(""), 11);
    digits_into(&mut out, sent.text(33).as_deref().unwrap_or(""), 11);
    out
}

/// Right-justify the digits of `v` in `width`, zero-filled; non-digits are dropped and an
/// over-long value keeps its rightmost digits (field 90 has a fixed layout).
fn digits_into(out: &mut String, v: &str, width: usize) {
    let d: Vec<char> = v.chars().filter(char::is_ascii_digit).collect();
    let skip = d.len().saturating_sub(width);
    for _ in d.len().min(width)..width {
        out.push('0');
    }
    out.extend(d.iter().skip(skip));
}

/// The 0400 reversing `sent`, in `sent`'s spec, with field 7 = `now7` (MMDDhhmmss) and
/// field 39 = `reason`.
pub fn build(sent: &Message, now7: &str, reason: ResponseCode) -> Result<Message, ReversalError> {
    if !is_reversible(sent.mti()) {
        return Err(ReversalError::NotReversible(sent.mti().to_string()));
    }
    let spec = sent.spec();
    check_spec(spec)?;
    let f = |field: usize| move |e: EncodeError| ReversalError::Field { field, message: e.to_string() };
    let mut rev = Message::new(spec.clone(), "0400").map_err(f(0))?;
    for n in KEPT {
        if sent.has(n) {
            rev.copy_from(sent, n).map_err(f(n))?;
        }
    }
    if spec.field(7).is_some() {
        rev.set(7, now7).map_err(f(7))?;
    }
    if spec.field(39).is_some() {
        rev.set(39, reason.as_str()).map_err(f(39))?;
    }
    rev.set(90, &field90(sent)).map_err(f(90))?;
    Ok(rev)
}

/// A terminal's field 90 (it names the original by the terminal's STAN) rewritten to
/// name it as the issuer saw it: the STAN part (digits 5-10) becomes `switch_stan`, the
/// STAN the switch used toward the issuer (journal column `switch_stan`). `None` when
/// either is malformed.
pub fn rebase_field90(terminal_f90: &str, switch_stan: &str) -> Option<String> {
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !ok(terminal_f90, 42) || !ok(switch_stan, 6) {
        return None;
    }
    let mut out = String::with_capacity(42);
    out.push_str(terminal_f90.get(..4)?);
    out.push_str(switch_stan);
    out.push_str(terminal_f90.get(10..)?);
    Some(out)
}

/// The repeat of a stored message: the same message with the repeat MTI (0400 -> 0401,
/// an advice 0120 -> 0121, 0220 -> 0221; field 90 and everything else unchanged).
pub fn as_repeat(rev: &mut Message) -> Result<(), ReversalError> {
    let bad = |message: String| ReversalError::Field { field: 0, message };
    let mti = rev.mti().get(..3).map(|m| format!("{m}1")).ok_or_else(|| bad("short MTI".into()))?;
    rev.set_mti(&mti).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;

    fn sent(spec: &str, mti: &str, fields: &[(usize, &str)]) -> Message {
        let mut m = Message::new(shipped(spec).unwrap(), mti).unwrap();
        for (n, v) in fields {
            m.set(*n, v).unwrap();
        }
        m
    }

    const ORIGINAL: &[(usize, &str)] = &[
        (2, "4761739001010010"),
        (3, "000000"),
        (4, "000000012345"),
        (7, "1124012233"),
        (11, "004711"),
        (12, "092233"),
        (13, "1124"),
        (14, "2812"),
        (22, "051"),
        (32, "12345"),
        (33, "6789"),
        (35, "4761739001010010=28121011234567890"),
        (37, "010000000042"),
        (41, "TERM0001"),
        (42, "MERCHANT0000001"),
        (49, "156"),
        (52, "0123456789ABCDEF"),
    ];

    #[test]
    fn field90_layouts() {
        type Case<'a> = (&'a str, &'a [(usize, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                "0200",
                &[(7, "1124012233"), (11, "004711"), (32, "12345"), (33, "6789")],
                "020000471111240122330000001234500000006789",
            ),
            ("0100", &[(11, "000001"), (7, "0101000000")], "010000000101010000000000000000000000000000"),
            ("0220", &[], "022000000000000000000000000000000000000000"),
            (
                "0200",
                &[(11, "999999"), (7, "1231235959"), (32, "12345678901"), (33, "1")],
                "020099999912312359591234567890100000000001",
            ),
        ];
        for (mti, fields, want) in cases {
            let m = sent("iso87ascii", mti, fields);
            let f = field90(&m);
            assert_eq!(f.len(), 42, "{mti} {fields:?}");
            assert_eq!(&f, want, "{mti} {fields:?}");
        }
    }

    #[test]
    fn reversal_keeps_the_listed_fields_and_never_tracks_or_pin() {
        for spec in ["iso87ascii", "iso87binbitmap", "iso87bcd"] {
            let orig = sent(spec, "0200", ORIGINAL);
            let mut rev = build(&orig, "1124015959", REASON_TIMEOUT).unwrap();
            assert_eq!(rev.mti(), "0400");
            for n in [2, 3, 4, 11, 12, 13, 32, 37, 41, 42, 49] {
                assert_eq!(rev.raw(n), orig.raw(n), "{spec} field {n}");
            }
            for n in [14, 22, 33, 35, 36, 45, 52] {
                assert!(!rev.has(n), "{spec} field {n} must not be copied");
            }
            assert_eq!(rev.text(7).as_deref(), Some("1124015959"));
            assert_eq!(rev.text(39).as_deref(), Some("68"));
            let f90 = rev.text(90).unwrap().into_owned();
            assert_eq!(f90, "020000471111240122330000001234500000006789", "{spec}");
            // The repeat keeps field 90; the encoded form decodes back to the same fields.
            as_repeat(&mut rev).unwrap();
            assert_eq!(rev.mti(), "0401");
            let back = Message::decode(rev.spec(), rev.to_bytes().unwrap()).unwrap();
            assert_eq!(back.text(90).unwrap(), f90);
            assert!(!format!("{back:?}").contains("4761739001010010"));
        }
    }

    #[test]
    fn terminal_field90_is_rebased_on_the_switch_stan() {
        let t = "020000471111240122330000001234500000006789";
        assert_eq!(
            rebase_field90(t, "900001").as_deref(),
            Some("020090000111240122330000001234500000006789")
        );
        assert_eq!(rebase_field90(&t[..41], "900001"), None);
        assert_eq!(rebase_field90(t, "9001"), None);
        assert_eq!(rebase_field90(t, "90000X"), None);
    }

    #[test]
    fn refusals() {
        let cup = sent("cup-pos", "0200", &[(11, "000001")]);
        assert!(
            matches!(build(&cup, "1124015959", REASON_TIMEOUT), Err(ReversalError::NoField90(s)) if s == "cup-pos")
        );
        let iso93 = shipped("iso93ascii").unwrap();
        assert!(check_spec(&iso93).is_err());
        assert!(check_spec(&shipped("iso87ascii").unwrap()).is_ok());
        for mti in ["0800", "0400", "0401", "0420", "0500", "0210"] {
            let m = sent("iso87ascii", mti, &[(11, "000001")]);
            assert!(
                matches!(build(&m, "1124015959", REASON_TIMEOUT), Err(ReversalError::NotReversible(_))),
                "{mti}"
            );
        }
        for mti in ["0100", "0200", "0220"] {
            assert!(is_reversible(mti));
        }
    }
}
