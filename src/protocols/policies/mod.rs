//! Policies around protocols and factories: idle timeouts, bandwidth and connection limits,
//! and the wrappers they are built on (Twisted's `twisted.protocols.policies`, reference
//! §1.9 and §2.14).
//!
//! | Twisted | torsion |
//! | --- | --- |
//! | `TimeoutMixin` | [`IdleTimeout`], kept in your protocol |
//! | `TimeoutFactory`, `TimeoutProtocol` | [`TimeoutFactory`], [`TimeoutProtocol`] |
//! | `WrappingFactory`, `ProtocolWrapper` | [`WrappingFactory`], [`ProtocolWrapper`] |
//! | `ThrottlingFactory`, `ThrottlingProtocol` | [`ThrottlingFactory`], [`ThrottlingProtocol`] |
//! | `LimitTotalConnectionsFactory` | [`LimitTotalConnectionsFactory`] |
//! | `LimitConnectionsByPeer` | [`LimitConnectionsByPeer`] |
//!
//! Every timer runs on a [`Clock`](crate::task::Clock) you pass in: the reactor in a server,
//! a [`testing::Clock`](crate::testing::Clock) in a test. A timer reaches its connection
//! through the connection's handle ([`ConnectionHandle::call`](crate::ConnectionHandle::call)),
//! never while one of the connection's own callbacks runs.
//!
//! Factory wrappers nest: a [`TimeoutFactory`] around a [`LimitConnectionsByPeer`] around
//! your factory times out idle clients and limits each host.
//!
//! ```
//! use std::rc::Rc;
//! use std::time::Duration;
//! use torsion::factory::from_fn;
//! use torsion::protocols::policies::{LimitConnectionsByPeer, TimeoutFactory};
//! use torsion::{Cx, Protocol, Reactor};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
//!         cx.write(data);
//!     }
//! }
//!
//! let reactor = Reactor::new()?;
//! let echo = Rc::new(from_fn(|_| Some(Box::new(Echo) as Box<dyn Protocol>)));
//! let per_peer = Rc::new(LimitConnectionsByPeer::new(echo));
//! let factory = TimeoutFactory::new(per_peer, reactor.clone())
//!     .with_period(Some(Duration::from_secs(120)));
//! let _port = reactor.listen_tcp(0, Rc::new(factory))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Deliberate differences from Twisted
//!
//! - **Writes made through a [`ConnectionHandle`](crate::ConnectionHandle) are not seen** by
//!   the wrapper of the connection written to: a handle addresses the connection, not its
//!   protocol stack. [`TimeoutFactory`] resets, and [`ThrottlingFactory`] counts, what the
//!   wrapped protocol writes from its own callbacks and its producer's. (In Twisted, a write
//!   to another connection's `transport` goes through that connection's wrapper.)
//! - **Throttling keeps the connection's own flow control.** Twisted's unthrottle resumes a
//!   transport the protocol had paused and a producer the write buffer had paused; here a
//!   throttle and the protocol's own pause are tracked apart, and resuming waits for both.
//! - **Write throttling reaches every kind of writer**: push producers are paused, pull
//!   producers are taken off the transport until the throttle ends (a `lose_connection` in
//!   between waits for them, as usual), and every protocol gets
//!   [`pause_writing`](crate::Protocol::pause_writing). Twisted pauses only a registered
//!   producer.
//! - **A throttle that is still running is extended, never cut short**, by a later check
//!   that throttles again; Twisted lets the first unthrottle end both.
//! - **The counts go down exactly once** even for a protocol built and then dropped without a
//!   connection, and a wrapped factory that refuses (`None`) is not counted.
//! - [`TimeoutProtocol`]'s countdown starts at `connection_made`, not in `build_protocol`
//!   (which runs just before it).
//! - [`LimitConnectionsByPeer`] counts by the peer address given to `build_protocol` (Twisted
//!   counts up by `addr[0]` and down by `getPeer()[1]`). UNIX clients are usually unnamed,
//!   so all of them count as one peer.
//! - Not provided: `SpewingFactory`, `TrafficLoggingFactory` (use `tracing`), and the
//!   per-wrapper `logPrefix`.
//!
//! # Ported Twisted tests
//!
//! From `twisted/test/test_policies.py`, on a `testing::Clock` and a `StringTransport` that
//! the timers reach (as Twisted's `StringTransportWithDisconnection`):
//! - `TimeoutMixinTests`: `test_overriddenCallLater`, `test_timeout`, `test_noTimeout`,
//!   `test_resetTimeout`, `test_cancelTimeout`, `test_setTimeoutReturn`,
//!   `test_setTimeoutCancleAlreadyCancelled`;
//! - `TimeoutFactoryTests`: `test_timeout`, `test_sendAvoidsTimeout`,
//!   `test_receiveAvoidsTimeout`;
//! - `TimeoutProtocolTests`: `test_cancelTimeout`, `test_cancelTimeoutNoTimeout`,
//!   `test_cancelTimeoutAlreadyCalled`, `test_cancelTimeoutAlreadyCancelled`;
//! - `ThrottlingTests`: `test_writeSequence`, `test_writeLimit`, `test_readLimit`; and
//!   `test_limit` over loopback in `tests/policies.rs`;
//! - `LimitTotalConnectionsFactoryTests`: `testConnectionCounting`,
//!   `testConnectionLimiting`;
//! - `WrapperTests`: `test_getHost`, `test_getPeer`, `test_registerProducer`,
//!   `test_unregisterProducer`; and `test_startedConnecting`, `test_clientConnectionLost`,
//!   `test_clientConnectionFailed` over loopback in `tests/policies.rs`, for every wrapper
//!   that can wrap a client factory.
//!
//! Not ported: the log prefix tests, `test_protocolFactoryAttribute`,
//! `test_transportInterfaces` and `test_breakReferenceCycle` (Python object model), and
//! `LoggingFactoryTests`. `tests/policies.rs` also runs the timeout and the throttles on real
//! connections.

mod limit_peer;
mod limit_total;
pub(crate) mod reach;
mod throttled;
mod throttling;
mod timeout;
mod timeout_factory;
mod wrapper;

#[cfg(test)]
mod tests;

pub use limit_peer::{DEFAULT_PER_PEER, LimitConnectionsByPeer};
pub use limit_total::LimitTotalConnectionsFactory;
pub use throttling::{ThrottlingFactory, ThrottlingProtocol};
pub use timeout::IdleTimeout;
pub use timeout_factory::{DEFAULT_TIMEOUT, TimeoutFactory, TimeoutProtocol};
pub use wrapper::{ProtocolWrapper, WrappingFactory};
