//! Deferreds that fire after a delay: [`defer_later`], [`sleep`], and
//! [`Deferred::add_timeout`].

use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::rc::Rc;
use std::time::Duration;

use super::{Clock, ScheduledCall};
use crate::defer::{Deferred, Failure, FailureKind, TryDeferred, maybe_deferred};

/// A Deferred of `f`'s outcome, run once `delay` has passed (Twisted's `deferLater`). `f`
/// returns a `Result` or a Deferred (see [`TryDeferred`]). Cancelling the Deferred
/// before then cancels the timer and fails it with
/// [`Cancelled`](crate::defer::Cancelled).
///
/// ```
/// use std::time::Duration;
/// use torsion::task::defer_later;
/// use torsion::testing::Clock;
///
/// let clock = Clock::new();
/// let d = defer_later(&clock, Duration::from_secs(2), || Ok("done"));
/// clock.advance(Duration::from_secs(1));
/// assert!(!d.called());
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(d.take_result().unwrap().unwrap(), "done");
/// ```
pub fn defer_later<C, T, R, F>(clock: &C, delay: Duration, f: F) -> Deferred<T>
where
    C: Clock,
    C::Call: 'static,
    T: 'static,
    R: TryDeferred<T>,
    F: FnOnce() -> R + 'static,
{
    ticker(clock, delay).and_then(move |()| maybe_deferred(f))
}

/// A Deferred that succeeds once `duration` has passed; `sleep(&reactor, d).await` in a
/// spawned task. Cancelling it cancels the timer.
///
/// ```
/// use std::time::Duration;
/// use torsion::Reactor;
///
/// let reactor = Reactor::builder().install_signal_handlers(false).build().unwrap();
/// let r = reactor.clone();
/// reactor.spawn(async move {
///     torsion::sleep(&r, Duration::from_millis(5)).await?;
///     r.stop().ok();
///     Ok(())
/// });
/// reactor.run().unwrap();
/// ```
pub fn sleep<C>(clock: &C, duration: Duration) -> Deferred<()>
where
    C: Clock,
    C::Call: 'static,
{
    ticker(clock, duration)
}

fn ticker<C>(clock: &C, delay: Duration) -> Deferred<()>
where
    C: Clock,
    C::Call: 'static,
{
    let call: Rc<RefCell<Option<C::Call>>> = Rc::default();
    let slot = call.clone();
    let d = Deferred::with_canceller(move |_| {
        let call = slot.borrow_mut().take();
        if let Some(c) = call {
            let _ = c.cancel();
        }
    });
    let target = d.clone();
    let scheduled = clock.call_later(delay, move || {
        let _ = target.callback(());
    });
    *call.borrow_mut() = Some(scheduled);
    d
}

impl<T: 'static> Deferred<T> {
    /// Cancels this Deferred if it has not fired within `timeout` on `clock`, turning the
    /// resulting [`Cancelled`](crate::defer::Cancelled) failure into a
    /// [`TimedOut`](crate::defer::TimedOut) one (Twisted's `addTimeout`). The timer is
    /// cancelled when the Deferred fires first. A canceller that gives the Deferred another
    /// result wins over the timeout. Callbacks added before this call see the cancellation;
    /// those added after see the timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::defer::{Deferred, FailureKind};
    /// use torsion::testing::Clock;
    ///
    /// let clock = Clock::new();
    /// let d = Deferred::<u8>::new();
    /// d.add_timeout(&clock, Duration::from_secs(5));
    /// clock.advance(Duration::from_secs(5));
    /// assert_eq!(d.take_result().unwrap().unwrap_err().kind(), FailureKind::TimedOut);
    /// ```
    #[track_caller]
    pub fn add_timeout<C>(&self, clock: &C, timeout: Duration) -> &Self
    where
        C: Clock,
        C::Call: 'static,
    {
        let location = Location::caller();
        let timed_out = Rc::new(Cell::new(false));
        let fired = timed_out.clone();
        let me = self.clone();
        let call = clock.call_later(timeout, move || {
            fired.set(true);
            me.cancel();
        });
        self.push_call(move |r| {
            let r = match r {
                Err(f) if timed_out.get() && f.is(FailureKind::Cancelled) => {
                    Err(Failure::timed_out_at(timeout, location))
                }
                other => other,
            };
            if call.active() {
                let _ = call.cancel();
            }
            crate::defer::Outcome::Value(r)
        });
        self
    }
}

#[cfg(test)]
mod tests;
