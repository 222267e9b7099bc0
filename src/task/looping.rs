//! [`LoopingCall`]: call a function every interval, on the grid `start + k·interval`
//! (Twisted's `task.LoopingCall`, reference §2.11).

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::time::Duration;

use super::{Clock, ScheduledCall};
use crate::defer::{Deferred, Failure, IntoDeferred, succeed};

/// Misuse of a [`LoopingCall`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoopingCallError {
    /// `start` on a LoopingCall that is running.
    #[error("tried to start an already running LoopingCall")]
    AlreadyRunning,
    /// `stop` or `reset` on a LoopingCall that is not running.
    #[error("the LoopingCall is not running")]
    NotRunning,
}

enum Func {
    Plain(Box<dyn FnMut() -> Deferred<()>>),
    Counted(Box<dyn FnMut(u64) -> Deferred<()>>),
}

struct State<C: Clock> {
    clock: C,
    /// Out of the state while it runs.
    func: Option<Func>,
    running: bool,
    interval: f64,
    start_time: f64,
    run_at_start: bool,
    /// When a counted function last ran.
    last_time: Option<f64>,
    call: Option<C::Call>,
    deferred: Option<Deferred<()>>,
}

/// Calls a function every `interval` on a [`Clock`] (Twisted's `task.LoopingCall`).
///
/// - Calls stay on the grid `start + k·interval`. Whole intervals missed because the function
///   was slow, the clock jumped, or the Deferred it returned took long are skipped, not
///   queued; a call that ends exactly on a grid point skips that point.
/// - The function may return `()`, a `Result<(), Failure>` or a `Deferred<()>`; the next call
///   is scheduled only once that outcome is known, so calls never overlap.
/// - [`start`](Self::start) gives a Deferred that succeeds on [`stop`](Self::stop) (after the
///   current call, if `stop` comes from inside it) and fails, stopping the loop, when the
///   function fails or panics.
/// - An interval of zero calls again on the next turn of the clock (within one
///   `advance` of a [`testing::Clock`](crate::testing::Clock), until stopped).
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
/// use torsion::task::LoopingCall;
/// use torsion::testing::Clock;
///
/// let clock = Clock::new();
/// let ticks = Rc::new(Cell::new(0));
/// let t = ticks.clone();
/// let lc = LoopingCall::new(clock.clone(), move || t.set(t.get() + 1));
/// let done = lc.start(Duration::from_secs(1), true).unwrap();
/// clock.advance(Duration::from_secs(3));
/// assert_eq!(ticks.get(), 2); // at 0, then at 3 (1 and 2 were skipped)
/// lc.stop().unwrap();
/// assert!(done.take_result().unwrap().is_ok());
/// ```
pub struct LoopingCall<C: Clock + Clone + 'static> {
    inner: Rc<RefCell<State<C>>>,
}

impl<C: Clock + Clone + 'static> Clone for LoopingCall<C> {
    fn clone(&self) -> Self {
        LoopingCall {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Clock + Clone + 'static> std::fmt::Debug for LoopingCall<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.borrow();
        f.debug_struct("LoopingCall")
            .field("running", &st.running)
            .field("interval", &st.interval)
            .finish_non_exhaustive()
    }
}

fn guarded(f: impl FnOnce() -> Deferred<()>) -> Deferred<()> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|p| Deferred::from_result(Err(Failure::panicked(&*p))))
}

impl<C: Clock + Clone + 'static> LoopingCall<C> {
    fn with_func(clock: C, func: Func) -> Self {
        LoopingCall {
            inner: Rc::new(RefCell::new(State {
                clock,
                func: Some(func),
                running: false,
                interval: 0.0,
                start_time: 0.0,
                run_at_start: false,
                last_time: None,
                call: None,
                deferred: None,
            })),
        }
    }

    /// A LoopingCall of `f` on `clock`; it does nothing until [`start`](Self::start).
    pub fn new<R, F>(clock: C, mut f: F) -> Self
    where
        R: IntoDeferred<()>,
        F: FnMut() -> R + 'static,
    {
        LoopingCall::with_func(clock, Func::Plain(Box::new(move || f().into_deferred())))
    }

    /// A LoopingCall that passes `f` the number of intervals since its last call (at least
    /// 1; 1 when the interval is zero), so that skipped calls can be made up for (Twisted's
    /// `withCount`).
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use std::time::Duration;
    /// use torsion::task::LoopingCall;
    /// use torsion::testing::Clock;
    ///
    /// let clock = Clock::new();
    /// let counts = Rc::new(RefCell::new(Vec::new()));
    /// let c = counts.clone();
    /// let lc = LoopingCall::with_count(clock.clone(), move |n| c.borrow_mut().push(n));
    /// lc.start(Duration::from_secs(1), true).unwrap();
    /// clock.advance(Duration::from_secs(1));
    /// clock.advance(Duration::from_secs(3));
    /// assert_eq!(*counts.borrow(), [1, 1, 3]);
    /// ```
    pub fn with_count<R, F>(clock: C, mut f: F) -> Self
    where
        R: IntoDeferred<()>,
        F: FnMut(u64) -> R + 'static,
    {
        LoopingCall::with_func(
            clock,
            Func::Counted(Box::new(move |n| f(n).into_deferred())),
        )
    }

    /// True between `start` and the end of the loop.
    pub fn running(&self) -> bool {
        self.inner.borrow().running
    }

    /// The interval of the current or last run.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.inner.borrow().interval)
    }

    /// Starts calling every `interval`: at once if `now`, else first after one interval.
    pub fn start(&self, interval: Duration, now: bool) -> Result<Deferred<()>, LoopingCallError> {
        let d = Deferred::new();
        let start_time = {
            let mut st = self.inner.borrow_mut();
            if st.running {
                return Err(LoopingCallError::AlreadyRunning);
            }
            st.running = true;
            st.deferred = Some(d.clone());
            st.interval = interval.as_secs_f64();
            st.start_time = st.clock.seconds();
            st.run_at_start = now;
            st.last_time = None;
            st.start_time
        };
        if now {
            tick(&self.inner);
        } else {
            schedule_from(&self.inner, start_time);
        }
        Ok(d)
    }

    /// Stops the loop: cancels the pending call and fires the `start` Deferred, or, from
    /// inside a call (or while its Deferred is pending), fires it once that call is done.
    pub fn stop(&self) -> Result<(), LoopingCallError> {
        let (call, deferred) = {
            let mut st = self.inner.borrow_mut();
            if !st.running {
                return Err(LoopingCallError::NotRunning);
            }
            st.running = false;
            match st.call.take() {
                Some(call) => (Some(call), st.deferred.take()),
                None => (None, None),
            }
        };
        if let Some(call) = call {
            let _ = call.cancel();
        }
        if let Some(d) = deferred {
            let _ = d.callback(());
        }
        Ok(())
    }

    /// Restarts the grid from now: the pending call moves to one interval from now.
    pub fn reset(&self) -> Result<(), LoopingCallError> {
        let (call, now) = {
            let mut st = self.inner.borrow_mut();
            if !st.running {
                return Err(LoopingCallError::NotRunning);
            }
            let Some(call) = st.call.take() else {
                return Ok(());
            };
            st.start_time = st.clock.seconds();
            (call, st.start_time)
        };
        let _ = call.cancel();
        schedule_from(&self.inner, now);
        Ok(())
    }
}

/// One call of the function (Twisted's `LoopingCall.__call__`).
fn tick<C: Clock + Clone + 'static>(inner: &Rc<RefCell<State<C>>>) {
    let (func, count) = {
        let mut st = inner.borrow_mut();
        st.call = None;
        let Some(func) = st.func.take() else { return };
        let count = match func {
            Func::Plain(_) => None,
            Func::Counted(_) => Some(count(&mut st)),
        };
        (func, count)
    };
    let mut func = func;
    let d = match (&mut func, count) {
        (Func::Plain(f), _) => guarded(f),
        (Func::Counted(f), Some(Some(n))) => guarded(|| f(n)),
        (Func::Counted(_), _) => succeed(()),
    };
    inner.borrow_mut().func = Some(func);
    let me = inner.clone();
    d.on_result(move |r| {
        let (reschedule, fire) = {
            let mut st = me.borrow_mut();
            match r {
                Ok(()) if st.running => (Some(st.clock.seconds()), None),
                Ok(()) => (None, st.deferred.take().map(|d| (d, Ok(())))),
                Err(e) => {
                    st.running = false;
                    (None, st.deferred.take().map(|d| (d, Err(e))))
                }
            }
        };
        if let Some(when) = reschedule {
            schedule_from(&me, when);
        }
        if let Some((d, r)) = fire {
            let _ = d.resolve(r);
        }
    });
}

/// The count for a counted function now, or `None` to skip this call.
fn count<C: Clock>(st: &mut State<C>) -> Option<u64> {
    let now = st.clock.seconds();
    if st.interval == 0.0 {
        st.last_time = Some(now);
        return Some(1);
    }
    let last = st.last_time.unwrap_or(if st.run_at_start {
        st.start_time - st.interval
    } else {
        st.start_time
    });
    let interval_of = |t: f64| ((t - st.start_time) / st.interval) as i64;
    let n = interval_of(now) - interval_of(last);
    if n > 0 {
        st.last_time = Some(now);
        Some(n as u64)
    } else {
        None
    }
}

fn schedule_from<C: Clock + Clone + 'static>(inner: &Rc<RefCell<State<C>>>, when: f64) {
    let (clock, delay) = {
        let st = inner.borrow();
        let delay = if st.interval == 0.0 {
            0.0
        } else {
            let running_for = when - st.start_time;
            let until_next = st.interval - running_for.rem_euclid(st.interval);
            if when == when + until_next {
                st.interval
            } else {
                until_next
            }
        };
        (st.clock.clone(), delay)
    };
    let me = inner.clone();
    let call = clock.call_later(Duration::from_secs_f64(delay.max(0.0)), move || tick(&me));
    inner.borrow_mut().call = Some(call);
}

#[cfg(test)]
mod tests;
