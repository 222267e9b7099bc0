//! [`ClientCreator`]: one outgoing connection as a [`Deferred`] of its protocol (Twisted's
//! `ClientCreator` in `twisted.internet.protocol`).

use std::cell::{RefCell, RefMut};
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::rc::{Rc, Weak};

use crate::defer::{Deferred, Failure};
use crate::{
    Address, ClientFactory, ConnectError, ConnectionHandle, Connector, ConnectorState, Cx, Factory,
    Protocol, Reactor, Reason, TcpConnectOptions, UnixConnectOptions,
};

/// Makes one connection per call and gives it as a [`Deferred`] (Twisted's `ClientCreator`).
///
/// `ClientCreator::new(&reactor, || MyProtocol::default())` remembers how to build the
/// protocol; each `connect_*` call builds one, connects it, and returns a
/// `Deferred<ClientConnection<P>>` that:
///
/// - **succeeds right after the protocol's `connection_made` returns**, inside that callback
///   (as Twisted's endpoints do; Twisted's `ClientCreator` waits one more loop pass), with a
///   [`ClientConnection`]: the connection's [`ConnectionHandle`] and the protocol itself;
/// - **fails** with the [`ConnectError`] as a [`Failure`] whose kind says why:
///   [`ConnectionRefused`](crate::FailureKind::ConnectionRefused),
///   [`TimedOut`](crate::FailureKind::TimedOut) (the connect timeout, default 30 s),
///   [`Cancelled`](crate::FailureKind::Cancelled) or
///   [`ConnectFailed`](crate::FailureKind::ConnectFailed) (unknown host, no route, …);
///   or with the connection's [`Reason`] if it was lost before `connection_made`;
/// - **can be cancelled**: while connecting, that stops the attempt
///   ([`Connector::stop_connecting`]) and fails the Deferred as cancelled; once the
///   Deferred has fired, cancelling does nothing (close the connection through its handle).
///
/// # Reaching the protocol
///
/// The protocol lives in an `Rc<RefCell<P>>` shared between the caller and the reactor, which
/// borrows it mutably for each callback. The rule that keeps this panic-free: **never hold a
/// borrow of it across an `.await` or across a call that returns to the reactor**; take the
/// borrow, read or change the state, drop it. (A callback that finds the protocol borrowed
/// panics; the reactor catches that, logs it and aborts the connection.) To write, use the
/// [`ConnectionHandle`], or the `Cx` inside the protocol's own callbacks.
///
/// ```no_run
/// use torsion::{ClientCreator, Cx, Protocol, Reactor};
///
/// #[derive(Default)]
/// struct Greeter {
///     replies: Vec<Vec<u8>>,
/// }
/// impl Protocol for Greeter {
///     fn data_received(&mut self, _cx: &mut Cx<'_>, data: &[u8]) {
///         self.replies.push(data.to_vec());
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let creator = ClientCreator::new(&reactor, Greeter::default);
/// let r = reactor.clone();
/// reactor.spawn(async move {
///     let conn = creator.connect_tcp("127.0.0.1", 7).await?;
///     conn.handle.write(b"hello\r\n");
///     torsion::sleep(&r, std::time::Duration::from_millis(100)).await?;
///     println!("{} replies", conn.protocol.borrow().replies.len());
///     conn.handle.lose_connection();
///     r.stop().ok();
///     Ok(())
/// });
/// reactor.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ClientCreator<P> {
    reactor: Reactor,
    build: Rc<dyn Fn() -> P>,
}

impl<P> Clone for ClientCreator<P> {
    fn clone(&self) -> Self {
        ClientCreator {
            reactor: self.reactor.clone(),
            build: self.build.clone(),
        }
    }
}

impl<P> fmt::Debug for ClientCreator<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCreator").finish_non_exhaustive()
    }
}

/// What a [`ClientCreator`]'s Deferred gives: the new connection and its protocol.
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use torsion::{ClientConnection, Protocol};
///
/// struct Quiet;
/// impl Protocol for Quiet {}
///
/// fn close(conn: &ClientConnection<Quiet>) {
///     let _state: &Rc<RefCell<Quiet>> = &conn.protocol;
///     conn.handle.lose_connection();
/// }
/// # let _ = close;
/// ```
pub struct ClientConnection<P> {
    /// The connection, to write to or close from anywhere.
    pub handle: ConnectionHandle,
    /// The protocol; see [`ClientCreator`] for the borrow rule.
    pub protocol: Rc<RefCell<P>>,
}

impl<P> Clone for ClientConnection<P> {
    fn clone(&self) -> Self {
        ClientConnection {
            handle: self.handle.clone(),
            protocol: self.protocol.clone(),
        }
    }
}

impl<P> fmt::Debug for ClientConnection<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConnection")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl<P: Protocol> ClientCreator<P> {
    /// A creator that builds each connection's protocol with `build`.
    pub fn new(reactor: &Reactor, build: impl Fn() -> P + 'static) -> Self {
        ClientCreator {
            reactor: reactor.clone(),
            build: Rc::new(build),
        }
    }

    /// The reactor the connections are made on.
    pub fn reactor(&self) -> &Reactor {
        &self.reactor
    }

    /// Connects to `host:port` over TCP (see [`Reactor::connect_tcp`]).
    pub fn connect_tcp(&self, host: &str, port: u16) -> Deferred<ClientConnection<P>> {
        self.connect_tcp_with(host, port, TcpConnectOptions::default())
    }

    /// [`ClientCreator::connect_tcp`] with a timeout and a bind address.
    pub fn connect_tcp_with(
        &self,
        host: &str,
        port: u16,
        opts: TcpConnectOptions,
    ) -> Deferred<ClientConnection<P>> {
        self.connect(|r, f| r.connect_tcp_with(host, port, f, opts))
    }

    /// Connects to a UNIX socket (see [`Reactor::connect_unix`]).
    pub fn connect_unix(&self, path: impl AsRef<Path>) -> Deferred<ClientConnection<P>> {
        self.connect_unix_with(path, UnixConnectOptions::default())
    }

    /// [`ClientCreator::connect_unix`] with a timeout.
    pub fn connect_unix_with(
        &self,
        path: impl AsRef<Path>,
        opts: UnixConnectOptions,
    ) -> Deferred<ClientConnection<P>> {
        self.connect(|r, f| r.connect_unix_with(path, f, opts))
    }

    /// Connects to `host:port` over TCP, then TLS (see [`Reactor::connect_tls`]). As in
    /// Twisted, the Deferred fires once TCP is connected and TLS started, before the
    /// handshake completes; a failed handshake then reaches the protocol's
    /// `connection_lost` as [`Reason::Tls`].
    #[cfg(feature = "tls")]
    pub fn connect_tls(
        &self,
        host: &str,
        port: u16,
        config: &crate::tls::ClientTlsConfig,
    ) -> Deferred<ClientConnection<P>> {
        self.connect_tls_with(host, port, config, TcpConnectOptions::default())
    }

    /// [`ClientCreator::connect_tls`] with a timeout and a bind address.
    #[cfg(feature = "tls")]
    pub fn connect_tls_with(
        &self,
        host: &str,
        port: u16,
        config: &crate::tls::ClientTlsConfig,
        opts: TcpConnectOptions,
    ) -> Deferred<ClientConnection<P>> {
        self.connect(|r, f| r.connect_tls_with(host, port, f, config, opts))
    }

    /// Starts one connection with `start` (any transport's `connect_*`), reporting to a
    /// one-shot factory that fires the returned Deferred.
    fn connect(
        &self,
        start: impl FnOnce(&Reactor, Rc<dyn ClientFactory>) -> Connector,
    ) -> Deferred<ClientConnection<P>> {
        let shared = Rc::new(Attempt {
            deferred: RefCell::new(None),
            connector: RefCell::new(None),
        });
        let weak = Rc::downgrade(&shared);
        let d = Deferred::with_canceller(move |_| cancel(&weak));
        *shared.deferred.borrow_mut() = Some(d.clone());
        let factory = Rc::new(CreatorFactory {
            build: self.build.clone(),
            attempt: shared.clone(),
        });
        let connector = start(&self.reactor, factory);
        shared.connector.borrow_mut().get_or_insert(connector);
        d
    }
}

/// One connection attempt: the Deferred until it fires, and the connector to stop.
struct Attempt<P: 'static> {
    deferred: RefCell<Option<Deferred<ClientConnection<P>>>>,
    connector: RefCell<Option<Connector>>,
}

impl<P: 'static> Attempt<P> {
    /// The Deferred, if it has not been fired yet (taking it: it is fired once).
    fn take(&self) -> Option<Deferred<ClientConnection<P>>> {
        self.deferred.borrow_mut().take()
    }

    fn fail(&self, failure: Failure) {
        if let Some(d) = self.take() {
            let _ = d.errback(failure);
        }
    }
}

/// The Deferred's canceller: stop the attempt, or close a connection that has not yet
/// reached `connection_made`.
fn cancel<P: 'static>(attempt: &Weak<Attempt<P>>) {
    let Some(attempt) = attempt.upgrade() else {
        return;
    };
    let connector = attempt.connector.borrow().clone();
    match connector {
        Some(c) if c.state() == ConnectorState::Connecting => {
            // Reports `client_connection_failed(Cancelled)`, which fails the Deferred.
            let _ = c.stop_connecting();
        }
        Some(c) => c.disconnect(),
        None => {}
    }
    // Whatever still comes for this attempt must not fire the Deferred again; `cancel` fails
    // it as cancelled once this returns, if nothing above did.
    attempt.take();
}

struct CreatorFactory<P: 'static> {
    build: Rc<dyn Fn() -> P>,
    attempt: Rc<Attempt<P>>,
}

impl<P: Protocol> Factory for CreatorFactory<P> {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Shared {
            protocol: Rc::new(RefCell::new((self.build)())),
            attempt: Some(self.attempt.clone()),
        }))
    }
}

impl<P: Protocol> ClientFactory for CreatorFactory<P> {
    fn started_connecting(&self, connector: &Connector) {
        self.attempt
            .connector
            .borrow_mut()
            .get_or_insert_with(|| connector.clone());
    }

    fn client_connection_failed(&self, _connector: &Connector, reason: ConnectError) {
        self.attempt.fail(Failure::new(reason));
    }

    fn client_connection_lost(&self, _connector: &Connector, reason: Reason) {
        // Only reaches the Deferred if the connection went before `connection_made` (a TLS
        // layer that could not start, a panic in `connection_made`).
        self.attempt.fail(Failure::new(reason));
    }
}

/// The protocol the reactor drives: borrows the shared one for each callback, and fires the
/// attempt's Deferred after the first `connection_made`.
struct Shared<P: 'static> {
    protocol: Rc<RefCell<P>>,
    attempt: Option<Rc<Attempt<P>>>,
}

impl<P: Protocol> Shared<P> {
    fn p(&self) -> RefMut<'_, P> {
        self.protocol.try_borrow_mut().unwrap_or_else(|_| {
            panic!(
                "a ClientCreator protocol was still borrowed when the reactor called it: \
                 do not hold its RefCell borrow across .await or a reactor call"
            )
        })
    }
}

impl<P: Protocol> Protocol for Shared<P> {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        self.p().connection_made(cx);
        if let Some(d) = self.attempt.take().and_then(|a| a.take()) {
            let _ = d.callback(ClientConnection {
                handle: cx.handle(),
                protocol: self.protocol.clone(),
            });
        }
    }

    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        self.p().data_received(cx, data);
    }

    fn connection_lost(&mut self, cx: &mut Cx<'_>, reason: Reason) {
        self.p().connection_lost(cx, reason);
    }

    fn half_closeable(&self) -> bool {
        self.p().half_closeable()
    }

    fn read_connection_lost(&mut self, cx: &mut Cx<'_>) {
        self.p().read_connection_lost(cx);
    }

    fn write_connection_lost(&mut self, cx: &mut Cx<'_>) {
        self.p().write_connection_lost(cx);
    }

    fn pause_writing(&mut self, cx: &mut Cx<'_>) {
        self.p().pause_writing(cx);
    }

    fn resume_writing(&mut self, cx: &mut Cx<'_>) {
        self.p().resume_writing(cx);
    }

    fn file_descriptor_received(&mut self, cx: &mut Cx<'_>, fd: OwnedFd) {
        self.p().file_descriptor_received(cx, fd);
    }
}
