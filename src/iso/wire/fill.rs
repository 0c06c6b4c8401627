//! Filling a value shorter than its fixed-length field, as the field's `fill` in the spec
//! says: zeros before it, spaces after it, or not at all. Filling works on characters,
//! before the value is encoded; the length check that follows refuses what is still not
//! the field's length.
//! May import: crate::iso::spec.

use std::borrow::Cow;

use crate::iso::spec::{FieldSpec, Fill, Length};

/// `value` brought to the length of its fixed field `fs` (unchanged for a variable-length
/// field, for a value already as long or longer, and for `Fill::None`).
pub fn fill<'a>(fs: &FieldSpec, value: &'a [u8]) -> Cow<'a, [u8]> {
    let want = fs.max as usize;
    if fs.length != Length::Fixed || value.len() >= want {
        return Cow::Borrowed(value);
    }
    match fs.fill {
        Fill::None => Cow::Borrowed(value),
        Fill::LeftZero => {
            let mut v = Vec::with_capacity(want);
            v.resize(want - value.len(), b'0');
            v.extend_from_slice(value);
            Cow::Owned(v)
        }
        Fill::RightSpace => {
            let mut v = Vec::with_capacity(want);
            v.extend_from_slice(value);
            v.resize(want, b' ');
            Cow::Owned(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::{CharClass, Encoding, Pad, PrefixEncoding};

    fn field(length: Length, fill: Fill) -> FieldSpec {
        FieldSpec {
            number: 38,
            name: String::new(),
            class: CharClass::Text,
            encoding: Encoding::Ascii,
            length,
            prefix: PrefixEncoding::Ascii,
            max: 6,
            pad: Pad::Left,
            pad_nibble: 0,
            fill,
            sensitive: None,
        }
    }

    #[test]
    fn only_a_short_value_of_a_fixed_field_is_filled() {
        let f = |length, how, v: &'static [u8]| fill(&field(length, how), v).into_owned();
        assert_eq!(f(Length::Fixed, Fill::LeftZero, b"42"), b"000042");
        assert_eq!(f(Length::Fixed, Fill::RightSpace, b"42"), b"42    ");
        assert_eq!(f(Length::Fixed, Fill::None, b"42"), b"42");
        assert_eq!(f(Length::Fixed, Fill::LeftZero, b"1234567"), b"1234567");
        assert_eq!(f(Length::Fixed, Fill::RightSpace, b""), b"      ");
        assert_eq!(f(Length::Var(2), Fill::LeftZero, b"42"), b"42");
    }
}
