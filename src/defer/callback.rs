//! [`Callback`]: one callback of a chain, with a small closure kept inline.
//!
//! Most callbacks capture nothing or one pointer-sized value (a number, an `Rc`, a handle).
//! A `Callback` keeps such a closure in its own pointer-sized slot, next to a pointer to the
//! functions that call and drop it, so adding it allocates nothing; a bigger closure is boxed
//! and the slot holds the box.

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

#[cfg(test)]
mod tests {
    use super::*;

    fn call(s: Callback<u32>, n: u32) -> Outcome<u32> {
        s.call(Ok(n))
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
}
