//! [`Steps`]: the queue of a chain's callbacks, with the first few kept inside the chain's own
//! allocation, and [`Callback`], one callback with a small closure kept inline.
//!
//! Most chains hold a handful of callbacks. Keeping up to [`INLINE`] of them in a small ring
//! inside the `Deferred`'s cell saves the second allocation (and its free) that a `VecDeque`
//! would make for every chain; longer chains spill the rest into a `VecDeque`. Steps come out
//! in the order they went in: while anything waits in the spill, new steps go there too.
//!
//! Most callbacks capture nothing or one pointer-sized value (a number, an `Rc`, a handle).
//! A [`Callback`] keeps such a closure in its own pointer-sized slot, next to a pointer to the
//! functions that call and drop it, so adding it allocates nothing; a bigger closure is boxed
//! and the slot holds the box.

use std::collections::VecDeque;
use std::mem::{self, ManuallyDrop, MaybeUninit};

use super::deferred::Outcome;
use super::failure::Failure;

/// One slot of closure storage: pointer-sized and pointer-aligned, and able to hold a pointer
/// with its provenance.
type Slot = MaybeUninit<*mut ()>;

/// How to call and drop the closure in a [`Callback`]'s slot.
struct CallbackVt<T: 'static> {
    /// Gets the slot by value (it is one register), so calling puts nothing on the stack.
    call: unsafe fn(Slot, Result<T, Failure>) -> Outcome<T>,
    drop: unsafe fn(*mut Slot),
}

/// A callback as stored in a chain: the result in, what the chain does next out.
pub(crate) struct Callback<T: 'static> {
    vt: &'static CallbackVt<T>,
    slot: Slot,
}

/// The functions for one closure type `F`, inline or boxed.
struct Vts<T, F>(std::marker::PhantomData<(T, F)>);

impl<T: 'static, F: FnOnce(Result<T, Failure>) -> Outcome<T> + 'static> Vts<T, F> {
    const FITS: bool = mem::size_of::<F>() <= mem::size_of::<Slot>()
        && mem::align_of::<F>() <= mem::align_of::<Slot>();

    const INLINE: &'static CallbackVt<T> = &CallbackVt {
        call: Self::call_inline,
        drop: Self::drop_inline,
    };

    const BOXED: &'static CallbackVt<T> = &CallbackVt {
        call: Self::call_boxed,
        drop: Self::drop_boxed,
    };

    /// # Safety
    /// `slot` holds a live `F`, written by [`Callback::new`]; it is moved out here.
    unsafe fn call_inline(slot: Slot, r: Result<T, Failure>) -> Outcome<T> {
        // SAFETY: as documented; `Callback::call` never uses the slot again.
        let f = unsafe { (&slot as *const Slot as *const F).read() };
        f(r)
    }

    /// # Safety
    /// As [`Self::call_inline`].
    unsafe fn drop_inline(slot: *mut Slot) {
        // SAFETY: as documented; `Callback`'s `Drop` never uses the slot again.
        unsafe { (slot as *mut F).drop_in_place() }
    }

    /// # Safety
    /// `slot` holds a pointer from `Box::<F>::into_raw`; the box is taken back here.
    unsafe fn call_boxed(slot: Slot, r: Result<T, Failure>) -> Outcome<T> {
        // SAFETY: as documented.
        let f = unsafe { Box::from_raw(slot.assume_init() as *mut F) };
        f(r)
    }

    /// # Safety
    /// As [`Self::call_boxed`].
    unsafe fn drop_boxed(slot: *mut Slot) {
        // SAFETY: as documented.
        drop(unsafe { Box::from_raw((*slot).assume_init() as *mut F) });
    }
}

#[cfg(test)]
impl<T: 'static, F: FnOnce(Result<T, Failure>) -> Outcome<T> + 'static> Vts<T, F> {
    fn fits_for(_: &F) -> bool {
        Self::FITS
    }
}

impl<T: 'static> Callback<T> {
    #[inline(always)]
    pub(crate) fn new<F: FnOnce(Result<T, Failure>) -> Outcome<T> + 'static>(f: F) -> Self {
        let mut slot = Slot::uninit();
        if Vts::<T, F>::FITS {
            // SAFETY: `F` fits the slot's size and alignment (checked just above).
            unsafe { (slot.as_mut_ptr() as *mut F).write(f) };
            Callback {
                vt: Vts::<T, F>::INLINE,
                slot,
            }
        } else {
            slot.write(Box::into_raw(Box::new(f)) as *mut ());
            Callback {
                vt: Vts::<T, F>::BOXED,
                slot,
            }
        }
    }

    /// Calls the closure, consuming it.
    #[inline(always)]
    pub(crate) fn call(self, r: Result<T, Failure>) -> Outcome<T> {
        let me = ManuallyDrop::new(self);
        // SAFETY: `vt` matches what `new` put in the slot; `me` is never dropped, so the
        // closure is consumed once, here.
        unsafe { (me.vt.call)(me.slot, r) }
    }
}

impl<T: 'static> Drop for Callback<T> {
    fn drop(&mut self) {
        // SAFETY: `vt` matches the slot, which still holds the closure (calling forgets `self`).
        unsafe { (self.vt.drop)(&mut self.slot) }
    }
}

/// How many steps live inside the chain before the queue spills to the heap. A power of two,
/// so that the ring's index arithmetic is a mask.
pub(crate) const INLINE: usize = 4;
const _: () = assert!(INLINE.is_power_of_two());

pub(crate) struct Steps<T: 'static> {
    /// Slots `head, head+1, …, head+len-1` (modulo [`INLINE`]) hold live steps; the others are
    /// uninitialised. Uninitialised slots cost nothing to make, and an empty ring nothing to
    /// drop, which matters when a chain is created, run and dropped millions of times a second.
    ring: [MaybeUninit<Callback<T>>; INLINE],
    /// Index in `ring` of the oldest inline step.
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
            ring: [const { MaybeUninit::uninit() }; INLINE],
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
    /// none left, and then dropping the queue is one test.
    #[cold]
    #[inline(never)]
    fn drop_ring(&mut self) {
        while self.len > 0 {
            drop(self.pop_front());
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

    /// Closures of every size are called once with the result and dropped once, called or
    /// not; small ones live in the slot, big ones in a box.
    #[test]
    fn callbacks_of_any_size_call_and_drop_once() {
        use std::rc::Rc;
        let token = Rc::new(());
        let small = {
            let t = token.clone();
            move |r: Result<u32, Failure>| {
                let _keep = &t;
                Outcome::Value(r.map(|n| n + 1))
            }
        };
        let big = {
            let t = token.clone();
            let pad = [7u32; 16];
            move |r: Result<u32, Failure>| {
                let _keep = &t;
                Outcome::Value(r.map(|n| n + pad[15]))
            }
        };
        assert!(Vts::<u32, _>::fits_for(&small));
        assert!(!Vts::<u32, _>::fits_for(&big));
        let (s2, b2) = (small.clone(), big.clone());
        assert_eq!(Rc::strong_count(&token), 5);
        assert!(matches!(
            call(Callback::new(small), 1),
            Outcome::Value(Ok(2))
        ));
        assert!(matches!(call(Callback::new(big), 1), Outcome::Value(Ok(8))));
        assert_eq!(Rc::strong_count(&token), 3);
        drop(Callback::new(s2));
        drop(Callback::new(b2));
        assert_eq!(Rc::strong_count(&token), 1);
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
