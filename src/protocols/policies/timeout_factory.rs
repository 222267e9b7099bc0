//! [`TimeoutFactory`]: an idle timeout for every connection of a factory, reset by every read
//! and every write (Twisted's `TimeoutFactory` and `TimeoutProtocol`).

use std::cell::{Cell, RefCell};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use super::reach::{Reach, ReachFn, reach_of};
use super::timeout::IdleTimeout;
use super::wrapper::{Hooks, Live, with_hooks};
use crate::task::Clock;
use crate::{
    Address, ClientFactory, ConnectError, ConnectionHandle, Connector, Cx, Factory, Protocol,
    Reactor, Reason,
};

/// Twisted's default period: 30 minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Wraps a factory so that each of its connections is closed after a period with nothing
/// read and nothing written by its protocol (Twisted's `TimeoutFactory`, 30 minutes by
/// default). Unlike [`IdleTimeout`], the reset is automatic.
///
/// Timers run on `clock`: pass the reactor that listens (or a
/// [`testing::Clock`](crate::testing::Clock) in tests).
///
/// ```no_run
/// use std::rc::Rc;
/// use std::time::Duration;
/// use torsion::factory::from_fn;
/// use torsion::protocols::policies::TimeoutFactory;
/// use torsion::{Cx, Protocol, Reactor};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
///         cx.write(data);
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let echo = Rc::new(from_fn(|_| Some(Box::new(Echo) as Box<dyn Protocol>)));
/// let factory = TimeoutFactory::new(echo, reactor.clone()).with_period(Some(Duration::from_secs(60)));
/// reactor.listen_tcp(8007, Rc::new(factory))?;
/// reactor.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TimeoutFactory<C: Clock + Clone + 'static = Reactor, F: ?Sized = dyn Factory> {
    wrapped: Rc<F>,
    clock: C,
    period: Option<Duration>,
    live: Rc<Live>,
    reach: Option<ReachFn>,
}

impl<C: Clock + Clone + 'static, F: Factory + ?Sized> TimeoutFactory<C, F> {
    /// Wraps `wrapped`, with timers on `clock` and the default period of 30 minutes.
    pub fn new(wrapped: Rc<F>, clock: C) -> Self {
        TimeoutFactory {
            wrapped,
            clock,
            period: Some(DEFAULT_TIMEOUT),
            live: Rc::default(),
            reach: None,
        }
    }

    /// Sets the period for the connections built from now on (`None`: no timeout).
    pub fn with_period(mut self, period: Option<Duration>) -> Self {
        self.period = period;
        self
    }

    /// The period given to new connections.
    pub fn period(&self) -> Option<Duration> {
        self.period
    }

    /// Handles to the live connections.
    pub fn connections(&self) -> Vec<ConnectionHandle> {
        self.live.handles()
    }

    /// Builds the wrapper itself rather than a boxed protocol, to reach its methods.
    pub fn build(&self, addr: &Address) -> Option<TimeoutProtocol<C>> {
        let wrapped = self.wrapped.build_protocol(addr)?;
        Some(TimeoutProtocol::new(
            wrapped,
            self.clock.clone(),
            self.period,
            self.live.clone(),
            self.reach.clone(),
        ))
    }

    #[cfg(test)]
    pub(crate) fn reach_with(mut self, f: ReachFn) -> Self {
        self.reach = Some(f);
        self
    }
}

impl<C: Clock + Clone + 'static, F: Factory + ?Sized> Factory for TimeoutFactory<C, F> {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(self.build(addr)?))
    }

    fn start_factory(&self) {
        self.wrapped.start_factory();
    }

    fn stop_factory(&self) {
        self.wrapped.stop_factory();
    }
}

/// For outgoing connections: the connector callbacks go to the wrapped client factory.
impl<C: Clock + Clone + 'static, F: ClientFactory + ?Sized> ClientFactory for TimeoutFactory<C, F> {
    fn started_connecting(&self, connector: &Connector) {
        self.wrapped.started_connecting(connector);
    }

    fn client_connection_failed(&self, connector: &Connector, reason: ConnectError) {
        self.wrapped.client_connection_failed(connector, reason);
    }

    fn client_connection_lost(&self, connector: &Connector, reason: Reason) {
        self.wrapped.client_connection_lost(connector, reason);
    }
}

/// The protocol a [`TimeoutFactory`] builds: it passes everything on to the wrapped protocol
/// and resets the timer on every read and every write the wrapped protocol makes (Twisted's
/// `TimeoutProtocol`). On expiry it closes the connection gracefully.
pub struct TimeoutProtocol<C: Clock + 'static = Reactor> {
    wrapped: Box<dyn Protocol>,
    idle: IdleTimeout<C>,
    initial: Option<Duration>,
    target: Rc<RefCell<Option<Rc<dyn Reach>>>>,
    timed_out: Rc<Cell<bool>>,
    live: Rc<Live>,
    key: Option<usize>,
    reach: Option<ReachFn>,
}

impl<C: Clock + 'static> TimeoutProtocol<C> {
    fn new(
        wrapped: Box<dyn Protocol>,
        clock: C,
        period: Option<Duration>,
        live: Rc<Live>,
        reach: Option<ReachFn>,
    ) -> Self {
        let target: Rc<RefCell<Option<Rc<dyn Reach>>>> = Rc::default();
        let timed_out = Rc::new(Cell::new(false));
        let (t, flag) = (target.clone(), timed_out.clone());
        let idle = IdleTimeout::new(clock, move || {
            flag.set(true);
            let conn = t.borrow().clone();
            if let Some(conn) = conn {
                conn.reach(Box::new(|cx| cx.transport().lose_connection()));
            }
        });
        TimeoutProtocol {
            wrapped,
            idle,
            initial: period,
            target,
            timed_out,
            live,
            key: None,
            reach,
        }
    }

    /// Cancels the timer and starts a new one of `period` (`None`: no timeout), as
    /// Twisted's `TimeoutProtocol.setTimeout`.
    pub fn set_timeout(&mut self, period: Option<Duration>) {
        self.idle.set_timeout(None);
        self.idle.set_timeout(period);
    }

    /// Cancels the timer; nothing happens if none is pending.
    pub fn cancel_timeout(&mut self) {
        self.idle.set_timeout(None);
    }

    /// Restarts the period, as activity does.
    pub fn reset_timeout(&mut self) {
        self.idle.reset_timeout();
    }

    /// The idle timer.
    pub fn timeout(&self) -> &IdleTimeout<C> {
        &self.idle
    }

    /// True once the timer expired (and the connection was told to close).
    pub fn timed_out(&self) -> bool {
        self.timed_out.get()
    }

    /// The wrapped protocol.
    pub fn wrapped(&self) -> &dyn Protocol {
        &*self.wrapped
    }

    /// Calls `f` on the wrapped protocol with a transport whose writes reset the timer.
    fn relay(&mut self, cx: &mut Cx<'_>, f: impl FnOnce(&mut dyn Protocol, &mut Cx<'_>)) {
        let wrapped = &mut *self.wrapped;
        with_hooks(cx, &mut ResetOnWrite(&mut self.idle), |cx| f(wrapped, cx));
    }
}

struct ResetOnWrite<'a, C: Clock>(&'a mut IdleTimeout<C>);

impl<C: Clock> Hooks for ResetOnWrite<'_, C>
where
    C::Call: 'static,
{
    fn wrote(&mut self, _len: usize) {
        self.0.reset_timeout();
    }
}

impl<C: Clock + 'static> Drop for TimeoutProtocol<C> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.live.remove(key);
        }
    }
}

impl<C: Clock + 'static> Protocol for TimeoutProtocol<C> {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        *self.target.borrow_mut() = Some(reach_of(self.reach.as_ref(), cx));
        self.key = Some(self.live.insert(cx.handle()));
        self.idle.set_timeout(self.initial);
        self.relay(cx, |p, cx| p.connection_made(cx));
    }

    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        self.idle.reset_timeout();
        self.relay(cx, |p, cx| p.data_received(cx, data));
    }

    fn connection_lost(&mut self, cx: &mut Cx<'_>, reason: Reason) {
        self.cancel_timeout();
        if let Some(key) = self.key.take() {
            self.live.remove(key);
        }
        self.target.borrow_mut().take();
        self.wrapped.connection_lost(cx, reason);
    }

    fn half_closeable(&self) -> bool {
        self.wrapped.half_closeable()
    }

    fn read_connection_lost(&mut self, cx: &mut Cx<'_>) {
        self.relay(cx, |p, cx| p.read_connection_lost(cx));
    }

    fn write_connection_lost(&mut self, cx: &mut Cx<'_>) {
        self.relay(cx, |p, cx| p.write_connection_lost(cx));
    }

    fn pause_writing(&mut self, cx: &mut Cx<'_>) {
        self.relay(cx, |p, cx| p.pause_writing(cx));
    }

    fn resume_writing(&mut self, cx: &mut Cx<'_>) {
        self.relay(cx, |p, cx| p.resume_writing(cx));
    }

    fn file_descriptor_received(&mut self, cx: &mut Cx<'_>, fd: OwnedFd) {
        self.relay(cx, |p, cx| p.file_descriptor_received(cx, fd));
    }
}

#[cfg(test)]
mod tests {
    //! Twisted's `TimeoutFactoryTests` and `TimeoutProtocolTests` on a shared
    //! `StringTransport` and a `testing::Clock` (`disconnected` is the transport closing).

    use super::*;
    use crate::factory::from_fn;
    use crate::protocols::policies::reach::testing::Conn;
    use crate::testing::Clock;

    /// Twisted's `SimpleProtocol`: records data. The test writes through it on command.
    struct Simple;
    impl Protocol for Simple {
        fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
            if let Some(what) = data.strip_prefix(b"write:") {
                cx.write(what);
            } else if let Some(what) = data.strip_prefix(b"writev:") {
                cx.transport().write_vectored(&[what, what, what]);
            }
        }
    }

    fn pump(clock: &Clock, steps: &[f64]) {
        for &s in steps {
            clock.advance(Duration::from_secs_f64(s));
        }
    }

    fn setup(period: Option<Duration>) -> (Clock, Conn, TimeoutFactory<Clock>) {
        let clock = Clock::new();
        let (t, reactor, reach) = Conn::transport();
        let simple = Rc::new(from_fn(|_| Some(Box::new(Simple) as Box<dyn Protocol>)));
        let factory = TimeoutFactory::new(simple as Rc<dyn Factory>, clock.clone())
            .with_period(period)
            .reach_with(reach);
        let p = factory.build_protocol(&Address::Unknown).unwrap();
        (clock, Conn::connect(reactor, t, p), factory)
    }

    fn disconnected(c: &Conn) -> bool {
        c.t.borrow().disconnecting()
    }

    #[test]
    fn timeout() {
        let (clock, c, factory) = setup(Some(Duration::from_secs(3)));
        assert_eq!(factory.connections().len(), 1);
        pump(&clock, &[0.0, 0.5, 1.0, 1.0, 0.4]);
        assert!(!disconnected(&c));
        pump(&clock, &[0.0, 0.2]);
        assert!(disconnected(&c));
    }

    #[test]
    fn send_avoids_timeout() {
        // Data the protocol receives resets too, so these commands arrive at the time of the
        // writes Twisted makes; each write resets the same way.
        let (clock, mut c, _f) = setup(Some(Duration::from_secs(3)));
        pump(&clock, &[0.0, 0.5, 1.0]);
        assert!(!disconnected(&c));
        c.feed(b"write:bytes bytes bytes");
        pump(&clock, &[0.0, 1.0, 1.0]);
        assert!(!disconnected(&c));
        c.feed(b"writev:bytes");
        pump(&clock, &[0.0, 1.0, 1.0]);
        assert!(!disconnected(&c));
        pump(&clock, &[0.0, 2.0]);
        assert!(disconnected(&c));
        assert_eq!(
            c.t.borrow().value(),
            b"bytes bytes bytesbytesbytesbytes".as_slice()
        );
    }

    #[test]
    fn a_write_alone_resets_the_timer() {
        let (clock, mut c, _f) = setup(Some(Duration::from_secs(3)));
        pump(&clock, &[2.0]);
        // A write from a callback that is not a read: pause_writing.
        struct WritesOnPause;
        impl Protocol for WritesOnPause {
            fn pause_writing(&mut self, cx: &mut Cx<'_>) {
                cx.write(b"x");
            }
        }
        let live = Rc::new(Live::default());
        let mut p = TimeoutProtocol::new(
            Box::new(WritesOnPause),
            clock.clone(),
            Some(Duration::from_secs(3)),
            live,
            None,
        );
        c.with(|_, cx| p.connection_made(cx));
        assert_eq!(p.timeout().deadline(), Some(5.0));
        pump(&clock, &[2.0]);
        c.with(|_, cx| p.pause_writing(cx));
        assert_eq!(p.timeout().deadline(), Some(7.0));
    }

    #[test]
    fn receive_avoids_timeout() {
        let (clock, mut c, _f) = setup(Some(Duration::from_secs(3)));
        pump(&clock, &[0.0, 1.0, 0.5]);
        assert!(!disconnected(&c));
        c.feed(b"bytes bytes bytes");
        pump(&clock, &[0.0, 1.0, 1.0]);
        assert!(!disconnected(&c));
        pump(&clock, &[0.0, 1.0, 1.0]);
        assert!(disconnected(&c));
    }

    /// `TimeoutProtocolTests`: the wrapper's own controls, built with no period.
    fn bare() -> (Clock, Conn, TimeoutProtocol<Clock>) {
        let (clock, c, factory) = setup(None);
        let p = factory.build(&Address::Unknown).unwrap();
        (clock, c, p)
    }

    #[test]
    fn cancel_timeout() {
        let (clock, mut c, mut p) = bare();
        c.with(|_, cx| p.connection_made(cx));
        p.set_timeout(Some(Duration::from_secs(3)));
        assert!(p.timeout().is_pending());
        clock.advance(Duration::from_secs(1));
        p.cancel_timeout();
        assert!(!p.timeout().is_pending());
        clock.advance(Duration::from_secs(3));
        assert!(!p.timed_out() && !disconnected(&c));
    }

    #[test]
    fn cancel_timeout_with_no_timeout() {
        let (_clock, mut c, mut p) = bare();
        c.with(|_, cx| p.connection_made(cx));
        assert!(!p.timeout().is_pending());
        p.cancel_timeout();
        assert!(!disconnected(&c));
    }

    #[test]
    fn cancel_timeout_already_called() {
        let (clock, mut c, mut p) = bare();
        c.with(|_, cx| p.connection_made(cx));
        p.set_timeout(Some(Duration::from_secs(3)));
        clock.advance(Duration::from_secs(3));
        assert!(p.timed_out() && disconnected(&c));
        p.cancel_timeout();
    }

    #[test]
    fn cancel_timeout_already_cancelled() {
        let (clock, mut c, mut p) = bare();
        c.with(|_, cx| p.connection_made(cx));
        p.set_timeout(Some(Duration::from_secs(3)));
        clock.calls()[0].cancel().unwrap();
        p.cancel_timeout();
        assert!(!disconnected(&c));
    }

    #[test]
    fn connection_lost_cancels_and_forgets() {
        let (clock, mut c, factory) = setup(Some(Duration::from_secs(3)));
        c.lose();
        assert!(clock.calls().is_empty());
        assert!(factory.connections().is_empty());
    }
}
