//! Length prefixes. A fixed field has none; a variable one (LL, LLL, LLLL) is preceded by
//! its length in the spec's units, written as digits in ASCII or EBCDIC (one byte each),
//! packed BCD (two digits a byte, an odd count led by a zero nibble) or as a big-endian
//! binary number (one byte for LL, two for LLL and LLLL).
//! May import: crate::iso::error, crate::iso::spec, crate::iso::wire::ebcdic.

use bytes::{BufMut, BytesMut};

use super::ebcdic;
use crate::iso::error::ErrorKind;
use crate::iso::spec::{FieldSpec, Length, PrefixEncoding};

/// Bytes taken by field `fs`'s length prefix.
#[inline]
pub fn len(fs: &FieldSpec) -> usize {
    match fs.length {
        Length::Fixed => 0,
        Length::Var(d) => match fs.prefix {
            PrefixEncoding::Ascii | PrefixEncoding::Ebcdic => d as usize,
            PrefixEncoding::Bcd => (d as usize).div_ceil(2),
            PrefixEncoding::Binary => {
                if d <= 2 {
                    1
                } else {
                    2
                }
            }
        },
    }
}

/// Read a length prefix of `digits` digits from exactly the prefix bytes.
#[inline]
pub fn read(enc: PrefixEncoding, digits: u8, b: &[u8]) -> Result<usize, ErrorKind> {
    match enc {
        PrefixEncoding::Ascii | PrefixEncoding::Ebcdic => {
            let mut v = 0usize;
            for &c in b {
                let c = if enc == PrefixEncoding::Ebcdic { ebcdic::to_ascii(c) } else { c };
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

/// Write the prefix of `len` units in `digits` digits.
pub fn write(enc: PrefixEncoding, digits: u8, len: usize, out: &mut BytesMut) {
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
                out.put_u8(if enc == PrefixEncoding::Ebcdic { ebcdic::from_ascii(c) } else { c });
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

/// Write the prefix field `fs` needs before a value of `units` units: none when fixed.
#[inline]
pub fn write_for(fs: &FieldSpec, units: usize, out: &mut BytesMut) {
    if let Length::Var(digits) = fs.length {
        write(fs.prefix, digits, units, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcd_prefixes() {
        let mut out = BytesMut::new();
        write(PrefixEncoding::Bcd, 3, 123, &mut out);
        assert_eq!(&out[..], &[0x01, 0x23]);
        assert_eq!(read(PrefixEncoding::Bcd, 3, &out), Ok(123));
        assert_eq!(read(PrefixEncoding::Bcd, 3, &[0x11, 0x23]), Err(ErrorKind::BadPrefix));
        assert_eq!(read(PrefixEncoding::Bcd, 2, &[0x1A]), Err(ErrorKind::BadPrefix));
        assert_eq!(read(PrefixEncoding::Ascii, 2, b" 5"), Err(ErrorKind::BadPrefix));
        assert_eq!(read(PrefixEncoding::Ascii, 2, b"+5"), Err(ErrorKind::BadPrefix));
        assert_eq!(read(PrefixEncoding::Binary, 3, &[0x01, 0x00]), Ok(256));
    }

    #[test]
    fn every_encoding_reads_what_it_writes() {
        for enc in
            [PrefixEncoding::Ascii, PrefixEncoding::Ebcdic, PrefixEncoding::Bcd, PrefixEncoding::Binary]
        {
            for (digits, len) in [(2u8, 0usize), (2, 7), (2, 99), (3, 100), (3, 999), (4, 1234), (4, 9999)] {
                let mut out = BytesMut::new();
                write(enc, digits, len, &mut out);
                assert_eq!(read(enc, digits, &out), Ok(len), "{enc:?} {digits} {len}");
            }
        }
        let mut ebcdic = BytesMut::new();
        write(PrefixEncoding::Ebcdic, 3, 42, &mut ebcdic);
        assert_eq!(&ebcdic[..], &[0xF0, 0xF4, 0xF2]);
    }
}
