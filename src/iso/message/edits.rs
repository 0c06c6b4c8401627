//! A decoded message's edits while its fields can still be encoded as one copy of the
//! frame: where the fields begin in the frame, and the fixed fields replaced by values of
//! the same wire length (a forward's STAN and RRN, a reply's restored ones), each a patch
//! whose new bytes are written over the old ones as the frame is copied. Any other change
//! ends this: the message is then encoded field by field. A built message has no frame
//! and starts ended.
//! May import: nothing.

/// A fixed field of a decoded message replaced by a value of the same wire length: the
/// new bytes (in the message's buffer) go where the old ones lie in the frame.
#[derive(Clone, Copy, Default)]
pub(super) struct Patch {
    pub field: u16,
    pub wire: u16,
    /// The old bytes' offset in the frame.
    pub at: u32,
    /// The new bytes' offset in the message's buffer.
    pub ext: u32,
}

/// Replacements kept while the fields can still be encoded as a copy of the frame: a
/// forward changes the STAN and RRN, a reply restores the terminal's.
const PATCHES: usize = 4;

/// `Edits::fields_at` of a message whose fields are no longer the frame's.
const NOT_FRAME: u32 = u32::MAX;

/// The frame fast path's state.
#[derive(Clone)]
pub(super) struct Edits {
    /// Where the fields begin in the frame while they are exactly what was decoded, but
    /// for the replacements in `patches` (the prefixes the decoder accepted are the ones
    /// the encoder writes). `NOT_FRAME` for a built message and after any other change.
    fields_at: u32,
    patched: u8,
    patches: [Patch; PATCHES],
}

impl Edits {
    /// A message not decoded from a frame, or whose fields are no longer the frame's.
    pub fn ended() -> Edits {
        Edits { fields_at: NOT_FRAME, patched: 0, patches: [Patch::default(); PATCHES] }
    }

    /// A message just decoded, whose fields begin at `fields_at` in its frame (less than
    /// 2 GiB: frames are checked shorter at decode).
    pub fn of_frame(fields_at: u32) -> Edits {
        Edits { fields_at, ..Edits::ended() }
    }

    /// Where the fields begin in the frame, while they are still the frame's.
    #[inline]
    pub fn fields_at(&self) -> Option<usize> {
        (self.fields_at != NOT_FRAME).then_some(self.fields_at as usize)
    }

    /// The fields are no longer the frame's.
    #[inline]
    pub fn end(&mut self) {
        self.fields_at = NOT_FRAME;
    }

    /// The replacements made, in order.
    #[inline]
    pub fn patches(&self) -> &[Patch] {
        &self.patches[..usize::from(self.patched)]
    }

    /// The replacement of field `n`, if it has one.
    pub fn patch(&self, n: usize) -> Option<&Patch> {
        self.patches().iter().find(|p| usize::from(p.field) == n)
    }

    /// Record `patch` (replacing an earlier one of the same field); when there is no
    /// room for another, the fields are no longer the frame's.
    pub fn replace(&mut self, patch: Patch) {
        match self.patches().iter().position(|p| p.field == patch.field) {
            Some(i) => self.patches[i] = patch,
            None if usize::from(self.patched) < PATCHES => {
                self.patches[usize::from(self.patched)] = patch;
                self.patched += 1;
            }
            None => self.end(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_replace_their_field_and_overflow_ends_the_frame() {
        let mut e = Edits::of_frame(20);
        assert_eq!(e.fields_at(), Some(20));
        let p = |field, ext| Patch { field, wire: 6, at: 30, ext };
        for f in 1..=PATCHES as u16 {
            e.replace(p(f, 0));
        }
        e.replace(p(2, 9));
        assert_eq!(e.patches().len(), PATCHES);
        assert_eq!(e.patch(2).map(|p| p.ext), Some(9));
        assert_eq!(e.fields_at(), Some(20));
        e.replace(p(99, 0));
        assert_eq!(e.fields_at(), None);
        assert!(Edits::ended().fields_at().is_none());
    }
}
