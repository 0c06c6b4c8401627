//! The response code: one type for field 39 from the routing core's decision to the
//! terminal's reply, the issuer's answer and the journal's `rc` column. Two characters
//! (ISO 8583:1987 and the dialects built on it) or three (ISO 8583:1993 action codes),
//! ASCII letters or digits, held inline: copying one costs what copying a `u32` does.
//! May import: nothing.

use std::fmt;

use serde::{Serialize, Serializer};

/// A response code of two or three ASCII letters or digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResponseCode {
    code: [u8; 3],
    len: u8,
}

impl ResponseCode {
    /// Approved (the only generic approval; a dialect may know others, see `RcTable::approves`).
    pub const APPROVED: ResponseCode = ResponseCode::two(*b"00");
    /// The supplementary-data decline unless configured otherwise.
    pub const SUPPLEMENTARY_DEFAULT: ResponseCode = ResponseCode::two(*b"01");
    /// Unknown terminal or merchant.
    pub const INVALID_MERCHANT: ResponseCode = ResponseCode::two(*b"03");
    /// An issuer's plain refusal.
    pub const DO_NOT_HONOUR: ResponseCode = ResponseCode::two(*b"05");
    /// Invalid transaction: a transaction type the switch does not know.
    pub const INVALID_TXN: ResponseCode = ResponseCode::two(*b"12");
    /// Invalid amount: none where the transaction type needs one.
    pub const INVALID_AMOUNT: ResponseCode = ResponseCode::two(*b"13");
    /// Fails Luhn, or no route for its BIN.
    pub const INVALID_CARD: ResponseCode = ResponseCode::two(*b"14");
    /// Unable to locate the original record (a reversal, void or completion of nothing).
    pub const ORIGINAL_NOT_FOUND: ResponseCode = ResponseCode::two(*b"25");
    /// Format error: a message the switch cannot decode or that lacks a required field.
    pub const FORMAT_ERROR: ResponseCode = ResponseCode::two(*b"30");
    /// An issuer's decline for want of funds.
    pub const INSUFFICIENT_FUNDS: ResponseCode = ResponseCode::two(*b"51");
    /// Not permitted to the terminal (suspended, blocked, type not allowed).
    pub const NOT_PERMITTED: ResponseCode = ResponseCode::two(*b"58");
    /// Exceeds withdrawal amount limit: over a per-transaction or daily risk limit.
    pub const AMOUNT_LIMIT: ResponseCode = ResponseCode::two(*b"61");
    /// Security violation (a MAC that does not verify). ISO 8583:1987's meaning.
    pub const SECURITY_VIOLATION: ResponseCode = ResponseCode::two(*b"63");
    /// Exceeds withdrawal frequency limit: too many requests for a card or terminal.
    pub const FREQUENCY_LIMIT: ResponseCode = ResponseCode::two(*b"65");
    /// Response received too late: the issuer did not answer by the deadline.
    pub const LATE_RESPONSE: ResponseCode = ResponseCode::two(*b"68");
    /// A request in a batch the terminal has already settled (UnionPay-style: sign on again).
    /// The private-use code card networks give a batch number mismatch.
    pub const BATCH_MISMATCH: ResponseCode = ResponseCode::two(*b"77");
    /// A PIN block the switch cannot translate (private-use code of card networks).
    pub const PIN_ERROR: ResponseCode = ResponseCode::two(*b"81");
    /// Issuer or switch inoperative: no link to the issuer is up, or its queue sheds the request.
    pub const ISSUER_UNAVAILABLE: ResponseCode = ResponseCode::two(*b"91");
    /// Duplicate transmission: a request the switch has already seen.
    pub const DUPLICATE: ResponseCode = ResponseCode::two(*b"94");
    /// Batch settlement whose totals do not match the journal.
    pub const RECONCILE_ERROR: ResponseCode = ResponseCode::two(*b"95");
    /// System malfunction: the switch could not do its part (journal down, key or issuer failure).
    pub const SYSTEM_MALFUNCTION: ResponseCode = ResponseCode::two(*b"96");

    const fn two(c: [u8; 2]) -> ResponseCode {
        ResponseCode { code: [c[0], c[1], 0], len: 2 }
    }

    /// Two or three ASCII letters or digits, e.g. an issuer's field 39; `None` otherwise.
    #[inline]
    pub fn from_bytes(b: &[u8]) -> Option<ResponseCode> {
        if !(2..=3).contains(&b.len()) || !b.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut code = [0; 3];
        code[..b.len()].copy_from_slice(b);
        Some(ResponseCode { code, len: b.len() as u8 })
    }

    /// [`ResponseCode::from_bytes`] of a string.
    #[inline]
    pub fn parse(s: &str) -> Option<ResponseCode> {
        ResponseCode::from_bytes(s.as_bytes())
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.code[..usize::from(self.len)]
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        // Only ASCII letters and digits get in (`from_bytes` and the constants).
        std::str::from_utf8(self.as_bytes()).unwrap_or("96")
    }

    /// Whether this is the generic approval, 00.
    #[inline]
    pub fn is_approved(self) -> bool {
        self == ResponseCode::APPROVED
    }
}

impl fmt::Debug for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ResponseCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<str> for ResponseCode {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for ResponseCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_and_three_characters_round_trip() {
        for s in ["00", "05", "A0", "96", "000", "100", "909", "z9"] {
            let rc = ResponseCode::parse(s).unwrap();
            assert_eq!((rc.as_str(), rc.as_bytes()), (s, s.as_bytes()));
            assert_eq!(rc.to_string(), s);
            assert_eq!(rc, s);
        }
        assert_eq!(ResponseCode::parse("00"), Some(ResponseCode::APPROVED));
        assert_ne!(ResponseCode::parse("000"), Some(ResponseCode::APPROVED), "00 is not 000");
    }

    #[test]
    fn refuses_what_is_not_a_code() {
        for bad in ["", "0", "0000", "0 ", "-1", "é0", "0\u{0}"] {
            assert_eq!(ResponseCode::parse(bad), None, "{bad:?}");
        }
        assert_eq!(ResponseCode::from_bytes(&[0x30, 0xff]), None);
    }

    #[test]
    fn constants_are_what_they_say() {
        let cases = [
            (ResponseCode::APPROVED, "00"),
            (ResponseCode::SUPPLEMENTARY_DEFAULT, "01"),
            (ResponseCode::INVALID_MERCHANT, "03"),
            (ResponseCode::DO_NOT_HONOUR, "05"),
            (ResponseCode::INVALID_TXN, "12"),
            (ResponseCode::INVALID_AMOUNT, "13"),
            (ResponseCode::INVALID_CARD, "14"),
            (ResponseCode::ORIGINAL_NOT_FOUND, "25"),
            (ResponseCode::FORMAT_ERROR, "30"),
            (ResponseCode::INSUFFICIENT_FUNDS, "51"),
            (ResponseCode::NOT_PERMITTED, "58"),
            (ResponseCode::AMOUNT_LIMIT, "61"),
            (ResponseCode::SECURITY_VIOLATION, "63"),
            (ResponseCode::FREQUENCY_LIMIT, "65"),
            (ResponseCode::LATE_RESPONSE, "68"),
            (ResponseCode::BATCH_MISMATCH, "77"),
            (ResponseCode::PIN_ERROR, "81"),
            (ResponseCode::ISSUER_UNAVAILABLE, "91"),
            (ResponseCode::DUPLICATE, "94"),
            (ResponseCode::RECONCILE_ERROR, "95"),
            (ResponseCode::SYSTEM_MALFUNCTION, "96"),
        ];
        for (rc, s) in cases {
            assert_eq!(Some(rc), ResponseCode::parse(s), "{s}");
        }
        assert!(ResponseCode::APPROVED.is_approved());
        assert!(!ResponseCode::DO_NOT_HONOUR.is_approved());
        assert_eq!(serde_json::to_string(&ResponseCode::DUPLICATE).unwrap(), "\"94\"");
        assert_eq!(format!("{:?}", ResponseCode::LATE_RESPONSE), "\"68\"");
    }
}
