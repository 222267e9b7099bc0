//! [`ThrottlingFactory`]: a connection limit and read / write bandwidth limits for every
//! connection of a factory together (Twisted's `ThrottlingFactory`, reference §2.14).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use slab::Slab;

use super::reach::{ReachFn, reach_of};
use super::throttled::{Conn, Counters};
use super::wrapper::Release;
use crate::task::{Clock, ScheduledCall};
use crate::{Address, ClientFactory, ConnectError, Connector, Factory, Protocol, Reactor, Reason};

/// Wraps a factory to limit how many connections it serves at once and how many bytes per
/// second all of them together read and write (Twisted's `ThrottlingFactory`).
///
/// - Over [`max_connections`](Self::max_connections), `build_protocol` returns `None` and the
///   connection is refused. The count goes up in `build_protocol` and down in
///   `connection_lost`.
/// - The bytes read and written are checked every second, from the first connection until
///   the count falls back to zero. When a second's total is over its limit, every
///   connection is throttled for `(bytes / limit) - 1.0` seconds: reading by pausing each
///   transport (`pause_producing`), writing by pausing each registered push producer, by
///   holding back each pull producer's next turn, and by calling each protocol's
///   [`pause_writing`](Protocol::pause_writing). They are resumed after.
/// - A throttle never undoes the connection's own flow control: a transport the protocol
///   paused stays paused, and a producer or protocol paused by the write buffer's high
///   water mark is not resumed early.
///
/// Timers run on `clock`: pass the reactor that listens (or a
/// [`testing::Clock`](crate::testing::Clock) in tests).
///
/// ```no_run
/// use std::rc::Rc;
/// use torsion::protocols::policies::ThrottlingFactory;
/// use torsion::protocols::wire::Chargen;
/// use torsion::Reactor;
///
/// let reactor = Reactor::new()?;
/// // At most 100 clients, sharing 1 MB/s.
/// let factory = ThrottlingFactory::new(Chargen::factory(), reactor.clone())
///     .max_connections(100)
///     .write_limit(1_000_000);
/// reactor.listen_tcp(8019, Rc::new(factory))?;
/// reactor.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ThrottlingFactory<C: Clock + Clone + 'static = Reactor, F: ?Sized = dyn Factory> {
    wrapped: Rc<F>,
    shared: Rc<Shared<C>>,
    reach: Option<ReachFn>,
}

/// What the factory, its timers and its connections share.
struct Shared<C: Clock> {
    clock: C,
    max_connections: Cell<usize>,
    read_limit: Cell<Option<u64>>,
    write_limit: Cell<Option<u64>>,
    count: Cell<usize>,
    counters: Rc<Counters>,
    conns: RefCell<Slab<Rc<Conn>>>,
    timers: RefCell<Timers<C::Call>>,
}

struct Timers<T> {
    check_reads: Option<T>,
    check_writes: Option<T>,
    unthrottle_reads: Option<T>,
    unthrottle_writes: Option<T>,
}

#[derive(Clone, Copy)]
enum Way {
    Read,
    Write,
}

impl<C: Clock + Clone + 'static, F: Factory + ?Sized> ThrottlingFactory<C, F> {
    /// Wraps `wrapped` with no limits, timers on `clock`.
    pub fn new(wrapped: Rc<F>, clock: C) -> Self {
        ThrottlingFactory {
            wrapped,
            shared: Rc::new(Shared {
                clock,
                max_connections: Cell::new(usize::MAX),
                read_limit: Cell::new(None),
                write_limit: Cell::new(None),
                count: Cell::new(0),
                counters: Rc::default(),
                conns: RefCell::default(),
                timers: RefCell::new(Timers {
                    check_reads: None,
                    check_writes: None,
                    unthrottle_reads: None,
                    unthrottle_writes: None,
                }),
            }),
            reach: None,
        }
    }

    /// Refuses connections beyond `n` at once (Twisted's `maxConnectionCount`).
    pub fn max_connections(self, n: usize) -> Self {
        self.shared.max_connections.set(n);
        self
    }

    /// Limits reading to `bytes_per_second`, all connections together (Twisted's
    /// `readLimit`). Takes effect when the checks next start (at the first connection).
    pub fn read_limit(self, bytes_per_second: u64) -> Self {
        self.shared.read_limit.set(Some(bytes_per_second.max(1)));
        self
    }

    /// Limits writing to `bytes_per_second`, all connections together (Twisted's
    /// `writeLimit`).
    pub fn write_limit(self, bytes_per_second: u64) -> Self {
        self.shared.write_limit.set(Some(bytes_per_second.max(1)));
        self
    }

    /// Connections built and not yet lost (Twisted's `connectionCount`).
    pub fn connection_count(&self) -> usize {
        self.shared.count.get()
    }

    /// Bytes read since the last check (Twisted's `readThisSecond`).
    pub fn read_this_second(&self) -> u64 {
        self.shared.counters.read.get()
    }

    /// Bytes written since the last check (Twisted's `writtenThisSecond`).
    pub fn written_this_second(&self) -> u64 {
        self.shared.counters.written.get()
    }

    #[cfg(test)]
    pub(crate) fn reach_with(mut self, f: ReachFn) -> Self {
        self.reach = Some(f);
        self
    }
}

impl<C: Clock + Clone + 'static, F: Factory + ?Sized> Factory for ThrottlingFactory<C, F> {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        let shared = &self.shared;
        if shared.count.get() >= shared.max_connections.get() {
            tracing::info!(peer = %addr, "throttling: connection limit reached, refusing");
            return None;
        }
        let wrapped = self.wrapped.build_protocol(addr)?;
        if shared.count.get() == 0 {
            shared.start();
        }
        shared.count.set(shared.count.get() + 1);
        let weak = Rc::downgrade(shared);
        let release = Release::new(move || {
            if let Some(shared) = weak.upgrade() {
                shared.count.set(shared.count.get() - 1);
                if shared.count.get() == 0 {
                    shared.stop();
                }
            }
        });
        Some(Box::new(ThrottlingProtocol {
            conn: Conn::new(wrapped, shared.counters.clone()),
            shared: Rc::downgrade(shared) as Weak<dyn Registry>,
            key: None,
            release,
            reach: self.reach.clone(),
        }))
    }

    fn start_factory(&self) {
        self.wrapped.start_factory();
    }

    fn stop_factory(&self) {
        self.wrapped.stop_factory();
    }
}

/// For outgoing connections: the connector callbacks go to the wrapped client factory.
impl<C: Clock + Clone + 'static, F: ClientFactory + ?Sized> ClientFactory
    for ThrottlingFactory<C, F>
{
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

/// The factory side a connection talks to, without the clock type.
trait Registry {
    fn register(&self, conn: Rc<Conn>) -> usize;
    fn unregister(&self, key: usize);
}

impl<C: Clock + 'static> Registry for Shared<C> {
    fn register(&self, conn: Rc<Conn>) -> usize {
        self.conns.borrow_mut().insert(conn)
    }

    fn unregister(&self, key: usize) {
        self.conns.borrow_mut().try_remove(key);
    }
}

impl<C: Clock + 'static> Shared<C> {
    fn limit(&self, way: Way) -> Option<u64> {
        match way {
            Way::Read => self.read_limit.get(),
            Way::Write => self.write_limit.get(),
        }
    }

    fn counter(&self, way: Way) -> &Cell<u64> {
        match way {
            Way::Read => &self.counters.read,
            Way::Write => &self.counters.written,
        }
    }

    /// The first connection: start checking every second (Twisted checks at once, which
    /// only resets the counters, then every second).
    fn start(self: &Rc<Self>) {
        for way in [Way::Read, Way::Write] {
            if self.limit(way).is_some() {
                self.counter(way).set(0);
                self.schedule_check(way);
            }
        }
    }

    /// The last connection is gone: stop the checks and any pending unthrottle.
    fn stop(&self) {
        let mut timers = self.timers.borrow_mut();
        let t = &mut *timers;
        for call in [
            &mut t.check_reads,
            &mut t.check_writes,
            &mut t.unthrottle_reads,
            &mut t.unthrottle_writes,
        ] {
            if let Some(c) = call.take() {
                let _ = c.cancel();
            }
        }
    }

    fn schedule_check(self: &Rc<Self>, way: Way) {
        let weak = Rc::downgrade(self);
        let call = self.clock.call_later(Duration::from_secs(1), move || {
            if let Some(shared) = weak.upgrade() {
                shared.check(way);
            }
        });
        let mut timers = self.timers.borrow_mut();
        match way {
            Way::Read => timers.check_reads = Some(call),
            Way::Write => timers.check_writes = Some(call),
        }
    }

    /// Twisted's `checkReadBandwidth` / `checkWriteBandwidth`.
    fn check(self: &Rc<Self>, way: Way) {
        let Some(limit) = self.limit(way) else { return };
        let bytes = self.counter(way).get();
        if bytes > limit {
            let secs = bytes as f64 / limit as f64 - 1.0;
            self.throttle(way, Duration::from_secs_f64(secs));
        }
        self.counter(way).set(0);
        self.schedule_check(way);
    }

    /// Throttles every connection for `duration`, or keeps a throttle that lasts longer.
    fn throttle(self: &Rc<Self>, way: Way, duration: Duration) {
        let pending = {
            let timers = self.timers.borrow();
            let call = match way {
                Way::Read => &timers.unthrottle_reads,
                Way::Write => &timers.unthrottle_writes,
            };
            call.as_ref().filter(|c| c.active()).and_then(|c| c.time())
        };
        let until = self.clock.seconds() + duration.as_secs_f64();
        if pending.is_some_and(|t| t >= until) {
            return;
        }
        tracing::debug!(
            "throttling {} for {duration:?}",
            match way {
                Way::Read => "reads",
                Way::Write => "writes",
            }
        );
        for conn in self.live() {
            match way {
                Way::Read => conn.throttle_reads(),
                Way::Write => conn.throttle_writes(),
            }
        }
        let weak = Rc::downgrade(self);
        let call = self.clock.call_later(duration, move || {
            if let Some(shared) = weak.upgrade() {
                shared.unthrottle(way);
            }
        });
        let old = {
            let mut timers = self.timers.borrow_mut();
            match way {
                Way::Read => timers.unthrottle_reads.replace(call),
                Way::Write => timers.unthrottle_writes.replace(call),
            }
        };
        if let Some(old) = old {
            let _ = old.cancel();
        }
    }

    fn unthrottle(&self, way: Way) {
        {
            let mut timers = self.timers.borrow_mut();
            match way {
                Way::Read => timers.unthrottle_reads = None,
                Way::Write => timers.unthrottle_writes = None,
            }
        }
        for conn in self.live() {
            match way {
                Way::Read => conn.unthrottle_reads(),
                Way::Write => conn.unthrottle_writes(),
            }
        }
    }

    /// The live connections, copied out so that no borrow is held while they run.
    fn live(&self) -> Vec<Rc<Conn>> {
        self.conns.borrow().iter().map(|(_, c)| c.clone()).collect()
    }
}

/// The protocol a [`ThrottlingFactory`] builds (Twisted's `ThrottlingProtocol`): it counts
/// what the wrapped protocol reads and writes and passes every callback on.
pub struct ThrottlingProtocol {
    conn: Rc<Conn>,
    shared: Weak<dyn Registry>,
    key: Option<usize>,
    release: Release,
    reach: Option<ReachFn>,
}

impl ThrottlingProtocol {
    fn forget(&mut self) {
        if let (Some(key), Some(shared)) = (self.key.take(), self.shared.upgrade()) {
            shared.unregister(key);
        }
    }
}

impl Drop for ThrottlingProtocol {
    fn drop(&mut self) {
        self.forget();
    }
}

impl Protocol for ThrottlingProtocol {
    fn connection_made(&mut self, cx: &mut crate::Cx<'_>) {
        self.conn.set_reach(reach_of(self.reach.as_ref(), cx));
        if let Some(shared) = self.shared.upgrade() {
            self.key = Some(shared.register(self.conn.clone()));
        }
        self.conn.relay(cx, |p, cx| p.connection_made(cx));
    }

    fn data_received(&mut self, cx: &mut crate::Cx<'_>, data: &[u8]) {
        self.conn.count_read(data.len());
        self.conn.relay(cx, |p, cx| p.data_received(cx, data));
    }

    fn connection_lost(&mut self, cx: &mut crate::Cx<'_>, reason: crate::Reason) {
        self.forget();
        self.release.run();
        self.conn.lost(cx, reason);
    }

    fn half_closeable(&self) -> bool {
        self.conn.half_closeable()
    }

    fn read_connection_lost(&mut self, cx: &mut crate::Cx<'_>) {
        self.conn.relay(cx, |p, cx| p.read_connection_lost(cx));
    }

    fn write_connection_lost(&mut self, cx: &mut crate::Cx<'_>) {
        self.conn.relay(cx, |p, cx| p.write_connection_lost(cx));
    }

    fn pause_writing(&mut self, cx: &mut crate::Cx<'_>) {
        self.conn.marks_pause(cx);
    }

    fn resume_writing(&mut self, cx: &mut crate::Cx<'_>) {
        self.conn.marks_resume(cx);
    }

    fn file_descriptor_received(&mut self, cx: &mut crate::Cx<'_>, fd: std::os::fd::OwnedFd) {
        self.conn
            .relay(cx, |p, cx| p.file_descriptor_received(cx, fd));
    }
}
