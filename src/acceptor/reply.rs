//! The terminal's reply: built from the issuer's answer or by the switch itself, always
//! carrying fields 2, 3, 4, 7, 11, 12, 13, 37, 41, 42 and 49 exactly as the terminal sent
//! them (where the request had them), whatever the switch used toward the issuer.
//! May import: the codec and the issuer connector's `convert`.

use crate::iso::{EncodeError, Message};
use crate::issuer::{convert_owned, response_mti};

/// Fields echoed from the terminal's request into its reply.
pub const ECHOED: [usize; 11] = [2, 3, 4, 7, 11, 12, 13, 37, 41, 42, 49];

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
pub fn switch_reply(req: &Message, rc: &str) -> Result<Message, EncodeError> {
    let mti = reply_mti(req).unwrap_or(*b"0810");
    let mut out = Message::new(req.spec().clone(), std::str::from_utf8(&mti).unwrap_or("0810"))?;
    for n in ECHOED {
        out.copy_from(req, n)?;
    }
    out.set(39, rc)?;
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

/// A reply made from the issuer's answer, in the terminal's spec, echo fields restored.
pub fn issuer_reply(req: &Message, answer: Box<Message>) -> Result<Box<Message>, EncodeError> {
    let mut out = convert_owned(answer, req.spec())?;
    if let Some(mti) = reply_mti(req) {
        out.set_mti(std::str::from_utf8(&mti).unwrap_or("0210"))?;
    }
    for n in ECHOED {
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
    out.set(39, "30").ok()?;
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
        let d = switch_reply(&req, "68").unwrap();
        assert_eq!(d.text(39).as_deref(), Some("68"));
        assert_eq!(d.stan(), Some(123));
        assert_eq!(format_error(&s, *b"0200").unwrap().mti(), "0210");
    }
}
