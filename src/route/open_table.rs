//! An open-addressed hash table for the risk counters, whose entries carry their own key:
//! a lookup reads the one cache line that holds the entry (linear probing from the key's
//! home slot in a table at most half full), where a table with separate control bytes
//! reads two lines. The counters' lookups are cache misses on a busy switch, so the line
//! saved is most of a lookup's cost.
//!
//! Keys are already keyed and scrambled `u64`s (see `risk_state`); the table does not hash
//! again (unless the entry type says how). Key 0 marks an empty slot, so a key of 0 is stored as 1 (two keys in 2^64 share
//! an entry). Removal happens only in `retain`, which closes each gap it makes by moving
//! the rest of the probe chain back, so chains never hold gaps.
//! May import: nothing.

/// An entry that knows its key.
pub(crate) trait Keyed: Copy + Default {
    /// The entry's key; 0 for an empty slot (which `Default` must give).
    fn key(&self) -> u64;
    /// A fresh entry for `key` (never 0).
    fn keyed(key: u64) -> Self;
    /// The number whose low bits pick the key's home slot: the key itself, for keys that
    /// are already scrambled.
    fn home(key: u64) -> u64 {
        key
    }
}

#[derive(Debug, Clone)]
pub(crate) struct OpenTable<T> {
    /// A power of two in length, or empty.
    slots: Vec<T>,
    len: usize,
}

impl<T> Default for OpenTable<T> {
    fn default() -> Self {
        OpenTable { slots: Vec::new(), len: 0 }
    }
}

/// The key as stored: never the empty mark.
fn stored(key: u64) -> u64 {
    key.max(1)
}

/// Fewest slots a table that holds anything has.
const MIN_SLOTS: usize = 16;

impl<T: Keyed> OpenTable<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Entries held before the table grows: half its slots.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len() / 2
    }

    /// The slot holding `key` (already stored form) and true, or the empty slot where it
    /// would go and false; `None` for a table with no slots.
    fn probe(&self, key: u64) -> Option<(usize, bool)> {
        let mask = self.slots.len().checked_sub(1)?;
        // The low bits pick the home slot (`as` keeps them).
        let mut i = T::home(key) as usize & mask;
        // The table is never more than half full: an empty slot ends every probe.
        loop {
            let k = self.slots.get(i)?.key();
            if k == key {
                return Some((i, true));
            }
            if k == 0 {
                return Some((i, false));
            }
            i = (i + 1) & mask;
        }
    }

    /// The entry of `key`.
    pub(crate) fn find(&self, key: u64) -> Option<&T> {
        match self.probe(stored(key))? {
            (i, true) => self.slots.get(i),
            _ => None,
        }
    }

    /// Every entry.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().filter(|e| e.key() != 0)
    }

    /// The entry of `key`, or the table, to insert it.
    pub(crate) fn find_mut(&mut self, key: u64) -> Result<&mut T, &mut Self> {
        match self.probe(stored(key)) {
            // `probe` gave a slot of this table.
            #[allow(clippy::indexing_slicing)]
            Some((i, true)) => Ok(&mut self.slots[i]),
            _ => Err(self),
        }
    }

    /// Insert a fresh entry for `key`, which must not be in the table, growing it first
    /// when it is half full.
    pub(crate) fn insert_new(&mut self, key: u64) -> Option<&mut T> {
        let key = stored(key);
        if self.len >= self.capacity() {
            self.rebuild((self.slots.len() * 2).max(MIN_SLOTS));
        }
        let (i, _) = self.probe(key)?;
        let e = self.slots.get_mut(i)?;
        *e = T::keyed(key);
        self.len += 1;
        Some(e)
    }

    /// Make room for `additional` more entries without growing on the way.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let need = self.len.saturating_add(additional);
        if need > self.capacity() {
            self.rebuild(need.saturating_mul(2).next_power_of_two().max(MIN_SLOTS));
        }
    }

    /// Keep only the entries for which `keep` is true, in place: each removal moves back the
    /// rest of its probe chain (no tombstones, no allocation), so a sweep of a large table
    /// under a shard lock costs one pass. `keep` may be asked twice about an entry that a
    /// removal moved back to where the pass stands, or from the array's start to its end;
    /// it must answer the same both times.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut i = 0;
        while let Some(e) = self.slots.get(i) {
            if e.key() != 0 && !keep(e) {
                // Slot `i` may now hold an entry moved back from later in its chain: look
                // at it again.
                self.remove_at(i);
            } else {
                i += 1;
            }
        }
    }

    /// Empty slot `hole` and close the gap: each later entry of the chain whose probe path
    /// (from its home slot to where it is) passes the hole moves into it, and the hole
    /// moves to where that entry was, until the chain ends at an empty slot.
    fn remove_at(&mut self, mut hole: usize) {
        let Some(mask) = self.slots.len().checked_sub(1) else { return };
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some(&e) = self.slots.get(j) else { return };
            if e.key() == 0 {
                break;
            }
            let home = T::home(e.key()) as usize & mask;
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                if let Some(slot) = self.slots.get_mut(hole) {
                    *slot = e;
                }
                hole = j;
            }
        }
        if let Some(slot) = self.slots.get_mut(hole) {
            *slot = T::default();
            self.len -= 1;
        }
    }

    /// Move every entry into a table of `slots` slots (a power of two, at least twice the
    /// entries).
    fn rebuild(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![T::default(); slots]);
        self.len = 0;
        for e in old.into_iter().filter(|e| e.key() != 0) {
            if let Some((i, _)) = self.probe(e.key())
                && let Some(slot) = self.slots.get_mut(i)
            {
                *slot = e;
                self.len += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, Default, PartialEq)]
    struct E {
        key: u64,
        n: u32,
    }

    impl Keyed for E {
        fn key(&self) -> u64 {
            self.key
        }
        fn keyed(key: u64) -> Self {
            E { key, n: 0 }
        }
    }

    fn scramble(i: u64) -> u64 {
        let mut z = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z ^= z >> 29;
        z
    }

    #[test]
    fn finds_what_it_holds_and_nothing_else_through_growth_and_retain() {
        let mut t: OpenTable<E> = OpenTable::default();
        assert!(t.find_mut(5).is_err());
        // Keys that share their low bits make long probe chains; scrambled keys do not.
        let keys: Vec<u64> = (0..3_000u64).map(|i| if i % 3 == 0 { i << 20 } else { scramble(i) }).collect();
        for (n, &k) in keys.iter().enumerate() {
            assert!(t.find_mut(k).is_err(), "{n}");
            t.insert_new(k).unwrap().n = n as u32;
            assert!(t.len() <= t.capacity());
        }
        assert_eq!(t.len(), keys.len());
        for (n, &k) in keys.iter().enumerate() {
            assert_eq!(t.find_mut(k).map(|e| e.n).ok(), Some(n as u32), "{n}");
        }
        assert!(t.find_mut(scramble(5_000)).is_err());
        // Drop the odd ones: the even ones are all still found, the odd ones are gone.
        t.retain(|e| e.n % 2 == 0);
        assert_eq!(t.len(), keys.len() / 2);
        for (n, &k) in keys.iter().enumerate() {
            assert_eq!(t.find_mut(k).is_ok(), n % 2 == 0, "{n}");
        }
        let cap = t.capacity();
        t.reserve(cap);
        assert!(t.capacity() >= t.len() + cap);
        for (n, &k) in keys.iter().enumerate().filter(|(n, _)| n % 2 == 0) {
            assert_eq!(t.find_mut(k).map(|e| e.n).ok(), Some(n as u32), "{n}");
        }
    }

    /// Every occupied slot is reached from its home slot through occupied slots only.
    fn chains_are_whole(t: &OpenTable<E>) {
        let Some(mask) = t.slots.len().checked_sub(1) else { return };
        for (j, e) in t.slots.iter().enumerate().filter(|(_, e)| e.key != 0) {
            let mut i = e.key as usize & mask;
            while i != j {
                assert_ne!(t.slots[i].key, 0, "a gap at {i} before {j}");
                i = (i + 1) & mask;
            }
        }
    }

    #[test]
    fn retain_in_place_keeps_every_chain_whole_against_a_model() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            let mut t: OpenTable<E> = OpenTable::default();
            let mut model = std::collections::HashMap::new();
            // Few distinct low bits: long chains that wrap past the array's end.
            let spread = [4u64, 16, 64, 1 << 20][round % 4];
            for step in 0..400u32 {
                match next() % 10 {
                    0 => {
                        let (salt, cut) = (next(), next() % 4);
                        t.retain(|e| (e.key ^ salt) % 4 >= cut);
                        model.retain(|&k: &u64, _| (k ^ salt) % 4 >= cut);
                    }
                    1 => t.reserve((next() % 50) as usize),
                    _ => {
                        let key = (next() % spread) | (next() << 32) | 1;
                        if let std::collections::hash_map::Entry::Vacant(v) = model.entry(key) {
                            v.insert(step);
                            t.insert_new(key).unwrap().n = step;
                        }
                    }
                }
                assert_eq!(t.len(), model.len(), "round {round} step {step}");
                chains_are_whole(&t);
                for (&k, &n) in &model {
                    assert_eq!(t.find_mut(k).map(|e| e.n).ok(), Some(n), "round {round} step {step}");
                }
            }
        }
    }

    #[test]
    fn key_zero_is_stored_as_one() {
        let mut t: OpenTable<E> = OpenTable::default();
        t.insert_new(0).unwrap().n = 7;
        assert_eq!(t.find_mut(0).map(|e| e.n).ok(), Some(7));
        assert_eq!(t.find_mut(1).map(|e| e.n).ok(), Some(7));
        assert_eq!(t.len(), 1);
    }
}
