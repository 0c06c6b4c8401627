//! Content encodings: how a field's characters travel. ASCII and hex characters as they
//! are, EBCDIC one byte per character through code page 037, packed BCD two digits a
//! byte (a filler nibble where the spec puts it; an `x+n` sign as one ASCII character
//! before the digits), binary as raw bytes. The MTI's four digits travel in one of these
//! encodings too. Each operation is one `match` on the encoding, here only: checking the
//! bytes a decoder found, writing a checked value, reading a value back as text or as a
//! number. Every reader takes a slice already checked to be long enough and never
//! indexes past it.
//! May import: crate::iso::error, crate::iso::spec, crate::iso::wire::charset,
//! crate::iso::wire::ebcdic.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use super::{charset, ebcdic};
use crate::iso::error::ErrorKind;
use crate::iso::spec::{CharClass, Encoding, FieldSpec, Pad};

/// Bytes on the wire for a value of `units` units of field `fs` (prefix excluded).
#[inline]
pub fn wire_len(fs: &FieldSpec, units: usize) -> usize {
    match fs.encoding {
        Encoding::Bcd => match fs.class {
            // The sign travels as one ASCII character, the digits packed.
            CharClass::SignedAmount => 1 + units.saturating_sub(1).div_ceil(2),
            _ => units.div_ceil(2),
        },
        _ => units,
    }
}

/// Read a four-digit MTI.
pub fn read_mti(enc: Encoding, buf: &[u8]) -> Result<[u8; 4], ErrorKind> {
    let mut mti = [0u8; 4];
    match enc {
        Encoding::Bcd => {
            let b = buf.get(..2).ok_or(ErrorKind::Truncated { need: 2, have: buf.len() })?;
            for (i, byte) in b.iter().enumerate() {
                let (hi, lo) = (byte >> 4, byte & 0xF);
                if hi > 9 || lo > 9 {
                    return Err(ErrorKind::BadChar { class: "n" });
                }
                mti[2 * i] = b'0' + hi;
                mti[2 * i + 1] = b'0' + lo;
            }
        }
        _ => {
            let b = buf.get(..4).ok_or(ErrorKind::Truncated { need: 4, have: buf.len() })?;
            for (m, &c) in mti.iter_mut().zip(b) {
                let c = if enc == Encoding::Ebcdic { ebcdic::to_ascii(c) } else { c };
                if !c.is_ascii_digit() {
                    return Err(ErrorKind::BadChar { class: "n" });
                }
                *m = c;
            }
        }
    }
    Ok(mti)
}

/// Write a four-digit MTI (its digits checked when it was set).
pub fn write_mti(enc: Encoding, mti: &[u8; 4], out: &mut BytesMut) {
    match enc {
        Encoding::Bcd => {
            out.put_u8(((mti[0] - b'0') << 4) | (mti[1] - b'0'));
            out.put_u8(((mti[2] - b'0') << 4) | (mti[3] - b'0'));
        }
        Encoding::Ebcdic => {
            for &c in mti {
                out.put_u8(ebcdic::from_ascii(c));
            }
        }
        _ => out.put_slice(mti),
    }
}

/// Check a field's wire bytes against its class; on failure returns the offset within `data`.
#[inline]
pub fn check(fs: &FieldSpec, data: &[u8], units: usize) -> Result<(), (ErrorKind, usize)> {
    let bad = || charset::bad(fs.class);
    match fs.encoding {
        Encoding::Binary => Ok(()),
        Encoding::Hex => match data.iter().position(|c| !c.is_ascii_hexdigit()) {
            Some(i) => Err((bad(), i)),
            None => Ok(()),
        },
        Encoding::Ascii => charset::check(fs.class, data).map_err(|i| (bad(), i)),
        Encoding::Ebcdic => {
            for (i, &c) in data.iter().enumerate() {
                let a = ebcdic::to_ascii(c);
                if a == 0 || !charset::allowed_at(fs.class, i, a) {
                    return Err((bad(), i));
                }
            }
            Ok(())
        }
        Encoding::Bcd => {
            let (digits, start) = if fs.class == CharClass::SignedAmount {
                let sign = *data.first().ok_or((bad(), 0))?;
                if sign != b'C' && sign != b'D' {
                    return Err((bad(), 0));
                }
                (units.saturating_sub(1), 1)
            } else {
                (units, 0)
            };
            let packed = data.get(start..).unwrap_or_default();
            let filler = packed.len() * 2 - digits;
            // Fast path: no nibble outside the class anywhere (a loop without early exit,
            // which the compiler vectorises), then the filler nibble alone. Anything else
            // takes the exact nibble-by-nibble check below, which finds the offset.
            if !any_bad_nibble(packed, fs.class == CharClass::Track) {
                let filler_ok = filler == 0
                    || match fs.pad {
                        Pad::Left => packed.first().is_some_and(|b| b >> 4 == fs.pad_nibble),
                        Pad::Right => packed.last().is_some_and(|b| b & 0xF == fs.pad_nibble),
                    };
                if filler_ok {
                    return Ok(());
                }
            }
            bcd_exact(fs, packed, filler).map_err(|i| (bad(), start + i))
        }
    }
}

/// The nibble-by-nibble check of packed digits: the offset of the first bad byte.
fn bcd_exact(fs: &FieldSpec, packed: &[u8], filler: usize) -> Result<(), usize> {
    for (i, &byte) in packed.iter().enumerate() {
        for (k, nib) in [byte >> 4, byte & 0xF].into_iter().enumerate() {
            let idx = 2 * i + k;
            let is_filler = filler == 1
                && match fs.pad {
                    Pad::Left => idx == 0,
                    Pad::Right => idx == packed.len() * 2 - 1,
                };
            let ok = if is_filler {
                nib == fs.pad_nibble
            } else if fs.class == CharClass::Track {
                nib <= 9 || nib == 0xD
            } else {
                nib <= 9
            };
            if !ok {
                return Err(i);
            }
        }
    }
    Ok(())
}

/// Whether any nibble is not a digit (or, for track data, the separator 0xD).
#[inline]
fn any_bad_nibble(packed: &[u8], track: bool) -> bool {
    let bad = |n: u8| u8::from(n > 9 && !(track && n == 0xD));
    packed.iter().fold(0u8, |acc, &b| acc | bad(b >> 4) | bad(b & 0xF)) != 0
}

/// Encode a checked value onto the wire.
pub fn write(fs: &FieldSpec, value: &[u8], out: &mut BytesMut) {
    match fs.encoding {
        Encoding::Ascii | Encoding::Binary | Encoding::Hex => out.put_slice(value),
        Encoding::Ebcdic => {
            for &c in value {
                out.put_u8(ebcdic::from_ascii(c));
            }
        }
        Encoding::Bcd => {
            let digits = if fs.class == CharClass::SignedAmount {
                if let Some(&s) = value.first() {
                    out.put_u8(s);
                }
                value.get(1..).unwrap_or_default()
            } else {
                value
            };
            let nib = |c: u8| if c == b'=' || c == b'D' { 0xD } else { c.wrapping_sub(b'0') & 0xF };
            let odd = digits.len() % 2 == 1;
            let mut it = digits.iter().copied().map(nib);
            if odd && fs.pad == Pad::Left {
                let lo = it.next().unwrap_or(0);
                out.put_u8((fs.pad_nibble << 4) | lo);
            }
            loop {
                match (it.next(), it.next()) {
                    (Some(h), Some(l)) => out.put_u8((h << 4) | l),
                    (Some(h), None) => {
                        out.put_u8((h << 4) | fs.pad_nibble);
                        break;
                    }
                    _ => break,
                }
            }
        }
    }
}

/// A field's text form: characters, or uppercase hex for binary.
pub fn text<'a>(fs: &FieldSpec, raw: &'a [u8], units: usize) -> Cow<'a, str> {
    match fs.encoding {
        Encoding::Ascii => match std::str::from_utf8(raw) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => Cow::Owned(String::from_utf8_lossy(raw).into_owned()),
        },
        Encoding::Hex => {
            if raw.iter().any(u8::is_ascii_lowercase) {
                Cow::Owned(String::from_utf8_lossy(raw).to_ascii_uppercase())
            } else {
                String::from_utf8_lossy(raw)
            }
        }
        Encoding::Binary | Encoding::Ebcdic | Encoding::Bcd => {
            let mut s = String::with_capacity(units.max(raw.len() * 2));
            push_text(fs, raw, units, &mut s);
            Cow::Owned(s)
        }
    }
}

/// `text`, appended to a string of the caller's (an inline one, say): nothing is
/// allocated for the encodings `text` converts.
pub fn push_text<S>(fs: &FieldSpec, raw: &[u8], units: usize, out: &mut S)
where
    S: Extend<char> + for<'s> Extend<&'s str>,
{
    match fs.encoding {
        Encoding::Ascii | Encoding::Hex => out.extend([&*text(fs, raw, units)]),
        Encoding::Binary => {
            let hex =
                |n: u8| char::from_digit(u32::from(n & 0xF), 16).map_or('0', |c| c.to_ascii_uppercase());
            out.extend(raw.iter().flat_map(|&b| [hex(b >> 4), hex(b)]));
        }
        Encoding::Ebcdic => out.extend(raw.iter().map(|&c| ebcdic::to_ascii(c) as char)),
        Encoding::Bcd => {
            let (digits, packed) = if fs.class == CharClass::SignedAmount {
                if let Some(&c) = raw.first() {
                    out.extend([c as char]);
                }
                (units.saturating_sub(1), raw.get(1..).unwrap_or_default())
            } else {
                (units, raw)
            };
            let skip = if packed.len() * 2 > digits && fs.pad == Pad::Left { 1 } else { 0 };
            let nibbles = packed.iter().flat_map(|b| [b >> 4, b & 0xF]).skip(skip).take(digits);
            out.extend(nibbles.map(|n| match n {
                0..=9 => (b'0' + n) as char,
                0xD => '=',
                _ => '?',
            }));
        }
    }
}

/// A numeric field as a number, without allocating.
pub fn number(fs: &FieldSpec, raw: &[u8], units: usize) -> Option<u64> {
    if fs.class != CharClass::Numeric || units > 19 {
        return None;
    }
    match fs.encoding {
        Encoding::Ascii => {
            // Eight digits at a time (amounts have 12, STANs 6), the rest one by one.
            let mut chunks = raw.chunks_exact(8);
            let mut v = 0u64;
            for c in &mut chunks {
                v = v * 100_000_000 + eight_digits(c)?;
            }
            chunks
                .remainder()
                .iter()
                .try_fold(v, |v, &c| c.is_ascii_digit().then(|| v * 10 + u64::from(c - b'0')))
        }
        Encoding::Bcd => {
            let skip = if raw.len() * 2 > units && fs.pad == Pad::Left { 1 } else { 0 };
            raw.iter()
                .flat_map(|b| [b >> 4, b & 0xF])
                .skip(skip)
                .take(units)
                .try_fold(0u64, |v, n| (n <= 9).then(|| v * 10 + u64::from(n)))
        }
        Encoding::Ebcdic => raw.iter().try_fold(0u64, |v, &c| {
            let a = ebcdic::to_ascii(c);
            a.is_ascii_digit().then(|| v * 10 + u64::from(a - b'0'))
        }),
        _ => None,
    }
}

/// The number spelt by eight ASCII digits, `None` if any byte is not a digit: one word
/// checked and combined in three multiplications (pairs, quads, the whole).
#[inline]
pub fn eight_digits(c: &[u8]) -> Option<u64> {
    let w = u64::from_le_bytes(c.try_into().ok()?);
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    // Each byte 0x30..=0x39: high nibble 3, and still 3 after adding 6 (no carry can cross
    // a byte once the first test holds).
    if w & HIGH != ZEROS || w.wrapping_add(0x0606_0606_0606_0606) & HIGH != ZEROS {
        return None;
    }
    let d = w - ZEROS;
    // The first character is the lowest byte and the most significant digit.
    let d = (d * 10 + (d >> 8)) & 0x00FF_00FF_00FF_00FF;
    let d = (d * 100 + (d >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((d * 10_000 + (d >> 32)) & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::{Fill, Length, PrefixEncoding};

    #[test]
    fn eight_digits_agrees_with_one_digit_at_a_time() {
        let naive = |c: &[u8]| {
            c.iter().try_fold(0u64, |v, &b| b.is_ascii_digit().then(|| v * 10 + u64::from(b - b'0')))
        };
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut c = *format!("{:08}", x % 100_000_000).as_bytes().first_chunk::<8>().unwrap();
            // Now and then one byte anything at all, digits' neighbours most often.
            if i % 3 == 0 {
                let pos = (x >> 40) as usize % 8;
                c[pos] = match i % 4 {
                    0 => b'0' - 1 - (x >> 50) as u8 % 3,
                    1 => b'9' + 1 + (x >> 50) as u8 % 7,
                    _ => (x >> 48) as u8,
                };
            }
            assert_eq!(eight_digits(&c), naive(&c), "{c:?}");
        }
        assert_eq!(eight_digits(b"00000000"), Some(0));
        assert_eq!(eight_digits(b"99999999"), Some(99_999_999));
        assert_eq!(eight_digits(b"1234567"), None);
    }

    fn field(class: CharClass, encoding: Encoding, units: u16, pad: Pad, pad_nibble: u8) -> FieldSpec {
        FieldSpec {
            number: 2,
            name: String::new(),
            class,
            encoding,
            length: Length::Fixed,
            prefix: PrefixEncoding::Bcd,
            max: units,
            pad,
            pad_nibble,
            fill: Fill::None,
            sensitive: None,
        }
    }

    #[test]
    fn bcd_fast_path_agrees_with_the_exact_check() {
        // Every two-byte value, for every class, pad side and filler that BCD allows.
        for class in [CharClass::Numeric, CharClass::Track] {
            for pad in [Pad::Left, Pad::Right] {
                for pad_nibble in [0x0, 0xF] {
                    for units in [3, 4] {
                        let fs = field(class, Encoding::Bcd, units as u16, pad, pad_nibble);
                        for v in 0..=u16::MAX {
                            let data = v.to_be_bytes();
                            let exact = bcd_exact(&fs, &data, 4 - units);
                            let got = check(&fs, &data, units).map_err(|(_, i)| i);
                            assert_eq!(got, exact, "{class:?} {pad:?} {pad_nibble:X} {units} {v:04X}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_encoding_reads_back_what_it_writes() {
        let cases: &[(CharClass, Encoding, &[u8])] = &[
            (CharClass::Numeric, Encoding::Ascii, b"0012345"),
            (CharClass::Numeric, Encoding::Ebcdic, b"0012345"),
            (CharClass::Numeric, Encoding::Bcd, b"0012345"),
            (CharClass::SignedAmount, Encoding::Bcd, b"D00012345"),
            (CharClass::Track, Encoding::Bcd, b"4761739001010010=2812"),
            (CharClass::Text, Encoding::Ebcdic, b"SHOP #1, PARIS"),
            (CharClass::Binary, Encoding::Hex, b"9F2608AB"),
        ];
        for &(class, enc, value) in cases {
            for pad in [Pad::Left, Pad::Right] {
                let fs = field(class, enc, value.len() as u16, pad, 0xF);
                let mut out = BytesMut::new();
                write(&fs, value, &mut out);
                assert_eq!(out.len(), wire_len(&fs, value.len()), "{class:?} {enc:?}");
                assert_eq!(check(&fs, &out, value.len()), Ok(()), "{class:?} {enc:?} {pad:?}");
                let shown = text(&fs, &out, value.len());
                assert_eq!(shown.as_bytes(), value, "{class:?} {enc:?} {pad:?}");
                let mut pushed = String::from("x");
                push_text(&fs, &out, value.len(), &mut pushed);
                assert_eq!(pushed, format!("x{shown}"), "appended: {class:?} {enc:?} {pad:?}");
                if class == CharClass::Numeric {
                    assert_eq!(number(&fs, &out, value.len()), Some(12345), "{enc:?} {pad:?}");
                }
            }
        }
    }

    #[test]
    fn binary_reads_as_uppercase_hex() {
        let fs = field(CharClass::Binary, Encoding::Binary, 4, Pad::Left, 0);
        let raw = [0x9F, 0x26, 0x0A, 0xB1];
        assert_eq!(text(&fs, &raw, 4), "9F260AB1");
        assert_eq!(text(&fs, &raw, 4), hex::encode_upper(raw));
        let mut pushed = String::new();
        push_text(&fs, &raw, 4, &mut pushed);
        assert_eq!(pushed, "9F260AB1");
    }

    #[test]
    fn mtis_in_every_encoding() {
        for enc in [Encoding::Ascii, Encoding::Ebcdic, Encoding::Bcd] {
            let mut out = BytesMut::new();
            write_mti(enc, b"0210", &mut out);
            assert_eq!(read_mti(enc, &out), Ok(*b"0210"), "{enc:?}");
        }
        assert_eq!(read_mti(Encoding::Bcd, &[0x02, 0xA0]), Err(ErrorKind::BadChar { class: "n" }));
        assert_eq!(read_mti(Encoding::Ascii, b"02"), Err(ErrorKind::Truncated { need: 4, have: 2 }));
    }
}
