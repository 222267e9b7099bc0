//! [`IdleTimeout`]: close a connection that stays quiet too long (Twisted's `TimeoutMixin`).

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use crate::task::{Clock, ScheduledCall};
use crate::{ConnectionHandle, Cx, Reactor};

/// The action an [`IdleTimeout`] runs when it expires (Twisted's `timeoutConnection`).
type Action = Rc<RefCell<dyn FnMut()>>;

/// An idle timer for one connection, kept in its protocol (Twisted's `TimeoutMixin`).
///
/// Nothing is automatic, as in Twisted: [`set_timeout`](Self::set_timeout) arms it, and the
/// protocol calls [`reset_timeout`](Self::reset_timeout) whenever it sees activity (usually
/// in `data_received`). When a whole period passes without a reset the action runs, once;
/// after that `reset_timeout` does nothing until `set_timeout` arms it again. Dropping the
/// `IdleTimeout` cancels it.
///
/// The action is Twisted's `timeoutConnection`: [`IdleTimeout::for_connection`] closes the
/// connection gracefully (Twisted's default), [`IdleTimeout::in_connection`] runs your own
/// code with the connection's [`Cx`], and [`IdleTimeout::new`] runs any closure.
///
/// It runs on any [`Clock`]: the [`Reactor`], or a [`testing::Clock`](crate::testing::Clock)
/// that a test moves by hand.
///
/// ```
/// use std::time::Duration;
/// use torsion::protocols::policies::IdleTimeout;
/// use torsion::{Cx, Protocol, Reactor};
///
/// /// Echoes, and hangs up on a client quiet for a minute.
/// #[derive(Default)]
/// struct Echo {
///     idle: Option<IdleTimeout<Reactor>>,
/// }
///
/// impl Protocol for Echo {
///     fn connection_made(&mut self, cx: &mut Cx<'_>) {
///         let mut idle = IdleTimeout::for_connection(cx.reactor().clone(), cx.handle());
///         idle.set_timeout(Some(Duration::from_secs(60)));
///         self.idle = Some(idle);
///     }
///     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
///         if let Some(idle) = &mut self.idle {
///             idle.reset_timeout();
///         }
///         cx.write(data);
///     }
/// }
/// ```
pub struct IdleTimeout<C: Clock = Reactor> {
    clock: C,
    period: Option<Duration>,
    call: Option<C::Call>,
    action: Action,
}

impl<C: Clock> fmt::Debug for IdleTimeout<C>
where
    C::Call: 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdleTimeout")
            .field("period", &self.period)
            .field("deadline", &self.deadline())
            .finish_non_exhaustive()
    }
}

impl<C: Clock> IdleTimeout<C>
where
    C::Call: 'static,
{
    /// A timeout on `clock` that runs `timeout_connection` when it expires. It is not armed
    /// yet (Twisted's `timeOut = None`).
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use std::time::Duration;
    /// use torsion::protocols::policies::IdleTimeout;
    /// use torsion::testing::Clock;
    ///
    /// let clock = Clock::new();
    /// let timed_out = Rc::new(Cell::new(false));
    /// let flag = timed_out.clone();
    /// let mut idle = IdleTimeout::new(clock.clone(), move || flag.set(true));
    /// idle.set_timeout(Some(Duration::from_secs(3)));
    /// clock.advance(Duration::from_secs(2));
    /// idle.reset_timeout(); // activity: three more seconds
    /// clock.advance(Duration::from_secs(2));
    /// assert!(!timed_out.get());
    /// clock.advance(Duration::from_secs(1));
    /// assert!(timed_out.get());
    /// ```
    pub fn new(clock: C, timeout_connection: impl FnMut() + 'static) -> Self {
        IdleTimeout {
            clock,
            period: None,
            call: None,
            action: Rc::new(RefCell::new(timeout_connection)),
        }
    }

    /// A timeout whose expiry closes `conn` gracefully: Twisted's default
    /// `timeoutConnection`, `transport.loseConnection()`.
    pub fn for_connection(clock: C, conn: ConnectionHandle) -> Self {
        Self::new(clock, move || conn.lose_connection())
    }

    /// A timeout whose expiry runs `timeout_connection` with the connection's context (through
    /// [`ConnectionHandle::call`]), to say something before closing, for example.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::protocols::policies::IdleTimeout;
    /// use torsion::{Cx, Protocol, Reactor};
    ///
    /// #[derive(Default)]
    /// struct Polite(Option<IdleTimeout<Reactor>>);
    /// impl Protocol for Polite {
    ///     fn connection_made(&mut self, cx: &mut Cx<'_>) {
    ///         let mut idle = IdleTimeout::in_connection(cx.reactor().clone(), cx.handle(), |cx| {
    ///             cx.write(b"idle too long, bye\r\n");
    ///             cx.transport().lose_connection();
    ///         });
    ///         idle.set_timeout(Some(Duration::from_secs(300)));
    ///         self.0 = Some(idle);
    ///     }
    /// }
    /// ```
    pub fn in_connection(
        clock: C,
        conn: ConnectionHandle,
        timeout_connection: impl FnMut(&mut Cx<'_>) + 'static,
    ) -> Self {
        let f = Rc::new(RefCell::new(timeout_connection));
        Self::new(clock, move || {
            let f = f.clone();
            conn.call(move |cx| {
                if let Ok(mut f) = f.try_borrow_mut() {
                    f(cx);
                }
            });
        })
    }

    /// Sets the period (`None` disarms) and returns the previous one (Twisted's
    /// `setTimeout`). A pending timer is moved to a whole `period` from now; with none pending,
    /// one is started.
    pub fn set_timeout(&mut self, period: Option<Duration>) -> Option<Duration> {
        let previous = std::mem::replace(&mut self.period, period);
        match (self.pending(), period) {
            (Some(call), None) => {
                let _ = call.cancel();
                self.call = None;
            }
            (Some(call), Some(p)) => {
                let _ = call.reset(p);
            }
            (None, Some(p)) => self.arm(p),
            (None, None) => self.call = None,
        }
        previous
    }

    /// Restarts the whole period from now, if the timer is pending (Twisted's
    /// `resetTimeout`). Call it on activity.
    pub fn reset_timeout(&mut self) {
        if let (Some(call), Some(p)) = (self.pending(), self.period) {
            let _ = call.reset(p);
        }
    }

    /// The period (Twisted's `timeOut`).
    pub fn timeout(&self) -> Option<Duration> {
        self.period
    }

    /// When the pending timer fires, in [`Clock::seconds`]; `None` when none is pending.
    pub fn deadline(&self) -> Option<f64> {
        self.pending().and_then(|c| c.time())
    }

    /// True while a timer is pending.
    pub fn is_pending(&self) -> bool {
        self.pending().is_some()
    }

    /// Runs the action now, as an expiry would (for tests and for closing early).
    pub fn timeout_connection(&self) {
        fire(&self.action);
    }

    fn pending(&self) -> Option<&C::Call> {
        self.call.as_ref().filter(|c| c.active())
    }

    fn arm(&mut self, period: Duration) {
        let action = self.action.clone();
        self.call = Some(self.clock.call_later(period, move || fire(&action)));
    }
}

fn fire(action: &Action) {
    // An action that ends up expiring itself again (a test clock advanced from inside it)
    // is not re-entered.
    if let Ok(mut f) = action.try_borrow_mut() {
        f();
    }
}

impl<C: Clock> Drop for IdleTimeout<C> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            if call.active() {
                let _ = call.cancel();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Twisted's `TimeoutMixinTests`, with `TimeoutTester`'s `timedOut` flag as the action.

    use std::cell::Cell;

    use super::*;
    use crate::testing::Clock;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn pump(clock: &Clock, steps: &[f64]) {
        for &step in steps {
            clock.advance(s(step));
        }
    }

    /// `TimeoutTester`: a 3 s timeout set at connection, reset on data.
    fn tester(clock: &Clock) -> (IdleTimeout<Clock>, Rc<Cell<bool>>) {
        let timed_out = Rc::new(Cell::new(false));
        let flag = timed_out.clone();
        let idle = IdleTimeout::new(clock.clone(), move || flag.set(true));
        (idle, timed_out)
    }

    #[test]
    fn overridden_call_later_uses_the_given_clock() {
        let clock = Clock::new();
        let (mut idle, _) = tester(&clock);
        idle.set_timeout(Some(s(10.0)));
        assert_eq!(clock.calls().len(), 1);
    }

    #[test]
    fn timeout() {
        let clock = Clock::new();
        let (mut idle, timed_out) = tester(&clock);
        idle.set_timeout(Some(s(3.0)));
        pump(&clock, &[0.0, 0.5, 1.0, 1.0]);
        assert!(!timed_out.get());
        pump(&clock, &[0.0, 1.0]);
        assert!(timed_out.get());
    }

    #[test]
    fn no_timeout_while_data_arrives() {
        let clock = Clock::new();
        let (mut idle, timed_out) = tester(&clock);
        idle.set_timeout(Some(s(3.0)));
        pump(&clock, &[0.0, 0.5, 1.0, 1.0]);
        assert!(!timed_out.get());
        idle.reset_timeout(); // dataReceived(b"hello there")
        pump(&clock, &[0.0, 1.0, 1.0, 0.5]);
        assert!(!timed_out.get());
        pump(&clock, &[0.0, 1.0]);
        assert!(timed_out.get());
    }

    #[test]
    fn reset_timeout_installs_the_new_period() {
        let clock = Clock::new();
        let (mut idle, timed_out) = tester(&clock);
        assert_eq!(idle.set_timeout(Some(s(1.0))), None);
        assert_eq!(idle.timeout(), Some(s(1.0)));
        pump(&clock, &[0.0, 0.9]);
        assert!(!timed_out.get());
        pump(&clock, &[0.0, 0.2]);
        assert!(timed_out.get());
    }

    #[test]
    fn cancel_timeout() {
        let clock = Clock::new();
        let (mut idle, timed_out) = tester(&clock);
        idle.set_timeout(Some(s(5.0)));
        idle.set_timeout(None);
        assert_eq!(idle.timeout(), None);
        pump(&clock, &[0.0, 5.0, 5.0, 5.0]);
        assert!(!timed_out.get());
        assert!(clock.calls().is_empty());
    }

    #[test]
    fn set_timeout_returns_the_previous_period() {
        let clock = Clock::new();
        let (mut idle, _) = tester(&clock);
        idle.set_timeout(Some(s(5.0)));
        assert_eq!(idle.set_timeout(Some(s(10.0))), Some(s(5.0)));
        assert_eq!(idle.set_timeout(None), Some(s(10.0)));
        assert_eq!(idle.set_timeout(Some(s(1.0))), None);
        assert_eq!(idle.timeout(), Some(s(1.0)));
        idle.set_timeout(None);
        assert!(clock.calls().is_empty());
    }

    #[test]
    fn set_timeout_none_after_an_outside_cancel() {
        let clock = Clock::new();
        let (mut idle, _) = tester(&clock);
        idle.set_timeout(Some(s(3.0)));
        clock.calls()[0].cancel().unwrap();
        assert!(idle.timeout().is_some());
        idle.set_timeout(None);
        assert_eq!(idle.timeout(), None);
    }

    #[test]
    fn reset_after_expiry_does_nothing_until_set_again() {
        let clock = Clock::new();
        let (mut idle, timed_out) = tester(&clock);
        idle.set_timeout(Some(s(1.0)));
        pump(&clock, &[1.0]);
        assert!(timed_out.get() && !idle.is_pending());
        timed_out.set(false);
        idle.reset_timeout();
        pump(&clock, &[5.0]);
        assert!(!timed_out.get());
        idle.set_timeout(Some(s(2.0)));
        assert_eq!(idle.deadline(), Some(8.0));
        pump(&clock, &[2.0]);
        assert!(timed_out.get());
    }

    #[test]
    fn setting_a_new_period_moves_the_pending_deadline() {
        let clock = Clock::new();
        let (mut idle, _) = tester(&clock);
        idle.set_timeout(Some(s(3.0)));
        pump(&clock, &[1.0]);
        idle.set_timeout(Some(s(10.0)));
        assert_eq!(idle.deadline(), Some(11.0));
        assert_eq!(clock.calls().len(), 1);
    }

    #[test]
    fn dropping_cancels() {
        let clock = Clock::new();
        let (mut idle, timed_out) = tester(&clock);
        idle.set_timeout(Some(s(1.0)));
        drop(idle);
        assert!(clock.calls().is_empty());
        pump(&clock, &[2.0]);
        assert!(!timed_out.get());
    }
}
