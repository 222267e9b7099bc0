//! [`Deferred`]: the shared cell that holds a result or a chain of callbacks, and the loop
//! that runs chains.
//!
//! # How chains run without recursion
//!
//! A chain that waits on another Deferred puts a `Continue` step at the end of the inner
//! Deferred's chain. When the inner chain reaches that step it moves its result into the outer
//! Deferred and hands the outer one back to the loop in [`carry_on`], which runs it next. The
//! typed transforms (`map`, `and_then`, …) hand their result to the Deferred they return in
//! the same way. So a million nested Deferreds resolve in one loop on one stack frame; the only
//! recursion left is user code that fires another Deferred from inside a callback.
//!
//! # What a chain costs
//!
//! Usually no allocation at all. The shared cell keeps the first few callbacks inline (see
//! `steps.rs`), and a callback whose closure fits in a pointer inside its own step (see
//! `callback.rs`); when the last handle goes, the cell's memory is kept for the next Deferred
//! of its size (see `pool.rs`). Firing a Deferred whose callbacks are waiting runs them
//! straight from the fired value, held in a local between callbacks, with one `RefCell`
//! borrow per callback to take it and one `catch_unwind` for the whole run.
//! `benches/defer.rs` measures it against the same closures boxed and called directly.
//!
//! No `RefCell` borrow is held while user code (a callback, a canceller, a `Drop` of a user
//! value) runs: a callback may add callbacks to, fire, pause or cancel any Deferred, its own
//! included.

use std::cell::RefCell;
use std::fmt;
use std::mem::{self, ManuallyDrop};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::{Rc, Weak};
use std::task::Waker;

use super::callback::Callback;
use super::failure::{AlreadyCalled, Failure};
use super::steps::Steps;
use crate::rc_pool as pool;

mod run;

use run::{Cur, carry_on};

/// What `cancel` calls on a Deferred that has not fired.
type Canceller<T> = Box<dyn FnOnce(&Deferred<T>)>;

/// What a user callback gives back: a result now, or a Deferred that will have it.
pub enum Resolution<T: 'static> {
    /// The chain goes on with this result.
    Value(Result<T, Failure>),
    /// The chain waits for this Deferred and goes on with its result.
    Wait(Deferred<T>),
}

/// What a step of a chain leads to.
pub(crate) enum Outcome<T: 'static> {
    Value(Result<T, Failure>),
    Wait(Deferred<T>),
    /// The result moved on to another Deferred, which the loop runs next.
    Handoff(Rc<dyn Erased>),
    /// The result was taken by the step; the chain keeps nothing.
    Taken,
}

impl<T> From<Resolution<T>> for Outcome<T> {
    fn from(r: Resolution<T>) -> Self {
        match r {
            Resolution::Value(v) => Outcome::Value(v),
            Resolution::Wait(d) => Outcome::Wait(d),
        }
    }
}

enum Slot<T> {
    /// Not fired yet, or waiting on another Deferred.
    Empty,
    /// Taken out while a callback runs.
    Busy,
    Ready(Result<T, Failure>),
    /// Handed on (Twisted leaves `None` behind).
    Consumed,
}

pub(crate) struct Await<T> {
    pub(crate) wakers: Vec<Waker>,
    pub(crate) output: Option<Result<T, Failure>>,
    pub(crate) delivered: bool,
}

struct State<T: 'static> {
    result: Slot<T>,
    steps: Steps<T>,
    paused: u32,
    called: bool,
    running: bool,
    /// Cancelled without a canceller: swallow the next `callback` / `errback`.
    suppress: bool,
    /// The Deferred this one waits on, for forwarding `cancel`.
    waiting: Option<Weak<dyn Erased>>,
    canceller: Option<Canceller<T>>,
    awaiting: Option<Box<Await<T>>>,
}

/// The shared cell behind every handle of one Deferred.
pub(crate) struct Chain<T: 'static> {
    st: RefCell<State<T>>,
}

/// A Deferred of any type, as the loop sees it.
pub trait Erased {
    /// Runs the chain until it ends, pauses, waits, or hands a result to another Deferred.
    fn run(self: Rc<Self>) -> Next;
    /// `Deferred::cancel`.
    fn cancel(self: Rc<Self>);
}

/// What [`Erased::run`] stopped at.
pub enum Next {
    /// Nothing more to do here now.
    Done,
    /// Run the first now; then resume the second, which has steps left.
    Then(Rc<dyn Erased>, Option<Rc<dyn Erased>>),
}

pub(crate) enum Fire<T> {
    /// The chain has steps to run and is marked running: run them from this result.
    Run(Result<T, Failure>),
    Hold,
    Swallowed(Result<T, Failure>),
    Already(Result<T, Failure>),
}

/// What a first firing does, from [`Chain::start`].
enum Start {
    Run,
    Keep,
    Other,
}

/// The step an inner Deferred runs for an outer one that waits on it: the result moves into the
/// outer Deferred, which the loop runs next.
fn continuation<T: 'static>(outer: Rc<Chain<T>>) -> Callback<T> {
    Callback::new(move |r| {
        {
            let mut o = outer.st.borrow_mut();
            o.waiting = None;
            o.result = Slot::Ready(r);
        }
        Outcome::Handoff(outer)
    })
}

impl<T: 'static> Chain<T> {
    #[inline(always)]
    fn new(result: Slot<T>, called: bool, canceller: Option<Canceller<T>>) -> Self {
        Chain {
            st: RefCell::new(State {
                result,
                steps: Steps::default(),
                paused: 0,
                called,
                running: false,
                suppress: false,
                waiting: None,
                canceller,
                awaiting: None,
            }),
        }
    }

    /// Takes a first result. On `Fire::Run` the chain is marked running and the caller runs
    /// it from the result handed back (it never goes into the cell); the values of the other
    /// outcomes are for the caller to drop once no borrow is held.
    #[inline(always)]
    pub(crate) fn fire(&self, r: Result<T, Failure>) -> Fire<T> {
        let mut st = self.st.borrow_mut();
        if st.called {
            if st.suppress {
                st.suppress = false;
                return Fire::Swallowed(r);
            }
            return Fire::Already(r);
        }
        st.called = true;
        let canceller = st.canceller.take();
        // Not called, so not running and not waiting on another Deferred.
        let fire = if st.paused == 0 && !st.steps.is_empty() {
            st.running = true;
            st.result = Slot::Busy;
            Fire::Run(r)
        } else {
            st.result = Slot::Ready(r);
            Fire::Hold
        };
        drop(st);
        if canceller.is_some() {
            drop(canceller);
        }
        fire
    }

    /// The common first firing: nothing fired it before, no canceller to drop, not paused.
    /// Then marks the chain fired and says what to do with the result: with callbacks waiting,
    /// the chain is marked running and the caller runs it straight from the result (which so
    /// never goes through the cell); with none, the caller stores it. Otherwise changes nothing
    /// and the caller goes through [`Chain::fire`].
    #[inline(always)]
    fn start(&self) -> Start {
        let mut st = self.st.borrow_mut();
        if st.called || st.canceller.is_some() || st.paused > 0 {
            return Start::Other;
        }
        st.called = true;
        if st.steps.is_empty() {
            return Start::Keep;
        }
        st.running = true;
        st.result = Slot::Busy;
        Start::Run
    }

    fn runnable(st: &State<T>) -> bool {
        st.called
            && !st.running
            && st.paused == 0
            && st.waiting.is_none()
            && matches!(st.result, Slot::Ready(_) | Slot::Consumed)
    }

    #[inline(always)]
    pub(crate) fn push(self: &Rc<Self>, step: Callback<T>) {
        let run = {
            let mut st = self.st.borrow_mut();
            st.steps.push_back(step);
            Self::runnable(&st)
        };
        if run {
            carry_on(self.run_typed());
        }
    }

    /// Makes this (called) Deferred wait on `d`, or takes `d`'s result at once if it has one
    /// and nothing holds it back.
    fn wait_on(self: &Rc<Self>, d: Deferred<T>) -> Option<Result<T, Failure>> {
        if Rc::ptr_eq(self, &d.inner) {
            return Some(Err(Failure::msg(
                "a callback returned the Deferred it was attached to",
            )));
        }
        let stolen = {
            let mut i = d.inner.st.borrow_mut();
            if !i.running
                && i.paused == 0
                && i.waiting.is_none()
                && matches!(i.result, Slot::Ready(_) | Slot::Consumed)
            {
                Some(match mem::replace(&mut i.result, Slot::Consumed) {
                    Slot::Ready(r) => r,
                    _ => Err(Failure::consumed()),
                })
            } else {
                i.steps.push_back(continuation(self.clone()));
                None
            }
        };
        if stolen.is_none() {
            let mut st = self.st.borrow_mut();
            st.result = Slot::Empty;
            let weak: Weak<dyn Erased> = Rc::downgrade(&d.inner) as Weak<Chain<T>>;
            st.waiting = Some(weak);
        }
        stolen
    }

    /// Gives a result to this Deferred from another one's chain; what that chain does next.
    pub(crate) fn settle<S>(self: &Rc<Self>, res: Resolution<T>) -> Outcome<S> {
        match res {
            Resolution::Value(r) => match self.fire(r) {
                Fire::Run(r) => {
                    // The loop that ran us runs this chain next, so that handing results
                    // from chain to chain does not nest.
                    let mut st = self.st.borrow_mut();
                    st.result = Slot::Ready(r);
                    st.running = false;
                    drop(st);
                    Outcome::Handoff(self.clone())
                }
                Fire::Hold | Fire::Swallowed(_) => Outcome::Taken,
                Fire::Already(_) => Outcome::Value(Err(Failure::new(AlreadyCalled))),
            },
            Resolution::Wait(d) => {
                let canceller = {
                    let mut st = self.st.borrow_mut();
                    if st.called {
                        if st.suppress {
                            st.suppress = false;
                            drop(st);
                            drop(d);
                            return Outcome::Taken;
                        }
                        drop(st);
                        drop(d);
                        return Outcome::Value(Err(Failure::new(AlreadyCalled)));
                    }
                    st.called = true;
                    st.canceller.take()
                };
                drop(canceller);
                if let Some(r) = self.wait_on(d) {
                    let run = {
                        let mut st = self.st.borrow_mut();
                        st.result = Slot::Ready(r);
                        Self::runnable(&st)
                    };
                    if run {
                        return Outcome::Handoff(self.clone());
                    }
                }
                Outcome::Taken
            }
        }
    }

    /// After the result went elsewhere: the chain to resume later, if it has steps left.
    fn after_handoff(self: &Rc<Self>) -> Option<Rc<dyn Erased>> {
        let mut st = self.st.borrow_mut();
        st.result = Slot::Consumed;
        if st.steps.is_empty() || st.paused > 0 {
            st.running = false;
            None
        } else {
            Some(self.clone())
        }
    }

    pub(crate) fn await_registered(&self) -> bool {
        self.st.borrow().awaiting.is_some()
    }

    pub(crate) fn with_await<R>(&self, f: impl FnOnce(&mut Await<T>) -> R) -> R {
        let mut st = self.st.borrow_mut();
        let a = st.awaiting.get_or_insert_with(|| {
            Box::new(Await {
                wakers: Vec::new(),
                output: None,
                delivered: false,
            })
        });
        f(a)
    }

    /// Takes the result if it is there and nothing else will run first.
    pub(crate) fn take_ready(&self) -> Option<Result<T, Failure>> {
        let mut st = self.st.borrow_mut();
        if !Self::runnable(&st) || !st.steps.is_empty() {
            return None;
        }
        match mem::replace(&mut st.result, Slot::Consumed) {
            Slot::Ready(r) => Some(r),
            _ => Some(Err(Failure::consumed())),
        }
    }
}

/// A result that is not there yet, with a chain of callbacks and errbacks that process it
/// (Twisted's `Deferred`).
///
/// - [`callback`](Deferred::callback) or [`errback`](Deferred::errback) fire it, once; a second
///   firing gives [`AlreadyCalled`] (an error value, not a panic).
/// - Each callback's result feeds the next. A callback that fails switches the chain to the
///   errback path; an errback that returns a value switches it back. A panic in a callback is
///   caught and becomes a [`FailureKind::Panicked`](crate::defer::FailureKind) failure.
/// - A callback may return another `Deferred`: the chain pauses until that one fires and goes on
///   with its result (which is then consumed from the inner Deferred).
/// - Callbacks added once the result is there run at once.
/// - Handles are cheap clones of one shared cell. When the last handle goes while the result is
///   a failure that nothing handled, "Unhandled error in Deferred" is logged, at that moment.
///
/// ```
/// use torsion::defer::{Deferred, Failure};
///
/// let d = Deferred::<u32>::new();
/// d.add_callback(|n| n + 1)
///     .add_callback(|n| if n > 10 { Err(Failure::msg("too big")) } else { Ok(n * 2) })
///     .add_errback(|_| Ok(0));
/// d.callback(20).unwrap();
/// assert!(d.callback(1).is_err()); // AlreadyCalled
/// assert_eq!(d.take_result().unwrap().unwrap(), 0);
/// ```
pub struct Deferred<T: 'static> {
    /// Taken only by `Drop`, which hands the cell to the pool when it is the last handle.
    /// Private, and reached from other modules through [`Deferred::chain`]: cloning the
    /// `ManuallyDrop` itself would make an `Rc` that is never dropped.
    inner: ManuallyDrop<Rc<Chain<T>>>,
}

impl<T: 'static> Clone for Deferred<T> {
    #[inline]
    fn clone(&self) -> Self {
        Deferred::from_chain(Rc::clone(&self.inner))
    }
}

impl<T: 'static> Drop for Deferred<T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `inner` is not used again.
        pool::recycle(unsafe { ManuallyDrop::take(&mut self.inner) });
    }
}

impl<T: 'static> Default for Deferred<T> {
    fn default() -> Self {
        Deferred::new()
    }
}

impl<T: 'static> fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.st.try_borrow();
        let mut s = f.debug_struct("Deferred");
        if let Ok(st) = st {
            let state = match (&st.result, st.waiting.is_some()) {
                (_, true) => "waiting",
                (Slot::Empty, _) => "pending",
                (Slot::Busy, _) => "running",
                (Slot::Ready(Ok(_)), _) => "succeeded",
                (Slot::Ready(Err(_)), _) => "failed",
                (Slot::Consumed, _) => "consumed",
            };
            s.field("state", &state)
                .field("callbacks", &st.steps.len())
                .field("paused", &st.paused);
        }
        s.finish_non_exhaustive()
    }
}

impl<T: 'static> Deferred<T> {
    /// A handle to a chain cell.
    #[inline]
    pub(crate) fn from_chain(inner: Rc<Chain<T>>) -> Self {
        Deferred {
            inner: ManuallyDrop::new(inner),
        }
    }

    /// The chain cell; `Rc::clone(d.chain())` for another owning reference.
    #[inline(always)]
    pub(crate) fn chain(&self) -> &Rc<Chain<T>> {
        &self.inner
    }

    #[inline(always)]
    fn make(result: Slot<T>, called: bool, canceller: Option<Canceller<T>>) -> Self {
        Deferred::from_chain(pool::rc_new(move || Chain::new(result, called, canceller)))
    }

    /// A Deferred with no result yet and no canceller.
    #[inline]
    pub fn new() -> Self {
        Deferred::make(Slot::Empty, false, None)
    }

    /// A Deferred whose [`cancel`](Deferred::cancel) calls `canceller` (at most once, and only
    /// if the Deferred has not fired). If the canceller does not fire it, it then fails with
    /// [`Cancelled`](crate::defer::Cancelled).
    ///
    /// ```
    /// use torsion::defer::Deferred;
    ///
    /// let d = Deferred::with_canceller(|d: &Deferred<&str>| d.callback("stopped").unwrap());
    /// d.cancel();
    /// assert_eq!(d.take_result().unwrap().unwrap(), "stopped");
    /// ```
    pub fn with_canceller(canceller: impl FnOnce(&Deferred<T>) + 'static) -> Self {
        Deferred::make(Slot::Empty, false, Some(Box::new(canceller)))
    }

    /// Gives a Deferred that has not fired yet a canceller (replacing any it had).
    pub(crate) fn set_canceller(&self, canceller: impl FnOnce(&Deferred<T>) + 'static) {
        let old = {
            let mut st = self.inner.st.borrow_mut();
            if st.called {
                return;
            }
            st.canceller.replace(Box::new(canceller))
        };
        drop(old);
    }

    /// A Deferred that already has `result`.
    pub fn from_result(result: Result<T, Failure>) -> Self {
        Deferred::make(Slot::Ready(result), true, None)
    }

    /// Fires with a value. The callbacks run now, unless the Deferred is paused.
    pub fn callback(&self, value: T) -> Result<(), AlreadyCalled> {
        self.resolve(Ok(value))
    }

    /// Fires with a failure. The errbacks run now, unless the Deferred is paused.
    pub fn errback(&self, failure: Failure) -> Result<(), AlreadyCalled> {
        self.resolve(Err(failure))
    }

    /// Fires with a value or a failure.
    ///
    /// After a [`cancel`](Deferred::cancel) that had no canceller, the first later firing is
    /// silently swallowed (the code that was going to fire it need not know it was
    /// cancelled); the one after that is an [`AlreadyCalled`] error.
    #[inline]
    pub fn resolve(&self, result: Result<T, Failure>) -> Result<(), AlreadyCalled> {
        match self.inner.start() {
            Start::Run => carry_on(self.inner.run_from(Cur::Value(result))),
            Start::Keep => self.inner.st.borrow_mut().result = Slot::Ready(result),
            Start::Other => return self.resolve_slow(result),
        }
        Ok(())
    }

    fn resolve_slow(&self, result: Result<T, Failure>) -> Result<(), AlreadyCalled> {
        match self.inner.fire(result) {
            Fire::Run(r) => carry_on(self.inner.run_from(Cur::Value(r))),
            Fire::Hold => {}
            Fire::Swallowed(r) => drop(r),
            Fire::Already(r) => {
                drop(r);
                return Err(AlreadyCalled);
            }
        }
        Ok(())
    }

    /// True once the Deferred has been fired (or is waiting on another one as its result).
    pub fn called(&self) -> bool {
        self.inner.st.borrow().called
    }

    /// True while [`pause`](Deferred::pause) calls outnumber [`unpause`](Deferred::unpause)
    /// calls.
    pub fn is_paused(&self) -> bool {
        self.inner.st.borrow().paused > 0
    }

    /// True if the result is here and has not been handed on.
    pub fn has_result(&self) -> bool {
        matches!(self.inner.st.borrow().result, Slot::Ready(_))
    }

    /// True if the result was handed on: to a Deferred that waited on this one, to an
    /// `await`, or to a consuming method such as [`map`](Deferred::map).
    pub fn is_consumed(&self) -> bool {
        matches!(self.inner.st.borrow().result, Slot::Consumed)
    }

    /// True if both handles are the same Deferred.
    pub fn ptr_eq(&self, other: &Deferred<T>) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    /// Takes the current result, if the chain has run to its end; the Deferred is consumed.
    /// Handy in tests and in synchronous code that knows the Deferred has fired.
    pub fn take_result(&self) -> Option<Result<T, Failure>> {
        self.inner.take_ready()
    }

    /// Fires with `value` unless already fired, in which case the value comes back.
    pub(crate) fn offer(&self, value: T) -> Result<(), T> {
        let start = self.inner.start();
        match start {
            Start::Run => carry_on(self.inner.run_from(Cur::Value(Ok(value)))),
            Start::Keep => self.inner.st.borrow_mut().result = Slot::Ready(Ok(value)),
            Start::Other => return self.offer_slow(value),
        }
        Ok(())
    }

    fn offer_slow(&self, value: T) -> Result<(), T> {
        match self.inner.fire(Ok(value)) {
            Fire::Run(r) => carry_on(self.inner.run_from(Cur::Value(r))),
            Fire::Hold | Fire::Swallowed(_) => {}
            Fire::Already(Ok(v)) => return Err(v),
            Fire::Already(Err(_)) => {}
        }
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn push_call(&self, f: impl FnOnce(Result<T, Failure>) -> Outcome<T> + 'static) {
        self.inner.push(Callback::new(f));
    }

    /// Stops the chain before its next callback; counted, so each `pause` needs an
    /// [`unpause`](Deferred::unpause).
    pub fn pause(&self) {
        self.inner.st.borrow_mut().paused += 1;
    }

    /// Undoes one [`pause`](Deferred::pause); the chain goes on when none is left. Extra
    /// unpauses are ignored.
    pub fn unpause(&self) {
        let run = {
            let mut st = self.inner.st.borrow_mut();
            if st.paused == 0 {
                return;
            }
            st.paused -= 1;
            Chain::runnable(&st) && !st.steps.is_empty()
        };
        if run {
            carry_on(self.inner.run_typed());
        }
    }

    /// Cancels the Deferred (Twisted's `Deferred.cancel`).
    ///
    /// - Not fired yet: calls the canceller, if there is one; if the Deferred still has no
    ///   result, fails it with [`Cancelled`](crate::defer::Cancelled). Without a canceller
    ///   the next `callback` / `errback` is then swallowed.
    /// - Waiting on another Deferred: cancels that one.
    /// - Otherwise nothing happens.
    ///
    /// ```
    /// use torsion::defer::{Deferred, FailureKind};
    ///
    /// let d = Deferred::<u8>::new();
    /// d.cancel();
    /// assert!(d.callback(1).is_ok()); // swallowed
    /// assert!(d.callback(2).is_err());
    /// assert_eq!(d.take_result().unwrap().unwrap_err().kind(), FailureKind::Cancelled);
    /// ```
    #[track_caller]
    pub fn cancel(&self) {
        let (canceller, waiting) = {
            let mut st = self.inner.st.borrow_mut();
            if st.called {
                (None, st.waiting.clone())
            } else {
                let c = st.canceller.take();
                if c.is_none() {
                    st.suppress = true;
                }
                (c, None)
            }
        };
        if let Some(w) = waiting {
            if let Some(inner) = w.upgrade() {
                inner.cancel();
            }
            return;
        }
        if self.called() {
            return;
        }
        if let Some(c) = canceller {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| c(self))) {
                let msg = crate::reactor::panic_message(&*p);
                tracing::error!("panic in a Deferred canceller: {msg}");
            }
        }
        if !self.called() {
            let _ = self.errback(Failure::cancelled());
        }
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
