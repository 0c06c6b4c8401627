//! Framing: the length header in front of every message on a TCP stream, and the
//! optional TPDU and application header that UnionPay-style terminals put after it.
//! `FrameCodec` is a tokio-util codec: `Ok(None)` means "need more bytes", an error
//! ends the stream. The length is checked against the configured maximum before any
//! byte of the frame is buffered or reserved.
//!
//! ```text
//! +-----------+-----------------+----------------------+------------------------+
//! | length    | TPDU (optional) | header (optional)    | ISO 8583 message       |
//! | 2 B bin / | 5 B: id, dst(2),| N B, e.g. 6 B        | MTI, bitmap, fields    |
//! | 2 B BCD / | src(2); reply   | 60 31 00 31 00 00    |                        |
//! | 4 B ASCII | swaps dst/src   |                      |                        |
//! +-----------+-----------------+----------------------+------------------------+
//! ```
//! May import: nothing.

pub mod batch;

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Deserialize;
use tokio_util::codec::{Decoder, Encoder};

/// The length header's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LengthHeader {
    /// Two bytes, big-endian binary (the most common; "NAC" in jPOS terms).
    #[default]
    Binary2,
    /// Two bytes of packed BCD (0000-9999).
    Bcd2,
    /// Four ASCII decimal digits.
    Ascii4,
}

impl LengthHeader {
    /// Bytes of the header itself.
    pub fn size(self) -> usize {
        match self {
            LengthHeader::Binary2 | LengthHeader::Bcd2 => 2,
            LengthHeader::Ascii4 => 4,
        }
    }

    /// The largest length the header can carry.
    pub fn largest(self) -> usize {
        match self {
            LengthHeader::Binary2 => 0xFFFF,
            LengthHeader::Bcd2 | LengthHeader::Ascii4 => 9999,
        }
    }
}

/// How frames look on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrameConfig {
    pub length: LengthHeader,
    /// Whether the length counts its own bytes too.
    pub length_includes_header: bool,
    /// A 5-byte TPDU follows the length.
    pub tpdu: bool,
    /// Bytes of application header after the TPDU (UnionPay-style terminals: 6).
    pub header_len: usize,
    /// Largest message accepted, in bytes after the length header.
    pub max_frame: usize,
}

impl Default for FrameConfig {
    fn default() -> Self {
        FrameConfig {
            length: LengthHeader::Binary2,
            length_includes_header: false,
            tpdu: false,
            header_len: 0,
            max_frame: 8192,
        }
    }
}

impl FrameConfig {
    /// UnionPay-style POS framing: 2-byte binary length, TPDU, 6-byte header.
    pub fn cup_pos() -> Self {
        FrameConfig { tpdu: true, header_len: 6, ..FrameConfig::default() }
    }

    /// Bytes of TPDU and application header in front of each message.
    pub fn prelude(&self) -> usize {
        (if self.tpdu { 5 } else { 0 }) + self.header_len
    }
}

/// A 5-byte TPDU: id (0x60), destination address, source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tpdu {
    pub id: u8,
    pub dst: u16,
    pub src: u16,
}

impl Tpdu {
    /// The TPDU for the reply: destination and source swapped.
    pub fn swapped(self) -> Tpdu {
        Tpdu { id: self.id, dst: self.src, src: self.dst }
    }
}

/// One frame: optional TPDU and header, and the message bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub tpdu: Option<Tpdu>,
    pub header: Bytes,
    pub body: Bytes,
}

impl Frame {
    /// A frame holding just a message.
    pub fn plain(body: Bytes) -> Frame {
        Frame { tpdu: None, header: Bytes::new(), body }
    }

    /// A reply frame for this request: TPDU swapped, header kept.
    pub fn reply(&self, body: Bytes) -> Frame {
        Frame { tpdu: self.tpdu.map(Tpdu::swapped), header: self.header.clone(), body }
    }
}

/// Why a stream's framing broke; the connection is closed after any of these.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {len} exceeds the maximum {max}")]
    TooLong { len: usize, max: usize },
    #[error("length header is not a valid number")]
    BadLength,
    #[error("frame of {len} bytes is shorter than its TPDU and header ({need} bytes)")]
    TooShort { len: usize, need: usize },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl fmt::Display for LengthHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LengthHeader::Binary2 => "binary2",
            LengthHeader::Bcd2 => "bcd2",
            LengthHeader::Ascii4 => "ascii4",
        })
    }
}

/// Length-prefixed framing as a tokio-util codec.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    cfg: FrameConfig,
}

impl FrameCodec {
    pub fn new(cfg: FrameConfig) -> Self {
        FrameCodec { cfg }
    }

    pub fn config(&self) -> &FrameConfig {
        &self.cfg
    }

    fn read_len(&self, b: &[u8]) -> Result<usize, FrameError> {
        let raw = match self.cfg.length {
            LengthHeader::Binary2 => usize::from(u16::from_be_bytes([b[0], b[1]])),
            LengthHeader::Bcd2 => {
                let mut v = 0usize;
                for &x in &b[..2] {
                    let (h, l) = (x >> 4, x & 0xF);
                    if h > 9 || l > 9 {
                        return Err(FrameError::BadLength);
                    }
                    v = v * 100 + usize::from(h) * 10 + usize::from(l);
                }
                v
            }
            LengthHeader::Ascii4 => {
                let mut v = 0usize;
                for &c in &b[..4] {
                    if !c.is_ascii_digit() {
                        return Err(FrameError::BadLength);
                    }
                    v = v * 10 + usize::from(c - b'0');
                }
                v
            }
        };
        if self.cfg.length_includes_header {
            raw.checked_sub(self.cfg.length.size()).ok_or(FrameError::BadLength)
        } else {
            Ok(raw)
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let hl = self.cfg.length.size();
        if src.len() < hl {
            return Ok(None);
        }
        let len = self.read_len(&src[..hl])?;
        if len > self.cfg.max_frame {
            return Err(FrameError::TooLong { len, max: self.cfg.max_frame });
        }
        let need = self.cfg.prelude();
        if len < need {
            return Err(FrameError::TooShort { len, need });
        }
        if src.len() < hl + len {
            // Reserve only what this frame, already checked against the maximum, needs.
            src.reserve(hl + len - src.len());
            return Ok(None);
        }
        src.advance(hl);
        let mut frame = src.split_to(len);
        let tpdu = if self.cfg.tpdu {
            let t = frame.split_to(5);
            Some(Tpdu {
                id: t[0],
                dst: u16::from_be_bytes([t[1], t[2]]),
                src: u16::from_be_bytes([t[3], t[4]]),
            })
        } else {
            None
        };
        let header = frame.split_to(self.cfg.header_len).freeze();
        Ok(Some(Frame { tpdu, header, body: frame.freeze() }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let tpdu_len = if self.cfg.tpdu { 5 } else { 0 };
        let len = tpdu_len + item.header.len() + item.body.len();
        let max = self.cfg.max_frame.min(self.cfg.length.largest());
        if len > max {
            return Err(FrameError::TooLong { len, max });
        }
        let counted = if self.cfg.length_includes_header { len + self.cfg.length.size() } else { len };
        dst.reserve(self.cfg.length.size() + len);
        match self.cfg.length {
            LengthHeader::Binary2 => dst.put_u16(counted as u16),
            LengthHeader::Bcd2 => {
                let hi = counted / 100;
                let lo = counted % 100;
                dst.put_u8((((hi / 10) as u8) << 4) | (hi % 10) as u8);
                dst.put_u8((((lo / 10) as u8) << 4) | (lo % 10) as u8);
            }
            LengthHeader::Ascii4 => dst.put_slice(format!("{counted:04}").as_bytes()),
        }
        if self.cfg.tpdu {
            let t = item.tpdu.unwrap_or(Tpdu { id: 0x60, dst: 0, src: 0 });
            dst.put_u8(t.id);
            dst.put_u16(t.dst);
            dst.put_u16(t.src);
        }
        dst.put_slice(&item.header);
        dst.put_slice(&item.body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(cfg: FrameConfig, frame: Frame, want_wire: &[u8]) {
        let mut c = FrameCodec::new(cfg);
        let mut buf = BytesMut::new();
        c.encode(frame.clone(), &mut buf).unwrap();
        assert_eq!(&buf[..], want_wire);
        // Byte at a time: no frame until the last byte, then exactly one.
        let mut partial = BytesMut::new();
        for (i, b) in want_wire.iter().enumerate() {
            partial.put_u8(*b);
            let got = c.decode(&mut partial).unwrap();
            if i + 1 < want_wire.len() {
                assert!(got.is_none(), "frame before byte {i}");
            } else {
                assert_eq!(got, Some(frame.clone()));
            }
        }
        assert!(partial.is_empty());
    }

    #[test]
    fn length_headers() {
        let body = Bytes::from_static(b"0800ABC");
        round_trip(FrameConfig::default(), Frame::plain(body.clone()), b"\x00\x070800ABC");
        let bcd = FrameConfig { length: LengthHeader::Bcd2, ..FrameConfig::default() };
        round_trip(bcd, Frame::plain(body.clone()), b"\x00\x070800ABC");
        let ascii = FrameConfig { length: LengthHeader::Ascii4, ..FrameConfig::default() };
        round_trip(ascii, Frame::plain(body.clone()), b"00070800ABC");
        let incl = FrameConfig { length_includes_header: true, ..FrameConfig::default() };
        round_trip(incl, Frame::plain(body), b"\x00\x090800ABC");
    }

    #[test]
    fn tpdu_and_header_and_swapped_reply() {
        let cfg = FrameConfig::cup_pos();
        let req = Frame {
            tpdu: Some(Tpdu { id: 0x60, dst: 0x0003, src: 0x0000 }),
            header: Bytes::from_static(&[0x60, 0x31, 0x00, 0x31, 0x00, 0x00]),
            body: Bytes::from_static(&[0x08, 0x00]),
        };
        round_trip(cfg, req.clone(), &[0, 13, 0x60, 0, 3, 0, 0, 0x60, 0x31, 0, 0x31, 0, 0, 8, 0]);
        let rep = req.reply(Bytes::from_static(&[0x08, 0x10]));
        assert_eq!(rep.tpdu, Some(Tpdu { id: 0x60, dst: 0, src: 3 }));
        assert_eq!(rep.header, req.header);
    }

    #[test]
    fn oversized_and_malformed_lengths_are_refused_before_buffering() {
        let mut c = FrameCodec::new(FrameConfig { max_frame: 100, ..FrameConfig::default() });
        let mut buf = BytesMut::from(&[0x01, 0x00][..]);
        assert!(matches!(c.decode(&mut buf), Err(FrameError::TooLong { len: 256, max: 100 })));
        let mut c = FrameCodec::new(FrameConfig { length: LengthHeader::Ascii4, ..FrameConfig::default() });
        assert!(matches!(c.decode(&mut BytesMut::from(&b"00x1"[..])), Err(FrameError::BadLength)));
        let mut c = FrameCodec::new(FrameConfig { length: LengthHeader::Bcd2, ..FrameConfig::default() });
        assert!(matches!(c.decode(&mut BytesMut::from(&[0x0A, 0x00][..])), Err(FrameError::BadLength)));
        let mut c = FrameCodec::new(FrameConfig::cup_pos());
        assert!(matches!(
            c.decode(&mut BytesMut::from(&[0x00, 0x03, 1, 2, 3][..])),
            Err(FrameError::TooShort { len: 3, need: 11 })
        ));
        let mut c = FrameCodec::new(FrameConfig { length_includes_header: true, ..FrameConfig::default() });
        assert!(matches!(c.decode(&mut BytesMut::from(&[0x00, 0x01][..])), Err(FrameError::BadLength)));
    }

    #[test]
    fn encoder_refuses_what_the_header_cannot_carry() {
        let mut c = FrameCodec::new(FrameConfig {
            length: LengthHeader::Bcd2,
            max_frame: 100_000,
            ..FrameConfig::default()
        });
        let big = Frame::plain(Bytes::from(vec![b'0'; 10_000]));
        assert!(matches!(c.encode(big, &mut BytesMut::new()), Err(FrameError::TooLong { .. })));
    }
}
