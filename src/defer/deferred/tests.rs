//! The Deferred rules of the reference (§2.12), one test or more per rule.

use std::cell::RefCell;
use std::rc::Rc;

use crate::defer::test_log::capture;
use crate::defer::{AlreadyCalled, Deferred, Failure, FailureKind, fail, succeed};

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Rc::default()
}

fn push(log: &Log, s: impl Into<String>) {
    log.borrow_mut().push(s.into());
}

fn taken<T: 'static>(d: &Deferred<T>) -> Result<T, Failure> {
    d.take_result().expect("the Deferred has a result")
}

#[test]
fn firing_twice_is_an_error_in_all_four_combinations() {
    let d = Deferred::<u8>::new();
    d.callback(1).unwrap();
    assert_eq!(d.callback(2), Err(AlreadyCalled));
    assert_eq!(d.errback(Failure::msg("x")), Err(AlreadyCalled));
    let e = Deferred::<u8>::new();
    e.errback(Failure::msg("first")).unwrap();
    assert_eq!(e.callback(2), Err(AlreadyCalled));
    assert_eq!(e.errback(Failure::msg("x")), Err(AlreadyCalled));
    assert_eq!(taken(&d).unwrap(), 1);
    assert_eq!(taken(&e).unwrap_err().to_string(), "first");
}

#[test]
fn each_result_feeds_the_next_and_errors_switch_paths() {
    let seen = log();
    let d = Deferred::<i32>::new();
    let (s1, s2, s3, s4) = (seen.clone(), seen.clone(), seen.clone(), seen.clone());
    d.add_callback(|n| n + 1)
        .add_callback(move |n| {
            push(&s1, format!("cb {n}"));
            Err::<i32, _>(Failure::msg("bad"))
        })
        .add_callback(move |n| {
            push(&s2, "skipped");
            n
        })
        .add_errback(move |f| {
            push(&s3, format!("eb {f}"));
            Ok(10)
        })
        .add_errback(move |_| {
            push(&s4, "not called");
            Ok(0)
        })
        .add_callback(|n| n * 2);
    d.callback(1).unwrap();
    assert_eq!(*seen.borrow(), ["cb 2", "eb bad"]);
    assert_eq!(taken(&d).unwrap(), 20);
}

#[test]
fn add_callbacks_pairs_do_not_see_each_others_failure() {
    let d = Deferred::<u8>::new();
    let called = log();
    let c = called.clone();
    d.add_callbacks(
        |_| Err::<u8, _>(Failure::msg("from callback")),
        move |_| {
            push(&c, "errback");
            Ok(0)
        },
    );
    d.callback(1).unwrap();
    assert!(called.borrow().is_empty());
    assert_eq!(taken(&d).unwrap_err().to_string(), "from callback");
}

#[test]
fn add_both_sees_both_paths() {
    let d = fail::<u8>(Failure::msg("x"));
    d.add_both(|r| if r.is_err() { 1 } else { 2 });
    assert_eq!(taken(&d).unwrap(), 1);
}

#[test]
fn callbacks_added_after_the_result_run_at_once() {
    let d = succeed(5);
    let seen = log();
    let s = seen.clone();
    d.add_callback(move |n| {
        push(&s, "ran");
        n
    });
    assert_eq!(*seen.borrow(), ["ran"]);
}

#[test]
fn returning_a_deferred_pauses_the_chain_and_consumes_the_inner_result() {
    let inner = Deferred::<i32>::new();
    let outer = Deferred::<i32>::new();
    let i = inner.clone();
    let seen = log();
    let s = seen.clone();
    outer.add_callback(move |_| i).add_callback(move |n| {
        push(&s, format!("outer {n}"));
        n + 1
    });
    outer.callback(0).unwrap();
    assert!(seen.borrow().is_empty());
    assert!(outer.called() && !outer.has_result());
    inner.callback(41).unwrap();
    assert_eq!(*seen.borrow(), ["outer 41"]);
    assert!(inner.is_consumed());
    assert_eq!(taken(&outer).unwrap(), 42);
    // A callback added to the consumed inner gets a Consumed failure, not the value twice.
    inner.add_errback(|f| {
        assert_eq!(f.kind(), FailureKind::Consumed);
        Ok(0)
    });
}

#[test]
fn returning_a_fired_deferred_continues_at_once() {
    let outer = succeed(1);
    let inner = succeed(2);
    let i = inner.clone();
    outer.add_callback(move |_| i);
    assert_eq!(taken(&outer).unwrap(), 2);
    assert!(inner.is_consumed());
}

#[test]
fn returning_a_paused_deferred_keeps_the_outer_waiting() {
    let inner = succeed(7);
    inner.pause();
    let outer = succeed(0);
    let i = inner.clone();
    outer.add_callback(move |_| i);
    assert!(!outer.has_result());
    inner.unpause();
    assert_eq!(taken(&outer).unwrap(), 7);
}

#[test]
fn pause_and_unpause_are_counted() {
    let d = Deferred::<u8>::new();
    let seen = log();
    let s = seen.clone();
    d.add_callback(move |n| {
        push(&s, "ran");
        n
    });
    d.pause();
    d.pause();
    d.callback(1).unwrap();
    d.unpause();
    assert!(seen.borrow().is_empty() && d.is_paused());
    d.unpause();
    assert_eq!(*seen.borrow(), ["ran"]);
    d.unpause(); // extra: ignored
    assert!(!d.is_paused());
}

#[test]
fn a_callback_can_pause_its_own_deferred() {
    let d = Deferred::<u8>::new();
    let d2 = d.clone();
    let seen = log();
    let s = seen.clone();
    d.add_callback(move |n| {
        d2.pause();
        n
    })
    .add_callback(move |n| {
        push(&s, "second");
        n
    });
    d.callback(1).unwrap();
    assert!(seen.borrow().is_empty());
    d.unpause();
    assert_eq!(*seen.borrow(), ["second"]);
}

#[test]
fn cancel_without_canceller_fails_and_swallows_one_fire() {
    let d = Deferred::<u8>::new();
    d.cancel();
    assert!(d.called());
    assert_eq!(d.callback(1), Ok(()));
    assert_eq!(d.errback(Failure::msg("late")), Err(AlreadyCalled));
    let f = taken(&d).unwrap_err();
    assert_eq!(f.kind(), FailureKind::Cancelled);
    assert_eq!(f.location().file(), file!());
}

#[test]
fn cancel_with_a_canceller_that_does_not_fire() {
    let calls = Rc::new(RefCell::new(0));
    let c = calls.clone();
    let d = Deferred::<u8>::with_canceller(move |_| *c.borrow_mut() += 1);
    d.cancel();
    d.cancel();
    assert_eq!(*calls.borrow(), 1, "the canceller runs at most once");
    // No swallowing when there was a canceller.
    assert_eq!(d.callback(1), Err(AlreadyCalled));
    assert_eq!(taken(&d).unwrap_err().kind(), FailureKind::Cancelled);
}

#[test]
fn a_canceller_that_calls_back_makes_the_deferred_succeed() {
    let d = Deferred::with_canceller(|d: &Deferred<&str>| d.callback("x").unwrap());
    d.cancel();
    assert_eq!(taken(&d).unwrap(), "x");
}

#[test]
fn a_panicking_canceller_is_logged_and_still_cancels() {
    let d = Deferred::<u8>::with_canceller(|_| panic!("canceller broke"));
    let ((), logs) = capture(|| d.cancel());
    assert_eq!(logs.count("canceller broke"), 1);
    assert_eq!(taken(&d).unwrap_err().kind(), FailureKind::Cancelled);
}

#[test]
fn cancel_after_firing_is_a_no_op() {
    let d = succeed(1);
    d.cancel();
    assert_eq!(taken(&d).unwrap(), 1);
}

#[test]
fn cancel_while_waiting_is_forwarded_to_the_inner_deferred() {
    let inner = Deferred::<u8>::new();
    let outer = succeed(0);
    let i = inner.clone();
    outer.add_callback(move |_| i);
    outer.cancel();
    assert!(inner.is_consumed());
    assert_eq!(taken(&outer).unwrap_err().kind(), FailureKind::Cancelled);
}

#[test]
fn callbacks_added_while_running_go_to_the_end() {
    let seen = log();
    let d = Deferred::<u8>::new();
    let (d2, s1) = (d.clone(), seen.clone());
    d.add_callback(move |n| {
        push(&s1, "1");
        let s3 = s1.clone();
        d2.add_callback(move |n| {
            push(&s3, "3");
            n
        });
        n
    });
    let s2 = seen.clone();
    d.add_callback(move |n| {
        push(&s2, "2");
        n
    });
    d.callback(0).unwrap();
    assert_eq!(*seen.borrow(), ["1", "2", "3"]);
}

#[test]
fn a_callback_may_fire_or_cancel_its_own_deferred_without_panicking() {
    let d = Deferred::<u8>::new();
    let d2 = d.clone();
    d.add_callback(move |n| {
        assert_eq!(d2.callback(9), Err(AlreadyCalled));
        d2.cancel();
        n
    });
    d.callback(1).unwrap();
    assert_eq!(taken(&d).unwrap(), 1);
}

#[test]
fn a_panicking_callback_becomes_a_failure() {
    let d = succeed(1u8);
    d.add_callback(|_| -> u8 { panic!("oops") });
    let f = taken(&d).unwrap_err();
    assert_eq!(f.kind(), FailureKind::Panicked);
    assert!(f.to_string().contains("oops"));
}

#[test]
fn returning_its_own_deferred_fails_instead_of_hanging() {
    let d = Deferred::<u8>::new();
    let d2 = d.clone();
    d.add_callback(move |_| d2);
    d.callback(1).unwrap();
    assert!(taken(&d).is_err());
}

/// Twisted's test_boundedStackDepth shape, a million deep: each Deferred's callback returns the
/// next one, and only the last one fires the whole stack of waiters.
#[test]
fn a_million_nested_deferreds_do_not_overflow_the_stack() {
    const N: usize = 1_000_000;
    let top = Deferred::<u32>::new();
    let inners: Vec<Deferred<u32>> = (0..N).map(|_| Deferred::new()).collect();
    let last = Deferred::<u32>::new();
    let first = inners[N - 1].clone();
    top.add_callback(move |_| first);
    for k in (1..N).rev() {
        let next = inners[k - 1].clone();
        inners[k].add_callback(move |_| next);
    }
    let l = last.clone();
    inners[0].add_callback(move |_| l);
    top.callback(0).unwrap();
    for d in inners.iter().rev() {
        d.callback(0).unwrap();
    }
    assert!(!top.has_result());
    last.callback(7).unwrap();
    assert_eq!(taken(&top).unwrap(), 7);
}

#[test]
fn a_million_chained_transforms_do_not_overflow_the_stack() {
    let start = Deferred::<u64>::new();
    let mut d = start.clone().map(|n| n + 1);
    for _ in 1..1_000_000 {
        d = d.and_then(|n| Ok(n + 1));
    }
    start.callback(0).unwrap();
    assert_eq!(taken(&d).unwrap(), 1_000_000);
}

#[test]
fn dropping_a_million_unfired_chained_deferreds_does_not_overflow_the_stack() {
    let start = Deferred::<u64>::new();
    let mut d = start.clone().map(|n| n + 1);
    for _ in 1..1_000_000 {
        d = d.map(|n| n + 1);
    }
    drop(d);
    drop(start);
}

#[test]
fn unhandled_failure_is_logged_once_at_the_drop() {
    let d = Deferred::<u8>::new();
    let d2 = d.clone();
    d.errback(Failure::msg("lost error")).unwrap();
    let ((), first) = capture(|| drop(d));
    assert!(first.lines().is_empty());
    let ((), last) = capture(|| drop(d2));
    assert_eq!(last.count("Unhandled error in Deferred: lost error"), 1);
    assert_eq!(last.lines().len(), 1);
}

#[test]
fn handled_or_chained_failures_are_not_logged() {
    let ((), logs) = capture(|| {
        let d = fail::<u8>(Failure::msg("handled"));
        d.add_errback(|_| Ok(1));
        drop(d);
        let target = Deferred::new();
        fail::<u8>(Failure::msg("chained")).chain_deferred(&target);
        target.add_errback(|_| Ok(0));
        drop(target);
        let mapped = fail::<u8>(Failure::msg("mapped")).map(|n| n + 1);
        mapped.on_result(|_| ());
        let outer = succeed(0u8);
        outer.add_callback(|_| fail::<u8>(Failure::msg("waited")));
        outer.add_errback(|_| Ok(0));
    });
    assert!(logs.lines().is_empty(), "{:?}", logs.lines());
}

#[test]
fn a_failure_passed_on_is_logged_where_it_ends() {
    let ((), logs) = capture(|| {
        let outer = succeed(0u8);
        let inner = fail::<u8>(Failure::msg("ends in outer"));
        outer.add_callback(move |_| inner);
    });
    assert_eq!(logs.count("ends in outer"), 1);
}

#[test]
fn transforms_change_the_type_and_pass_failures_through() {
    let d = succeed(2).map(|n| n * 10).and_then(|n| Ok(format!("{n}")));
    assert_eq!(taken(&d).unwrap(), "20");
    let e = fail::<u8>(Failure::msg("x"))
        .map(|n| n + 1)
        .map_err(|_| Failure::msg("y"))
        .or_else(|f| Ok(f.to_string().len() as u8));
    assert_eq!(taken(&e).unwrap(), 1);
    let t = succeed(1).then(|r: Result<i32, Failure>| Ok(r.is_ok()));
    assert!(taken(&t).unwrap());
    let p = succeed(1).map(|_: i32| -> u8 { panic!("in map") });
    assert_eq!(taken(&p).unwrap_err().kind(), FailureKind::Panicked);
}

#[test]
fn cancelling_a_transform_cancels_its_source() {
    let cancelled = Rc::new(RefCell::new(false));
    let c = cancelled.clone();
    let source = Deferred::<u8>::with_canceller(move |_| *c.borrow_mut() = true);
    let derived = source.clone().map(|n| n + 1);
    derived.cancel();
    assert!(*cancelled.borrow());
    assert_eq!(taken(&derived).unwrap_err().kind(), FailureKind::Cancelled);
}

#[test]
fn cancelling_and_then_while_it_waits_cancels_the_inner_deferred() {
    let inner = Deferred::<u8>::new();
    let i = inner.clone();
    let d = succeed(0u8).and_then(move |_| i);
    assert!(d.called() && !d.has_result());
    d.cancel();
    assert!(inner.called());
    assert_eq!(taken(&d).unwrap_err().kind(), FailureKind::Cancelled);
}

#[test]
fn chaining_into_a_fired_deferred_gives_already_called() {
    let target = succeed(1u8);
    let d = succeed(2u8);
    d.chain_deferred(&target);
    assert_eq!(taken(&d).unwrap_err().kind(), FailureKind::AlreadyCalled);
    assert_eq!(taken(&target).unwrap(), 1);
}

#[test]
fn paused_transform_target_waits() {
    let source = Deferred::<u8>::new();
    let d = source.clone().map(|n| n + 1);
    d.pause();
    source.callback(1).unwrap();
    assert!(d.take_result().is_none());
    d.unpause();
    assert_eq!(taken(&d).unwrap(), 2);
}

#[test]
fn debug_shows_the_state() {
    let d = Deferred::<u8>::new();
    assert!(format!("{d:?}").contains("pending"));
    d.callback(1).unwrap();
    assert!(format!("{d:?}").contains("succeeded"));
}

/// Cells are recycled when their last handle goes: whatever a cell still holds (a value, a
/// callback that never ran, a canceller) is dropped then, once, and a recycled cell serves the
/// next Deferred of any type with its layout.
#[test]
fn recycled_cells_drop_what_they_hold_once() {
    let token = Rc::new(());
    for round in 0..3 {
        let value = Deferred::<Rc<()>>::new();
        value.callback(token.clone()).unwrap();
        let waiting = Deferred::<u64>::new();
        let t = token.clone();
        waiting.add_callback(move |n| {
            let _keep = &t;
            n
        });
        let t = token.clone();
        let cancellable = Deferred::<u64>::with_canceller(move |_| drop(t));
        assert_eq!(Rc::strong_count(&token), 4, "round {round}");
        drop((value, waiting, cancellable));
        assert_eq!(Rc::strong_count(&token), 1, "round {round}");
        // Reuse the cells: fresh Deferreds start empty whatever the cell held before.
        let fresh = Deferred::<u64>::new();
        assert!(!fresh.called());
        assert!(format!("{fresh:?}").contains("pending"));
        fresh.add_callback(|n| n + 1);
        fresh.callback(round).unwrap();
        assert_eq!(taken(&fresh).unwrap(), round + 1);
    }
}

/// A handle kept elsewhere keeps the cell: dropping one of two handles recycles nothing.
#[test]
fn a_cell_with_other_handles_is_not_recycled() {
    let d = Deferred::<String>::new();
    let other = d.clone();
    drop(d);
    other.callback("still here".into()).unwrap();
    assert_eq!(taken(&other).unwrap(), "still here");
    let d = Deferred::<u8>::new();
    let inner = d.clone();
    let outer = Deferred::<u8>::new();
    outer.add_callback(move |_| inner.clone());
    outer.callback(0).unwrap();
    drop(d);
    // The outer chain waits on `inner`; its cell must still be live.
    assert!(outer.take_result().is_none());
}

/// What the typed transforms and `chain_deferred` hand on is dropped once its last Deferred
/// goes: no hidden reference keeps a target chain (and its result) alive.
#[test]
fn transforms_and_chained_targets_drop_their_results() {
    struct Noisy(Rc<std::cell::Cell<u32>>);
    impl Drop for Noisy {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let drops = Rc::new(std::cell::Cell::new(0));
    {
        let d = drops.clone();
        let _mapped = succeed(1u8).map(move |_| Noisy(d));
    }
    assert_eq!(drops.get(), 1, "map");
    {
        let d = drops.clone();
        let _chained = succeed(1u8).and_then(move |_| succeed(Noisy(d)));
    }
    assert_eq!(drops.get(), 2, "and_then");
    {
        let other = Deferred::new();
        succeed(Noisy(drops.clone())).chain_deferred(&other);
        drop(other);
    }
    assert_eq!(drops.get(), 3, "chain_deferred");
    {
        // Never fired: the target (holding `token`) goes with the source's callbacks.
        let source = Deferred::<u8>::new();
        let d = drops.clone();
        let mapped = source.clone().map(move |_| Noisy(d));
        let token = Noisy(drops.clone());
        mapped.add_callback(move |n| {
            let _keep = &token;
            n
        });
        drop((source, mapped));
    }
    assert_eq!(drops.get(), 4, "unfired map");
}

/// A callback whose captured value panics when dropped: the panic reaches the code that dropped
/// the Deferred, the other callbacks are still dropped, and later Deferreds drop theirs.
#[test]
fn a_panicking_drop_in_a_dropped_chain_does_not_stop_later_drops() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("boom");
        }
    }
    let token = Rc::new(());
    let d = Deferred::<u8>::new();
    let bomb = Bomb;
    d.add_callback(move |n| {
        let _keep = &bomb;
        n
    });
    let t = token.clone();
    d.add_callback(move |n| {
        let _keep = &t;
        n
    });
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(d)));
    assert!(caught.is_err(), "the panic reaches the dropper");
    assert_eq!(
        Rc::strong_count(&token),
        1,
        "the other callback was dropped"
    );
    for _ in 0..10 {
        let d = Deferred::<u8>::new();
        let t = token.clone();
        d.add_callback(move |n| {
            let _keep = &t;
            n
        });
        drop(d);
    }
    assert_eq!(
        Rc::strong_count(&token),
        1,
        "later chains drop their callbacks"
    );
}
