//! Delayed calls (Twisted's `IDelayedCall`), stored in the reactor's timing wheel.

use std::cell::Cell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::Core;
use super::wheel::TimerKey;
use crate::rc_pool as pool;
use crate::{Reactor, TimerError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Pending,
    Called,
    Cancelled,
}

/// The part of a timer every closure type shares.
pub(crate) struct Header {
    state: Cell<State>,
    key: Cell<Option<TimerKey>>,
}

/// A scheduled closure. Header and closure live in one cell (`Rc<Node<F>>` seen as
/// `Rc<dyn TimerCall>`), taken from the pool of recycled cells, so scheduling a timer usually
/// allocates nothing.
pub(crate) trait TimerCall: pool::Release {
    fn header(&self) -> &Header;
    fn call(&self, reactor: &Reactor);
    fn discard(&self);
}

struct Node<F> {
    header: Header,
    f: Cell<Option<F>>,
}

impl<F: FnOnce(&Reactor) + 'static> TimerCall for Node<F> {
    fn header(&self) -> &Header {
        &self.header
    }
    fn call(&self, reactor: &Reactor) {
        if let Some(f) = self.f.take() {
            f(reactor);
        }
    }
    fn discard(&self) {
        drop(self.f.take());
    }
}

impl<F> pool::Release for Node<F> {
    fn release(self: Rc<Self>) {
        pool::recycle(self);
    }
}

impl<F> pool::Recycle for Node<F> {
    fn needs_drop(&mut self) -> bool {
        // The header is plain data; a closure that ran or was discarded is gone.
        std::mem::needs_drop::<F>() && self.f.get_mut().is_some()
    }
}

/// A shared reference to a timer's cell: the wheel holds one and each [`DelayedCall`] one;
/// whichever goes last gives the cell back to the pool.
pub(crate) type NodeRef = pool::Pooled<dyn TimerCall>;

pub(crate) fn node<F: FnOnce(&Reactor) + 'static>(f: F) -> NodeRef {
    let cell: Rc<dyn TimerCall> = pool::rc_new(move || Node {
        header: Header {
            state: Cell::new(State::Pending),
            key: Cell::new(None),
        },
        f: Cell::new(Some(f)),
    });
    NodeRef::new(cell)
}

/// How late past its deadline a call scheduled `delay` ahead may run: 1/32 of the delay, at
/// most 1 ms, never early. Deadlines that close together then share one wake-up (a stream of
/// long timers costs one loop pass per millisecond, not one per timer), while a short timer
/// keeps its precision: a 200 µs delay gets 6 µs.
pub(crate) fn slack_for(delay: Duration) -> u64 {
    (delay.as_nanos() / 32).min(1_000_000) as u64
}

pub(crate) fn set_key(node: &NodeRef, key: TimerKey) {
    node.header().key.set(Some(key));
}

/// Marks the node called (before running it, so that `cancel` from inside the call gives
/// `AlreadyCalled`, as in Twisted) and runs it.
pub(crate) fn fire(node: &NodeRef, reactor: &Reactor) {
    node.header().state.set(State::Called);
    node.header().key.set(None);
    node.call(reactor);
}

pub(crate) fn discard(node: &NodeRef) {
    node.header().state.set(State::Cancelled);
    node.header().key.set(None);
    node.discard();
}

/// A call scheduled with [`Reactor::call_later`]: cancel it, move it, or ask about it.
///
/// ```
/// use std::time::Duration;
/// use torsion::{Reactor, TimerError};
///
/// let reactor = Reactor::new().unwrap();
/// let call = reactor.call_later(Duration::from_secs(5), |_| unreachable!());
/// assert!(call.active());
/// call.cancel().unwrap();
/// assert!(!call.active());
/// assert_eq!(call.cancel(), Err(TimerError::AlreadyCancelled));
/// ```
#[derive(Clone)]
pub struct DelayedCall {
    pub(crate) core: Weak<Core>,
    pub(crate) node: NodeRef,
}

impl DelayedCall {
    fn check(&self) -> Result<(Rc<Core>, TimerKey), TimerError> {
        match self.node.header().state.get() {
            State::Called => Err(TimerError::AlreadyCalled),
            State::Cancelled => Err(TimerError::AlreadyCancelled),
            State::Pending => match (self.core.upgrade(), self.node.header().key.get()) {
                (Some(core), Some(key)) => Ok((core, key)),
                // The reactor is gone: the call can never run.
                _ => Err(TimerError::AlreadyCancelled),
            },
        }
    }

    /// Cancels the call. Errors if it already ran (or is running) or was cancelled.
    pub fn cancel(&self) -> Result<(), TimerError> {
        let (core, key) = self.check()?;
        let removed = core.timers.borrow_mut().remove(key);
        discard(&self.node);
        drop(removed);
        Ok(())
    }

    /// Reschedules the call to run `delay` from now.
    pub fn reset(&self, delay: Duration) -> Result<(), TimerError> {
        let (core, key) = self.check()?;
        let deadline = core.deadline_after(delay);
        let mut timers = core.timers.borrow_mut();
        timers.set_slack(key, slack_for(delay));
        timers.reschedule(key, deadline, true);
        Ok(())
    }

    /// Moves the call by `seconds` relative to its scheduled time: positive is later, negative
    /// earlier (Twisted's `IDelayedCall.delay`).
    pub fn delay(&self, seconds: f64) -> Result<(), TimerError> {
        let (core, key) = self.check()?;
        let mut timers = core.timers.borrow_mut();
        let old = timers.deadline(key).unwrap_or(0);
        let shift = (seconds.abs() * 1e9).min(u64::MAX as f64) as u64;
        let new = if seconds >= 0.0 {
            old.saturating_add(shift)
        } else {
            old.saturating_sub(shift)
        };
        // The slack follows the new distance to the deadline, as for a fresh `call_later`.
        let ahead = new.saturating_sub(core.now_ns());
        timers.set_slack(key, slack_for(Duration::from_nanos(ahead)));
        timers.reschedule(key, new, false);
        Ok(())
    }

    /// True until the call has run or been cancelled.
    pub fn active(&self) -> bool {
        self.check().is_ok()
    }

    /// When the call is due, in [`Reactor::seconds`] units; `None` once it ran or was
    /// cancelled.
    pub fn time(&self) -> Option<f64> {
        let (core, key) = self.check().ok()?;
        let ns = core.timers.borrow().deadline(key)?;
        Some(ns as f64 / 1e9)
    }
}

impl std::fmt::Debug for DelayedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelayedCall")
            .field("state", &self.node.header().state.get())
            .field("time", &self.time())
            .finish()
    }
}
