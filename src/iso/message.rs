//! `Message`: one ISO 8583 message decoded against a `Spec`. Field data stays in the
//! frame it came from: a decoded message is the frame (`Bytes`) plus its layout, a small
//! table of where each present field lies in it (`message/layout.rs`; inline for the
//! first 32 fields, which covers ordinary messages), so decoding allocates nothing.
//! Fields set with the builder are encoded once into the message's own buffer. Encoding
//! writes into the caller's `BytesMut` (`message/encode.rs`); a decoded message whose
//! fields are unchanged, or changed only by same-length values in fixed fields (a
//! forward's STAN and RRN, a reply's restored ones), encodes them as one copy of its
//! frame with those values written over: its edits (`message/edits.rs`) say where.
//!
//! Wire layout (ASCII spec shown; BCD/binary specs pack the same parts smaller):
//!
//! ```text
//! +------+------------------+---------------+--------+------------------+----
//! | MTI  | primary bitmap   | [secondary]   | field  | LL/LLL prefix +  | ...
//! | 0200 | 16 hex / 8 bytes | bitmap (bit1) | fixed  | variable field   |
//! +------+------------------+---------------+--------+------------------+----
//! ```
//!
//! Every length read from the input is checked against the spec's maximum and against
//! the bytes that remain before anything is sliced.
//! May import: crate::iso::error, crate::iso::mask, crate::iso::spec, crate::iso::wire.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::error::{DecodeError, EncodeError, ErrorKind, Part};
use super::spec::{BitmapEncoding, CharClass, Encoding, FieldSpec, Length, Spec};
use super::wire::{bitmap, encoding, fill, prefix};

mod edits;
mod encode;
mod layout;

use edits::{Edits, Patch};
use layout::{IN_EXT, Layout, Slot};

/// A decoded or built ISO 8583 message: its MTI, its layout (which fields are present and
/// where their bytes lie), the bytes themselves (the frame it was decoded from, and its
/// own buffer for fields set since) and the edits that keep encoding it a copy of the
/// frame.
#[derive(Clone)]
pub struct Message {
    spec: Arc<Spec>,
    mti: [u8; 4],
    layout: Layout,
    frame: Bytes,
    ext: BytesMut,
    edits: Edits,
}

impl PartialEq for Message {
    /// Two messages are equal when they have the same MTI and the same field values,
    /// whatever buffer those values live in.
    fn eq(&self, other: &Self) -> bool {
        self.mti == other.mti
            && self.layout.present() == other.layout.present()
            && self.fields().all(|n| self.raw(n) == other.raw(n) && self.units(n) == other.units(n))
    }
}

/// The description of data field `n` of `spec`, refusing the bitmaps.
fn field_spec(spec: &Spec, n: usize) -> Result<&FieldSpec, EncodeError> {
    if n == 1 || (n == 65 && spec.tertiary) {
        return Err(EncodeError::new(Part::Field(n as u16), "bitmaps follow from the fields present"));
    }
    spec.field(n).ok_or_else(|| EncodeError::new(Part::Field(n as u16), "field not defined in the spec"))
}

impl Message {
    /// An empty message of `mti` (four digits) for `spec`.
    pub fn new(spec: Arc<Spec>, mti: &str) -> Result<Message, EncodeError> {
        let mut m = Message {
            spec,
            mti: *b"0000",
            layout: Layout::empty(),
            frame: Bytes::new(),
            ext: BytesMut::new(),
            edits: Edits::ended(),
        };
        m.set_mti(mti)?;
        Ok(m)
    }

    /// Decode `frame` (one whole message, no length header) against `spec`.
    pub fn decode(spec: &Arc<Spec>, frame: Bytes) -> Result<Message, DecodeError> {
        let mut m = Message {
            spec: spec.clone(),
            mti: *b"0000",
            layout: Layout::empty(),
            frame: Bytes::new(),
            ext: BytesMut::new(),
            edits: Edits::ended(),
        };
        m.decode_frame(frame)?;
        Ok(m)
    }

    /// The MTI of a frame, if its first bytes hold four valid digits; used to answer a
    /// message that does not decode with its response MTI and code 30.
    pub fn peek_mti(spec: &Spec, frame: &[u8]) -> Option<[u8; 4]> {
        encoding::read_mti(spec.mti, frame).ok()
    }

    fn decode_frame(&mut self, frame: Bytes) -> Result<(), DecodeError> {
        let spec = &*self.spec;
        let buf: &[u8] = &frame;
        // Slots keep offsets in 31 bits.
        if buf.len() >= IN_EXT as usize {
            let kind = ErrorKind::TooLong { len: buf.len(), max: IN_EXT as usize - 1 };
            return Err(DecodeError::new(Part::Mti, 0, kind));
        }
        self.mti = encoding::read_mti(spec.mti, buf).map_err(|kind| DecodeError::new(Part::Mti, 0, kind))?;
        let mut pos = spec.mti_len();

        let bl = spec.bitmap_len();
        let primary = read_bitmap(spec.bitmap, buf, pos, Part::PrimaryBitmap)?;
        pos += bl;
        let mut present = [primary, 0, 0];
        if primary & (1 << 63) != 0 {
            present[1] = read_bitmap(spec.bitmap, buf, pos, Part::SecondaryBitmap)?;
            pos += bl;
            if spec.tertiary && present[1] & (1 << 63) != 0 {
                present[2] = read_bitmap(spec.bitmap, buf, pos, Part::TertiaryBitmap)?;
                pos += bl;
            }
        }
        let fields_at = pos as u32;
        let mut last = 0u16;
        for (w, word) in present.iter().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let lead = bits.leading_zeros() as usize;
                bits &= !(1u64 << (63 - lead));
                let n = w * 64 + lead + 1;
                if n == 1 || (n == 65 && spec.tertiary) {
                    continue;
                }
                let Some(fs) = spec.field(n) else {
                    return Err(DecodeError::new(Part::Field(n as u16), pos, ErrorKind::NotInSpec));
                };
                let at = pos;
                let (slot, next) = decode_field(fs, buf, pos)
                    .map_err(|(kind, off)| DecodeError::new(Part::Field(n as u16), off.max(at), kind))?;
                self.layout.add_decoded(n, slot);
                pos = next;
                last = n as u16;
            }
        }
        if pos != buf.len() {
            let part = if last == 0 { Part::PrimaryBitmap } else { Part::Field(last) };
            return Err(DecodeError::new(part, pos, ErrorKind::TrailingBytes));
        }
        self.frame = frame;
        self.edits = Edits::of_frame(fields_at);
        Ok(())
    }

    /// The spec this message follows.
    pub fn spec(&self) -> &Arc<Spec> {
        &self.spec
    }

    /// The MTI as four ASCII digits.
    pub fn mti(&self) -> &str {
        // Only digits are ever stored.
        std::str::from_utf8(&self.mti).unwrap_or("0000")
    }

    /// The MTI's four ASCII digits as bytes (no UTF-8 check: for comparisons on hot paths).
    #[inline]
    pub fn mti_bytes(&self) -> &[u8; 4] {
        &self.mti
    }

    /// Replace the MTI (four digits).
    pub fn set_mti(&mut self, mti: &str) -> Result<(), EncodeError> {
        let b = mti.as_bytes();
        if b.len() != 4 || !b.iter().all(u8::is_ascii_digit) {
            return Err(EncodeError::new(Part::Mti, "the MTI must be four digits"));
        }
        self.mti.copy_from_slice(b);
        Ok(())
    }

    /// The slot of field `n` (an empty one when it has none).
    #[inline]
    fn slot(&self, n: usize) -> Slot {
        self.layout.slot(n)
    }

    /// Whether data field `n` is present.
    #[inline]
    pub fn has(&self, n: usize) -> bool {
        self.layout.has(n)
    }

    /// Present data field numbers in ascending order.
    pub fn fields(&self) -> impl Iterator<Item = usize> + '_ {
        self.layout.fields()
    }

    /// Number of present data fields.
    pub fn field_count(&self) -> usize {
        self.layout.count()
    }

    /// The field's bytes as they travel (length prefix excluded).
    #[inline]
    pub fn raw(&self, n: usize) -> Option<&[u8]> {
        if !self.has(n) {
            return None;
        }
        let s = self.slot(n);
        if s.in_ext() { self.ext.get(s.range()) } else { self.frame.get(s.range()) }
    }

    /// The field's length in its spec units.
    pub fn units(&self, n: usize) -> Option<usize> {
        self.has(n).then(|| self.slot(n).units as usize)
    }

    /// The field's value as text: characters for text, numeric and track fields
    /// (borrowed from the frame when they travel as ASCII), uppercase hex for binary.
    pub fn text(&self, n: usize) -> Option<Cow<'_, str>> {
        let fs = self.spec.field(n)?;
        let raw = self.raw(n)?;
        let units = self.slot(n).units as usize;
        Some(encoding::text(fs, raw, units))
    }

    /// `text(n)` appended to `out` (a string of the caller's, an inline one, say), without
    /// allocating for the encodings `text` converts; false when the field is absent.
    pub fn push_text<S>(&self, n: usize, out: &mut S) -> bool
    where
        S: Extend<char> + for<'s> Extend<&'s str>,
    {
        let (Some(fs), Some(raw)) = (self.spec.field(n), self.raw(n)) else { return false };
        encoding::push_text(fs, raw, self.slot(n).units as usize, out);
        true
    }

    /// The field's value as bytes: the raw bytes of a binary field, the characters of any
    /// other field.
    pub fn bytes(&self, n: usize) -> Option<Cow<'_, [u8]>> {
        let fs = self.spec.field(n)?;
        let raw = self.raw(n)?;
        Some(match (fs.class, fs.encoding) {
            // Checked as hex digits by the decoder or `set`.
            (CharClass::Binary, Encoding::Hex) => Cow::Owned(hex::decode(raw).unwrap_or_default()),
            (CharClass::Binary, _) => Cow::Borrowed(raw),
            _ => match encoding::text(fs, raw, self.slot(n).units as usize) {
                Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            },
        })
    }

    /// The field as an unsigned number, when it is all digits and fits.
    pub fn number(&self, n: usize) -> Option<u64> {
        let fs = self.spec.field(n)?;
        let raw = self.raw(n)?;
        encoding::number(fs, raw, self.slot(n).units as usize)
    }

    /// Set field `n` from its text form (characters, or hex for binary fields).
    pub fn set(&mut self, n: usize, value: &str) -> Result<&mut Self, EncodeError> {
        // The spec is held through its `Arc` (a counter increment) rather than by cloning
        // the field's description, which owns its name (an allocation per set).
        let spec = self.spec.clone();
        let fs = field_spec(&spec, n)?;
        if fs.class == CharClass::Binary && fs.encoding == Encoding::Binary {
            let bytes = hex::decode(value).map_err(|e| {
                EncodeError::new(Part::Field(n as u16), format!("binary fields are given as hex: {e}"))
            })?;
            return self.set_bytes(n, &bytes);
        }
        let value = if fs.encoding == Encoding::Hex {
            Cow::Owned(value.to_ascii_uppercase())
        } else {
            Cow::Borrowed(value)
        };
        self.put(fs, value.as_bytes())
    }

    /// Set a binary field from raw bytes (or any field from its characters).
    pub fn set_bytes(&mut self, n: usize, value: &[u8]) -> Result<&mut Self, EncodeError> {
        let spec = self.spec.clone();
        let fs = field_spec(&spec, n)?;
        if fs.class == CharClass::Binary && fs.encoding == Encoding::Hex {
            let hex = hex::encode_upper(value);
            return self.put(fs, hex.as_bytes());
        }
        self.put(fs, value)
    }

    /// Set a numeric field from a number, filled to a fixed field's length as the spec's
    /// `fill` says (zeros before the digits unless the spec says otherwise).
    pub fn set_number(&mut self, n: usize, value: u64) -> Result<&mut Self, EncodeError> {
        self.set_filled(n, &value.to_string())
    }

    /// Set field `n` as `set` does, first bringing a value shorter than its fixed field to
    /// the field's length as the spec's `fill` says (by default zeros before digits,
    /// spaces after text). A value that is still not the field's length (longer, or short
    /// in a field whose fill is `none`) is refused as `set` refuses it.
    pub fn set_filled(&mut self, n: usize, value: &str) -> Result<&mut Self, EncodeError> {
        let spec = self.spec.clone();
        let fs = field_spec(&spec, n)?;
        match fill::fill(fs, value.as_bytes()) {
            Cow::Borrowed(_) => self.set(n, value),
            // Only digit and text fields are filled: their characters are what `put` takes.
            Cow::Owned(filled) => self.put(fs, &filled),
        }
    }

    /// Copy field `n` from another message of any spec (text form), if present there.
    pub fn copy_from(&mut self, other: &Message, n: usize) -> Result<&mut Self, EncodeError> {
        if Arc::ptr_eq(&self.spec, &other.spec) || *self.spec == *other.spec {
            if let Some(raw) = other.raw(n) {
                let units = other.slot(n).units;
                let off = self.ext.len();
                self.ext.extend_from_slice(raw);
                self.place(n, off, raw.len(), units as usize)?;
            }
            return Ok(self);
        }
        match other.bytes(n) {
            Some(v) => self.set_bytes(n, &v),
            None => Ok(self),
        }
    }

    /// Remove field `n`.
    pub fn remove(&mut self, n: usize) -> &mut Self {
        if self.layout.remove(n) {
            self.edits.end();
        }
        self
    }

    /// Where field `n`'s bytes lie in the frame while the fields are still the frame's
    /// (its patch's place if it was replaced): the wire length and the offset.
    fn frame_place(&self, n: usize) -> Option<(usize, usize)> {
        self.edits.fields_at()?;
        if !self.has(n) {
            return None;
        }
        let s = self.slot(n);
        if !s.in_ext() {
            return Some((s.wire as usize, s.off as usize));
        }
        let p = self.edits.patch(n)?;
        Some((p.wire as usize, p.at as usize))
    }

    /// Note that field `n` now lies at `off` in `ext`: a fixed field that keeps its wire
    /// length becomes a patch of the frame; any other change ends encoding from the frame.
    fn note_change(&mut self, n: usize, off: u32, wire: u16) {
        let fixed = self.spec.field(n).is_some_and(|fs| fs.length == Length::Fixed);
        match self.frame_place(n) {
            Some((w, at)) if fixed && w == usize::from(wire) => {
                self.edits.replace(Patch { field: n as u16, wire, at: at as u32, ext: off });
            }
            _ => self.edits.end(),
        }
    }

    fn put(&mut self, fs: &FieldSpec, value: &[u8]) -> Result<&mut Self, EncodeError> {
        let units = value.len();
        super::wire::check_value(fs, value)?;
        let off = self.ext.len();
        encoding::write(fs, value, &mut self.ext);
        let wire_len = self.ext.len() - off;
        self.place(fs.number as usize, off, wire_len, units)?;
        Ok(self)
    }

    fn place(&mut self, n: usize, off: usize, wire: usize, units: usize) -> Result<(), EncodeError> {
        let (Ok(off), Ok(wire), Ok(units)) = (u32::try_from(off), u16::try_from(wire), u16::try_from(units))
        else {
            return Err(EncodeError::new(Part::Field(n as u16), "message too large"));
        };
        if off & IN_EXT != 0 {
            return Err(EncodeError::new(Part::Field(n as u16), "message too large"));
        }
        if self.edits.fields_at().is_some() {
            self.note_change(n, off, wire);
        }
        self.layout.put(n, Slot { off: off | IN_EXT, wire, units });
        Ok(())
    }

    /// The field shown for people: masked when the spec marks it sensitive.
    pub fn masked_text(&self, n: usize) -> Option<String> {
        let fs = self.spec.field(n)?;
        let t = self.text(n)?;
        Some(match fs.sensitive {
            Some(kind) => super::mask::mask(kind, &t),
            None => t.into_owned(),
        })
    }

    // Typed accessors for the fields the switch reads on every message.

    /// Field 2, the primary account number (digits).
    pub fn pan(&self) -> Option<Cow<'_, str>> {
        self.text(2)
    }
    /// Field 3, processing code.
    pub fn processing_code(&self) -> Option<Cow<'_, str>> {
        self.text(3)
    }
    /// Field 4, transaction amount in minor units.
    pub fn amount(&self) -> Option<u64> {
        self.number(4)
    }
    /// Field 7, transmission date and time (MMDDhhmmss).
    pub fn transmission_time(&self) -> Option<Cow<'_, str>> {
        self.text(7)
    }
    /// Field 11, system trace audit number.
    pub fn stan(&self) -> Option<u32> {
        self.number(11).and_then(|v| u32::try_from(v).ok())
    }
    /// Field 12, local transaction time.
    pub fn local_time(&self) -> Option<Cow<'_, str>> {
        self.text(12)
    }
    /// Field 13, local transaction date.
    pub fn local_date(&self) -> Option<Cow<'_, str>> {
        self.text(13)
    }
    /// Field 18, merchant category code.
    pub fn mcc(&self) -> Option<u16> {
        self.number(18).and_then(|v| u16::try_from(v).ok())
    }
    /// Field 37, retrieval reference number.
    pub fn rrn(&self) -> Option<Cow<'_, str>> {
        self.text(37)
    }
    /// Field 39, response code.
    pub fn response_code(&self) -> Option<Cow<'_, str>> {
        self.text(39)
    }
    /// Field 41, card acceptor terminal id.
    pub fn terminal_id(&self) -> Option<Cow<'_, str>> {
        self.text(41)
    }
    /// Field 41 without its trailing padding, empty when absent: the id a terminal is
    /// known by (suspensions, keys, batches, holds).
    pub fn terminal_key(&self) -> String {
        self.terminal_id().map(|t| t.trim_end().to_string()).unwrap_or_default()
    }
    /// Field 42, card acceptor (merchant) id.
    pub fn merchant_id(&self) -> Option<Cow<'_, str>> {
        self.text(42)
    }
    /// Field 49, transaction currency code.
    pub fn currency(&self) -> Option<Cow<'_, str>> {
        self.text(49)
    }
}

impl fmt::Debug for Message {
    /// Sensitive fields are masked: a `Debug` of a message is safe to log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Message");
        d.field("spec", &self.spec.name).field("mti", &self.mti());
        let fields: Vec<(usize, String)> =
            self.fields().map(|n| (n, self.masked_text(n).unwrap_or_default())).collect();
        d.field("fields", &fields).finish()
    }
}

fn read_bitmap(enc: BitmapEncoding, buf: &[u8], pos: usize, part: Part) -> Result<u64, DecodeError> {
    bitmap::read(enc, buf, pos).map_err(|kind| DecodeError::new(part, pos, kind))
}

/// Decode one field at `pos`: returns its slot and the position after it, or the error
/// and the offset where it was found.
#[inline]
fn decode_field(fs: &FieldSpec, buf: &[u8], pos: usize) -> Result<(Slot, usize), (ErrorKind, usize)> {
    let (units, data_at) = match fs.length {
        Length::Fixed => (fs.max as usize, pos),
        Length::Var(digits) => {
            let plen = prefix::len(fs);
            let end = pos.checked_add(plen).ok_or((ErrorKind::Truncated { need: plen, have: 0 }, pos))?;
            let prefix = buf
                .get(pos..end)
                .ok_or((ErrorKind::Truncated { need: plen, have: buf.len().saturating_sub(pos) }, pos))?;
            let units = prefix::read(fs.prefix, digits, prefix).map_err(|k| (k, pos))?;
            if units > fs.max as usize {
                return Err((ErrorKind::TooLong { len: units, max: fs.max as usize }, pos));
            }
            (units, end)
        }
    };
    if fs.encoding == Encoding::Hex && units % 2 != 0 {
        return Err((ErrorKind::OddHex, data_at));
    }
    let wire_len = encoding::wire_len(fs, units);
    let have = buf.len().saturating_sub(data_at);
    if wire_len > have {
        return Err((ErrorKind::Truncated { need: wire_len, have }, data_at));
    }
    let data = &buf[data_at..data_at + wire_len];
    encoding::check(fs, data, units).map_err(|(k, off)| (k, data_at + off))?;
    // Frames are shorter than 2 GiB (checked in `decode_frame`), field lengths at most 9999.
    let slot = Slot { off: data_at as u32, wire: wire_len as u16, units: units as u16 };
    Ok((slot, data_at + wire_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;

    fn spec(name: &str) -> Arc<Spec> {
        shipped(name).unwrap()
    }

    #[test]
    fn build_encode_decode_ascii() {
        let s = spec("iso87ascii");
        let mut m = Message::new(s.clone(), "0200").unwrap();
        m.set(2, "4111111111111111").unwrap();
        m.set(3, "000000").unwrap();
        m.set_number(4, 1234).unwrap();
        m.set(11, "000042").unwrap();
        m.set(70, "301").unwrap();
        let b = m.to_bytes().unwrap();
        assert_eq!(&b[..4], b"0200");
        assert_eq!(&b[4..20], b"F020000000000000");
        let d = Message::decode(&s, b.clone()).unwrap();
        assert_eq!(d, m);
        assert_eq!(d.amount(), Some(1234));
        assert_eq!(d.stan(), Some(42));
        assert_eq!(d.text(70).as_deref(), Some("301"));
        assert!(d.has(70) && !d.has(65) && !d.has(1));
    }

    #[test]
    fn bitmap_bits_for_secondary_fields() {
        let s = spec("iso87ascii");
        let mut m = Message::new(s.clone(), "0800").unwrap();
        m.set(70, "301").unwrap();
        let b = m.to_bytes().unwrap();
        // Primary: bit 1 only; secondary: bit 70 = bit 6 of the second map.
        assert_eq!(&b[4..36], b"80000000000000000400000000000000");
    }

    #[test]
    fn bcd_odd_lengths_follow_the_pad_rule() {
        let s = spec("iso87bcd");
        let mut m = Message::new(s.clone(), "0200").unwrap();
        m.set(22, "051").unwrap(); // fixed, left padded
        m.set(32, "123").unwrap(); // LL, right padded
        let b = m.to_bytes().unwrap();
        assert_eq!(&b[..2], &[0x02, 0x00]);
        // bitmap (8) then field 22 = 00 51, field 32 = 03 12 30
        assert_eq!(&b[10..], &[0x00, 0x51, 0x03, 0x12, 0x30]);
        let d = Message::decode(&s, b).unwrap();
        assert_eq!(d.text(22).as_deref(), Some("051"));
        assert_eq!(d.text(32).as_deref(), Some("123"));
    }

    #[test]
    fn builder_refuses_bad_values_naming_the_field() {
        let s = spec("iso87ascii");
        let mut m = Message::new(s, "0200").unwrap();
        let e = m.set(4, "12").unwrap_err();
        assert_eq!(e.part, Part::Field(4));
        let e = m.set(3, "00A000").unwrap_err();
        assert_eq!(e.part, Part::Field(3));
        let e = m.set(2, "41111111111111111111").unwrap_err();
        assert_eq!(e.part, Part::Field(2));
        assert!(m.set(1, "00").is_err());
        assert!(Message::new(spec("iso87ascii"), "02A0").is_err());
    }

    #[test]
    fn bcd_track_takes_only_what_a_nibble_can_carry() {
        // Sentinels have no BCD nibble: accepting them wrote a message that does not decode.
        let s = spec("iso87bcd");
        let mut m = Message::new(s.clone(), "0200").unwrap();
        assert!(m.set(35, ";4761739001010010=2812?").is_err());
        m.set(35, "4761739001010010D2812").unwrap();
        let d = Message::decode(&s, m.to_bytes().unwrap()).unwrap();
        assert_eq!(d.text(35).as_deref(), Some("4761739001010010=2812"));
        // ASCII track data keeps its sentinels.
        let mut a = Message::new(spec("iso87ascii"), "0200").unwrap();
        a.set(35, ";4761739001010010=2812?").unwrap();
    }

    #[test]
    fn short_values_are_filled_as_the_spec_says() {
        let text = "name = \"fill\"\nsource = \"test\"\n[mti]\nencoding = \"ascii\"\n[bitmap]\nencoding = \"hex\"\n[fields]
4 = { name = \"amt\", class = \"n\", length = \"fixed\", max = 12 }
11 = { name = \"stan\", class = \"n\", length = \"fixed\", max = 6, fill = \"none\" }
32 = { name = \"acq\", class = \"n\", length = \"ll\", max = 11 }
38 = { name = \"auth\", class = \"an\", length = \"fixed\", max = 6, fill = \"left-zero\" }
41 = { name = \"tid\", class = \"ans\", length = \"fixed\", max = 8 }
";
        let s = Arc::new(Spec::from_toml("fill.toml", text).unwrap_or_else(|e| panic!("{e}")));
        let mut m = Message::new(s.clone(), "0200").unwrap();
        m.set_number(4, 1234).unwrap();
        m.set_filled(38, "A1").unwrap().set_filled(41, "T1").unwrap().set_filled(32, "123").unwrap();
        assert_eq!(m.text(4).as_deref(), Some("000000001234"));
        assert_eq!(m.text(38).as_deref(), Some("0000A1"));
        assert_eq!(m.text(41).as_deref(), Some("T1      "));
        assert_eq!(m.text(32).as_deref(), Some("123"));
        // `none`: a short value is refused, a full one taken.
        let e = m.set_number(11, 42).unwrap_err();
        assert_eq!(e.part, Part::Field(11));
        assert!(e.to_string().contains("fixed at 6"), "{e}");
        m.set_number(11, 424_242).unwrap();
        // Filling never shortens, and `set` itself never fills.
        assert_eq!(m.set_filled(41, "TERMINAL9").unwrap_err().part, Part::Field(41));
        assert_eq!(m.set(41, "T1").unwrap_err().part, Part::Field(41));
        let d = Message::decode(&s, m.to_bytes().unwrap()).unwrap();
        assert_eq!(d, m);
    }

    #[test]
    fn debug_masks_the_pan() {
        let s = spec("iso87ascii");
        let mut m = Message::new(s, "0200").unwrap();
        m.set(2, "4111111111111111").unwrap();
        m.set(35, "4111111111111111=2512101").unwrap();
        let shown = format!("{m:?}");
        assert!(!shown.contains("4111111111111111"), "{shown}");
        assert!(shown.contains("411111******1111"), "{shown}");
    }

    #[test]
    fn decode_allocates_nothing_for_ascii_text() {
        let s = spec("iso87ascii");
        let mut m = Message::new(s.clone(), "0200").unwrap();
        m.set(41, "TERM0001").unwrap();
        let d = Message::decode(&s, m.to_bytes().unwrap()).unwrap();
        assert!(matches!(d.text(41), Some(Cow::Borrowed("TERM0001"))));
    }
}
