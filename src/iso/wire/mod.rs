//! The field codec, one file per axis. A field on the wire is its length prefix (none
//! when fixed) followed by its content; the content is characters of a class in an
//! encoding:
//!
//! ```text
//! +----------------------+------------------------------------------------------+
//! | length prefix        | content                                              |
//! | prefix.rs:           | encoding.rs: ascii, ebcdic, bcd, binary or hex,      |
//! | none (fixed), LL,    | holding the characters charset.rs allows for the     |
//! | LLL, LLLL in ascii,  | field's class (n, text, z, x+n, b)                   |
//! | ebcdic, bcd, binary  |                                                      |
//! +----------------------+------------------------------------------------------+
//! ```
//!
//! `fill.rs` brings a short value to its fixed field's length, `bitmap.rs` reads and
//! writes the bitmaps, `ebcdic.rs` is the code page. An axis's operations each `match`
//! on that axis's enum, in its file only, with no dispatch through pointers: `decode_field`
//! in `message.rs` composes prefix, length and content check; this file composes the
//! checks made before a value is set.
//! May import: crate::iso::error, crate::iso::spec.

pub mod bitmap;
pub mod charset;
pub mod ebcdic;
pub mod encoding;
pub mod fill;
pub mod prefix;

use crate::iso::error::{EncodeError, Part};
use crate::iso::spec::{FieldSpec, Length};

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
    charset::check_value(fs, value).map_err(|kind| EncodeError::new(part, kind.to_string()))
}
