//! LoopingCall rules (reference §2.11) on a testing Clock.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use super::{LoopingCall, LoopingCallError};
use crate::defer::{Deferred, Failure, FailureKind};
use crate::testing::Clock;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn calls_stay_on_the_grid_and_slow_calls_skip_ticks() {
    // Twisted's test_callbackTimeSkips.
    let clock = Clock::new();
    let times = Rc::new(RefCell::new(Vec::new()));
    let call_duration = Rc::new(Cell::new(2.0));
    let (c, t, dur) = (clock.clone(), times.clone(), call_duration.clone());
    let lc = LoopingCall::new(clock.clone(), move || {
        t.borrow_mut().push(c.seconds());
        c.advance(secs(dur.get()));
    });
    lc.start(secs(0.5), true).unwrap();
    assert_eq!(*times.borrow(), [0.0]);
    assert_eq!(clock.seconds(), 2.0);
    clock.advance(secs(0.0));
    assert_eq!(
        *times.borrow(),
        [0.0],
        "2.0 is the present, so it is skipped"
    );
    call_duration.set(1.0);
    clock.advance(secs(0.5));
    assert_eq!(*times.borrow(), [0.0, 2.5]);
    assert_eq!(clock.seconds(), 3.5);
    clock.advance(secs(0.0));
    assert_eq!(times.borrow().len(), 2);
    call_duration.set(0.0);
    clock.advance(secs(0.5));
    assert_eq!(*times.borrow(), [0.0, 2.5, 4.0]);
}

#[test]
fn start_without_now_waits_one_interval() {
    let clock = Clock::new();
    let n = Rc::new(Cell::new(0));
    let m = n.clone();
    let lc = LoopingCall::new(clock.clone(), move || m.set(m.get() + 1));
    lc.start(secs(1.0), false).unwrap();
    assert_eq!(n.get(), 0);
    clock.pump(&[secs(1.0), secs(1.0), secs(1.0)]);
    assert_eq!(n.get(), 3);
    assert_eq!(lc.interval(), secs(1.0));
}

#[test]
fn with_count_counts_skipped_intervals() {
    let clock = Clock::new();
    let counts = Rc::new(RefCell::new(Vec::new()));
    let c = counts.clone();
    let lc = LoopingCall::with_count(clock.clone(), move |n| c.borrow_mut().push(n));
    lc.start(secs(1.0), false).unwrap();
    clock.advance(secs(1.0));
    clock.advance(secs(3.5));
    clock.advance(secs(0.5));
    assert_eq!(*counts.borrow(), [1, 3, 1]);
}

#[test]
fn interval_zero_runs_every_turn_until_stopped_and_counts_one() {
    let clock = Clock::new();
    let counts = Rc::new(RefCell::new(Vec::new()));
    let holder: Rc<RefCell<Option<LoopingCall<Clock>>>> = Rc::default();
    let (c, h) = (counts.clone(), holder.clone());
    let lc = LoopingCall::with_count(clock.clone(), move |n| {
        c.borrow_mut().push(n);
        if c.borrow().len() == 5 {
            h.borrow().as_ref().unwrap().stop().unwrap();
        }
    });
    *holder.borrow_mut() = Some(lc.clone());
    let done = lc.start(Duration::ZERO, true).unwrap();
    clock.advance(Duration::ZERO);
    assert_eq!(*counts.borrow(), [1, 1, 1, 1, 1]);
    assert!(done.take_result().unwrap().is_ok());
    holder.borrow_mut().take();
}

#[test]
fn stop_from_inside_fires_after_the_call() {
    let clock = Clock::new();
    let holder: Rc<RefCell<Option<LoopingCall<Clock>>>> = Rc::default();
    let h = holder.clone();
    let lc = LoopingCall::new(clock.clone(), move || {
        h.borrow().as_ref().unwrap().stop().unwrap();
    });
    *holder.borrow_mut() = Some(lc.clone());
    let done = lc.start(secs(1.0), true).unwrap();
    assert!(!lc.running());
    assert!(done.take_result().unwrap().is_ok());
    assert!(clock.calls().is_empty());
    holder.borrow_mut().take();
}

#[test]
fn a_failure_stops_the_loop_and_fails_the_start_deferred() {
    let clock = Clock::new();
    let n = Rc::new(Cell::new(0));
    let m = n.clone();
    let lc = LoopingCall::new(clock.clone(), move || {
        m.set(m.get() + 1);
        if m.get() == 2 {
            Err(Failure::msg("broke"))
        } else {
            Ok(())
        }
    });
    let done = lc.start(secs(1.0), true).unwrap();
    clock.pump(&[secs(1.0), secs(1.0), secs(1.0)]);
    assert_eq!(n.get(), 2);
    assert!(!lc.running());
    assert_eq!(
        done.take_result().unwrap().unwrap_err().to_string(),
        "broke"
    );
    let p = LoopingCall::new(clock.clone(), || -> () { panic!("in loop") });
    let done = p.start(secs(1.0), true).unwrap();
    assert_eq!(
        done.take_result().unwrap().unwrap_err().kind(),
        FailureKind::Panicked
    );
}

#[test]
fn a_pending_deferred_holds_the_next_call_back() {
    let clock = Clock::new();
    let pending: Rc<RefCell<Option<Deferred<()>>>> = Rc::default();
    let times = Rc::new(RefCell::new(Vec::new()));
    let (p, t, c) = (pending.clone(), times.clone(), clock.clone());
    let lc = LoopingCall::new(clock.clone(), move || {
        t.borrow_mut().push(c.seconds());
        let d = Deferred::new();
        *p.borrow_mut() = Some(d.clone());
        d
    });
    lc.start(secs(1.0), true).unwrap();
    clock.advance(secs(2.5));
    assert_eq!(
        *times.borrow(),
        [0.0],
        "no call while the Deferred is pending"
    );
    pending.borrow_mut().take().unwrap().callback(()).unwrap();
    clock.advance(secs(0.5));
    assert_eq!(*times.borrow(), [0.0, 3.0]);
    lc.stop().unwrap();
}

#[test]
fn misuse_is_an_error() {
    let clock = Clock::new();
    let lc = LoopingCall::new(clock.clone(), || ());
    assert_eq!(lc.stop(), Err(LoopingCallError::NotRunning));
    assert_eq!(lc.reset(), Err(LoopingCallError::NotRunning));
    let _d = lc.start(secs(1.0), false).unwrap();
    assert_eq!(
        lc.start(secs(1.0), false).unwrap_err(),
        LoopingCallError::AlreadyRunning
    );
    lc.stop().unwrap();
}

#[test]
fn reset_restarts_the_grid_from_now() {
    let clock = Clock::new();
    let times = Rc::new(RefCell::new(Vec::new()));
    let (t, c) = (times.clone(), clock.clone());
    let lc = LoopingCall::new(clock.clone(), move || t.borrow_mut().push(c.seconds()));
    lc.start(secs(2.0), false).unwrap();
    clock.advance(secs(1.5));
    lc.reset().unwrap();
    clock.advance(secs(1.0));
    assert!(times.borrow().is_empty());
    clock.advance(secs(1.0));
    assert_eq!(*times.borrow(), [3.5]);
    lc.stop().unwrap();
}
