//! Recycled `Rc` cells: a thread-local free list of the memory behind Deferred chains
//! (`Rc<Chain<T>>`), spawned futures (`task/spawn.rs`) and timers (`reactor/timer.rs`).
//!
//! Most Deferreds live for a few microseconds: made, given callbacks, fired, read and dropped.
//! Going to the global allocator for each one cost more than running its four callbacks
//! (`benches/defer.rs`). So when the last handle of a Deferred goes, its cell is dropped in
//! place and its memory kept here, and the next Deferred whose cell has the same size and
//! alignment is written into it.
//!
//! The memory stays an `Rc` allocation throughout: a recycled cell keeps the strong count of
//! one it had when it was put back, so handing it out again is `ptr::write` plus
//! `Rc::from_raw`, which `Rc` allows for any type of the same size and alignment. Memory left
//! here when the thread ends, or beyond what one size class keeps, goes back to the allocator
//! through an `Rc<MaybeUninit<_>>` of the right layout.

use std::cell::Cell;
use std::mem::{self, MaybeUninit};
use std::ptr;
use std::rc::Rc;

/// One free list per size, in steps of the alignment recycled cells have.
const GRAIN: usize = 8;
/// Cells bigger than this are not kept.
const MAX_SIZE: usize = 512;
const CLASSES: usize = MAX_SIZE / GRAIN;
/// How many free cells one size class keeps; beyond this they go back to the allocator.
const KEEP: usize = 64;

/// Frees one cell of a class's layout (which cell's type does not matter: same layout).
type Free = unsafe fn(*const ());

/// The free cells of one layout, as a list linked through their first word.
struct Class {
    head: Cell<*mut Link>,
    len: Cell<usize>,
    free: Cell<Option<Free>>,
}

/// What a free cell holds: the next free cell.
struct Link {
    next: *mut Link,
}

struct Pool {
    classes: [Class; CLASSES],
}

impl Drop for Pool {
    fn drop(&mut self) {
        for class in &self.classes {
            let Some(free) = class.free.get() else {
                continue;
            };
            let mut p = class.head.replace(ptr::null_mut());
            while !p.is_null() {
                // SAFETY: every cell in the list was put there by `recycle`, with this class's
                // layout and its value dropped; the link is read before the cell is freed.
                unsafe {
                    let next = (*p).next;
                    free(p as *const ());
                    p = next;
                }
            }
            class.len.set(0);
        }
    }
}

// The pool is only touched by code that runs no user code while it does (a few loads and
// stores), so plain `Cell`s do and no borrow flag is needed.
thread_local! {
    static POOL: Pool = const {
        Pool {
            classes: [const {
                Class {
                    head: Cell::new(ptr::null_mut()),
                    len: Cell::new(0),
                    free: Cell::new(None),
                }
            }; CLASSES],
        }
    };
}

/// The size class of `V`, if cells of `V` are recycled at all: cells of one class must all
/// have one layout for `Rc::from_raw`, so one alignment (that of a pointer, which every chain
/// cell has) and exact sizes.
#[inline(always)]
const fn class_of<V>() -> Option<usize> {
    let size = mem::size_of::<V>();
    if size == 0 || size > MAX_SIZE || size % GRAIN != 0 || mem::align_of::<V>() != GRAIN {
        None
    } else {
        Some(size / GRAIN - 1)
    }
}

/// Gives the allocation of a dropped-in-place `V` back to the allocator.
///
/// # Safety
/// `p` came from `Rc::<V>::into_raw` of an `Rc` with a strong count of one and no weak
/// handles, and its value has been dropped.
unsafe fn free<V>(p: *const ()) {
    // SAFETY: `MaybeUninit<V>` has `V`'s layout and drops nothing of the value.
    drop(unsafe { Rc::from_raw(p as *const MaybeUninit<V>) });
}

/// Puts `make()` in a recycled cell if one of its layout is free, else in a new one. The value
/// is made once the cell is known, so that it can be written in place rather than built aside
/// and copied in. `make` only moves values into place; if it panicked the popped cell would
/// be lost to the pool (leaked, not freed twice).
#[inline(always)]
pub(crate) fn rc_new<V>(make: impl FnOnce() -> V) -> Rc<V> {
    if let Some(class) = const { class_of::<V>() } {
        let cell = POOL
            .try_with(|pool| {
                let c = &pool.classes[class];
                let p = c.head.get();
                if p.is_null() {
                    return None;
                }
                // SAFETY: a cell in the list holds its link (see `recycle`).
                c.head.set(unsafe { (*p).next });
                c.len.set(c.len.get() - 1);
                Some(p)
            })
            .ok()
            .flatten();
        if let Some(p) = cell {
            let p = p as *mut V;
            // SAFETY: `p` is the value slot of an `Rc` allocation of `V`'s size and alignment
            // with a strong count of one and no weak handles (see `recycle`), whose value was
            // dropped; writing a new one there and taking the `Rc` back is what
            // `Rc::from_raw` allows for a pointer from an `Rc` of the same layout.
            unsafe {
                ptr::write(p, make());
                return Rc::from_raw(p);
            }
        }
    }
    Rc::new(make())
}

/// Drops the value at `p` in place. If that panics, the rest of the value is still dropped by
/// the unwinding and the guard gives the memory back to the allocator, so nothing leaks.
///
/// # Safety
/// As [`free`]'s, except that the value is still live.
#[cold]
#[inline(never)]
unsafe fn drop_in_cell<V>(p: *mut V) {
    struct FreeOnUnwind<V>(*mut V, std::marker::PhantomData<V>);
    impl<V> Drop for FreeOnUnwind<V> {
        fn drop(&mut self) {
            // SAFETY: only reached while unwinding out of the drop below, after the value's
            // fields have all been dropped.
            unsafe { free::<V>(self.0 as *const ()) };
        }
    }
    let guard = FreeOnUnwind(p, std::marker::PhantomData);
    // SAFETY: as documented.
    unsafe { ptr::drop_in_place(p) };
    mem::forget(guard);
}

/// A value that can tell when dropping it would do nothing, so that recycling its cell can
/// skip the drop.
pub(crate) trait Recycle {
    /// False only if dropping `self` would run no code and free nothing.
    fn needs_drop(&mut self) -> bool;
}

/// Drops `rc`; if it was the last handle, the value is dropped and the cell kept for reuse.
#[inline]
pub(crate) fn recycle<V: Recycle>(rc: Rc<V>) {
    let Some(class) = (const { class_of::<V>() }) else {
        return drop(rc);
    };
    if Rc::strong_count(&rc) != 1 || Rc::weak_count(&rc) != 0 {
        return drop(rc);
    }
    let p = Rc::into_raw(rc) as *mut V;
    // SAFETY: the only handle was `rc`, now turned into `p`: nothing else reads the value.
    // A value whose drop would do nothing is simply forgotten.
    unsafe {
        if (*p).needs_drop() {
            drop_in_cell(p);
        }
    }
    let kept = POOL
        .try_with(|pool| {
            let c = &pool.classes[class];
            if c.len.get() >= KEEP {
                return false;
            }
            c.free.set(Some(free::<V>));
            let link = p as *mut Link;
            // SAFETY: the cell's value is dropped and a cell is at least a word, aligned for
            // one: its first word can hold the link.
            unsafe { link.write(Link { next: c.head.get() }) };
            c.head.set(link);
            c.len.set(c.len.get() + 1);
            true
        })
        .unwrap_or(false);
    if !kept {
        // SAFETY: as `free` asks: from `Rc::<V>::into_raw`, unique, value dropped.
        unsafe { free::<V>(p as *const ()) };
    }
}

/// A trait object in a recycled cell that can give the cell back: implemented with
/// `recycle(self)` by each concrete type, so that a handle to `dyn Trait` can recycle it.
pub(crate) trait Release {
    /// Drops this reference, giving the cell back to the pool if it was the last.
    fn release(self: Rc<Self>);
}

/// An `Rc` to a possibly unsized value whose last drop recycles its cell (see [`Release`]).
pub(crate) struct Pooled<T: ?Sized + Release>(mem::ManuallyDrop<Rc<T>>);

impl<T: ?Sized + Release> Pooled<T> {
    pub(crate) fn new(rc: Rc<T>) -> Self {
        Pooled(mem::ManuallyDrop::new(rc))
    }

    /// The value, if this is its only handle.
    pub(crate) fn get_mut(&mut self) -> Option<&mut T> {
        Rc::get_mut(&mut self.0)
    }
}

impl<T: ?Sized + Release> Clone for Pooled<T> {
    fn clone(&self) -> Self {
        Pooled::new(Rc::clone(&self.0))
    }
}

impl<T: ?Sized + Release> std::ops::Deref for Pooled<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized + Release> Drop for Pooled<T> {
    fn drop(&mut self) {
        // SAFETY: not used again.
        unsafe { mem::ManuallyDrop::take(&mut self.0) }.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Noisy<'a>(&'a Cell<u32>, [u64; 3]);

    impl Recycle for Noisy<'_> {
        fn needs_drop(&mut self) -> bool {
            true
        }
    }

    impl Recycle for [u64; 4] {
        fn needs_drop(&mut self) -> bool {
            false
        }
    }

    impl Recycle for [u64; 6] {
        fn needs_drop(&mut self) -> bool {
            false
        }
    }

    impl Recycle for [u8; 24] {
        fn needs_drop(&mut self) -> bool {
            false
        }
    }

    impl Drop for Noisy<'_> {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn a_recycled_cell_is_reused_and_its_value_dropped_once() {
        let drops = Cell::new(0);
        let a = rc_new(|| Noisy(&drops, [1, 2, 3]));
        assert_eq!(a.1, [1, 2, 3]);
        let addr = Rc::as_ptr(&a) as usize;
        recycle(a);
        assert_eq!(drops.get(), 1);
        // Same layout, other type: the same memory comes back.
        let b = rc_new(|| [7u64; 4]);
        assert_eq!(Rc::as_ptr(&b) as usize, addr);
        assert_eq!(*b, [7; 4]);
        recycle(b);
    }

    #[test]
    fn shared_cells_are_not_recycled() {
        let drops = Cell::new(0);
        let a = rc_new(|| Noisy(&drops, [0; 3]));
        let a2 = a.clone();
        recycle(a);
        assert_eq!(drops.get(), 0);
        assert_eq!(Rc::strong_count(&a2), 1);
        let w = Rc::downgrade(&a2);
        recycle(a2);
        assert_eq!(drops.get(), 1);
        assert!(w.upgrade().is_none());
    }

    #[test]
    fn classes_keep_a_bounded_number_of_cells() {
        let cells: Vec<Rc<[u64; 6]>> = (0..KEEP as u64 * 2)
            .map(|i| rc_new(move || [i; 6]))
            .collect();
        for c in cells {
            recycle(c);
        }
        let class = class_of::<[u64; 6]>().unwrap();
        POOL.with(|p| assert_eq!(p.classes[class].len.get(), KEEP));
    }

    #[test]
    fn odd_layouts_are_not_pooled() {
        assert_eq!(class_of::<()>(), None);
        assert_eq!(class_of::<[u8; 24]>(), None);
        assert_eq!(class_of::<u128>(), None);
        assert_eq!(class_of::<[u64; 4096]>(), None);
        assert_eq!(class_of::<u64>(), Some(0));
        assert_eq!(class_of::<[u64; 2]>(), Some(1));
        let r = rc_new(|| [0u8; 24]);
        recycle(r);
    }
}
