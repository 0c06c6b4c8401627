//! The simulated terminals' requests. Each connection keeps one template `Message` per
//! transaction type, built once with the codec's builder; a request only re-sets the
//! fields that change (11 STAN, 37 RRN, 4 amount, and 7/12/13 when the second changes)
//! and is encoded into the caller's buffer. PANs are Luhn-valid test numbers generated
//! per connection; they are never printed.
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

use std::io;
use std::sync::Arc;

use bytes::BytesMut;

use super::util::{Stamp, digits};
use crate::iso::{EncodeError, Message, Spec};

/// Prefix of the generated approving test PANs.
const PAN_PREFIX: &str = "47617390010";
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
        with_check_digit(&format!("{PAN_PREFIX}{n:04}")),
        with_check_digit(&format!("{BAD_PAN_PREFIX}00000{n:04}")),
    )
}

/// The terminal id of connection `conn` (field 41, 8 characters).
pub(crate) fn terminal_id(conn: usize) -> [u8; 8] {
    let mut t = *b"SIM00000";
    t[3..].copy_from_slice(&digits::<5>(conn as u64));
    t
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
    /// Templates for connection `conn`; fails when the spec lacks a field every request needs.
    pub(crate) fn new(spec: &Arc<Spec>, conn: usize) -> io::Result<Requests> {
        for n in [2, 4, 11, 37, 41] {
            if spec.field(n).is_none() {
                return Err(invalid(format!("spec {} has no field {n}", spec.name)));
            }
        }
        let (pan, bad_pan) = test_pans(conn);
        let tid = terminal_id(conn);
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
                let _ = m.set(42, "SIMMERCHANT0001");
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
        Ok(Requests { templates, conn: conn as u64, rrn_seq: 0 })
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
