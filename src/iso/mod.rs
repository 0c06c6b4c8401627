//! The codec: ISO 8583 specs as data, the `Message` type with zero-copy decode and
//! encode into a caller's buffer, EMV TLV helpers and masking. No tokio, no clock, no
//! I/O: everything here is a pure function of its input, so it is tested from tables,
//! fuzzed and benchmarked without a socket. Untrusted bytes never panic it.
//!
//! `spec.rs` reads a dialect; `wire/` is the field codec, one file per axis (length
//! prefix, content encoding, character class, fixed-field fill, bitmaps); `message.rs`
//! decodes and builds a `Message` from them, its layout (`message/layout.rs`: which
//! fields, where their bytes lie) apart from its edits (`message/edits.rs`: what keeps
//! encoding it a copy of its frame).
//! May import: nothing.

pub mod error;
pub mod field_set;
pub mod json;
pub mod mask;
pub mod message;
pub mod reply_fields;
pub mod spec;
pub mod tlv;
mod wire;

pub use error::{DecodeError, EncodeError, ErrorKind, Part};
pub use message::Message;
pub use reply_fields::{FieldSet, ReplyFields};
pub use spec::{Sensitive, Spec, SpecError};
pub(crate) use wire::encoding::eight_digits;
