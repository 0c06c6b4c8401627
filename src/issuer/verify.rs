//! Whether an issuer's reply is believed: a pure check of the reply against the request as
//! the switch wrote it, made before anyone (journal, terminal) sees the reply.
//!
//! - The MTI answers the request's: function digit + 1, a repeat's origin digit brought
//!   back (0200 -> 0210; 0201 -> 0210, 0221 -> 0230, 0401 -> 0410).
//! - Field 39 is present and a code of the issuer dialect's response-code table
//!   (`crate::rc::RcTable::known`).
//! - The fields the issuer's dialect says are echoed (`[reply] echo` in its spec; by
//!   default 2, 3, 4, 11, 41, 49) equal what was sent, compared by value (characters, or
//!   the number of a fixed numeric field), not by bytes: the request may have been written
//!   in another spec than the terminal's. Field 11 is compared with the switch's own STAN,
//!   which is what the issuer saw.
//!
//! An echo field the request had but the reply leaves out is a rejection when the reply
//! approves (an approval names its amount, card, terminal, trace and currency, or it
//! approves nothing the switch can account for), and tolerated in a decline: many hosts
//! answer a decline bare, the terminal's reply restores those fields from its own request,
//! and a decline moves no money. A field present with another value is always a rejection.
//!
//! `RejectReason::as_str` is the `reason` label of `isoswitch_issuer_reply_rejected_total`.
//! May import: crate::iso, crate::issuer::wire, crate::rc.

use crate::iso::Message;
use crate::iso::spec::{CharClass, Length};
use crate::rc::RcTable;

/// Why a reply is not believed (a low-cardinality metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The MTI does not answer the request's.
    Mti,
    /// An echo field differs from what was sent.
    Echo,
    /// An approval leaves out an echo field the request had.
    MissingEcho,
    /// No field 39.
    MissingRc,
    /// Field 39 is not a code of the dialect's table.
    UnknownRc,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Mti => "mti",
            RejectReason::Echo => "echo",
            RejectReason::MissingEcho => "missing_echo",
            RejectReason::MissingRc => "missing_rc",
            RejectReason::UnknownRc => "unknown_rc",
        }
    }
}

/// A reply that is not believed: why, the field at fault (never its value), and whether
/// the issuer may have approved it (then the request is reversed, as for a timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub field: Option<u16>,
    /// The reply's 39 approves, or is missing or unknown (the issuer's decision is not known).
    pub may_have_approved: bool,
}

/// The MTI that answers `mti`: function digit + 1, a repeat's origin digit (odd) brought
/// back to the original's. `None` for what is not a request.
pub fn answer_mti(mti: &[u8]) -> Option<[u8; 4]> {
    let mut m = super::wire::response_mti(mti)?;
    if (m[3] - b'0') % 2 == 1 {
        m[3] -= 1;
    }
    Some(m)
}

/// Check `reply` (decoded in the issuer's spec, whose `[reply] echo` applies) against `sent`
/// (the request as forwarded, in any spec) that was written with switch STAN `stan`; `rc`
/// is the issuer dialect's response-code table.
pub fn verify(sent: &Message, stan: u32, reply: &Message, rc: &RcTable) -> Result<(), Rejection> {
    let code = reply.text(39);
    let approves = code.as_deref().is_some_and(|c| rc.approves(c));
    let reject = |reason, field: Option<u16>| {
        let decided = code.as_deref().is_some_and(|c| rc.known(c));
        Err(Rejection { reason, field, may_have_approved: approves || !decided })
    };
    if answer_mti(sent.mti().as_bytes()) != Some(*reply.mti_bytes()) {
        return reject(RejectReason::Mti, None);
    }
    match code.as_deref() {
        None => return reject(RejectReason::MissingRc, Some(39)),
        Some(c) if !rc.known(c) => return reject(RejectReason::UnknownRc, Some(39)),
        Some(_) => {}
    }
    let spec = reply.spec();
    for n in spec.reply.echo.iter() {
        // Only what was written can be echoed: a field the issuer's spec lacks was not.
        if spec.field(n).is_none() || (n != 11 && !sent.has(n)) {
            continue;
        }
        if !reply.has(n) {
            if approves {
                return reject(RejectReason::MissingEcho, Some(n as u16));
            }
            continue;
        }
        let same =
            if n == 11 { reply.number(11) == Some(u64::from(stan)) } else { same_value(sent, reply, n) };
        if !same {
            return reject(RejectReason::Echo, Some(n as u16));
        }
    }
    Ok(())
}

/// Field `n` of `a` and `b` (of any specs) holds the same value: the same characters (raw
/// bytes for a binary field), or the same number for a fixed numeric field of both.
fn same_value(a: &Message, b: &Message, n: usize) -> bool {
    if (std::sync::Arc::ptr_eq(a.spec(), b.spec()) || a.spec().field(n) == b.spec().field(n))
        && a.raw(n) == b.raw(n)
    {
        return true;
    }
    if a.bytes(n) == b.bytes(n) {
        return true;
    }
    let fixed_numeric = |m: &Message| {
        m.spec().field(n).is_some_and(|f| f.class == CharClass::Numeric && f.length == Length::Fixed)
    };
    fixed_numeric(a) && fixed_numeric(b) && a.number(n).is_some() && a.number(n) == b.number(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;

    const STAN: u32 = 4567;

    fn sent() -> Message {
        let mut m = Message::new(shipped("iso87ascii").unwrap(), "0200").unwrap();
        m.set(2, "4761739001010119").unwrap().set(3, "000000").unwrap().set(4, "000000005000").unwrap();
        m.set(7, "1124103000").unwrap().set(11, "000123").unwrap().set(41, "TERM0001").unwrap();
        m.set(49, "156").unwrap();
        m
    }

    /// A good approval of `sent()` as the issuer writes it (switch STAN in 11).
    fn good() -> Message {
        let mut r = sent();
        r.set_mti("0210").unwrap();
        r.set(11, "004567").unwrap().set(38, "AUTH01").unwrap().set(39, "00").unwrap();
        r
    }

    fn rejected(reason: RejectReason, field: Option<u16>, may_have_approved: bool) -> Result<(), Rejection> {
        Err(Rejection { reason, field, may_have_approved })
    }

    #[test]
    fn replies_are_checked_field_by_field() {
        let rc = RcTable::shipped("iso87ascii");
        type Edit = fn(&mut Message);
        let cases: &[(&str, Edit, Result<(), Rejection>)] = &[
            ("good approval", |_| {}, Ok(())),
            ("good decline", |r| _ = r.set(39, "51").unwrap(), Ok(())),
            (
                "decline without echoes",
                |r| _ = r.set(39, "05").unwrap().remove(4).remove(2).remove(49),
                Ok(()),
            ),
            (
                "other amount",
                |r| _ = r.set(4, "000000000001").unwrap(),
                rejected(RejectReason::Echo, Some(4), true),
            ),
            (
                "other amount, declined",
                |r| _ = r.set(4, "000000000001").unwrap().set(39, "05").unwrap(),
                rejected(RejectReason::Echo, Some(4), false),
            ),
            (
                "approval without amount",
                |r| _ = r.remove(4),
                rejected(RejectReason::MissingEcho, Some(4), true),
            ),
            ("approval without PAN", |r| _ = r.remove(2), rejected(RejectReason::MissingEcho, Some(2), true)),
            (
                "other PAN",
                |r| _ = r.set(2, "4761739001010127").unwrap(),
                rejected(RejectReason::Echo, Some(2), true),
            ),
            (
                "other processing code",
                |r| _ = r.set(3, "200000").unwrap(),
                rejected(RejectReason::Echo, Some(3), true),
            ),
            (
                "other terminal",
                |r| _ = r.set(41, "TERM0002").unwrap(),
                rejected(RejectReason::Echo, Some(41), true),
            ),
            (
                "other currency",
                |r| _ = r.set(49, "840").unwrap(),
                rejected(RejectReason::Echo, Some(49), true),
            ),
            (
                "terminal's STAN, not the switch's",
                |r| _ = r.set(11, "000123").unwrap(),
                rejected(RejectReason::Echo, Some(11), true),
            ),
            (
                "no STAN in an approval",
                |r| _ = r.remove(11),
                rejected(RejectReason::MissingEcho, Some(11), true),
            ),
            ("no 39", |r| _ = r.remove(39), rejected(RejectReason::MissingRc, Some(39), true)),
            ("ZZ", |r| _ = r.set(39, "ZZ").unwrap(), rejected(RejectReason::UnknownRc, Some(39), true)),
            (
                "reserved 47",
                |r| _ = r.set(39, "47").unwrap(),
                rejected(RejectReason::UnknownRc, Some(39), true),
            ),
            ("0230 for a 0200", |r| r.set_mti("0230").unwrap(), rejected(RejectReason::Mti, None, true)),
            ("0200 echoed back", |r| r.set_mti("0200").unwrap(), rejected(RejectReason::Mti, None, true)),
            (
                "0230 declining",
                |r| {
                    r.set_mti("0230").unwrap();
                    r.set(39, "05").unwrap();
                },
                rejected(RejectReason::Mti, None, false),
            ),
            ("field 7 is not an echo field", |r| _ = r.set(7, "0101000000").unwrap(), Ok(())),
            (
                "honour with ID approves",
                |r| _ = r.set(39, "08").unwrap().remove(4),
                rejected(RejectReason::MissingEcho, Some(4), true),
            ),
        ];
        for (name, edit, want) in cases {
            let mut reply = good();
            edit(&mut reply);
            assert_eq!(verify(&sent(), STAN, &reply, &rc), *want, "{name}");
        }
    }

    #[test]
    fn repeats_are_answered_by_the_plain_response() {
        for (req, ok, bad) in [
            ("0201", "0210", "0211"),
            ("0221", "0230", "0231"),
            ("0401", "0410", "0411"),
            ("0100", "0110", "0210"),
        ] {
            let mut s = sent();
            s.set_mti(req).unwrap();
            let mut r = good();
            r.set_mti(ok).unwrap();
            let rc = RcTable::shipped("iso87ascii");
            assert_eq!(verify(&s, STAN, &r, &rc), Ok(()), "{req}");
            r.set_mti(bad).unwrap();
            assert_eq!(verify(&s, STAN, &r, &rc).unwrap_err().reason, RejectReason::Mti, "{req} {bad}");
        }
        assert_eq!(answer_mti(b"0210"), None);
    }

    #[test]
    fn values_are_compared_across_specs() {
        // The terminal speaks cup-pos (BCD), the issuer iso87ascii: the same values match.
        let cup = shipped("cup-pos").unwrap();
        let mut s = Message::new(cup, "0200").unwrap();
        s.set(2, "6222021234567890128").unwrap().set(3, "000000").unwrap().set(4, "000000005000").unwrap();
        s.set(11, "000123").unwrap().set(41, "10000001").unwrap().set(42, "898340158120001").unwrap();
        s.set(49, "156").unwrap();
        let mut r = crate::issuer::convert(&s, &shipped("iso87ascii").unwrap()).unwrap();
        r.set_mti("0210").unwrap();
        r.set(11, "004567").unwrap().set(39, "00").unwrap();
        let rc = RcTable::shipped("iso87ascii");
        assert_eq!(verify(&s, STAN, &r, &rc), Ok(()));
        r.set(4, "000000005001").unwrap();
        assert_eq!(verify(&s, STAN, &r, &rc).unwrap_err().field, Some(4));
        // The other way round the issuer's dialect (cup-pos) echoes 42 as well.
        let s87 = crate::issuer::convert(&s, &shipped("iso87ascii").unwrap()).unwrap();
        let mut rc_reply = s.clone();
        rc_reply.set_mti("0210").unwrap();
        rc_reply.set(11, "004567").unwrap().set(39, "A2").unwrap().set(42, "898340158120002").unwrap();
        let cup_rc = RcTable::shipped("cup-pos");
        let e = verify(&s87, STAN, &rc_reply, &cup_rc).unwrap_err();
        assert_eq!((e.reason, e.field, e.may_have_approved), (RejectReason::Echo, Some(42), true));
    }

    #[test]
    fn labels_are_stable() {
        let all = [
            RejectReason::Mti,
            RejectReason::Echo,
            RejectReason::MissingEcho,
            RejectReason::MissingRc,
            RejectReason::UnknownRc,
        ];
        let labels: Vec<_> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels, ["mti", "echo", "missing_echo", "missing_rc", "unknown_rc"]);
    }
}
