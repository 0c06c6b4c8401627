//! Character classes: which characters a field of class `n`, text (`an`, `ans`...), `z`
//! (track data), `x+n` (signed amount) or `b` may hold, checked on characters (ASCII, or
//! EBCDIC once translated). The common classes are checked by loops without an early
//! exit, which the compiler unrolls or vectorises; only a failure pays for finding the
//! offset of the first bad character.
//! May import: crate::iso::error, crate::iso::spec.

use crate::iso::error::ErrorKind;
use crate::iso::spec::{CharClass, Encoding, FieldSpec};

/// The class's name in errors.
pub fn name(class: CharClass) -> &'static str {
    match class {
        CharClass::Numeric => "n",
        CharClass::Text => "text",
        CharClass::Track => "track",
        CharClass::SignedAmount => "x+n",
        CharClass::Binary => "b",
    }
}

/// The error of a character outside `class`.
#[inline]
pub fn bad(class: CharClass) -> ErrorKind {
    ErrorKind::BadChar { class: name(class) }
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

/// Whether `c` may stand at position `i` of a value of `class` (the sign of `x+n` first).
#[inline]
pub fn allowed_at(class: CharClass, i: usize, c: u8) -> bool {
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

/// Check characters against `class`; on failure the offset of the first bad one.
#[inline]
pub fn check(class: CharClass, data: &[u8]) -> Result<(), usize> {
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

/// Check a value given in characters (or raw bytes for binary fields) before encoding:
/// the class's characters, narrowed to what the field's encoding can carry.
pub fn check_value(fs: &FieldSpec, value: &[u8]) -> Result<(), ErrorKind> {
    match (fs.class, fs.encoding) {
        (CharClass::Binary, Encoding::Hex) => {
            if value.iter().all(u8::is_ascii_hexdigit) {
                if value.len().is_multiple_of(2) { Ok(()) } else { Err(ErrorKind::OddHex) }
            } else {
                Err(bad(fs.class))
            }
        }
        (CharClass::Binary, _) => Ok(()),
        // Packed BCD has a nibble for digits and the separator (0xD) only: sentinels
        // would be written as nibbles the decoder refuses.
        (CharClass::Track, Encoding::Bcd) => {
            if value.iter().all(|&c| c.is_ascii_digit() || c == b'=' || c == b'D') {
                Ok(())
            } else {
                Err(bad(fs.class))
            }
        }
        _ => check(fs.class, value).map_err(|_| bad(fs.class)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_agrees_with_the_class_rules() {
        for class in [CharClass::Numeric, CharClass::Text, CharClass::Track, CharClass::SignedAmount] {
            for a in 0..=255u8 {
                for b in [b'0', b'5', b'D', b'=', b' ', b'~', 0x7F, 0x1F, 0x80, a] {
                    let data = [a, b, b'7'];
                    let exact = data.iter().enumerate().position(|(i, &c)| !allowed_at(class, i, c));
                    assert_eq!(check(class, &data).err(), exact, "{class:?} {data:?}");
                }
            }
        }
    }
}
