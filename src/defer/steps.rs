//! [`Steps`]: the queue of a chain's callbacks, with the first few kept inside the chain's own
//! allocation.
//!
//! Most chains hold a handful of callbacks. Keeping up to [`INLINE`] of them in a small ring
//! inside the `Deferred`'s cell saves the second allocation (and its free) that a `VecDeque`
//! would make for every chain; longer chains spill the rest into a `VecDeque`. Steps come out
//! in the order they went in: while anything waits in the spill, new steps go there too.

use std::collections::VecDeque;
use std::mem::MaybeUninit;

use super::callback::Callback;

/// How many steps live inside the chain before the queue spills to the heap. A power of two,
/// so that the ring's index arithmetic is a mask.
pub(crate) const INLINE: usize = 4;
const _: () = assert!(INLINE.is_power_of_two());

pub(crate) struct Steps<T: 'static> {
    /// Slots `head, head+1, …, head+len-1` (modulo [`INLINE`]) hold live steps; the others
    /// hold no step. An empty ring costs nothing to drop, which matters when a chain is
    /// created, run and dropped millions of times a second.
    ring: [MaybeUninit<Callback<T>>; INLINE],
    /// Index in `ring` of the oldest inline step. `u32` like `len`, so that no load of either
    /// is wider than the stores before it (that stalled store forwarding on every step).
    head: u32,
    /// Inline steps, from `head` on (wrapping).
    len: u32,
    /// Steps added while the ring was full or the spill not empty; all newer than the ring's.
    /// Boxed, so that the common chain pays one pointer for it, to build and to drop.
    #[allow(clippy::box_collection)]
    spill: Option<Box<VecDeque<Callback<T>>>>,
}

impl<T: 'static> Default for Steps<T> {
    #[inline(always)]
    fn default() -> Self {
        Steps {
            // Zeroed rather than left uninitialised: a new cell is built in place, and for
            // uninitialised slots the compiler copied stale stack bytes into it with wide loads
            // that waited on recent narrower stores; zeroing is a few stores and measured ~7%
            // faster per chain (`cargo bench --bench defer`).
            ring: [const { MaybeUninit::zeroed() }; INLINE],
            head: 0,
            len: 0,
            spill: None,
        }
    }
}

impl<T: 'static> Steps<T> {
    pub(crate) fn len(&self) -> usize {
        self.len as usize + self.spill.as_ref().map_or(0, |s| s.len())
    }

    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0 && self.spill_is_empty()
    }

    /// True if dropping the queue would do nothing: no steps and no spill allocated.
    #[inline(always)]
    pub(crate) fn is_bare(&self) -> bool {
        self.len == 0 && self.spill.is_none()
    }

    #[inline(always)]
    fn spill_is_empty(&self) -> bool {
        self.spill.as_ref().is_none_or(|s| s.is_empty())
    }

    #[inline(always)]
    pub(crate) fn push_back(&mut self, step: Callback<T>) {
        if (self.len as usize) < INLINE && self.spill_is_empty() {
            let i = (self.head as usize + self.len as usize) % INLINE;
            // Slot `i` is outside the live range, so it is uninitialised: writing does not
            // leak a step.
            self.ring[i].write(step);
            self.len += 1;
        } else {
            self.spill.get_or_insert_with(Box::default).push_back(step);
        }
    }

    #[inline(always)]
    pub(crate) fn pop_front(&mut self) -> Option<Callback<T>> {
        if self.len > 0 {
            // `head` is always below `INLINE`; the `%` only lets the compiler see it.
            let i = self.head as usize % INLINE;
            self.head = ((i + 1) % INLINE) as u32;
            self.len -= 1;
            // SAFETY: slot `i` was the oldest live slot; it has just left the live range, so
            // it is read exactly once and never dropped in place.
            Some(unsafe { self.ring[i].assume_init_read() })
        } else {
            self.spill.as_mut()?.pop_front()
        }
    }
}

impl<T: 'static> Steps<T> {
    /// Drops the live inline steps, oldest first. Out of line: most chains are dropped with
    /// none left, and then dropping the queue is one test. If one step's drop panics, a guard
    /// drops the rest while unwinding, as a `VecDeque` does.
    #[cold]
    #[inline(never)]
    fn drop_ring(&mut self) {
        struct Rest<'a, T: 'static>(&'a mut Steps<T>);
        impl<T: 'static> Drop for Rest<'_, T> {
            fn drop(&mut self) {
                while self.0.len > 0 {
                    drop(self.0.pop_front());
                }
            }
        }
        let rest = Rest(self);
        while rest.0.len > 0 {
            drop(rest.0.pop_front());
        }
    }
}

impl<T: 'static> Drop for Steps<T> {
    #[inline(always)]
    fn drop(&mut self) {
        // The spill drops itself.
        if self.len > 0 {
            self.drop_ring();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defer::deferred::Outcome;

    fn step(n: u32) -> Callback<u32> {
        Callback::new(move |_| Outcome::Value(Ok(n)))
    }

    fn call(s: Callback<u32>, n: u32) -> Outcome<u32> {
        s.call(Ok(n))
    }

    fn num(s: Callback<u32>) -> u32 {
        match call(s, 0) {
            Outcome::Value(Ok(n)) => n,
            _ => unreachable!(),
        }
    }

    /// Steps left in the queue are dropped with it, once each, wherever they live.
    #[test]
    fn leftover_steps_are_dropped_once() {
        use std::rc::Rc;
        let token = Rc::new(());
        for n in 0..(INLINE * 3) {
            for popped in 0..=n {
                let mut q: Steps<u32> = Steps::default();
                for _ in 0..n {
                    let t = token.clone();
                    q.push_back(Callback::new(move |_| {
                        drop(t);
                        Outcome::Taken
                    }));
                }
                for _ in 0..popped {
                    drop(q.pop_front());
                }
                assert_eq!(Rc::strong_count(&token), 1 + n - popped);
                drop(q);
                assert_eq!(Rc::strong_count(&token), 1);
            }
        }
    }

    /// Any interleaving of pushes and pops gives the steps back in the order they went in.
    #[test]
    fn fifo_across_ring_and_spill() {
        let mut q = Steps::default();
        let (mut next_in, mut next_out) = (0u32, 0u32);
        // A pattern that wraps the ring, fills it, spills, drains into the spill and refills.
        for round in 0..50u32 {
            for _ in 0..(round % 7) {
                q.push_back(step(next_in));
                next_in += 1;
            }
            for _ in 0..(round % 5) {
                match q.pop_front() {
                    Some(s) => {
                        assert_eq!(num(s), next_out);
                        next_out += 1;
                    }
                    None => assert_eq!(next_in, next_out),
                }
            }
            assert_eq!(q.len() as u32, next_in - next_out);
            assert_eq!(q.is_empty(), next_in == next_out);
        }
        while let Some(s) = q.pop_front() {
            assert_eq!(num(s), next_out);
            next_out += 1;
        }
        assert_eq!(next_out, next_in);
    }
}
