//! Running things over time and on other threads (Twisted's `twisted.internet.task` and
//! `twisted.internet.threads`).
//!
//! | Twisted | torsion |
//! | --- | --- |
//! | `IReactorTime` (`callLater`, `seconds`) | [`Clock`], implemented by [`Reactor`] and [`testing::Clock`](crate::testing::Clock) |
//! | `ensureDeferred(coro)` | [`Reactor::spawn`] |
//! | `deferLater`, `asyncio.sleep` | [`defer_later`], [`sleep`] |
//! | `task.react` | [`react`] |
//! | `threads.deferToThread`, `blockingCallFromThread` | [`defer_to_thread`], [`ReactorHandle::blocking_call_from_thread`](crate::ReactorHandle::blocking_call_from_thread) |
//! | `task.LoopingCall` | [`LoopingCall`] |
//! | `task.Cooperator`, `cooperate`, `coiterate`, `CooperativeTask` | [`Cooperator`], [`cooperate`], [`coiterate`], [`CooperativeTask`] |

mod cooperate;
mod looping;
mod react;
mod spawn;
mod threads;
mod time;

use std::time::Duration;

use crate::{DelayedCall, Reactor, TimerError};

pub use cooperate::{
    CooperativeTask, Cooperator, DEFAULT_SLICE, Step, TaskError, coiterate, cooperate,
};
pub use looping::{LoopingCall, LoopingCallError};
pub use react::{react, react_with};
pub use threads::defer_to_thread;
pub use time::{defer_later, sleep};

/// A source of time and timers (Twisted's `IReactorTime`): the [`Reactor`], or a
/// [`testing::Clock`](crate::testing::Clock) that tests move by hand. Code written against
/// `Clock` (timeouts, [`LoopingCall`], retries) runs on either.
///
/// ```
/// use std::time::Duration;
/// use torsion::task::Clock;
///
/// fn remind<C: Clock>(clock: &C) {
///     clock.call_later(Duration::from_secs(1), || println!("one second later"));
/// }
/// remind(&torsion::testing::Clock::new());
/// ```
pub trait Clock {
    /// The handle [`Clock::call_later`] returns.
    type Call: ScheduledCall;

    /// The current time in seconds.
    fn seconds(&self) -> f64;

    /// Runs `f` once `delay` has passed; calls due at the same time run in the order they
    /// were scheduled.
    fn call_later<F: FnOnce() + 'static>(&self, delay: Duration, f: F) -> Self::Call;
}

/// A call scheduled with [`Clock::call_later`] (Twisted's `IDelayedCall`).
pub trait ScheduledCall {
    /// Cancels the call; an error if it already ran or was cancelled.
    fn cancel(&self) -> Result<(), TimerError>;
    /// Reschedules the call to run `delay` from now.
    fn reset(&self, delay: Duration) -> Result<(), TimerError>;
    /// True until the call has run or been cancelled.
    fn active(&self) -> bool;
    /// When the call is due, in [`Clock::seconds`] units, while it is active.
    fn time(&self) -> Option<f64>;
}

impl ScheduledCall for DelayedCall {
    fn cancel(&self) -> Result<(), TimerError> {
        DelayedCall::cancel(self)
    }
    fn reset(&self, delay: Duration) -> Result<(), TimerError> {
        DelayedCall::reset(self, delay)
    }
    fn active(&self) -> bool {
        DelayedCall::active(self)
    }
    fn time(&self) -> Option<f64> {
        DelayedCall::time(self)
    }
}

impl Clock for Reactor {
    type Call = DelayedCall;

    fn seconds(&self) -> f64 {
        Reactor::seconds(self)
    }

    fn call_later<F: FnOnce() + 'static>(&self, delay: Duration, f: F) -> DelayedCall {
        Reactor::call_later(self, delay, move |_| f())
    }
}
