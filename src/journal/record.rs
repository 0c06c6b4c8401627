//! One journal row: what the switch knows about a transaction, with the card number
//! reduced to its masked form and a keyed hash. Built from the terminal's request and
//! the outcome; never holds a full PAN, track data, PIN block or CVV. Its response codes,
//! transaction type, decision and settlement cycle are typed; they become the text of
//! their columns (and of the JSON and CSV that show rows) only in the stores and at
//! those edges, through `as_str` and `parse`.
//! May import: crate::iso, crate::rc, crate::route::registry, crate::route::txn, crate::time.

use compact_str::{CompactString, format_compact};
use ring::hmac;
use serde::{Serialize, Serializer};

use crate::iso::Message;
use crate::iso::mask::masked_pan_chars;
use crate::rc::ResponseCode;
pub use crate::route::registry::SettleCycle;
use crate::route::txn::TxnType;
use crate::time::UnixMs;

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

/// A row's `txn_type`: the type the routing core recognised, or what the row has instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RowType {
    Txn(TxnType),
    /// A request answered 94: its terminal key names another transaction.
    Duplicate,
    /// Routed to an issuer the switch has no link configuration for (answered 91).
    NoIssuer,
    /// Declined before the type table recognised it.
    Unrecognised,
    /// Not set (a row made without a decision).
    #[default]
    Unset,
}

impl RowType {
    /// The column's text: a type's stable name (`TxnType::as_str`), `duplicate`, `unknown`,
    /// `other`, or empty.
    pub fn as_str(self) -> &'static str {
        match self {
            RowType::Txn(t) => t.as_str(),
            RowType::Duplicate => "duplicate",
            RowType::NoIssuer => "unknown",
            RowType::Unrecognised => "other",
            RowType::Unset => "",
        }
    }

    /// The type a column's text names; text no switch writes reads as `Unset`.
    pub fn parse(s: &str) -> RowType {
        match s {
            "duplicate" => RowType::Duplicate,
            "unknown" => RowType::NoIssuer,
            "other" => RowType::Unrecognised,
            _ => TxnType::ALL.into_iter().find(|t| t.as_str() == s).map_or(RowType::Unset, RowType::Txn),
        }
    }

    /// Whether this is the transaction type `t`.
    #[inline]
    pub fn is(self, t: TxnType) -> bool {
        self == RowType::Txn(t)
    }
}

impl From<TxnType> for RowType {
    fn from(t: TxnType) -> RowType {
        RowType::Txn(t)
    }
}

/// How the switch decided a request: the row's `decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Decided {
    /// Sent to an issuer, which answered (or did not).
    Forward,
    /// Declined by the switch (rules, estate checks, security), never forwarded.
    Decline,
    /// A terminal's reversal, matched in the journal and queued for the issuer.
    Reversal,
    /// Answered by the switch itself (batch upload).
    Local,
    /// Decided on the issuer's behalf by its stand-in policy.
    StandIn,
    /// Claimed in a shared journal before forwarding, its outcome not yet known (and the
    /// reading of a column text no switch writes).
    #[default]
    Pending,
}

impl Decided {
    pub fn as_str(self) -> &'static str {
        match self {
            Decided::Forward => "forward",
            Decided::Decline => "decline",
            Decided::Reversal => "reversal",
            Decided::Local => "local",
            Decided::StandIn => "stand-in",
            Decided::Pending => "pending",
        }
    }

    pub fn parse(s: &str) -> Decided {
        match s {
            "forward" => Decided::Forward,
            "decline" => Decided::Decline,
            "reversal" => Decided::Reversal,
            "local" => Decided::Local,
            "stand-in" => Decided::StandIn,
            _ => Decided::Pending,
        }
    }
}

macro_rules! serialize_as_str {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    )*};
}
serialize_as_str!(RowType, Decided);

/// The text of a row's `rc`: the code, or empty before the outcome is known.
#[inline]
pub fn rc_text(rc: &Option<ResponseCode>) -> &str {
    rc.as_ref().map_or("", ResponseCode::as_str)
}

fn serialize_rc<S: Serializer>(rc: &Option<ResponseCode>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(rc_text(rc))
}

/// A journal row. Amounts and fees are signed integer minor units.
///
/// Its text fields are `CompactString`s, which hold up to 24 bytes inline (every field the
/// switch fills from a request or an answer is shorter, as are usual switch, route and
/// issuer names), and the PAN hash is a `PanHash` (its 32 hex digits inline): making a row
/// on a request's task and dropping it on the journal's writer thread allocates nothing
/// but the row's own box. They read as `&str` (`as_str`, `as_deref`) and serialize as the
/// same strings as the columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct TxnRecord {
    pub switch_id: CompactString,
    /// When the request arrived, was forwarded and was answered (Unix milliseconds in the
    /// columns and in JSON).
    pub received_at: UnixMs,
    pub forwarded_at: Option<UnixMs>,
    pub answered_at: Option<UnixMs>,
    /// YYYYMMDD in the switch's business time zone.
    pub business_date: CompactString,
    pub terminal_id: CompactString,
    pub merchant_id: CompactString,
    /// The terminal's STAN (field 11) and the one the switch used toward the issuer.
    pub stan: CompactString,
    pub switch_stan: Option<CompactString>,
    pub rrn: Option<CompactString>,
    /// Field 7 as sent by the terminal; part of the duplicate key.
    pub transmission_time: CompactString,
    pub mti: CompactString,
    pub txn_type: RowType,
    pub amount: i64,
    pub currency: Option<CompactString>,
    pub pan_masked: Option<CompactString>,
    pub pan_hash: Option<PanHash>,
    pub route: Option<CompactString>,
    pub issuer: Option<CompactString>,
    /// forward, decline, local, reversal or stand-in (approved or declined by the switch on
    /// the issuer's behalf); pending while claimed.
    pub decision: Decided,
    /// What the terminal was told; `None` (an empty column) until then.
    #[serde(serialize_with = "serialize_rc")]
    pub rc: Option<ResponseCode>,
    pub auth_code: Option<CompactString>,
    pub fee: i64,
    pub settle_cycle: SettleCycle,
    pub status: Option<Status>,
    pub batch: Option<CompactString>,
    /// The terminal's own batch number (UnionPay-style 60.2), six digits; `None` for
    /// dialects without one.
    pub terminal_batch: Option<CompactString>,
    /// The request's terminal key within (terminal, STAN): its MTI class and date-time
    /// (see `journal::store::INDEXES`); `None` on a row that answered a request without
    /// taking its key (a duplicate's 94).
    pub txn_key: Option<CompactString>,
    /// A stand-in approval's advice: the issuer's answer to it (`00` accepted; any other
    /// code: the issuer refused it, and the amount is the acquirer's risk); `None` until
    /// the issuer answered, and on every other row.
    pub advice_rc: Option<ResponseCode>,
}

/// The terminal's own batch number (UnionPay-style 60.2) of a `cup-pos` message, as its
/// six digits; `None` for other dialects.
pub fn batch_number(req: &Message) -> Option<CompactString> {
    if req.spec().name != "cup-pos" {
        return None;
    }
    let mut f60 = CompactString::default();
    if !req.push_text(60, &mut f60) {
        return None;
    }
    let b = f60.get(2..8)?;
    b.bytes().all(|c| c.is_ascii_digit()).then(|| CompactString::new(b))
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
pub fn txn_key(req: &Message) -> Option<CompactString> {
    mti_class(req.mti_bytes())?;
    let mut f7 = CompactString::default();
    let f7 = req.push_text(7, &mut f7).then_some(f7);
    let batch = if f7.is_none() { batch_number(req) } else { None };
    key_of(req.mti_bytes(), f7.as_deref(), batch.as_deref())
}

/// `txn_key` from the request's MTI, field 7 and 60.2 (when read already).
fn key_of(mti: &[u8], f7: Option<&str>, batch: Option<&str>) -> Option<CompactString> {
    let class = mti_class(mti)?;
    let class = std::str::from_utf8(&class).ok()?;
    match (f7, batch) {
        (Some(f7), _) => Some(format_compact!("{class} {f7}")),
        (None, Some(b)) => Some(format_compact!("{class} b{b}")),
        (None, None) => None,
    }
}

impl TxnRecord {
    /// The parts of a row that come from the terminal's request.
    pub fn from_request(req: &Message, keys: &PanHasher) -> TxnRecord {
        // Each field is read into an inline string: nothing is allocated, whatever the
        // fields' encoding.
        let text = |n: usize| {
            let mut s = CompactString::default();
            req.push_text(n, &mut s).then_some(s)
        };
        let (pan, transmission_time, terminal_batch) = (text(2), text(7), batch_number(req));
        TxnRecord {
            terminal_id: text(41).unwrap_or_default(),
            merchant_id: text(42).unwrap_or_default(),
            stan: text(11).unwrap_or_default(),
            rrn: text(37),
            txn_key: key_of(req.mti_bytes(), transmission_time.as_deref(), terminal_batch.as_deref()),
            transmission_time: transmission_time.unwrap_or_default(),
            mti: CompactString::new(req.mti()),
            amount: req.amount().and_then(|a| i64::try_from(a).ok()).unwrap_or(0),
            currency: text(49),
            pan_masked: pan.as_deref().map(|p| masked_pan_chars(p).collect()),
            pan_hash: pan.as_deref().map(|p| keys.hash(p)),
            settle_cycle: SettleCycle::T1,
            terminal_batch,
            ..TxnRecord::default()
        }
    }

    /// Whether the outcome was an approval.
    pub fn approved(&self) -> bool {
        self.rc.is_some_and(ResponseCode::is_approved)
    }
}

/// A keyed PAN hash as the journal's `pan_hash` holds it: 32 lowercase hex digits, kept
/// inline (no allocation to make, copy or drop one).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PanHash([u8; 32]);

impl PanHash {
    /// The hash that `s` writes (32 hex digits, either case, read as lowercase); `None`
    /// for any other text.
    pub fn parse(s: &str) -> Option<PanHash> {
        let b: [u8; 32] = s.as_bytes().try_into().ok()?;
        b.iter().all(u8::is_ascii_hexdigit).then(|| PanHash(b.map(|c| c.to_ascii_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        // Only `parse` and `PanHasher::hash` make one: always ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::ops::Deref for PanHash {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for PanHash {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for PanHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for PanHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for PanHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<str> for PanHash {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for PanHash {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
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

    pub fn hash(&self, pan: &str) -> PanHash {
        let tag = hmac::sign(&self.key, pan.as_bytes());
        // The first 16 bytes of the tag (SHA-256's is 32) as 32 hex digits.
        let mut hex = [0u8; 32];
        let _ = hex::encode_to_slice(tag.as_ref().get(..16).unwrap_or_default(), &mut hex);
        PanHash(hex)
    }
}

/// The business date of `at` in the zone `offset_minutes` east of UTC, `YYYYMMDD` (the
/// `business_date` column). The calendar is `time::UnixMs::civil`'s.
pub fn business_date(at: UnixMs, offset_minutes: i32) -> String {
    business_date_text(at, offset_minutes).into_string()
}

/// `business_date` as a row holds it (inline, no allocation).
pub fn business_date_text(at: UnixMs, offset_minutes: i32) -> CompactString {
    let d = at.civil(offset_minutes).date;
    format_compact!("{:04}{:02}{:02}", d.year, d.month, d.day)
}

/// Minutes past local midnight of `at` in the zone `offset_minutes` east of UTC.
pub fn minute_of_day(at: UnixMs, offset_minutes: i32) -> u32 {
    u32::from(at.civil(offset_minutes).minute_of_day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        let at = |ms: u64| UnixMs(ms);
        // (instant, offset, business date, minute of day)
        let cases = [
            (at(0), 0, "19700101", 0),
            // 2026-11-24T00:22:20Z
            (at(1_795_479_740_000), 0, "20261124", 22),
            (at(1_795_479_740_000), 480, "20261124", 8 * 60 + 22),
            // West of UTC the same instant is still the 23rd.
            (at(1_795_479_740_000), -300, "20261123", 19 * 60 + 22),
            // 16:30Z is the 25th in UTC+8.
            (at(1_795_537_800_000), 480, "20261125", 30),
            (at(951_782_400_000), 0, "20000229", 0),
            // Local midnight in UTC+8 (2026-11-24T16:00Z) and the millisecond before it.
            (at(1_795_536_000_000), 480, "20261125", 0),
            (at(1_795_535_999_999), 480, "20261124", 1439),
            // UTC midnight and the millisecond before it; a half-hour zone (+05:30).
            (at(1_795_478_400_000), 0, "20261124", 0),
            (at(1_795_478_399_999), 0, "20261123", 1439),
            (at(1_795_478_400_000), 330, "20261124", 330),
        ];
        for (t, offset, date, minute) in cases {
            assert_eq!(business_date(t, offset), date, "{t:?} {offset}");
            assert_eq!(minute_of_day(t, offset), minute, "{t:?} {offset}");
        }
    }

    /// The arithmetic the journal used before it shared `UnixMs::civil` (whole minutes
    /// first, then the offset): the two agree at every instant the switch can record.
    #[test]
    fn business_time_is_the_time_modules() {
        let former = |ms: i64, offset: i32| {
            let minutes = ms.div_euclid(60_000) + i64::from(offset);
            let (y, m, d) = crate::civil::from_days(minutes.div_euclid(1440));
            (format!("{y:04}{m:02}{d:02}"), minutes.rem_euclid(1440) as u32)
        };
        let day = 86_400_000i64;
        let mut instants = vec![0, 1, 59_999, 60_000, day - 1, day, 951_782_400_000, 1_795_535_999_999];
        // Every 7 hours 13 minutes and 17.029 s over about 8 years from 2020, so that every
        // hour, minute and month boundary of a zone is passed near.
        instants.extend((0..9_000).map(|i| 1_577_836_800_000 + i * 25_997_029));
        for ms in instants {
            for offset in [-720, -300, -1, 0, 1, 330, 345, 480, 840] {
                let t = UnixMs::from_i64(ms);
                assert_eq!(
                    (business_date(t, offset), minute_of_day(t, offset)),
                    former(ms, offset),
                    "{ms} at {offset}"
                );
            }
        }
    }

    #[test]
    fn typed_columns_keep_their_text() {
        for t in TxnType::ALL {
            assert_eq!(RowType::parse(RowType::Txn(t).as_str()), RowType::Txn(t));
        }
        for (v, text) in [
            (RowType::Txn(TxnType::PreAuthCompletion), "preauth_completion"),
            (RowType::Duplicate, "duplicate"),
            (RowType::NoIssuer, "unknown"),
            (RowType::Unrecognised, "other"),
            (RowType::Unset, ""),
        ] {
            assert_eq!((v.as_str(), RowType::parse(text)), (text, v));
        }
        for d in [Decided::Forward, Decided::Decline, Decided::Reversal, Decided::Local, Decided::StandIn] {
            assert_eq!(Decided::parse(d.as_str()), d);
        }
        assert_eq!((Decided::StandIn.as_str(), Decided::Pending.as_str()), ("stand-in", "pending"));
        assert_eq!((SettleCycle::parse("T0"), SettleCycle::parse("T1")), (SettleCycle::T0, SettleCycle::T1));
        let row = TxnRecord {
            txn_type: RowType::Txn(TxnType::BalanceInquiry),
            decision: Decided::StandIn,
            settle_cycle: SettleCycle::T0,
            advice_rc: ResponseCode::parse("05"),
            received_at: UnixMs(1_795_479_740_000),
            answered_at: Some(UnixMs(1_795_479_740_003)),
            ..TxnRecord::default()
        };
        let json = serde_json::to_value(&row).unwrap();
        // Times are the columns' Unix milliseconds, as numbers; an unset one is null.
        assert_eq!(json["received_at"], serde_json::json!(1_795_479_740_000i64));
        assert_eq!(json["answered_at"], serde_json::json!(1_795_479_740_003i64));
        assert!(json["forwarded_at"].is_null());
        assert_eq!(json["txn_type"], "balance");
        assert_eq!(json["decision"], "stand-in");
        assert_eq!(json["settle_cycle"], "T0");
        assert_eq!(json["rc"], "", "no outcome yet: an empty code, as in the column");
        assert_eq!(json["advice_rc"], "05");
        let answered = TxnRecord { rc: Some(ResponseCode::APPROVED), ..row };
        assert_eq!(serde_json::to_value(&answered).unwrap()["rc"], "00");
        assert!(answered.approved());
    }

    #[test]
    fn pan_hash_is_keyed_and_stable() {
        let a = PanHasher::new(b"key-a");
        let b = PanHasher::new(b"key-b");
        assert_eq!(a.hash("4761739001010010"), a.hash("4761739001010010"));
        assert_ne!(a.hash("4761739001010010"), b.hash("4761739001010010"));
        assert_eq!(a.hash("4761739001010010").len(), 32);
        assert!(!a.hash("4761739001010010").contains("4761739001010010"));
        // The column's text: the hex of the HMAC-SHA-256 tag's first 16 bytes.
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"key-a"), b"4761739001010010");
        assert_eq!(a.hash("4761739001010010").as_str(), hex::encode(&tag.as_ref()[..16]));
        let h = a.hash("4761739001010010");
        assert_eq!(PanHash::parse(&h), Some(h));
        assert_eq!(PanHash::parse(&h.to_ascii_uppercase()), Some(h), "read back as lowercase");
        for bad in ["", "00112233", "00112233445566778899aabbccddeeff0", "00112233445566778899aabbccddeefg"] {
            assert_eq!(PanHash::parse(bad), None, "{bad:?}");
        }
        assert_eq!(serde_json::to_value(Some(h)).unwrap(), serde_json::json!(h.as_str()));
    }
}
