//! DeferredLock, DeferredSemaphore and DeferredQueue: FIFO waiters and cancellation.

use std::cell::RefCell;
use std::rc::Rc;

use crate::defer::{
    Deferred, DeferredLock, DeferredQueue, DeferredSemaphore, FailureKind, NoTokens, NotAcquired,
    QueueUnderflow,
};

#[test]
fn lock_waiters_get_it_in_order() {
    let lock = DeferredLock::new();
    let order = Rc::new(RefCell::new(Vec::new()));
    let first = lock.acquire();
    assert!(first.called() && lock.locked());
    for i in 0..3 {
        let o = order.clone();
        lock.acquire()
            .add_callback(move |()| o.borrow_mut().push(i));
    }
    for _ in 0..3 {
        lock.release().unwrap();
    }
    assert_eq!(*order.borrow(), [0, 1, 2]);
    assert!(lock.locked());
    lock.release().unwrap();
    assert!(!lock.locked());
    assert_eq!(lock.release(), Err(NotAcquired));
}

#[test]
fn a_cancelled_lock_waiter_leaves_the_line() {
    let lock = DeferredLock::new();
    let _held = lock.acquire();
    let waiter = lock.acquire();
    let next = lock.acquire();
    waiter.cancel();
    assert_eq!(
        waiter.take_result().unwrap().unwrap_err().kind(),
        FailureKind::Cancelled
    );
    lock.release().unwrap();
    assert!(next.called());
}

#[test]
fn lock_run_releases_after_a_deferred_result() {
    let lock = DeferredLock::new();
    let later = Deferred::<u8>::new();
    let l = later.clone();
    let d = lock.run(move || l);
    assert!(lock.locked());
    let queued = lock.run(|| Ok(2u8));
    assert!(!queued.called());
    later.callback(1).unwrap();
    assert_eq!(d.take_result().unwrap().unwrap(), 1);
    assert_eq!(queued.take_result().unwrap().unwrap(), 2);
    assert!(!lock.locked());
}

#[test]
fn semaphore_counts_tokens_and_serves_in_order() {
    assert_eq!(DeferredSemaphore::new(0).unwrap_err(), NoTokens);
    let sem = DeferredSemaphore::new(2).unwrap();
    let (a, b, c, d) = (sem.acquire(), sem.acquire(), sem.acquire(), sem.acquire());
    assert!(a.called() && b.called() && !c.called() && !d.called());
    assert_eq!(sem.tokens(), 0);
    c.cancel();
    sem.release().unwrap();
    assert!(d.called());
    sem.release().unwrap();
    sem.release().unwrap();
    assert_eq!(sem.tokens(), 2);
    assert_eq!(sem.release(), Err(NotAcquired));
    assert_eq!(sem.limit(), 2);
}

#[test]
fn semaphore_run_releases_on_failure() {
    let sem = DeferredSemaphore::new(1).unwrap();
    let d = sem.run(|| Err::<u8, _>(crate::Failure::msg("no")));
    assert!(d.take_result().unwrap().is_err());
    assert_eq!(sem.tokens(), 1);
}

#[test]
fn queue_hands_values_to_getters_in_order() {
    let q = DeferredQueue::new();
    let (g1, g2) = (q.get().unwrap(), q.get().unwrap());
    assert_eq!(q.waiting(), 2);
    q.put(1).unwrap();
    q.put(2).unwrap();
    q.put(3).unwrap();
    assert_eq!(g1.take_result().unwrap().unwrap(), 1);
    assert_eq!(g2.take_result().unwrap().unwrap(), 2);
    assert_eq!(q.len(), 1);
    assert_eq!(q.get().unwrap().take_result().unwrap().unwrap(), 3);
    assert!(q.is_empty());
}

#[test]
fn queue_limits_give_overflow_and_underflow() {
    let q = DeferredQueue::with_limits(Some(2), Some(1));
    let g = q.get().unwrap();
    assert_eq!(q.get().unwrap_err(), QueueUnderflow);
    q.put("a").unwrap();
    assert_eq!(g.take_result().unwrap().unwrap(), "a");
    q.put("b").unwrap();
    q.put("c").unwrap();
    assert_eq!(q.put("d").unwrap_err().0, "d");
}

#[test]
fn a_cancelled_getter_does_not_eat_a_value() {
    let q = DeferredQueue::new();
    let g1 = q.get().unwrap();
    let g2 = q.get().unwrap();
    g1.cancel();
    assert_eq!(q.waiting(), 1);
    q.put(5).unwrap();
    assert_eq!(g2.take_result().unwrap().unwrap(), 5);
    assert_eq!(
        g1.take_result().unwrap().unwrap_err().kind(),
        FailureKind::Cancelled
    );
}

#[test]
fn a_getter_fired_by_hand_is_skipped() {
    let q = DeferredQueue::new();
    let g1 = q.get().unwrap();
    let g2 = q.get().unwrap();
    g1.callback(0).unwrap();
    q.put(7).unwrap();
    assert_eq!(g2.take_result().unwrap().unwrap(), 7);
}
