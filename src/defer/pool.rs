//! Recycled chain cells: a thread-local free list of the memory behind `Rc<Chain<T>>`.
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

use std::cell::RefCell;
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

struct Class {
    cells: Vec<*const ()>,
    free: Option<Free>,
}

struct Pool {
    classes: [Class; CLASSES],
}

impl Drop for Pool {
    fn drop(&mut self) {
        for class in &mut self.classes {
            if let Some(free) = class.free {
                for p in class.cells.drain(..) {
                    // SAFETY: every cell of the class was put here by `recycle` with this
                    // class's layout, and is dropped in place already.
                    unsafe { free(p) };
                }
            }
        }
    }
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            classes: [const {
                Class {
                    cells: Vec::new(),
                    free: None,
                }
            }; CLASSES],
        })
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

/// Puts `value` in a recycled cell if one of its layout is free, else in a new one.
#[inline(always)]
pub(crate) fn rc_new<V>(value: V) -> Rc<V> {
    if let Some(class) = const { class_of::<V>() } {
        let cell = POOL
            .try_with(|p| p.borrow_mut().classes[class].cells.pop())
            .ok()
            .flatten();
        if let Some(p) = cell {
            let p = p as *mut V;
            // SAFETY: `p` is the value slot of an `Rc` allocation of `V`'s size and alignment
            // with a strong count of one and no weak handles (see `recycle`), whose value was
            // dropped; writing a new one there and taking the `Rc` back is what
            // `Rc::from_raw` allows for a pointer from an `Rc` of the same layout.
            unsafe {
                ptr::write(p, value);
                return Rc::from_raw(p);
            }
        }
    }
    Rc::new(value)
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
    // If the drop panics the cell leaks; the strong count of one keeps it from being freed.
    // A value whose drop would do nothing is simply forgotten.
    unsafe {
        if (*p).needs_drop() {
            ptr::drop_in_place(p);
        }
    }
    let kept = POOL
        .try_with(|pool| {
            let mut pool = pool.borrow_mut();
            let c = &mut pool.classes[class];
            if c.cells.len() >= KEEP {
                return false;
            }
            c.free = Some(free::<V>);
            c.cells.push(p as *const ());
            true
        })
        .unwrap_or(false);
    if !kept {
        // SAFETY: as `free` asks: from `Rc::<V>::into_raw`, unique, value dropped.
        unsafe { free::<V>(p as *const ()) };
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
        let a = rc_new(Noisy(&drops, [1, 2, 3]));
        assert_eq!(a.1, [1, 2, 3]);
        let addr = Rc::as_ptr(&a) as usize;
        recycle(a);
        assert_eq!(drops.get(), 1);
        // Same layout, other type: the same memory comes back.
        let b = rc_new([7u64; 4]);
        assert_eq!(Rc::as_ptr(&b) as usize, addr);
        assert_eq!(*b, [7; 4]);
        recycle(b);
    }

    #[test]
    fn shared_cells_are_not_recycled() {
        let drops = Cell::new(0);
        let a = rc_new(Noisy(&drops, [0; 3]));
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
        let cells: Vec<Rc<[u64; 6]>> = (0..KEEP as u64 * 2).map(|i| rc_new([i; 6])).collect();
        for c in cells {
            recycle(c);
        }
        let class = class_of::<[u64; 6]>().unwrap();
        POOL.with(|p| assert_eq!(p.borrow().classes[class].cells.len(), KEEP));
    }

    #[test]
    fn odd_layouts_are_not_pooled() {
        assert_eq!(class_of::<()>(), None);
        assert_eq!(class_of::<[u8; 24]>(), None);
        assert_eq!(class_of::<u128>(), None);
        assert_eq!(class_of::<[u64; 4096]>(), None);
        assert_eq!(class_of::<u64>(), Some(0));
        assert_eq!(class_of::<[u64; 2]>(), Some(1));
        let r = rc_new([0u8; 24]);
        recycle(r);
    }
}
