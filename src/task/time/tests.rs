//! add_timeout, defer_later and sleep on a testing Clock.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::defer::{Deferred, FailureKind, TimedOut};
use crate::task::{defer_later, sleep};
use crate::testing::Clock;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn add_timeout_fails_with_timed_out_and_earlier_callbacks_see_the_cancel() {
    let clock = Clock::new();
    let d = Deferred::<u8>::new();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    d.add_errback(move |f| {
        s.borrow_mut().push(f.kind());
        Err(f)
    });
    d.add_timeout(&clock, secs(10));
    clock.advance(secs(9));
    assert!(!d.called());
    clock.advance(secs(1));
    assert_eq!(*seen.borrow(), [FailureKind::Cancelled]);
    let f = d.take_result().unwrap().unwrap_err();
    assert_eq!(f.kind(), FailureKind::TimedOut);
    assert_eq!(f.downcast_ref::<TimedOut>().unwrap().after, secs(10));
    assert_eq!(f.location().file(), file!());
}

#[test]
fn firing_first_cancels_the_timeout_timer() {
    let clock = Clock::new();
    let d = Deferred::<u8>::new();
    d.add_timeout(&clock, secs(10));
    assert_eq!(clock.calls().len(), 1);
    d.callback(1).unwrap();
    assert!(clock.calls().is_empty());
    assert_eq!(d.take_result().unwrap().unwrap(), 1);
}

#[test]
fn a_canceller_that_gives_a_value_wins_over_the_timeout() {
    let clock = Clock::new();
    let d = Deferred::with_canceller(|d: &Deferred<&str>| d.callback("fallback").unwrap());
    d.add_timeout(&clock, secs(1));
    clock.advance(secs(1));
    assert_eq!(d.take_result().unwrap().unwrap(), "fallback");
}

#[test]
fn a_cancel_that_is_not_the_timeout_stays_a_cancel() {
    let clock = Clock::new();
    let d = Deferred::<u8>::new();
    d.add_timeout(&clock, secs(1));
    d.cancel();
    assert_eq!(
        d.take_result().unwrap().unwrap_err().kind(),
        FailureKind::Cancelled
    );
    assert!(clock.calls().is_empty());
}

#[test]
fn defer_later_runs_after_the_delay() {
    let clock = Clock::new();
    let d = defer_later(&clock, secs(3), || Ok(7u8));
    clock.advance(secs(2));
    assert!(!d.called());
    clock.advance(secs(1));
    assert_eq!(d.take_result().unwrap().unwrap(), 7);
    let inner = Deferred::<u8>::new();
    let i = inner.clone();
    let e = defer_later(&clock, secs(1), move || i);
    clock.advance(secs(1));
    assert!(!e.has_result());
    inner.callback(9).unwrap();
    assert_eq!(e.take_result().unwrap().unwrap(), 9);
}

#[test]
fn cancelling_defer_later_cancels_the_timer() {
    let clock = Clock::new();
    let d = defer_later(&clock, secs(3), || -> Result<u8, crate::Failure> {
        unreachable!()
    });
    d.cancel();
    assert!(clock.calls().is_empty());
    assert_eq!(
        d.take_result().unwrap().unwrap_err().kind(),
        FailureKind::Cancelled
    );
    clock.advance(secs(5));
}

#[test]
fn sleep_fires_after_the_duration() {
    let clock = Clock::new();
    let d = sleep(&clock, secs(1));
    clock.advance(secs(1));
    assert!(d.take_result().unwrap().is_ok());
}
