//! EMV BER-TLV (field 55): parse into tag/value items and build them back. Tags may be
//! several bytes (low five bits all set in the first byte, then continuation bytes with
//! the high bit set); lengths are short (< 0x80) or long form (0x81, 0x82, 0x83 followed
//! by that many length bytes). Every length is checked against the bytes that remain.
//! Hand-written rather than `nom`: a combinator version parsed a chip purchase's field 55
//! 1.3 to 2.8 times slower (the README's Design section has the figures).
//! May import: nothing.

use bytes::{BufMut, BytesMut};

/// One TLV item borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag's bytes as one number, e.g. `0x9F26`.
    pub tag: u32,
    pub value: &'a [u8],
}

impl Tlv<'_> {
    /// Whether the tag marks a constructed (nested) item.
    pub fn constructed(&self) -> bool {
        let first = self.tag.to_be_bytes().into_iter().find(|&b| b != 0).unwrap_or(0);
        first & 0x20 != 0
    }
}

/// Why TLV data did not parse, with the offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    #[error("tag truncated at offset {0}")]
    TagTruncated(usize),
    #[error("tag longer than four bytes at offset {0}")]
    TagTooLong(usize),
    #[error("length truncated or unsupported at offset {0}")]
    BadLength(usize),
    #[error("value at offset {offset} needs {need} bytes, {have} remain")]
    ValueTruncated { offset: usize, need: usize, have: usize },
}

/// Parse a flat sequence of TLV items. Padding bytes 0x00 and 0xFF between items are skipped,
/// as EMV allows.
pub fn parse(data: &[u8]) -> Result<Vec<Tlv<'_>>, TlvError> {
    let mut items = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let first = data[pos];
        if first == 0x00 || first == 0xFF {
            pos += 1;
            continue;
        }
        let start = pos;
        let mut tag = u32::from(first);
        pos += 1;
        if first & 0x1F == 0x1F {
            loop {
                let b = *data.get(pos).ok_or(TlvError::TagTruncated(start))?;
                if pos - start >= 4 {
                    return Err(TlvError::TagTooLong(start));
                }
                tag = (tag << 8) | u32::from(b);
                pos += 1;
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        let l0 = *data.get(pos).ok_or(TlvError::BadLength(pos))?;
        pos += 1;
        let len = if l0 < 0x80 {
            usize::from(l0)
        } else {
            let n = usize::from(l0 & 0x7F);
            if n == 0 || n > 3 {
                return Err(TlvError::BadLength(pos - 1));
            }
            let lb = data.get(pos..pos + n).ok_or(TlvError::BadLength(pos - 1))?;
            pos += n;
            lb.iter().fold(0usize, |v, &b| (v << 8) | usize::from(b))
        };
        let have = data.len() - pos;
        if len > have {
            return Err(TlvError::ValueTruncated { offset: pos, need: len, have });
        }
        items.push(Tlv { tag, value: &data[pos..pos + len] });
        pos += len;
    }
    Ok(items)
}

/// Append one item to `out`.
pub fn put(out: &mut BytesMut, tag: u32, value: &[u8]) {
    let tb = tag.to_be_bytes();
    let skip = tb.iter().take_while(|&&b| b == 0).count().min(3);
    out.put_slice(&tb[skip..]);
    let len = value.len();
    if len < 0x80 {
        out.put_u8(len as u8);
    } else if len <= 0xFF {
        out.put_u8(0x81);
        out.put_u8(len as u8);
    } else if len <= 0xFFFF {
        out.put_u8(0x82);
        out.put_u16(len as u16);
    } else {
        out.put_u8(0x83);
        out.put_slice(&(len as u32).to_be_bytes()[1..]);
    }
    out.put_slice(value);
}

/// Build a sequence of items.
pub fn build(items: &[Tlv<'_>]) -> BytesMut {
    let mut out = BytesMut::new();
    for t in items {
        put(&mut out, t.tag, t.value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multibyte_tags_and_long_lengths() {
        let long = vec![0xAB; 200];
        let mut out = BytesMut::new();
        put(&mut out, 0x9F26, &[1, 2, 3, 4, 5, 6, 7, 8]);
        put(&mut out, 0x82, &[0x19, 0x80]);
        put(&mut out, 0xDF8101, &long);
        assert_eq!(&out[..3], &[0x9F, 0x26, 0x08]);
        let items = parse(&out).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].tag, 0x9F26);
        assert_eq!(items[1].value, &[0x19, 0x80]);
        assert_eq!(items[2].tag, 0xDF8101);
        assert_eq!(items[2].value.len(), 200);
        assert_eq!(build(&items), out);
    }

    #[test]
    fn padding_and_errors_at_their_offsets() {
        use TlvError::*;
        let one = |tag, value: &'static [u8]| Tlv { tag, value };
        let ok: &[(&[u8], &[Tlv<'static>])] = &[
            (&[], &[]),
            (&[0x00, 0xFF, 0x00], &[]),
            (&[0x00, 0xFF, 0x5A, 0x01, 0x11, 0x00], &[one(0x5A, &[0x11])]),
            (&[0x9F, 0x81, 0x81, 0x01, 0x00, 0x5A, 0x00], &[one(0x9F81_8101, &[]), one(0x5A, &[])]),
            (&[0x5A, 0x82, 0x00, 0x01, 0x33], &[one(0x5A, &[0x33])]),
        ];
        for (data, want) in ok {
            assert_eq!(parse(data).as_deref(), Ok(*want), "{data:02X?}");
        }
        let bad: &[(&[u8], TlvError)] = &[
            (&[0x5A, 0x01, 0x11, 0x9F], TagTruncated(3)),
            (&[0x5A, 0x01, 0x11, 0x9F, 0x26], BadLength(5)),
            (&[0x5A, 0x81], BadLength(1)),
            (&[0x5A, 0x80, 0x00], BadLength(1)),
            (&[0x00, 0x5A, 0x82, 0x01], BadLength(2)),
            (&[0xFF, 0x9F, 0x26, 0x08, 1, 2], ValueTruncated { offset: 4, need: 8, have: 2 }),
            (&[0x9F, 0x81, 0x81, 0x81], TagTruncated(0)),
            (&[0x5A, 0x00, 0x9F, 0x81, 0x81, 0x81, 0x01], TagTooLong(2)),
        ];
        for (data, want) in bad {
            assert_eq!(parse(data).as_ref(), Err(want), "{data:02X?}");
        }
    }

    #[test]
    fn refuses_lengths_beyond_the_data() {
        assert!(matches!(parse(&[0x9F, 0x26, 0x08, 1, 2]), Err(TlvError::ValueTruncated { .. })));
        assert!(matches!(parse(&[0x9F]), Err(TlvError::TagTruncated(0))));
        assert!(matches!(parse(&[0x5A, 0x84, 0, 0, 0, 1]), Err(TlvError::BadLength(1))));
        assert!(matches!(parse(&[0x9F, 0x81, 0x81, 0x81, 0x81, 0x01]), Err(TlvError::TagTooLong(0))));
        assert!(parse(&[0x70, 0x00]).unwrap()[0].constructed());
    }
}
