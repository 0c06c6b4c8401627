//! The lock-free half of the session table: a fixed array of slots, one waiting request
//! each, indexed by the switch STAN (`stan & mask`). Each slot has one atomic word
//! holding its state, the STAN it serves and a generation:
//!
//! ```text
//!  63                         22 21              2 1  0
//! +-----------------------------+-----------------+----+
//! |  generation (+1 per insert) |  STAN (20 bits) |state|   free / reserved / waiting / taken
//! +-----------------------------+-----------------+----+
//!
//!   free --insert CAS--> reserved --entry stored--> waiting --reply | deadline | link lost CAS--> taken --entry moved out--> free
//! ```
//!
//! Whoever wins a CAS owns the slot until it publishes the next state: the inserter from
//! `free` to `waiting`, the taker (a reply, the request's own deadline, or the loss of its
//! link) from `taken` to `free`. So an entry leaves exactly once: only one CAS from
//! `waiting` can succeed. A reply matches only the STAN in the word (so a late reply to
//! a slot reused by another STAN is dropped), on the link and with the other key fields
//! (a 64-bit hash, `tag`) read between the load and the CAS; the generation makes that
//! read and a deadline's take ABA-free: a ticket names the generation it was given and
//! never takes a newer request's entry.
//!
//! The entry itself (the reply's `oneshot::Sender` and the request's details) sits in a
//! per-slot `std::sync::Mutex<Option<T>>` that only the owner of the slot's state touches:
//! it is uncontended by construction, a hand-over cell rather than a lock (taking it is one
//! uncontended CAS and a store), and `forbid(unsafe_code)` rules out an `UnsafeCell`. It is
//! taken with `try_lock`: a failure would be a broken invariant, is counted in
//! `contended()`, and falls back to waiting so nothing is lost; the tests assert the count
//! stays 0. Crates such as `arc-swap` or `crossbeam`'s `AtomicCell` were not needed: the
//! first allocates an `Arc` per request, the second falls back to a global lock table for a
//! value this size. Each operation is a small state machine of one shared access per
//! `step`, so that the model test (`slots_model.rs`) can interleave them exactly as the
//! table runs them. No lock is held across `.await` (nothing here is async).
//! May import: nothing.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

pub(crate) const FREE: u64 = 0;
pub(crate) const RESERVED: u64 = 1;
pub(crate) const WAITING: u64 = 2;
pub(crate) const TAKEN: u64 = 3;
const STATE: u64 = 3;
const STAN_SHIFT: u32 = 2;
const STAN_MASK: u64 = (1 << 20) - 1;
const GEN_SHIFT: u32 = 22;
/// The largest STAN a slot word can hold (field 11 has six digits).
pub const MAX_STAN: u32 = STAN_MASK as u32;

fn pack(state: u64, stan: u32, generation: u64) -> u64 {
    state | ((u64::from(stan) & STAN_MASK) << STAN_SHIFT) | (generation << GEN_SHIFT)
}

pub(crate) fn state_of(word: u64) -> u64 {
    word & STATE
}

fn stan_of(word: u64) -> u32 {
    ((word >> STAN_SHIFT) & STAN_MASK) as u32
}

fn generation_of(word: u64) -> u64 {
    word >> GEN_SHIFT
}

/// Times the hand-over cell was found held (never, while the invariants hold).
static CONTENDED: AtomicU64 = AtomicU64::new(0);

/// How often an owner found its slot's cell held by someone else: 0 unless a bug.
#[cfg(test)]
pub fn contended() -> u64 {
    CONTENDED.load(Ordering::Relaxed)
}

/// One request's place. Aligned so that neighbours (consecutive STANs, inserted and taken
/// on different cores at once) never share a cache line.
#[derive(Debug)]
#[repr(align(64))]
pub struct Slot<T> {
    word: AtomicU64,
    /// The link the request was written on; written while reserved.
    link: AtomicU32,
    /// A hash of the key's fields other than 11 (0 when there are none); written while reserved.
    tag: AtomicU64,
    cell: Mutex<Option<T>>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            word: AtomicU64::new(FREE),
            link: AtomicU32::new(0),
            tag: AtomicU64::new(0),
            cell: Mutex::new(None),
        }
    }
}

impl<T> Slot<T> {
    fn cell(&self) -> MutexGuard<'_, Option<T>> {
        match self.cell.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                CONTENDED.fetch_add(1, Ordering::Relaxed);
                tracing::error!("session slot cell contended: an ownership invariant is broken");
                debug_assert!(false, "session slot cell contended: an ownership invariant is broken");
                self.cell.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
            }
        }
    }

    /// The slot's word (the model test reads the state).
    #[cfg(test)]
    pub(crate) fn word(&self) -> u64 {
        self.word.load(Ordering::Acquire)
    }
}

/// What the waiting request keeps to take its own entry at its deadline: the slot and the
/// word it published (state, STAN, generation). The same idea as `session::Ticket` one
/// layer down: the session table's ticket is this one plus the request's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    index: u32,
    word: u64,
}

/// A step's result: more steps to run, or the operation's result.
#[derive(Debug)]
pub enum Step<R> {
    More,
    Done(R),
}

/// Insert: free -> reserved -> (link, tag, entry stored) -> waiting.
#[derive(Debug)]
pub struct Insert<T> {
    stage: u8,
    index: u32,
    stan: u32,
    link: u32,
    tag: u64,
    seen: u64,
    entry: Option<T>,
}

impl<T> Insert<T> {
    pub fn new(index: u32, stan: u32, link: u32, tag: u64, entry: T) -> Insert<T> {
        Insert { stage: 0, index, stan, link, tag, seen: 0, entry: Some(entry) }
    }

    fn refuse(&mut self) -> Step<Result<Ticket, T>> {
        match self.entry.take() {
            Some(e) => Step::Done(Err(e)),
            // Unreachable: the entry is only moved out once, when the operation ends.
            None => Step::More,
        }
    }

    pub fn step(&mut self, slot: &Slot<T>) -> Step<Result<Ticket, T>> {
        match self.stage {
            0 => {
                self.seen = slot.word.load(Ordering::Relaxed);
                if state_of(self.seen) != FREE || self.stan > MAX_STAN {
                    return self.refuse();
                }
            }
            1 => {
                let reserved = pack(RESERVED, self.stan, generation_of(self.seen).wrapping_add(1));
                if slot
                    .word
                    .compare_exchange(self.seen, reserved, Ordering::Acquire, Ordering::Relaxed)
                    .is_err()
                {
                    return self.refuse();
                }
                self.seen = reserved;
            }
            2 => {
                slot.link.store(self.link, Ordering::Relaxed);
                slot.tag.store(self.tag, Ordering::Relaxed);
            }
            3 => *slot.cell() = self.entry.take(),
            _ => {
                let waiting = (self.seen & !STATE) | WAITING;
                // Release: a taker that sees `waiting` sees the link, tag and entry.
                slot.word.store(waiting, Ordering::Release);
                return Step::Done(Ok(Ticket { index: self.index, word: waiting }));
            }
        }
        self.stage += 1;
        Step::More
    }
}

/// Which waiting entry a take wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A reply: the STAN, link and tag must all match.
    Reply { stan: u32, link: u32, tag: u64 },
    /// The request's own (deadline, failed write): exactly the generation it was given.
    Own(Ticket),
    /// Whatever waits on a lost link.
    Link(u32),
}

/// Take: (load, check) -> waiting -CAS-> taken -> entry moved out -> free.
#[derive(Debug)]
pub struct Take<T> {
    stage: u8,
    want: Want,
    seen: u64,
    entry: Option<T>,
}

impl<T> Take<T> {
    pub fn new(want: Want) -> Take<T> {
        match want {
            // The ticket names the word to replace: no load needed.
            Want::Own(t) => Take { stage: 2, want, seen: t.word, entry: None },
            _ => Take { stage: 0, want, seen: 0, entry: None },
        }
    }

    pub fn step(&mut self, slot: &Slot<T>) -> Step<Option<T>> {
        match self.stage {
            0 => {
                self.seen = slot.word.load(Ordering::Acquire);
                let stan_ok = match self.want {
                    Want::Reply { stan, .. } => stan_of(self.seen) == stan && stan <= MAX_STAN,
                    _ => true,
                };
                if state_of(self.seen) != WAITING || !stan_ok {
                    return Step::Done(None);
                }
            }
            1 => {
                // Read after the word: a value written for a newer generation makes the CAS
                // below fail, so a match here belongs to the word seen.
                let ok = match self.want {
                    Want::Reply { link, tag, .. } => {
                        slot.link.load(Ordering::Relaxed) == link && slot.tag.load(Ordering::Relaxed) == tag
                    }
                    Want::Link(link) => slot.link.load(Ordering::Relaxed) == link,
                    Want::Own(_) => true,
                };
                if !ok {
                    return Step::Done(None);
                }
            }
            2 => {
                let taken = (self.seen & !STATE) | TAKEN;
                if slot.word.compare_exchange(self.seen, taken, Ordering::AcqRel, Ordering::Relaxed).is_err()
                {
                    return Step::Done(None);
                }
                self.seen = taken;
            }
            3 => self.entry = slot.cell().take(),
            _ => {
                slot.word.store(self.seen & !STATE, Ordering::Release);
                return Step::Done(self.entry.take());
            }
        }
        self.stage += 1;
        Step::More
    }
}

/// A fixed, power-of-two array of slots.
#[derive(Debug)]
pub struct Slots<T> {
    slots: Box<[Slot<T>]>,
    mask: u32,
}

impl<T> Slots<T> {
    /// At least `n` slots (rounded up to a power of two, at most 2^20).
    pub fn new(n: usize) -> Slots<T> {
        let n = n.clamp(1, 1 << 20).next_power_of_two();
        let slots = (0..n).map(|_| Slot::default()).collect::<Vec<_>>().into_boxed_slice();
        Slots { slots, mask: (n - 1) as u32 }
    }

    fn index(&self, stan: u32) -> u32 {
        stan & self.mask
    }

    fn slot(&self, index: u32) -> Option<&Slot<T>> {
        self.slots.get(index as usize)
    }

    /// Whether `stan`'s slot is taken by another request (a hint for the STAN allocator:
    /// `insert` decides).
    pub fn busy(&self, stan: u32) -> bool {
        self.slot(self.index(stan)).is_some_and(|s| state_of(s.word.load(Ordering::Relaxed)) != FREE)
    }

    pub fn insert(&self, stan: u32, link: u32, tag: u64, entry: T) -> Result<Ticket, T> {
        let index = self.index(stan);
        let Some(slot) = self.slot(index) else { return Err(entry) };
        let mut op = Insert::new(index, stan, link, tag, entry);
        loop {
            if let Step::Done(r) = op.step(slot) {
                return r;
            }
        }
    }

    fn run(&self, index: u32, want: Want) -> Option<T> {
        let slot = self.slot(index)?;
        let mut op = Take::new(want);
        loop {
            if let Step::Done(r) = op.step(slot) {
                return r;
            }
        }
    }

    /// The entry a reply with `stan` on `link` (other key fields hashed to `tag`) matches.
    pub fn take_reply(&self, stan: u32, link: u32, tag: u64) -> Option<T> {
        self.run(self.index(stan), Want::Reply { stan, link, tag })
    }

    /// The ticket holder's own entry, if it still waits.
    pub fn take(&self, ticket: Ticket) -> Option<T> {
        self.run(ticket.index, Want::Own(ticket))
    }

    /// Take every entry waiting on `link`, handing each to `each`; returns how many.
    pub fn purge_link(&self, link: u32, mut each: impl FnMut(T)) -> usize {
        let mut n = 0;
        for index in 0..=self.mask {
            if let Some(e) = self.run(index, Want::Link(link)) {
                n += 1;
                each(e);
            }
        }
        n
    }

    /// Whether an entry for `stan` on `link` waits (tests and diagnostics).
    pub fn contains(&self, stan: u32, link: u32) -> bool {
        self.slot(self.index(stan)).is_some_and(|s| {
            let w = s.word.load(Ordering::Acquire);
            state_of(w) == WAITING && stan_of(w) == stan && s.link.load(Ordering::Relaxed) == link
        })
    }

    /// Entries not free (a scan: for shutdown logs and tests, not the request path).
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| state_of(s.word.load(Ordering::Relaxed)) != FREE).count()
    }
}
