//! A message's layout: which data fields are present (the bitmaps, as three words) and
//! where each one's wire bytes lie: a slot with the offset, the wire length and the
//! length in units, in the frame the message was decoded from or, for a field set since,
//! in the message's own buffer. Slots exist only for fields ever placed, the first
//! `INLINE_SLOTS` inline, so a layout stays a few hundred bytes (cheap to initialise,
//! move and clone) and decoding an ordinary message allocates nothing.
//! May import: crate::iso::field_set.

use crate::iso::field_set::MAX_FIELD;

/// Where one present field's wire bytes lie.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(super) struct Slot {
    /// Offset in the frame, or in the message's buffer when the `IN_EXT` bit is set.
    pub off: u32,
    /// Bytes on the wire (prefix excluded).
    pub wire: u16,
    /// Length in the spec's units (digits, characters or bytes).
    pub units: u16,
}

/// Marks a slot whose bytes live in the message's own buffer rather than in the frame.
pub(super) const IN_EXT: u32 = 1 << 31;

/// An `index` entry of a field that has no slot.
const NO_SLOT: u8 = u8::MAX;

impl Slot {
    #[inline]
    pub fn range(self) -> std::ops::Range<usize> {
        let start = (self.off & !IN_EXT) as usize;
        start..start + self.wire as usize
    }

    /// Whether the bytes are in the message's own buffer.
    #[inline]
    pub fn in_ext(self) -> bool {
        self.off & IN_EXT != 0
    }
}

/// Slots kept inline: enough for the fields of ordinary messages (a purchase has 16),
/// so that decoding one allocates nothing.
const INLINE_SLOTS: usize = 32;

/// The slots of a message in the order its fields were placed: the first
/// `INLINE_SLOTS` inline, any more on the heap. Never more than `MAX_FIELD` (each field
/// holds one slot at most), so an index always fits below `NO_SLOT`.
#[derive(Clone)]
struct Slots {
    len: u8,
    inline: [Slot; INLINE_SLOTS],
    spill: Vec<Slot>,
}

impl Default for Slots {
    fn default() -> Self {
        Slots { len: 0, inline: [Slot::default(); INLINE_SLOTS], spill: Vec::new() }
    }
}

impl Slots {
    #[inline]
    fn get(&self, i: u8) -> Slot {
        let i = usize::from(i);
        match self.inline.get(i) {
            Some(s) => *s,
            None => self.spill.get(i - INLINE_SLOTS).copied().unwrap_or_default(),
        }
    }

    #[inline]
    fn set(&mut self, i: u8, s: Slot) {
        let i = usize::from(i);
        match self.inline.get_mut(i) {
            Some(old) => *old = s,
            None => {
                if let Some(old) = self.spill.get_mut(i - INLINE_SLOTS) {
                    *old = s;
                }
            }
        }
    }

    /// Append a slot and return its index (`NO_SLOT`, storing nothing, if full).
    #[inline]
    fn push(&mut self, s: Slot) -> u8 {
        let i = self.len;
        if i == NO_SLOT {
            return NO_SLOT;
        }
        match self.inline.get_mut(usize::from(i)) {
            Some(slot) => *slot = s,
            None => self.spill.push(s),
        }
        self.len += 1;
        i
    }
}

/// The word and bit of data field `n` (1 to `MAX_FIELD`) in the presence words.
#[inline]
fn bit(n: usize) -> (usize, u64) {
    ((n - 1) / 64, 1u64 << ((n - 1) % 64))
}

/// Which fields are present and where their bytes lie.
#[derive(Clone)]
pub(super) struct Layout {
    /// Bit `n - 1` set when data field `n` is present (bitmap fields never are).
    present: [u64; 3],
    /// Slot of each field number in `slots`, `NO_SLOT` for none.
    index: [u8; MAX_FIELD + 1],
    slots: Slots,
}

impl Layout {
    /// No field present.
    pub fn empty() -> Layout {
        Layout { present: [0; 3], index: [NO_SLOT; MAX_FIELD + 1], slots: Slots::default() }
    }

    /// The presence words: bit `n - 1` of the three 64-bit words for data field `n`.
    #[inline]
    pub fn present(&self) -> [u64; 3] {
        self.present
    }

    /// Whether data field `n` is present.
    #[inline]
    pub fn has(&self, n: usize) -> bool {
        if !(1..=MAX_FIELD).contains(&n) {
            return false;
        }
        let (w, b) = bit(n);
        self.present[w] & b != 0
    }

    /// The slot of field `n` (an empty one when it has none).
    #[inline]
    pub fn slot(&self, n: usize) -> Slot {
        match self.index.get(n) {
            Some(&i) if i != NO_SLOT => self.slots.get(i),
            _ => Slot::default(),
        }
    }

    /// Field `n` of a frame being decoded: fields come once each, in order, into an empty
    /// layout, so each takes a new slot.
    #[inline]
    pub fn add_decoded(&mut self, n: usize, s: Slot) {
        if let Some(i) = self.index.get_mut(n) {
            *i = self.slots.push(s);
            let (w, b) = bit(n);
            self.present[w] |= b;
        }
    }

    /// Make field `n` (at most `MAX_FIELD`) present at `s`, reusing its old slot if it
    /// had one.
    #[inline]
    pub fn put(&mut self, n: usize, s: Slot) {
        let Some(i) = self.index.get_mut(n) else { return };
        if *i == NO_SLOT {
            *i = self.slots.push(s);
        } else {
            self.slots.set(*i, s);
        }
        let (w, b) = bit(n);
        self.present[w] |= b;
    }

    /// Make field `n` absent; whether it was present.
    pub fn remove(&mut self, n: usize) -> bool {
        if !self.has(n) {
            return false;
        }
        let (w, b) = bit(n);
        self.present[w] &= !b;
        true
    }

    /// Present data field numbers in ascending order.
    pub fn fields(&self) -> impl Iterator<Item = usize> + '_ {
        // Walks the set bits only: encoding and comparing visit present fields, not all 192.
        crate::iso::field_set::numbers(self.present)
    }

    /// Number of present data fields.
    pub fn count(&self) -> usize {
        self.present.iter().map(|w| w.count_ones() as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_past_the_inline_ones_are_kept_and_reused() {
        let mut l = Layout::empty();
        for n in 2..=MAX_FIELD {
            l.put(n, Slot { off: n as u32, wire: 1, units: 1 });
        }
        assert_eq!(l.count(), MAX_FIELD - 1);
        l.put(150, Slot { off: 7 | IN_EXT, wire: 3, units: 6 });
        assert_eq!(l.slot(150), Slot { off: 7 | IN_EXT, wire: 3, units: 6 });
        assert!(l.slot(150).in_ext() && l.slot(150).range() == (7..10));
        assert_eq!(l.slot(40).off, 40);
        assert!(l.remove(40) && !l.has(40) && !l.remove(40));
        assert!(!l.has(1) && !l.has(0) && !l.has(MAX_FIELD + 1));
        assert_eq!(l.fields().take(3).collect::<Vec<_>>(), [2, 3, 4]);
    }
}
