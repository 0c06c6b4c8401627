//! One journal row: what the switch knows about a transaction, with the card number
//! reduced to its masked form and a keyed hash. Built from the terminal's request and
//! the outcome; never holds a full PAN, track data, PIN block or CVV.
//! May import: crate::civil, crate::iso.

use ring::hmac;
use serde::Serialize;

use crate::iso::Message;
use crate::iso::mask::mask_pan;

/// Life-cycle state of a journalled transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Approved,
    Declined,
    Reversed,
    Voided,
    Refunded,
    /// A pre-authorisation its completion has used: it cannot be completed again.
    Completed,
    Settled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Approved => "approved",
            Status::Declined => "declined",
            Status::Reversed => "reversed",
            Status::Voided => "voided",
            Status::Refunded => "refunded",
            Status::Completed => "completed",
            Status::Settled => "settled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "approved" => Status::Approved,
            "declined" => Status::Declined,
            "reversed" => Status::Reversed,
            "voided" => Status::Voided,
            "refunded" => Status::Refunded,
            "completed" => Status::Completed,
            "settled" => Status::Settled,
            _ => return None,
        })
    }
}

/// A journal row. Amounts and fees are signed integer minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct TxnRecord {
    pub switch_id: String,
    /// Unix milliseconds when the request arrived, was forwarded and was answered.
    pub received_at: i64,
    pub forwarded_at: Option<i64>,
    pub answered_at: Option<i64>,
    /// YYYYMMDD in the switch's business time zone.
    pub business_date: String,
    pub terminal_id: String,
    pub merchant_id: String,
    /// The terminal's STAN (field 11) and the one the switch used toward the issuer.
    pub stan: String,
    pub switch_stan: Option<String>,
    pub rrn: Option<String>,
    /// Field 7 as sent by the terminal; part of the duplicate key.
    pub transmission_time: String,
    pub mti: String,
    pub txn_type: String,
    pub amount: i64,
    pub currency: Option<String>,
    pub pan_masked: Option<String>,
    pub pan_hash: Option<String>,
    pub route: Option<String>,
    pub issuer: Option<String>,
    /// forward, decline, local, reversal or stand-in (approved or declined by the switch on
    /// the issuer's behalf).
    pub decision: String,
    pub rc: String,
    pub auth_code: Option<String>,
    pub fee: i64,
    /// T0 or T1.
    pub settle_cycle: String,
    pub status: Option<Status>,
    pub batch: Option<String>,
    /// The terminal's own batch number (UnionPay-style 60.2), six digits; `None` for
    /// dialects without one.
    pub terminal_batch: Option<String>,
    /// The request's terminal key within (terminal, STAN): its MTI class and date-time
    /// (see `journal::store::INDEXES`); `None` on a row that answered a request without
    /// taking its key (a duplicate's 94).
    pub txn_key: Option<String>,
    /// A stand-in approval's advice: the issuer's answer to it (`00` accepted; any other
    /// code: the issuer refused it, and the amount is the acquirer's risk); `None` until
    /// the issuer answered, and on every other row.
    pub advice_rc: Option<String>,
}

/// The terminal's own batch number (UnionPay-style 60.2) of a `cup-pos` message, as its
/// six digits; `None` for other dialects.
pub fn batch_number(req: &Message) -> Option<String> {
    if req.spec().name != "cup-pos" {
        return None;
    }
    let f60 = req.text(60)?;
    let b = f60.get(2..8)?;
    b.bytes().all(|c| c.is_ascii_digit()).then(|| b.to_string())
}

/// The class of a request MTI that may carry money or undo it, a repeat folded onto its
/// original (0201 -> 0200, 0401 -> 0400); `None` for every other MTI.
pub fn mti_class(mti: &[u8]) -> Option<[u8; 4]> {
    let &[b'0', class @ (b'1' | b'2' | b'4'), function @ (b'0' | b'2'), origin] = mti else { return None };
    matches!(origin, b'0' | b'1').then_some([b'0', class, function, b'0'])
}

/// A request's terminal key within its terminal and STAN (see `journal::store::INDEXES`):
/// its MTI class and date-time, `"0200 1124103000"` (field 7) or, on UnionPay-style
/// terminals, which send no field 7 and number their STANs within a batch,
/// `"0200 b000123"` (60.2). `None` when the request is not of a keyed class or lacks the
/// date-time (the type table requires it, so such a request is answered 30).
pub fn txn_key(req: &Message) -> Option<String> {
    let class = mti_class(req.mti_bytes())?;
    let class = std::str::from_utf8(&class).ok()?;
    if let Some(f7) = req.text(7) {
        return Some(format!("{class} {f7}"));
    }
    batch_number(req).map(|b| format!("{class} b{b}"))
}

impl TxnRecord {
    /// The parts of a row that come from the terminal's request.
    pub fn from_request(req: &Message, keys: &PanHasher) -> TxnRecord {
        let text = |n: usize| req.text(n).map(|t| t.into_owned());
        let pan = req.pan();
        TxnRecord {
            terminal_id: text(41).unwrap_or_default(),
            merchant_id: text(42).unwrap_or_default(),
            stan: text(11).unwrap_or_default(),
            rrn: text(37),
            transmission_time: text(7).unwrap_or_default(),
            mti: req.mti().to_string(),
            amount: req.amount().and_then(|a| i64::try_from(a).ok()).unwrap_or(0),
            currency: text(49),
            pan_masked: pan.as_deref().map(mask_pan),
            pan_hash: pan.as_deref().map(|p| keys.hash(p)),
            settle_cycle: "T1".into(),
            terminal_batch: batch_number(req),
            txn_key: txn_key(req),
            ..TxnRecord::default()
        }
    }

    /// Whether the outcome was an approval.
    pub fn approved(&self) -> bool {
        self.rc == "00"
    }
}

/// Keyed hash of card numbers (HMAC-SHA-256, hex of the first 16 bytes): lets the
/// journal and the risk rules find a card's transactions without storing the PAN.
#[derive(Clone)]
pub struct PanHasher {
    key: hmac::Key,
}

impl std::fmt::Debug for PanHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PanHasher(..)")
    }
}

impl PanHasher {
    pub fn new(key: &[u8]) -> Self {
        PanHasher { key: hmac::Key::new(hmac::HMAC_SHA256, key) }
    }

    pub fn hash(&self, pan: &str) -> String {
        let tag = hmac::sign(&self.key, pan.as_bytes());
        // The first 16 bytes of the tag as 32 hex digits, one allocation.
        hex::encode(tag.as_ref().get(..16).unwrap_or(tag.as_ref()))
    }
}

/// Unix milliseconds to a civil date `YYYYMMDD`, shifted by `offset_minutes`.
pub fn business_date(unix_ms: i64, offset_minutes: i32) -> String {
    let (y, m, d) = civil_from_ms(unix_ms, offset_minutes);
    format!("{y:04}{m:02}{d:02}")
}

/// Minutes past local midnight.
pub fn minute_of_day(unix_ms: i64, offset_minutes: i32) -> u32 {
    let local = unix_ms.div_euclid(60_000) + i64::from(offset_minutes);
    local.rem_euclid(1440) as u32
}

/// Civil (proleptic Gregorian) date of a Unix time, days-from-epoch algorithm.
pub fn civil_from_ms(unix_ms: i64, offset_minutes: i32) -> (i64, u32, u32) {
    let minutes = unix_ms.div_euclid(60_000) + i64::from(offset_minutes);
    crate::civil::from_days(minutes.div_euclid(1440))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(business_date(0, 0), "19700101");
        // 2026-11-24T00:22:20Z
        assert_eq!(business_date(1_795_479_740_000, 0), "20261124");
        // The same instant in UTC+8 is still the 24th; 16:30Z is the 25th there.
        assert_eq!(business_date(1_795_537_800_000, 480), "20261125");
        assert_eq!(business_date(951_782_400_000, 0), "20000229");
        assert_eq!(minute_of_day(1_795_479_740_000, 0), 22);
        assert_eq!(minute_of_day(1_795_479_740_000, 480), 8 * 60 + 22);
    }

    #[test]
    fn pan_hash_is_keyed_and_stable() {
        let a = PanHasher::new(b"key-a");
        let b = PanHasher::new(b"key-b");
        assert_eq!(a.hash("4761739001010010"), a.hash("4761739001010010"));
        assert_ne!(a.hash("4761739001010010"), b.hash("4761739001010010"));
        assert_eq!(a.hash("4761739001010010").len(), 32);
        assert!(!a.hash("4761739001010010").contains("4761739001010010"));
    }
}
