//! Codec errors. Each names the part of the message (MTI, a bitmap, a field number) and
//! the byte offset where the problem was found, and never carries the bytes themselves:
//! an error may be logged, and the bytes may be a card number.
//! May import: nothing.

use std::fmt;

/// Which part of a message an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Mti,
    PrimaryBitmap,
    SecondaryBitmap,
    TertiaryBitmap,
    Field(u16),
}

impl Part {
    /// The field number for callers that want one: 0 for the MTI and the primary bitmap,
    /// 1 for the secondary bitmap, 65 for the tertiary bitmap.
    pub fn number(self) -> u16 {
        match self {
            Part::Mti | Part::PrimaryBitmap => 0,
            Part::SecondaryBitmap => 1,
            Part::TertiaryBitmap => 65,
            Part::Field(n) => n,
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Mti => f.write_str("MTI"),
            Part::PrimaryBitmap => f.write_str("primary bitmap"),
            Part::SecondaryBitmap => f.write_str("secondary bitmap"),
            Part::TertiaryBitmap => f.write_str("tertiary bitmap"),
            Part::Field(n) => write!(f, "field {n}"),
        }
    }
}

/// What was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Fewer bytes remain than the part needs.
    Truncated { need: usize, have: usize },
    /// A length prefix is not a valid number in its encoding.
    BadPrefix,
    /// A length prefix exceeds the field's maximum.
    TooLong { len: usize, max: usize },
    /// A character or nibble not allowed by the field's class.
    BadChar { class: &'static str },
    /// A bitmap that is not 16 hex characters.
    BadBitmap,
    /// An odd number of hex characters for binary data.
    OddHex,
    /// The bitmap announces a field the spec does not define.
    NotInSpec,
    /// Bytes left after the last announced field.
    TrailingBytes,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Truncated { need, have } => {
                write!(f, "needs {need} bytes, {have} remain")
            }
            ErrorKind::BadPrefix => f.write_str("length prefix is not a number"),
            ErrorKind::TooLong { len, max } => write!(f, "length {len} exceeds the maximum {max}"),
            ErrorKind::BadChar { class } => write!(f, "character not allowed in a {class} field"),
            ErrorKind::BadBitmap => f.write_str("bitmap is not hex characters"),
            ErrorKind::OddHex => f.write_str("odd number of hex characters for binary data"),
            ErrorKind::NotInSpec => f.write_str("present in the bitmap but not defined in the spec"),
            ErrorKind::TrailingBytes => f.write_str("extra bytes after the last field"),
        }
    }
}

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}: {kind} (offset {offset})")]
pub struct DecodeError {
    pub part: Part,
    pub offset: usize,
    pub kind: ErrorKind,
}

impl DecodeError {
    pub fn new(part: Part, offset: usize, kind: ErrorKind) -> Self {
        DecodeError { part, offset, kind }
    }
}

/// A value the builder or encoder refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}: {reason}")]
pub struct EncodeError {
    pub part: Part,
    pub reason: String,
}

impl EncodeError {
    pub fn new(part: Part, reason: impl Into<String>) -> Self {
        EncodeError { part, reason: reason.into() }
    }
}

/// A spec refused at load, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub file: String,
    pub line: Option<usize>,
    pub field: Option<u16>,
    pub key: Option<&'static str>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(n) = self.field {
            write!(f, ": field {n}")?;
        }
        if let Some(k) = self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}
