//! Reversals the store-and-forward store could not take (its database fails: the journal's
//! disk is full, PostgreSQL is unreachable), held in memory until the store takes them or
//! the issuer acknowledges them, and never dropped: the issuer holds an authorisation until
//! its reversal arrives. The issuer's store-and-forward worker sends them from here as it
//! sends stored ones (0400, then 0401 repeats with backoff, until the 0410) and moves them
//! into the store as soon as it writes again, with the writes made so far.
//!
//! One reversal per original, as in the store (`saf_once`): a field 90 already held is not
//! held twice. An item being written to the issuer stays here until its exchange ends, so
//! that it is never in the store and in flight from memory at once. Held items carry
//! negative ids, apart from the store's. Memory is bounded by what can be in flight when
//! the store fails: the store lives beside the journal, and while the journal is down new
//! financial requests are declined before they reach an issuer. Items held in memory are
//! not expired (`max_attempts` applies once they are stored).
//! May import: crate::iso.

use std::sync::Mutex;

use crate::iso::Message;

/// One reversal held in memory.
#[derive(Debug, Clone)]
pub struct HeldItem {
    /// Negative: never a store id.
    pub id: i64,
    pub field90: String,
    /// Writes so far (0: the next write is the 0400).
    pub attempts: u32,
    /// Unix milliseconds of the next write.
    pub next_at: i64,
    pub reversal: Message,
}

#[derive(Debug, Default)]
struct Inner {
    items: Vec<(HeldItem, bool)>,
    last_id: i64,
}

/// The reversals of one issuer held in memory (the `bool` beside each: being written now).
#[derive(Debug, Default)]
pub struct Held {
    inner: Mutex<Inner>,
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hold `reversal` of the original named by `field90`, due at once; `false` when a
    /// reversal of that original is already held.
    pub fn hold(&self, field90: &str, reversal: Message, now_ms: i64) -> bool {
        let mut g = self.lock();
        if g.items.iter().any(|(i, _)| i.field90 == field90) {
            return false;
        }
        g.last_id = g.last_id.saturating_sub(1);
        let id = g.last_id;
        g.items.push((
            HeldItem { id, field90: field90.to_string(), attempts: 0, next_at: now_ms, reversal },
            false,
        ));
        true
    }

    pub fn contains(&self, field90: &str) -> bool {
        self.lock().items.iter().any(|(i, _)| i.field90 == field90)
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies of the items due at `now_ms` and not being written, at most `limit`, oldest
    /// first; they are marked as being written until `written` is called for each.
    pub fn take_due(&self, now_ms: i64, limit: usize) -> Vec<HeldItem> {
        let mut g = self.lock();
        let mut out = Vec::new();
        for (item, sending) in g.items.iter_mut() {
            if out.len() >= limit {
                break;
            }
            if !*sending && item.next_at <= now_ms {
                *sending = true;
                out.push(item.clone());
            }
        }
        out
    }

    /// The write of item `id` ended: acknowledged (it leaves), or not with `attempts` writes
    /// made and the next due at `next_at`.
    pub fn written(&self, id: i64, acked: bool, attempts: u32, next_at: i64) {
        let mut g = self.lock();
        if acked {
            g.items.retain(|(i, _)| i.id != id);
            return;
        }
        if let Some((item, sending)) = g.items.iter_mut().find(|(i, _)| i.id == id) {
            item.attempts = attempts;
            item.next_at = next_at;
            *sending = false;
        }
    }

    /// A late 0410 for item `id`: it leaves. `false` when it was no longer held.
    pub fn acked(&self, id: i64) -> bool {
        let mut g = self.lock();
        let before = g.items.len();
        g.items.retain(|(i, _)| i.id != id);
        g.items.len() < before
    }

    /// Take every item not being written, for the store; give back with `restore` those it
    /// did not take.
    pub fn take_idle(&self) -> Vec<HeldItem> {
        let mut g = self.lock();
        let (idle, busy): (Vec<_>, Vec<_>) = std::mem::take(&mut g.items).into_iter().partition(|(_, s)| !*s);
        g.items = busy;
        idle.into_iter().map(|(i, _)| i).collect()
    }

    /// Hold again items `take_idle` gave out (ahead of those held since: they are older).
    pub fn restore(&self, items: Vec<HeldItem>) {
        let mut g = self.lock();
        let newer = std::mem::take(&mut g.items);
        g.items = items.into_iter().map(|i| (i, false)).chain(newer).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev() -> Message {
        Message::new(crate::iso::spec::shipped("iso87ascii").unwrap(), "0400").unwrap()
    }

    #[test]
    fn one_per_original_sent_until_acknowledged_and_moved_when_idle() {
        let h = Held::default();
        assert!(h.hold("A", rev(), 100));
        assert!(!h.hold("A", rev(), 100), "one reversal per field 90");
        assert!(h.hold("B", rev(), 200));
        assert_eq!(h.len(), 2);
        let due = h.take_due(150, 10);
        assert_eq!(due.iter().map(|i| i.field90.as_str()).collect::<Vec<_>>(), ["A"]);
        assert!(due[0].id < 0);
        assert!(h.take_due(150, 10).is_empty(), "an item being written is not given twice");
        // While A is written, only B can move to the store.
        let idle = h.take_idle();
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].field90, "B");
        h.restore(idle);
        h.written(due[0].id, false, 1, 1_000);
        let early = h.take_due(999, 10);
        assert_eq!(
            early.iter().map(|i| i.field90.as_str()).collect::<Vec<_>>(),
            ["B"],
            "A waits for its backoff"
        );
        let again = h.take_due(1_000, 10);
        assert_eq!(again.len(), 1);
        let a = &again[0];
        assert_eq!((a.field90.as_str(), a.attempts), ("A", 1), "the next write of A is a repeat");
        h.written(a.id, true, 2, 2_000);
        assert!(!h.contains("A"));
        let b = &early[0];
        assert!(h.acked(b.id), "a late 0410 acknowledges");
        assert!(!h.acked(b.id));
        assert!(h.is_empty());
    }
}
