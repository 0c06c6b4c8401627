//! Bitmaps: 64 bits each, field 1 the most significant, written as 16 hex characters or
//! 8 bytes. Lowercase hex is read (documented in the README); uppercase is written.
//! May import: crate::iso::error, crate::iso::spec.

use bytes::{BufMut, BytesMut};

use crate::iso::error::ErrorKind;
use crate::iso::spec::BitmapEncoding;

/// Read one bitmap at `pos`.
pub fn read(enc: BitmapEncoding, buf: &[u8], pos: usize) -> Result<u64, ErrorKind> {
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

/// Write one bitmap.
pub fn write(enc: BitmapEncoding, bits: u64, out: &mut BytesMut) {
    match enc {
        BitmapEncoding::Binary => out.put_u64(bits),
        BitmapEncoding::Hex => {
            // 16 characters for 8 bytes: the sizes agree, the encoding cannot fail.
            let mut tmp = [b'0'; 16];
            let _sizes_agree = hex::encode_to_slice(bits.to_be_bytes(), &mut tmp);
            tmp.make_ascii_uppercase();
            out.put_slice(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_accept_lowercase_and_refuse_spaces() {
        assert_eq!(read(BitmapEncoding::Hex, b"f000000000000001", 0), Ok(0xF000_0000_0000_0001));
        assert_eq!(read(BitmapEncoding::Hex, b"F000 00000000001", 0), Err(ErrorKind::BadBitmap));
    }

    #[test]
    fn both_encodings_read_what_they_write() {
        for enc in [BitmapEncoding::Hex, BitmapEncoding::Binary] {
            let mut out = BytesMut::from(&b"xx"[..]);
            write(enc, 0xF220_0000_0000_0001, &mut out);
            assert_eq!(read(enc, &out, 2), Ok(0xF220_0000_0000_0001), "{enc:?}");
            assert!(matches!(read(enc, &out, 3), Err(ErrorKind::Truncated { .. })), "{enc:?}");
        }
    }
}
