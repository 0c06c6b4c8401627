//! Wire encodings: ASCII, EBCDIC, packed BCD, binary and hex characters, for values,
//! length prefixes, MTIs and bitmaps. Every reader takes a slice already checked to be
//! long enough, or checks it itself, and never indexes past it.
//! May import: crate::iso::error, crate::iso::spec.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use super::error::{EncodeError, ErrorKind, Part};
use super::spec::{BitmapEncoding, CharClass, Encoding, FieldSpec, Length, Pad, PrefixEncoding};

/// EBCDIC (code page 037) to ASCII for the printable range; 0 where there is none.
static EBCDIC_TO_ASCII: [u8; 256] = {
    let mut t = [0u8; 256];
    let pairs: &[(u8, u8)] = &[
        (0x40, b' '),
        (0x4B, b'.'),
        (0x4C, b'<'),
        (0x4D, b'('),
        (0x4E, b'+'),
        (0x4F, b'|'),
        (0x50, b'&'),
        (0x5A, b'!'),
        (0x5B, b'$'),
        (0x5C, b'*'),
        (0x5D, b')'),
        (0x5E, b';'),
        (0x5F, b'^'),
        (0x60, b'-'),
        (0x61, b'/'),
        (0x6B, b','),
        (0x6C, b'%'),
        (0x6D, b'_'),
        (0x6E, b'>'),
        (0x6F, b'?'),
        (0x79, b'`'),
        (0x7A, b':'),
        (0x7B, b'#'),
        (0x7C, b'@'),
        (0x7D, b'\''),
        (0x7E, b'='),
        (0x7F, b'"'),
        (0xA1, b'~'),
        (0xBA, b'['),
        (0xBB, b']'),
        (0xC0, b'{'),
        (0xD0, b'}'),
        (0xE0, b'\\'),
    ];
    let mut i = 0;
    while i < pairs.len() {
        t[pairs[i].0 as usize] = pairs[i].1;
        i += 1;
    }
    let mut k = 0;
    while k < 9 {
        t[0x81 + k] = b'a' + k as u8;
        t[0x91 + k] = b'j' + k as u8;
        t[0xC1 + k] = b'A' + k as u8;
        t[0xD1 + k] = b'J' + k as u8;
        k += 1;
    }
    k = 0;
    while k < 8 {
        t[0xA2 + k] = b's' + k as u8;
        t[0xE2 + k] = b'S' + k as u8;
        k += 1;
    }
    k = 0;
    while k < 10 {
        t[0xF0 + k] = b'0' + k as u8;
        k += 1;
    }
    t
};

static ASCII_TO_EBCDIC: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut e = 0;
    while e < 256 {
        let a = EBCDIC_TO_ASCII[e];
        if a != 0 {
            t[a as usize] = e as u8;
        }
        e += 1;
    }
    t
};

#[inline]
fn ebcdic_to_ascii(b: u8) -> u8 {
    EBCDIC_TO_ASCII[b as usize]
}

#[inline]
fn ascii_to_ebcdic(b: u8) -> u8 {
    ASCII_TO_EBCDIC.get(b as usize).copied().unwrap_or(0x40)
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
                let c = if enc == Encoding::Ebcdic { ebcdic_to_ascii(c) } else { c };
                if !c.is_ascii_digit() {
                    return Err(ErrorKind::BadChar { class: "n" });
                }
                *m = c;
            }
        }
    }
    Ok(mti)
}

pub fn write_mti(enc: Encoding, mti: &[u8; 4], out: &mut BytesMut) {
    match enc {
        Encoding::Bcd => {
            out.put_u8(((mti[0] - b'0') << 4) | (mti[1] - b'0'));
            out.put_u8(((mti[2] - b'0') << 4) | (mti[3] - b'0'));
        }
        Encoding::Ebcdic => {
            for &c in mti {
                out.put_u8(ascii_to_ebcdic(c));
            }
        }
        _ => out.put_slice(mti),
    }
}

/// Read one bitmap at `pos`. Lowercase hex is accepted (documented in the README).
pub fn read_bitmap(enc: BitmapEncoding, buf: &[u8], pos: usize) -> Result<u64, ErrorKind> {
    let have = buf.len().saturating_sub(pos);
    match enc {
        BitmapEncoding::Binary => {
            let b: [u8; 8] = buf
                .get(pos..pos + 8)
                .and_then(|s| s.try_into().ok())
                .ok_or(ErrorKind::Truncated { need: 8, have })?;
            Ok(u64::from_be_bytes(b))
        }
        BitmapEncoding::Hex => {
            let b = buf.get(pos..pos + 16).ok_or(ErrorKind::Truncated { need: 16, have })?;
            let mut raw = [0u8; 8];
            hex::decode_to_slice(b, &mut raw).map_err(|_| ErrorKind::BadBitmap)?;
            Ok(u64::from_be_bytes(raw))
        }
    }
}

/// Read a length prefix of `digits` digits from exactly the prefix bytes.
#[inline]
pub fn read_prefix(enc: PrefixEncoding, digits: u8, b: &[u8]) -> Result<usize, ErrorKind> {
    match enc {
        PrefixEncoding::Ascii | PrefixEncoding::Ebcdic => {
            let mut v = 0usize;
            for &c in b {
                let c = if enc == PrefixEncoding::Ebcdic { ebcdic_to_ascii(c) } else { c };
                if !c.is_ascii_digit() {
                    return Err(ErrorKind::BadPrefix);
                }
                v = v * 10 + usize::from(c - b'0');
            }
            Ok(v)
        }
        PrefixEncoding::Bcd => {
            let mut v = 0usize;
            for (i, &byte) in b.iter().enumerate() {
                let (hi, lo) = (byte >> 4, byte & 0xF);
                // An odd digit count leaves a leading filler nibble that must be zero.
                if i == 0 && digits % 2 == 1 {
                    if hi != 0 {
                        return Err(ErrorKind::BadPrefix);
                    }
                } else if hi > 9 {
                    return Err(ErrorKind::BadPrefix);
                }
                if lo > 9 {
                    return Err(ErrorKind::BadPrefix);
                }
                v = v * 100 + usize::from(hi) * 10 + usize::from(lo);
            }
            Ok(v)
        }
        PrefixEncoding::Binary => Ok(b.iter().fold(0usize, |v, &x| (v << 8) | usize::from(x))),
    }
}

pub fn write_prefix(enc: PrefixEncoding, digits: u8, len: usize, out: &mut BytesMut) {
    match enc {
        PrefixEncoding::Ascii | PrefixEncoding::Ebcdic => {
            let mut tmp = [b'0'; 4];
            let d = digits as usize;
            let mut v = len;
            for i in (0..d).rev() {
                tmp[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
            for &c in &tmp[..d] {
                out.put_u8(if enc == PrefixEncoding::Ebcdic { ascii_to_ebcdic(c) } else { c });
            }
        }
        PrefixEncoding::Bcd => {
            let nbytes = (digits as usize).div_ceil(2);
            for i in (0..nbytes).rev() {
                let pair = (len / 100usize.pow(i as u32)) % 100;
                out.put_u8((((pair / 10) as u8) << 4) | (pair % 10) as u8);
            }
        }
        PrefixEncoding::Binary => {
            if digits <= 2 {
                out.put_u8(len as u8);
            } else {
                out.put_u16(len as u16);
            }
        }
    }
}

#[inline]
fn allowed(class: CharClass, c: u8) -> bool {
    match class {
        CharClass::Numeric => c.is_ascii_digit(),
        CharClass::Text => (0x20..0x7F).contains(&c),
        CharClass::Track => c.is_ascii_digit() || matches!(c, b'=' | b'D' | b';' | b'?'),
        CharClass::SignedAmount => c.is_ascii_digit(),
        CharClass::Binary => true,
    }
}

fn class_name(class: CharClass) -> &'static str {
    match class {
        CharClass::Numeric => "n",
        CharClass::Text => "text",
        CharClass::Track => "track",
        CharClass::SignedAmount => "x+n",
        CharClass::Binary => "b",
    }
}

/// Check a field's wire bytes against its class; on failure returns the offset within `data`.
#[inline]
pub fn check_wire(fs: &FieldSpec, data: &[u8], units: usize) -> Result<(), (ErrorKind, usize)> {
    let bad = || ErrorKind::BadChar { class: class_name(fs.class) };
    match fs.encoding {
        Encoding::Binary => Ok(()),
        Encoding::Hex => match data.iter().position(|c| !c.is_ascii_hexdigit()) {
            Some(i) => Err((bad(), i)),
            None => Ok(()),
        },
        Encoding::Ascii => check_chars_at(fs.class, data).map_err(|i| (bad(), i)),
        Encoding::Ebcdic => {
            for (i, &c) in data.iter().enumerate() {
                let a = ebcdic_to_ascii(c);
                if a == 0 || !allowed_at(fs.class, i, a) {
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

#[inline]
fn allowed_at(class: CharClass, i: usize, c: u8) -> bool {
    if class == CharClass::SignedAmount && i == 0 { c == b'C' || c == b'D' } else { allowed(class, c) }
}

/// Characters allowed by the character classes: bit 0 digits, bit 1 printable text,
/// bit 2 track data.
static CLASS_BITS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0x20;
    while c < 0x7F {
        t[c] |= 2;
        c += 1;
    }
    c = b'0' as usize;
    while c <= b'9' as usize {
        t[c] |= 1 | 4;
        c += 1;
    }
    t[b'=' as usize] |= 4;
    t[b'D' as usize] |= 4;
    t[b';' as usize] |= 4;
    t[b'?' as usize] |= 4;
    t
};

#[inline]
fn check_chars_at(class: CharClass, data: &[u8]) -> Result<(), usize> {
    // The common classes are checked without an early exit, a loop the compiler can
    // unroll or vectorise; only a failure pays for finding the offset.
    let clean = |bit: u8, d: &[u8]| {
        d.iter().fold(0u8, |acc, &c| acc | u8::from(CLASS_BITS[c as usize] & bit == 0)) == 0
    };
    let ok = match class {
        CharClass::Numeric => data.iter().fold(0u8, |acc, &c| acc | u8::from(c.wrapping_sub(b'0') > 9)) == 0,
        CharClass::Text => data.iter().fold(0u8, |acc, &c| acc | u8::from(c.wrapping_sub(0x20) > 0x5E)) == 0,
        CharClass::Track => clean(4, data),
        CharClass::SignedAmount => match data.split_first() {
            Some((&sign, digits)) => (sign == b'C' || sign == b'D') && clean(1, digits),
            None => true,
        },
        CharClass::Binary => true,
    };
    if ok {
        return Ok(());
    }
    match data.iter().enumerate().position(|(i, &c)| !allowed_at(class, i, c)) {
        Some(i) => Err(i),
        None => Ok(()),
    }
}

/// Check a value given in characters (or raw bytes for binary fields) before encoding.
pub fn check_chars(fs: &FieldSpec, value: &[u8]) -> Result<(), ErrorKind> {
    let bad = ErrorKind::BadChar { class: class_name(fs.class) };
    match (fs.class, fs.encoding) {
        (CharClass::Binary, Encoding::Hex) => {
            if value.iter().all(u8::is_ascii_hexdigit) {
                if value.len().is_multiple_of(2) { Ok(()) } else { Err(ErrorKind::OddHex) }
            } else {
                Err(bad)
            }
        }
        (CharClass::Binary, _) => Ok(()),
        // Packed BCD has a nibble for digits and the separator (0xD) only: sentinels
        // would be written as nibbles the decoder refuses.
        (CharClass::Track, Encoding::Bcd) => {
            if value.iter().all(|&c| c.is_ascii_digit() || c == b'=' || c == b'D') {
                Ok(())
            } else {
                Err(bad)
            }
        }
        _ => check_chars_at(fs.class, value).map_err(|_| bad),
    }
}

/// Encode a checked value onto the wire.
pub fn write_value(fs: &FieldSpec, value: &[u8], out: &mut BytesMut) {
    match fs.encoding {
        Encoding::Ascii | Encoding::Binary | Encoding::Hex => out.put_slice(value),
        Encoding::Ebcdic => {
            for &c in value {
                out.put_u8(ascii_to_ebcdic(c));
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
pub fn to_text<'a>(fs: &FieldSpec, raw: &'a [u8], units: usize) -> Cow<'a, str> {
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
        Encoding::Binary => Cow::Owned(hex::encode_upper(raw)),
        Encoding::Ebcdic => Cow::Owned(raw.iter().map(|&c| ebcdic_to_ascii(c) as char).collect()),
        Encoding::Bcd => {
            let mut s = String::with_capacity(units);
            let (digits, packed) = if fs.class == CharClass::SignedAmount {
                if let Some(&c) = raw.first() {
                    s.push(c as char);
                }
                (units.saturating_sub(1), raw.get(1..).unwrap_or_default())
            } else {
                (units, raw)
            };
            let skip = if packed.len() * 2 > digits && fs.pad == Pad::Left { 1 } else { 0 };
            let nibbles = packed.iter().flat_map(|b| [b >> 4, b & 0xF]).skip(skip).take(digits);
            for n in nibbles {
                s.push(match n {
                    0..=9 => (b'0' + n) as char,
                    0xD => '=',
                    _ => '?',
                });
            }
            Cow::Owned(s)
        }
    }
}

/// A numeric field as a number, without allocating.
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

pub fn to_u64(fs: &FieldSpec, raw: &[u8], units: usize) -> Option<u64> {
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
            let a = ebcdic_to_ascii(c);
            a.is_ascii_digit().then(|| v * 10 + u64::from(a - b'0'))
        }),
        _ => None,
    }
}

/// The length and character checks `set` makes before it writes a value.
pub(super) fn check_value(fs: &FieldSpec, value: &[u8]) -> Result<(), EncodeError> {
    let part = Part::Field(fs.number);
    let units = value.len();
    match fs.length {
        Length::Fixed if units != fs.max as usize => {
            return Err(EncodeError::new(
                part,
                format!("{units} units given, the field is fixed at {}", fs.max),
            ));
        }
        Length::Var(_) if units > fs.max as usize => {
            return Err(EncodeError::new(part, format!("{units} units given, at most {}", fs.max)));
        }
        _ => {}
    }
    check_chars(fs, value).map_err(|kind| EncodeError::new(part, kind.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn bcd_prefixes() {
        let mut out = BytesMut::new();
        write_prefix(PrefixEncoding::Bcd, 3, 123, &mut out);
        assert_eq!(&out[..], &[0x01, 0x23]);
        assert_eq!(read_prefix(PrefixEncoding::Bcd, 3, &out), Ok(123));
        assert_eq!(read_prefix(PrefixEncoding::Bcd, 3, &[0x11, 0x23]), Err(ErrorKind::BadPrefix));
        assert_eq!(read_prefix(PrefixEncoding::Bcd, 2, &[0x1A]), Err(ErrorKind::BadPrefix));
        assert_eq!(read_prefix(PrefixEncoding::Ascii, 2, b" 5"), Err(ErrorKind::BadPrefix));
        assert_eq!(read_prefix(PrefixEncoding::Ascii, 2, b"+5"), Err(ErrorKind::BadPrefix));
        assert_eq!(read_prefix(PrefixEncoding::Binary, 3, &[0x01, 0x00]), Ok(256));
    }

    #[test]
    fn character_fast_path_agrees_with_the_class_rules() {
        for class in [CharClass::Numeric, CharClass::Text, CharClass::Track, CharClass::SignedAmount] {
            for a in 0..=255u8 {
                for b in [b'0', b'5', b'D', b'=', b' ', b'~', 0x7F, 0x1F, 0x80, a] {
                    let data = [a, b, b'7'];
                    let exact = data.iter().enumerate().position(|(i, &c)| !allowed_at(class, i, c));
                    assert_eq!(check_chars_at(class, &data).err(), exact, "{class:?} {data:?}");
                }
            }
        }
    }

    #[test]
    fn bcd_fast_path_agrees_with_the_exact_check() {
        // Every two-byte value, for every class, pad side and filler that BCD allows.
        for class in [CharClass::Numeric, CharClass::Track] {
            for pad in [Pad::Left, Pad::Right] {
                for pad_nibble in [0x0, 0xF] {
                    for units in [3, 4] {
                        let fs = FieldSpec {
                            number: 2,
                            name: String::new(),
                            class,
                            encoding: Encoding::Bcd,
                            length: crate::iso::spec::Length::Fixed,
                            prefix: PrefixEncoding::Bcd,
                            max: units as u16,
                            pad,
                            pad_nibble,
                            sensitive: None,
                        };
                        for v in 0..=u16::MAX {
                            let data = v.to_be_bytes();
                            let exact = bcd_exact(&fs, &data, 4 - units);
                            let got = check_wire(&fs, &data, units).map_err(|(_, i)| i);
                            assert_eq!(got, exact, "{class:?} {pad:?} {pad_nibble:X} {units} {v:04X}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn ebcdic_round_trip() {
        for c in b"0123456789 ABCXYZ abcxyz.,=" {
            assert_eq!(ebcdic_to_ascii(ascii_to_ebcdic(*c)), *c);
        }
        assert_eq!(ascii_to_ebcdic(b'0'), 0xF0);
        assert_eq!(ascii_to_ebcdic(b'A'), 0xC1);
    }

    #[test]
    fn bitmaps_accept_lowercase_and_refuse_spaces() {
        assert_eq!(read_bitmap(BitmapEncoding::Hex, b"f000000000000001", 0), Ok(0xF000_0000_0000_0001));
        assert_eq!(read_bitmap(BitmapEncoding::Hex, b"F000 00000000001", 0), Err(ErrorKind::BadBitmap));
    }
}
