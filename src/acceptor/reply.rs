//! The terminal's reply: built from the issuer's answer or by the switch itself, always
//! carrying fields 2, 3, 4, 7, 11, 12, 13, 37, 41, 42 and 49 exactly as the terminal sent
//! them (where the request had them), whatever the switch used toward the issuer. From an
//! issuer's answer only the fields the terminal's dialect allows (`[reply] from_issuer` in
//! its spec: 38, 39, 54, 55, its private fields, 37 where the terminal sent none) are
//! kept; track data, PIN block, security control and MACs from an issuer never reach a
//! terminal (a spec cannot allow them; the listener MACs the reply itself). A dialect may
//! name more fields every reply carries as the request had them (`[reply] from_request`:
//! field 60 on UnionPay-style terminals).
//! May import: crate::acceptor::repeats, crate::iso, crate::issuer, crate::rc.

use std::sync::Arc;

use crate::iso::{EncodeError, FieldSet, Message};
use crate::issuer::{convert_owned, response_mti};
use crate::rc::ResponseCode;

/// Fields echoed from the terminal's request into its reply.
pub const ECHOED: [usize; 11] = [2, 3, 4, 7, 11, 12, 13, 37, 41, 42, 49];
const ECHOED_SET: FieldSet = FieldSet::of(&ECHOED);

/// The MTI of the answer to `req`: its response, a repeat answered as its original
/// (0201 -> 0210, 0401 -> 0410).
pub fn reply_mti(req: &Message) -> Option<[u8; 4]> {
    let mut mti = response_mti(req.mti().as_bytes())?;
    if (mti[3].wrapping_sub(b'0')) % 2 == 1 {
        mti[3] -= 1;
    }
    Some(mti)
}

/// A reply made by the switch with response code `rc`.
pub fn switch_reply(req: &Message, rc: ResponseCode) -> Result<Message, EncodeError> {
    let mti = reply_mti(req).unwrap_or(*b"0810");
    let mut out = Message::new(req.spec().clone(), std::str::from_utf8(&mti).unwrap_or("0810"))?;
    for n in ECHOED.into_iter().chain(req.spec().reply.from_request.iter()) {
        out.copy_from(req, n)?;
    }
    out.set(39, rc.as_str())?;
    Ok(out)
}

/// The reply to a retransmission or repeat: the original's response code, authorisation
/// code and (when the terminal sent none) RRN, with this request's echoed fields.
pub fn repeat_reply(
    req: &Message,
    answer: &crate::acceptor::repeats::Answer,
) -> Result<Message, EncodeError> {
    let mut out = switch_reply(req, answer.rc())?;
    if let Some(code) = answer.auth()
        && req.spec().field(38).is_some()
    {
        out.set(38, code)?;
    }
    if let Some(rrn) = answer.rrn()
        && !req.has(37)
        && req.spec().field(37).is_some()
    {
        out.set(37, rrn)?;
    }
    Ok(out)
}

/// A reply made from the issuer's answer, in the terminal's spec: echo fields restored, and
/// of the answer's other fields only those the terminal's dialect allows.
pub fn issuer_reply(req: &Message, answer: Box<Message>) -> Result<Box<Message>, EncodeError> {
    let allowed = req.spec().reply.from_issuer;
    // An echo field the request had comes from the request; anything else from the answer
    // only when allowed.
    let from_request = |n: usize| ECHOED_SET.contains(n) && req.has(n);
    let keep = |n: usize| allowed.contains(n) && !from_request(n);
    let mut out = if Arc::ptr_eq(answer.spec(), req.spec()) || **answer.spec() == **req.spec() {
        // The answer is taken over (no copy) and what may not reach the terminal removed.
        let mut drop = FieldSet::default();
        for n in answer.fields().filter(|&n| !keep(n) && !from_request(n)) {
            drop.insert(n);
        }
        let mut out = convert_owned(answer, req.spec())?;
        for n in drop.iter() {
            out.remove(n);
        }
        out
    } else {
        // Another spec: only the fields kept are converted (a field the terminal's spec does
        // not define is not an error then, unless the dialect allows it).
        let mut out = Box::new(Message::new(req.spec().clone(), answer.mti())?);
        for n in answer.fields().filter(|&n| keep(n)) {
            out.copy_from(&answer, n)?;
        }
        out
    };
    if let Some(mti) = reply_mti(req) {
        out.set_mti(std::str::from_utf8(&mti).unwrap_or("0210"))?;
    }
    for n in ECHOED.into_iter().chain(req.spec().reply.from_request.iter()) {
        // Most hosts echo these unchanged; only differing fields are copied back.
        if req.has(n) && (req.raw(n) != out.raw(n) || req.units(n) != out.units(n)) {
            out.copy_from(req, n)?;
        }
    }
    Ok(out)
}

/// A reply to a frame that did not decode but whose MTI could be read: MTI + 10, 30.
pub fn format_error(spec: &std::sync::Arc<crate::iso::Spec>, mti: [u8; 4]) -> Option<Message> {
    let resp = response_mti(&mti)?;
    let mut out = Message::new(spec.clone(), std::str::from_utf8(&resp).ok()?).ok()?;
    out.set(39, ResponseCode::FORMAT_ERROR.as_str()).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec;

    #[test]
    fn echo_fields_are_the_terminals() {
        let s = spec::shipped("iso87ascii").unwrap();
        let mut req = Message::new(s.clone(), "0200").unwrap();
        req.set(2, "4111111111111111").unwrap().set(4, "000000001000").unwrap().set(11, "000123").unwrap();
        req.set(41, "TERM0001").unwrap();
        let mut ans = Message::new(s.clone(), "0210").unwrap();
        ans.set(2, "4111111111111111").unwrap().set(4, "000000001000").unwrap().set(11, "999999").unwrap();
        ans.set(37, "010000000001").unwrap().set(38, "ABC123").unwrap().set(39, "00").unwrap();
        let out = issuer_reply(&req, Box::new(ans)).unwrap();
        assert_eq!(out.mti(), "0210");
        assert_eq!(out.stan(), Some(123));
        assert_eq!(out.text(41).as_deref(), Some("TERM0001"));
        assert_eq!(out.text(38).as_deref(), Some("ABC123"));
        let d = switch_reply(&req, ResponseCode::LATE_RESPONSE).unwrap();
        assert_eq!(d.text(39).as_deref(), Some("68"));
        assert_eq!(d.stan(), Some(123));
        assert_eq!(format_error(&s, *b"0200").unwrap().mti(), "0210");
    }

    /// UnionPay-style replies carry field 60 as the terminal sent it (`[reply] from_request`),
    /// whether the issuer's answer lacks it, differs, or the switch answers itself; other
    /// dialects do not echo it.
    #[test]
    fn field_60_comes_back_where_the_dialect_says() {
        let cup = spec::shipped("cup-pos").unwrap();
        let mut req = Message::new(cup.clone(), "0200").unwrap();
        req.set(3, "000000").unwrap().set(11, "000007").unwrap().set(41, "10000001").unwrap();
        req.set(60, "22000001000").unwrap();
        for issuer_60 in [None, Some("22000099000")] {
            let mut ans = Message::new(cup.clone(), "0210").unwrap();
            ans.set(11, "000007").unwrap().set(39, "00").unwrap();
            if let Some(v) = issuer_60 {
                ans.set(60, v).unwrap();
            }
            let out = issuer_reply(&req, Box::new(ans)).unwrap();
            assert_eq!(out.text(60).as_deref(), Some("22000001000"), "issuer sent {issuer_60:?}");
        }
        assert_eq!(
            switch_reply(&req, ResponseCode::parse("A0").unwrap()).unwrap().text(60).as_deref(),
            Some("22000001000")
        );
        let ascii = spec::shipped("iso87ascii").unwrap();
        let mut req = Message::new(ascii, "0200").unwrap();
        req.set(11, "000007").unwrap();
        if req.spec().field(60).is_some() {
            req.set(60, "ABC").unwrap();
            assert!(!switch_reply(&req, ResponseCode::DO_NOT_HONOUR).unwrap().has(60));
        }
    }

    /// Only the dialect's allowed issuer fields reach the terminal, whatever the issuer's spec.
    #[test]
    fn issuer_fields_come_from_an_allow_list() {
        let build = |spec: &std::sync::Arc<crate::iso::Spec>, mti: &str, fields: &[(usize, &str)]| {
            let mut m = Message::new(spec.clone(), mti).unwrap();
            for &(n, v) in fields {
                if spec.field(n).is_some() {
                    m.set(n, v).unwrap();
                }
            }
            m
        };
        let request: &[(usize, &str)] = &[
            (2, "4761739001010119"),
            (4, "000000005000"),
            (11, "000123"),
            (22, "051"),
            (35, "4761739001010119=30121010000000000000"),
            (41, "TERM0001"),
            (52, "0123456789ABCDEF"),
        ];
        let mut answer = request.to_vec();
        answer.extend_from_slice(&[
            (3, "000000"),
            (11, "004567"),
            (36, "12345"),
            (37, "010000000001"),
            (38, "ABC123"),
            (39, "00"),
            (45, "B4761739001010119^X^3012"),
            (48, "123"),
            (53, "2600000000000000"),
            (54, "1002156C000000010000"),
            (64, "0011223344556677"),
            (128, "0011223344556677"),
        ]);
        let (ascii, cup) = (spec::shipped("iso87ascii").unwrap(), spec::shipped("cup-pos").unwrap());
        // (terminal spec, issuer spec)
        for (term, issuer) in [(&ascii, &ascii), (&cup, &ascii), (&ascii, &cup), (&cup, &cup)] {
            let req = build(term, "0200", request);
            let ans = Box::new(build(issuer, "0210", &answer));
            assert!(ans.has(35) && ans.has(52) && ans.has(64), "the answer carries what must not pass");
            let out = issuer_reply(&req, ans).unwrap();
            let present: Vec<usize> = out.fields().collect();
            assert_eq!(present, [2, 4, 11, 37, 38, 39, 41, 54], "{} -> {}", issuer.name, term.name);
            assert_eq!(out.stan(), Some(123));
            assert_eq!(out.text(38).as_deref(), Some("ABC123"));
        }
    }
}
