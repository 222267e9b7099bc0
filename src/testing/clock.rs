//! [`Clock`]: a deterministic clock for tests (Twisted's `task.Clock`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::TimerError;
use crate::task::ScheduledCall;

type Key = (Duration, u64);

/// A pending call: its shared state (seen by handles) and its closure.
type Entry = (Rc<CallState>, Box<dyn FnOnce()>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Pending,
    Called,
    Cancelled,
}

struct CallState {
    state: Cell<State>,
    key: Cell<Key>,
}

struct Inner {
    now: Cell<Duration>,
    seq: Cell<u64>,
    /// The closures live here, not in the handles, so dropping the clock drops every pending
    /// closure (and whatever it keeps alive).
    calls: RefCell<BTreeMap<Key, Entry>>,
}

impl Inner {
    fn key_after(&self, delay: Duration) -> Key {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        (self.now.get().saturating_add(delay), seq)
    }
}

/// A clock that only moves when told to, with the same timer interface as the reactor
/// ([`task::Clock`](crate::task::Clock)), so code that schedules calls can be tested without
/// waiting.
///
/// Calls due at the same time run in the order they were scheduled, and a call scheduled
/// during [`advance`](Clock::advance) for a time already reached runs in that same `advance`.
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
/// use torsion::testing::Clock;
///
/// let clock = Clock::new();
/// let hits = Rc::new(Cell::new(0));
/// let h = hits.clone();
/// clock.call_later(Duration::from_secs(3), move || h.set(h.get() + 1));
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(hits.get(), 0);
/// clock.advance(Duration::from_secs(1));
/// assert_eq!((hits.get(), clock.seconds()), (1, 3.0));
/// ```
#[derive(Clone)]
pub struct Clock {
    inner: Rc<Inner>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock")
            .field("now", &self.inner.now.get())
            .field("pending", &self.inner.calls.borrow().len())
            .finish()
    }
}

impl Clock {
    /// A clock at time zero with nothing scheduled.
    pub fn new() -> Self {
        Clock {
            inner: Rc::new(Inner {
                now: Cell::new(Duration::ZERO),
                seq: Cell::new(0),
                calls: RefCell::new(BTreeMap::new()),
            }),
        }
    }

    /// The current time in seconds since the clock was made.
    pub fn seconds(&self) -> f64 {
        self.inner.now.get().as_secs_f64()
    }

    /// The current time since the clock was made.
    pub fn now(&self) -> Duration {
        self.inner.now.get()
    }

    /// Schedules `f` to run when the clock has moved `delay` past now.
    pub fn call_later<F: FnOnce() + 'static>(&self, delay: Duration, f: F) -> ClockCall {
        let key = self.inner.key_after(delay);
        let state = Rc::new(CallState {
            state: Cell::new(State::Pending),
            key: Cell::new(key),
        });
        self.inner
            .calls
            .borrow_mut()
            .insert(key, (state.clone(), Box::new(f)));
        ClockCall {
            clock: Rc::downgrade(&self.inner),
            state,
        }
    }

    /// Moves the clock forward by `amount` and runs every call due by then, in time order
    /// and, for equal times, in scheduling order.
    pub fn advance(&self, amount: Duration) {
        let now = self.inner.now.get().saturating_add(amount);
        self.inner.now.set(now);
        loop {
            let next = {
                let mut calls = self.inner.calls.borrow_mut();
                match calls.first_key_value() {
                    Some((&(time, _), _)) if time <= now => calls.pop_first(),
                    _ => None,
                }
            };
            let Some((_, (state, f))) = next else { break };
            state.state.set(State::Called);
            f();
        }
    }

    /// [`advance`](Clock::advance) by each amount in turn.
    pub fn pump(&self, amounts: &[Duration]) {
        for &a in amounts {
            self.advance(a);
        }
    }

    /// The pending calls, earliest first.
    pub fn calls(&self) -> Vec<ClockCall> {
        self.inner
            .calls
            .borrow()
            .values()
            .map(|(state, _)| ClockCall {
                clock: Rc::downgrade(&self.inner),
                state: state.clone(),
            })
            .collect()
    }
}

impl crate::task::Clock for Clock {
    type Call = ClockCall;

    fn seconds(&self) -> f64 {
        Clock::seconds(self)
    }

    fn call_later<F: FnOnce() + 'static>(&self, delay: Duration, f: F) -> ClockCall {
        Clock::call_later(self, delay, f)
    }
}

/// A call scheduled on a [`Clock`].
#[derive(Clone)]
pub struct ClockCall {
    clock: Weak<Inner>,
    state: Rc<CallState>,
}

impl fmt::Debug for ClockCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClockCall")
            .field("state", &self.state.state.get())
            .field("time", &self.time())
            .finish()
    }
}

impl ClockCall {
    fn check(&self) -> Result<Rc<Inner>, TimerError> {
        match self.state.state.get() {
            State::Called => Err(TimerError::AlreadyCalled),
            State::Cancelled => Err(TimerError::AlreadyCancelled),
            State::Pending => self.clock.upgrade().ok_or(TimerError::AlreadyCancelled),
        }
    }

    /// Cancels the call; an error if it already ran or was cancelled.
    pub fn cancel(&self) -> Result<(), TimerError> {
        let clock = self.check()?;
        let removed = clock.calls.borrow_mut().remove(&self.state.key.get());
        self.state.state.set(State::Cancelled);
        drop(removed);
        Ok(())
    }

    /// Reschedules the call to run `delay` after the clock's current time.
    pub fn reset(&self, delay: Duration) -> Result<(), TimerError> {
        let clock = self.check()?;
        let key = clock.key_after(delay);
        let mut calls = clock.calls.borrow_mut();
        if let Some(entry) = calls.remove(&self.state.key.get()) {
            calls.insert(key, entry);
            self.state.key.set(key);
        }
        Ok(())
    }

    /// True until the call has run or been cancelled.
    pub fn active(&self) -> bool {
        self.check().is_ok()
    }

    /// When the call is due, in seconds on its clock, while it is active.
    pub fn time(&self) -> Option<f64> {
        self.check().ok()?;
        Some(self.state.key.get().0.as_secs_f64())
    }
}

impl ScheduledCall for ClockCall {
    fn cancel(&self) -> Result<(), TimerError> {
        ClockCall::cancel(self)
    }
    fn reset(&self, delay: Duration) -> Result<(), TimerError> {
        ClockCall::reset(self, delay)
    }
    fn active(&self) -> bool {
        ClockCall::active(self)
    }
    fn time(&self) -> Option<f64> {
        ClockCall::time(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn equal_times_run_in_scheduling_order() {
        let clock = Clock::new();
        let order = Rc::new(RefCell::new(Vec::new()));
        for i in 0..20 {
            let o = order.clone();
            clock.call_later(Duration::ZERO, move || o.borrow_mut().push(i));
        }
        clock.advance(Duration::ZERO);
        assert_eq!(*order.borrow(), (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn calls_scheduled_for_now_run_in_the_same_advance() {
        let clock = Clock::new();
        let order = Rc::new(RefCell::new(Vec::new()));
        let (c, o) = (clock.clone(), order.clone());
        clock.call_later(secs(1), move || {
            o.borrow_mut().push("first");
            let o2 = o.clone();
            c.call_later(Duration::ZERO, move || o2.borrow_mut().push("same advance"));
            let o3 = o.clone();
            c.call_later(secs(1), move || o3.borrow_mut().push("later"));
        });
        clock.advance(secs(1));
        assert_eq!(*order.borrow(), ["first", "same advance"]);
        clock.advance(secs(1));
        assert_eq!(order.borrow().len(), 3);
    }

    #[test]
    fn cancel_reset_and_errors() {
        let clock = Clock::new();
        let hit = Rc::new(Cell::new(0));
        let h = hit.clone();
        let call = clock.call_later(secs(10), move || h.set(h.get() + 1));
        assert_eq!(call.time(), Some(10.0));
        clock.advance(secs(4));
        call.reset(secs(1)).unwrap();
        assert_eq!(call.time(), Some(5.0));
        clock.advance(secs(1));
        assert_eq!(hit.get(), 1);
        assert_eq!(call.cancel(), Err(TimerError::AlreadyCalled));
        let other = clock.call_later(secs(1), || unreachable!());
        assert_eq!(clock.calls().len(), 1);
        other.cancel().unwrap();
        assert_eq!(other.cancel(), Err(TimerError::AlreadyCancelled));
        assert!(!other.active() && clock.calls().is_empty());
        clock.pump(&[secs(1), secs(2)]);
        assert_eq!(clock.seconds(), 8.0);
    }
}
