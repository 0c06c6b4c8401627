//! Sets of field numbers, 1 to `MAX_FIELD`, held as three 64-bit words like a message's
//! three bitmaps: the vocabulary of "which fields" shared by specs and reply rules.
//! May import: nothing.

/// Highest field number any spec may define (three bitmaps).
pub const MAX_FIELD: usize = 192;

/// A set of field numbers 1..=192 (three 64-bit words, as a message's bitmap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldSet([u64; 3]);

impl FieldSet {
    /// The set of `fields` (numbers outside 1..=192 are ignored).
    pub const fn of(fields: &[usize]) -> FieldSet {
        let mut words = [0u64; 3];
        let mut i = 0;
        while i < fields.len() {
            let n = fields[i];
            if n >= 1 && n <= MAX_FIELD {
                words[(n - 1) / 64] |= 1u64 << ((n - 1) % 64);
            }
            i += 1;
        }
        FieldSet(words)
    }

    #[inline]
    pub fn contains(&self, n: usize) -> bool {
        (1..=MAX_FIELD).contains(&n) && self.0[(n - 1) / 64] & (1u64 << ((n - 1) % 64)) != 0
    }

    pub fn insert(&mut self, n: usize) {
        if (1..=MAX_FIELD).contains(&n) {
            self.0[(n - 1) / 64] |= 1u64 << ((n - 1) % 64);
        }
    }

    /// The numbers in ascending order (walking the set bits only).
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        numbers(self.0)
    }
}

/// The field numbers whose bits are set in `words` (bit `n - 1` for field `n`, as a
/// message's bitmaps), in ascending order, walking the set bits only.
#[inline]
pub fn numbers(mut words: [u64; 3]) -> impl Iterator<Item = usize> {
    let mut w = 0;
    std::iter::from_fn(move || {
        while let Some(word) = words.get_mut(w) {
            if *word != 0 {
                let i = word.trailing_zeros() as usize;
                *word &= *word - 1;
                return Some(w * 64 + i + 1);
            }
            w += 1;
        }
        None
    })
}
