//! The simulated terminals' requests. Each connection keeps one template `Message` per
//! transaction type, built once with the codec's builder; a request only re-sets the
//! fields that change (11 STAN, 37 RRN, 4 amount, 2 PAN, and 7/12/13 when the second
//! changes) and is encoded into the caller's buffer. PANs are Luhn-valid test numbers: each
//! connection cycles through 10,000 cards of its own (per-card frequency and daily limits of
//! an estate's risk rules then see many cardholders, not one); they are never printed. The
//! terminal id (41) and merchant id (42) are the simulator's own (`SIM00000` up, merchant
//! `SIMMERCHANT0001`) or those of an estate's registry ([`Identity`]).
//!
//! The mix, per 100 requests (spread by a scrambled index so that kinds interleave):
//!
//! | share | MTI  | what                                   | sim issuer answers |
//! |-------|------|----------------------------------------|--------------------|
//! | 69 %  | 0200 | purchase                               | 00                 |
//! | 5 %   | 0200 | purchase, amount ending in 51 cents    | 51                 |
//! | 2 %   | 0200 | purchase, amount ending in 05 cents    | 05                 |
//! | 1 %   | 0200 | purchase with a 4000 99.. test PAN     | 14                 |
//! | 15 %  | 0100 | pre-authorisation                      | 00                 |
//! | 3 %   | 0100 | pre-authorisation ending in 51 cents   | 51                 |
//! | 5 %   | 0800 | echo test                              | 00                 |
//!
//! Imports the codec and the simulators' helpers.
//! May import: crate::iso, crate::sim::util.

use std::io;
use std::sync::Arc;

use bytes::BytesMut;

use super::util::{Stamp, digits};
use crate::iso::{EncodeError, Message, Spec};

/// Prefix of the generated approving test PANs: prefix, 4 digits of the connection, 4 of
/// the card, the check digit.
const PAN_PREFIX: &str = "4761739";
/// Prefix of the PANs the sim issuer declines with 14.
pub(crate) const BAD_PAN_PREFIX: &str = "400099";
/// A request is built from a fresh clone of its template every this many uses, because
/// each `set` appends to the message's own buffer.
const RESET_EVERY: u32 = 64;

/// Luhn check over a string of digits.
pub fn luhn_valid(pan: &str) -> bool {
    let b = pan.as_bytes();
    if b.len() < 2 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b
        .iter()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `pan` is one of the test PANs the simulated terminals generate.
pub fn is_test_pan(pan: &str) -> bool {
    (pan.starts_with(PAN_PREFIX) || pan.starts_with(BAD_PAN_PREFIX)) && pan.len() == 16 && luhn_valid(pan)
}

/// `body` (15 digits) completed with its Luhn check digit.
fn with_check_digit(body: &str) -> String {
    (0..10u8).map(|d| format!("{body}{d}")).find(|p| luhn_valid(p)).unwrap_or_else(|| format!("{body}0"))
}

/// Test PANs for connection `conn`: (approving, declined with 14).
pub(crate) fn test_pans(conn: usize) -> (String, String) {
    let n = conn % 10_000;
    (
        with_check_digit(&format!("{PAN_PREFIX}{n:04}0000")),
        with_check_digit(&format!("{BAD_PAN_PREFIX}{n:04}00000")),
    )
}

/// Card `card` of a connection's cycle: `pan` (16 digits, from `test_pans`) with its last
/// four digits before the check digit replaced, and the check digit recomputed.
fn card_of(pan: &mut [u8; 16], card: u64) {
    pan[11..15].copy_from_slice(&digits::<4>(card % 10_000));
    // Luhn from the right: the check digit is position 0, so the body's last digit doubles.
    let sum: u32 = pan[..15]
        .iter()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = u32::from(c.wrapping_sub(b'0') % 10);
            if i % 2 == 0 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    pan[15] = b'0' + ((10 - sum % 10) % 10) as u8;
}

/// The terminal id of connection `conn` (field 41, 8 characters).
pub(crate) fn terminal_id(conn: usize) -> [u8; 8] {
    let mut t = *b"SIM00000";
    t[3..].copy_from_slice(&digits::<5>(conn as u64));
    t
}

/// Who a connection's requests say they come from: field 41 and, when set, field 42
/// (both space-padded to their fixed lengths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) terminal: [u8; 8],
    pub(crate) merchant: Option<[u8; 15]>,
}

impl Identity {
    /// The simulator's own terminal of connection `conn`, at merchant `SIMMERCHANT0001`.
    pub(crate) fn simulated(conn: usize) -> Identity {
        Identity { terminal: terminal_id(conn), merchant: Some(*b"SIMMERCHANT0001") }
    }

    /// An estate's terminal (1 to 8 characters) and merchant (1 to 15), checked.
    pub(crate) fn of(terminal: &str, merchant: Option<&str>) -> Result<Identity, String> {
        fn padded<const N: usize>(what: &str, v: &str) -> Result<[u8; N], String> {
            let b = v.as_bytes();
            if b.is_empty() || b.len() > N || !b.iter().all(|c| c.is_ascii_graphic()) {
                return Err(format!("{what} `{v}` must be 1 to {N} printable characters without spaces"));
            }
            let mut out = [b' '; N];
            out[..b.len()].copy_from_slice(b);
            Ok(out)
        }
        Ok(Identity {
            terminal: padded("terminal id", terminal)?,
            merchant: merchant.map(|m| padded("merchant id", m)).transpose()?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Purchase,
    BadCard,
    PreAuth,
    Echo,
}

struct Template {
    pristine: Message,
    work: Message,
    uses: u32,
    stamped: u64,
    mti: [u8; 4],
    financial: bool,
}

/// What a request carried that its reply must repeat.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub(crate) mti: [u8; 4],
    pub(crate) rrn: Option<[u8; 12]>,
    pub(crate) amount: Option<u64>,
}

/// One connection's request factory.
pub(crate) struct Requests {
    templates: [Template; 4],
    conn: u64,
    rrn_seq: u64,
    /// The connection's approving and declined PANs; the card digits change per request.
    pans: [[u8; 16]; 2],
}

fn set_time(m: &mut Message, spec: &Spec, s: &Stamp) -> Result<(), EncodeError> {
    if spec.field(7).is_some() {
        m.set_bytes(7, s.mmddhhmmss())?;
    }
    // Field 12 is hhmmss in the 1987 specs and YYMMDDhhmmss in the 1993 one.
    match spec.field(12).map(|f| f.max) {
        Some(6) => {
            m.set_bytes(12, s.hhmmss())?;
        }
        Some(12) => {
            m.set_bytes(12, &s.full)?;
        }
        _ => {}
    }
    if spec.field(13).is_some_and(|f| f.max == 4) {
        m.set_bytes(13, s.mmdd())?;
    }
    Ok(())
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("cannot build simulator requests: {e}"))
}

impl Requests {
    /// Templates for connection `conn` as the simulator's own terminal.
    #[cfg(test)]
    pub(crate) fn new(spec: &Arc<Spec>, conn: usize) -> io::Result<Requests> {
        Requests::with_identity(spec, conn, Identity::simulated(conn))
    }

    /// Templates for connection `conn` sending as `who`; fails when the spec lacks a field
    /// every request needs.
    pub(crate) fn with_identity(spec: &Arc<Spec>, conn: usize, who: Identity) -> io::Result<Requests> {
        for n in [2, 4, 11, 37, 41] {
            if spec.field(n).is_none() {
                return Err(invalid(format!("spec {} has no field {n}", spec.name)));
            }
        }
        let (pan, bad_pan) = test_pans(conn);
        let pans = [
            pan.as_bytes().try_into().map_err(|_| invalid("test PAN length"))?,
            bad_pan.as_bytes().try_into().map_err(|_| invalid("test PAN length"))?,
        ];
        let tid = who.terminal;
        let build = |mti: &str, pan: Option<&str>, processing: &str| -> Result<Template, EncodeError> {
            let mut m = Message::new(spec.clone(), mti)?;
            if let Some(p) = pan {
                m.set(2, p)?;
                // Optional fields: set where the spec's length agrees, skipped otherwise.
                let _ = m.set(3, processing);
                m.set_number(4, 0)?;
                let _ = m.set(18, "5411");
                let _ = m.set(22, "051");
                let _ = m.set(25, "00");
                m.set_bytes(37, b"000000000000")?;
                if let Some(mid) = &who.merchant {
                    // A spec whose field 42 is not 15 characters long gets none.
                    let _ = m.set_bytes(42, mid);
                }
                let _ = m.set(49, "156");
            } else {
                let _ = m.set(70, "301");
            }
            m.set_number(11, 0)?;
            m.set_bytes(41, &tid)?;
            Ok(Template {
                work: m.clone(),
                pristine: m,
                uses: 0,
                stamped: u64::MAX,
                mti: mti.as_bytes().try_into().unwrap_or(*b"0000"),
                financial: pan.is_some(),
            })
        };
        let templates = [
            build("0200", Some(&pan), "000000").map_err(invalid)?,
            build("0200", Some(&bad_pan), "000000").map_err(invalid)?,
            build("0100", Some(&pan), "030000").map_err(invalid)?,
            build("0800", None, "").map_err(invalid)?,
        ];
        Ok(Requests { templates, conn: conn as u64, rrn_seq: 0, pans })
    }

    /// Encode request number `seq` (0, 1, ...) with `stan` into `out`.
    pub(crate) fn encode(
        &mut self,
        seq: u64,
        stan: u32,
        stamp: &Stamp,
        out: &mut BytesMut,
    ) -> Result<Sent, EncodeError> {
        let slot = seq.wrapping_mul(37) % 100;
        let (kind, cents) = match slot {
            0..=68 => (Kind::Purchase, None),
            69..=73 => (Kind::Purchase, Some(51)),
            74..=75 => (Kind::Purchase, Some(5)),
            76 => (Kind::BadCard, None),
            77..=91 => (Kind::PreAuth, None),
            92..=94 => (Kind::PreAuth, Some(51)),
            _ => (Kind::Echo, None),
        };
        let t = &mut self.templates[kind as usize];
        if t.uses >= RESET_EVERY {
            t.work = t.pristine.clone();
            t.uses = 0;
            t.stamped = u64::MAX;
        }
        t.uses += 1;
        if t.stamped != stamp.unix {
            let spec = t.work.spec().clone();
            set_time(&mut t.work, &spec, stamp)?;
            t.stamped = stamp.unix;
        }
        t.work.set_bytes(11, &digits::<6>(u64::from(stan)))?;
        let mut sent = Sent { mti: t.mti, rrn: None, amount: None };
        if t.financial {
            // Cents that the issuer would decline are avoided unless asked for.
            let cents = cents.unwrap_or(match seq % 100 {
                5 | 51 => 0,
                c => c,
            });
            let amount = (seq.wrapping_mul(7919) % 5000 + 1) * 100 + cents;
            self.rrn_seq += 1;
            let rrn = digits::<12>((self.conn % 1000) * 1_000_000_000 + self.rrn_seq % 1_000_000_000);
            let pan = &mut self.pans[usize::from(kind == Kind::BadCard)];
            card_of(pan, self.rrn_seq);
            t.work.set_bytes(2, pan)?;
            t.work.set_bytes(4, &digits::<12>(amount))?;
            t.work.set_bytes(37, &rrn)?;
            sent.rrn = Some(rrn);
            sent.amount = Some(amount);
        }
        t.work.encode(out)?;
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;

    #[test]
    fn pans_are_luhn_valid_test_pans() {
        for c in [0, 1, 63, 9999, 12345] {
            let (a, b) = test_pans(c);
            assert!(is_test_pan(&a) && is_test_pan(&b), "{c}");
            assert!(b.starts_with(BAD_PAN_PREFIX));
        }
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        // Every card of the cycle is a valid test PAN of its kind.
        let (a, _) = test_pans(42);
        let mut pan: [u8; 16] = a.as_bytes().try_into().unwrap();
        let mut seen = std::collections::HashSet::new();
        for card in [0, 1, 7, 999, 9_999, 10_000, 123_457] {
            card_of(&mut pan, card);
            let s = std::str::from_utf8(&pan).unwrap();
            assert!(is_test_pan(s), "{s}");
            assert!(s.starts_with("47617390042"), "{s}");
            seen.insert(s.to_string());
        }
        assert_eq!(seen.len(), 6, "cards 0 and 10,000 are the same card, the rest differ");
    }

    #[test]
    fn identities_are_padded_and_checked() {
        let who = Identity::of("T1", Some("898340158120001")).unwrap();
        assert_eq!(&who.terminal, b"T1      ");
        assert_eq!(who.merchant, Some(*b"898340158120001"));
        assert_eq!(Identity::of("10000001", None).unwrap().merchant, None);
        assert!(Identity::of("TERMINAL9", None).unwrap_err().contains("`TERMINAL9`"));
        assert!(Identity::of("T1", Some("8983401581200011")).unwrap_err().contains("merchant id"));
        assert!(Identity::of("", None).is_err() && Identity::of("T 1", None).is_err());
    }

    #[test]
    fn an_estate_identity_is_what_the_requests_carry() {
        let spec = shipped("iso87ascii").unwrap();
        let who = Identity::of("10000002", Some("898340154110001")).unwrap();
        let mut r = Requests::with_identity(&spec, 0, who).unwrap();
        let stamp = Stamp::at(1_795_478_400);
        let mut cards = std::collections::HashSet::new();
        for seq in 0..100u64 {
            let mut out = BytesMut::new();
            r.encode(seq, seq as u32 + 1, &stamp, &mut out).unwrap();
            let m = Message::decode(&spec, out.freeze()).unwrap();
            assert_eq!(m.terminal_id().as_deref(), Some("10000002"));
            if let Some(pan) = m.pan() {
                assert_eq!(m.merchant_id().as_deref(), Some("898340154110001"));
                assert!(is_test_pan(&pan), "{pan}");
                cards.insert(pan.to_string());
            }
        }
        assert!(cards.len() > 90, "one card per financial request: {}", cards.len());
        // Without a merchant, field 42 is left out (the registry knows the terminal's).
        let mut r = Requests::with_identity(&spec, 0, Identity::of("10000002", None).unwrap()).unwrap();
        let mut out = BytesMut::new();
        r.encode(0, 1, &stamp, &mut out).unwrap();
        assert_eq!(Message::decode(&spec, out.freeze()).unwrap().merchant_id(), None);
    }

    #[test]
    fn every_shipped_spec_builds_decodable_requests() {
        for name in ["iso87ascii", "iso87binbitmap", "iso87bcd", "iso93ascii", "cup-pos"] {
            let spec = shipped(name).unwrap();
            let mut r = Requests::new(&spec, 3).unwrap();
            let stamp = Stamp::at(1_795_478_400);
            let mut kinds = std::collections::BTreeMap::new();
            for seq in 0..300u64 {
                let mut out = BytesMut::new();
                let sent = r.encode(seq, seq as u32 + 1, &stamp, &mut out).unwrap();
                let m = Message::decode(&spec, out.freeze()).unwrap();
                assert_eq!(m.mti().as_bytes(), &sent.mti, "{name}");
                assert_eq!(m.stan(), Some(seq as u32 + 1));
                assert_eq!(m.terminal_id().as_deref(), Some("SIM00003"));
                assert_eq!(m.amount(), sent.amount);
                assert_eq!(m.rrn().map(|s| s.as_bytes().to_vec()), sent.rrn.map(|r| r.to_vec()));
                *kinds.entry(m.mti().to_string()).or_insert(0) += 1;
            }
            assert_eq!(kinds.len(), 3, "{name}: {kinds:?}");
        }
    }
}
