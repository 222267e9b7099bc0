//! Outgoing TCP connections: [`Connector`] (Twisted's `IConnector`) and the connect sequence
//! (resolve off the reactor thread, non-blocking `connect(2)`, timeout, `build_protocol`).

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::{Rc, Weak};
use std::time::Duration;

use mio::Interest;
use mio::net::TcpStream;
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};

use crate::reactor::{Core, Entry, Ready, SlotId, factory_key, guard};
use crate::{
    Address, ClientFactory, ConnectError, ConnectionHandle, ConnectorError, Cx, DelayedCall,
    Protocol, Reactor, Reason,
};

/// Options for [`Reactor::connect_tcp_with`].
#[derive(Debug, Clone)]
pub struct TcpConnectOptions {
    /// Give up after this long (default 30 s, as Twisted); `None` waits for the kernel.
    pub timeout: Option<Duration>,
    /// Local address to bind before connecting.
    pub bind_address: Option<SocketAddr>,
}

impl Default for TcpConnectOptions {
    fn default() -> Self {
        TcpConnectOptions {
            timeout: Some(Duration::from_secs(30)),
            bind_address: None,
        }
    }
}

/// Where a [`Connector`] is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectorState {
    /// Not connecting and not connected.
    Disconnected,
    /// An attempt is in progress.
    Connecting,
    /// A connection is established.
    Connected,
}

/// A connection in progress: its socket (once resolved) and its connector.
pub(crate) struct Connecting {
    sock: Option<TcpStream>,
    addr: Option<SocketAddr>,
    connector: Connector,
}

struct Inner {
    core: Weak<Core>,
    factory: Rc<dyn ClientFactory>,
    host: String,
    port: u16,
    opts: TcpConnectOptions,
    state: Cell<ConnectorState>,
    factory_started: Cell<bool>,
    attempt: Cell<u64>,
    pending: Cell<Option<SlotId>>,
    timer: RefCell<Option<DelayedCall>>,
    conn: RefCell<Option<ConnectionHandle>>,
}

/// Drives connection attempts to one destination for one [`ClientFactory`]
/// (Twisted's `IConnector`). Cheap to clone; every clone is the same connector.
///
/// Call [`Connector::connect`] from `client_connection_failed` or `client_connection_lost` to
/// try again.
#[derive(Clone)]
pub struct Connector {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("host", &self.inner.host)
            .field("port", &self.inner.port)
            .field("state", &self.inner.state.get())
            .finish()
    }
}

impl Reactor {
    /// Connects to `host:port` (a name is resolved on the thread pool; the loop never
    /// blocks) with a 30 s timeout, reporting to `factory`. The attempt starts on the next loop
    /// pass.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use torsion::{ClientFactory, ConnectError, Connector, Protocol, Reactor, Address, Factory};
    ///
    /// struct Once;
    /// impl Factory for Once {
    ///     fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> { None }
    /// }
    /// impl ClientFactory for Once {
    ///     fn client_connection_failed(&self, c: &Connector, reason: ConnectError) {
    ///         println!("failed: {reason}");
    ///     }
    /// }
    /// let reactor = Reactor::new().unwrap();
    /// let connector = reactor.connect_tcp("127.0.0.1", 9, Rc::new(Once));
    /// # let _ = connector;
    /// ```
    pub fn connect_tcp(&self, host: &str, port: u16, factory: Rc<dyn ClientFactory>) -> Connector {
        self.connect_tcp_with(host, port, factory, TcpConnectOptions::default())
    }

    /// [`Reactor::connect_tcp`] with a timeout and a bind address.
    pub fn connect_tcp_with(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        opts: TcpConnectOptions,
    ) -> Connector {
        let c = Connector {
            inner: Rc::new(Inner {
                core: self.weak(),
                factory,
                host: host.to_owned(),
                port,
                opts,
                state: Cell::new(ConnectorState::Disconnected),
                factory_started: Cell::new(false),
                attempt: Cell::new(0),
                pending: Cell::new(None),
                timer: RefCell::new(None),
                conn: RefCell::new(None),
            }),
        };
        // A fresh connector is disconnected, so this cannot fail.
        let _ = c.connect();
        c
    }
}

impl Connector {
    /// Starts a new attempt. Only allowed while disconnected (Twisted raises
    /// "can't connect in this state").
    pub fn connect(&self) -> Result<(), ConnectorError> {
        let inner = &*self.inner;
        if inner.state.get() != ConnectorState::Disconnected {
            return Err(ConnectorError::AlreadyConnecting);
        }
        let core = inner.core.upgrade().ok_or(ConnectorError::ReactorGone)?;
        let reactor = Reactor::from_core(core);
        inner.state.set(ConnectorState::Connecting);
        let attempt = inner.attempt.get() + 1;
        inner.attempt.set(attempt);
        if !inner.factory_started.replace(true) {
            let f = inner.factory.clone();
            reactor
                .core
                .factory_start(factory_key(&f), || f.start_factory());
        }
        if let Some(t) = inner.opts.timeout {
            let me = self.clone();
            let call = reactor.call_later(t, move |r| {
                if me.is_attempt(attempt) {
                    me.fail(r, ConnectError::TimedOut);
                }
            });
            *inner.timer.borrow_mut() = Some(call);
        }
        let _ = guard("started_connecting", || {
            inner.factory.started_connecting(self)
        });
        let me = self.clone();
        reactor.call_later(Duration::ZERO, move |r| {
            if me.is_attempt(attempt) {
                me.begin(r);
            }
        });
        Ok(())
    }

    /// Abandons the attempt in progress; the factory gets `client_connection_failed` with
    /// [`ConnectError::Cancelled`] before this returns.
    pub fn stop_connecting(&self) -> Result<(), ConnectorError> {
        if self.inner.state.get() != ConnectorState::Connecting {
            return Err(ConnectorError::NotConnecting);
        }
        let core = self
            .inner
            .core
            .upgrade()
            .ok_or(ConnectorError::ReactorGone)?;
        self.fail(&Reactor::from_core(core), ConnectError::Cancelled);
        Ok(())
    }

    /// Stops connecting, or closes the connection gracefully if connected.
    pub fn disconnect(&self) {
        match self.inner.state.get() {
            ConnectorState::Connecting => {
                let _ = self.stop_connecting();
            }
            ConnectorState::Connected => {
                if let Some(h) = self.inner.conn.borrow().clone() {
                    h.lose_connection();
                }
            }
            ConnectorState::Disconnected => {}
        }
    }

    /// The host and port this connector connects to.
    pub fn destination(&self) -> (&str, u16) {
        (&self.inner.host, self.inner.port)
    }

    /// Where the connector is in its life.
    pub fn state(&self) -> ConnectorState {
        self.inner.state.get()
    }

    /// The connection, while connected.
    pub fn connection(&self) -> Option<ConnectionHandle> {
        self.inner.conn.borrow().clone()
    }

    fn is_attempt(&self, attempt: u64) -> bool {
        self.inner.attempt.get() == attempt && self.inner.state.get() == ConnectorState::Connecting
    }

    fn cancel_timer(&self) {
        if let Some(t) = self.inner.timer.borrow_mut().take() {
            let _ = t.cancel();
        }
    }

    /// Resolves (if needed) and starts the non-blocking connect.
    fn begin(&self, reactor: &Reactor) {
        let core = &*reactor.core;
        let id = core.insert_busy();
        self.inner.pending.set(Some(id));
        core.restore(
            id,
            Entry::Connecting(Box::new(Connecting {
                sock: None,
                addr: None,
                connector: self.clone(),
            })),
        );
        let host = self
            .inner
            .host
            .trim_start_matches('[')
            .trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.start_socket(reactor, id, SocketAddr::new(ip, self.inner.port));
            return;
        }
        let handle = reactor.handle();
        let (host, port) = (self.inner.host.clone(), self.inner.port);
        reactor.call_in_thread(move || {
            let res = (host.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| e.to_string())
                .and_then(|mut a| a.next().ok_or_else(|| "no addresses".to_owned()));
            let _ = handle.call_from_thread(move |r| resolved(r, id, host, res));
        });
    }

    fn start_socket(&self, reactor: &Reactor, id: SlotId, addr: SocketAddr) {
        match open(addr, self.inner.opts.bind_address) {
            Ok(mut sock) => {
                let core = &*reactor.core;
                if let Err(e) = core
                    .registry
                    .register(&mut sock, id.token(), Interest::WRITABLE)
                {
                    self.fail(reactor, ConnectError::Other(e.into()));
                    return;
                }
                let mut slots = core.slots.borrow_mut();
                if let Some(s) = slots.get_mut(id.key as usize) {
                    if let Entry::Connecting(c) = &mut s.entry {
                        c.sock = Some(sock);
                        c.addr = Some(addr);
                    }
                }
            }
            Err(e) => self.fail(reactor, e),
        }
    }

    /// Ends the attempt in progress with `reason`.
    fn fail(&self, reactor: &Reactor, reason: ConnectError) {
        let inner = &*self.inner;
        inner.state.set(ConnectorState::Disconnected);
        self.cancel_timer();
        if let Some(id) = inner.pending.take() {
            if let Some(Entry::Connecting(mut c)) = reactor.core.remove(id) {
                if let Some(sock) = c.sock.as_mut() {
                    let _ = reactor.core.registry.deregister(sock);
                }
            }
        }
        tracing::debug!(host = %inner.host, port = inner.port, "connection failed: {reason}");
        let _ = guard("client_connection_failed", || {
            inner.factory.client_connection_failed(self, reason)
        });
        self.maybe_stop_factory(reactor);
    }

    /// Called after the protocol's `connection_lost`.
    pub(crate) fn connection_lost(&self, reactor: &Reactor, reason: Reason) {
        let inner = &*self.inner;
        inner.state.set(ConnectorState::Disconnected);
        inner.conn.borrow_mut().take();
        let _ = guard("client_connection_lost", || {
            inner.factory.client_connection_lost(self, reason)
        });
        self.maybe_stop_factory(reactor);
    }

    fn maybe_stop_factory(&self, reactor: &Reactor) {
        let inner = &*self.inner;
        if inner.state.get() == ConnectorState::Disconnected && inner.factory_started.replace(false)
        {
            let f = inner.factory.clone();
            reactor
                .core
                .factory_stop(factory_key(&f), || f.stop_factory());
        }
    }
}

fn resolved(reactor: &Reactor, id: SlotId, host: String, res: Result<SocketAddr, String>) {
    let connector = {
        let slots = reactor.core.slots.borrow();
        match slots.get(id.key as usize) {
            Some(s) if s.generation == id.generation => match &s.entry {
                Entry::Connecting(c) => c.connector.clone(),
                _ => return,
            },
            _ => return,
        }
    };
    match res {
        Ok(addr) => connector.start_socket(reactor, id, addr),
        Err(reason) => connector.fail(reactor, ConnectError::UnknownHost { host, reason }),
    }
}

fn open(addr: SocketAddr, bind: Option<SocketAddr>) -> Result<TcpStream, ConnectError> {
    let other = |e: io::Error| ConnectError::Other(e.into());
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )
    .map_err(other)?;
    sock.set_nonblocking(true).map_err(other)?;
    sock.set_cloexec(true).map_err(other)?;
    if let Some(b) = bind {
        sock.bind(&b.into())
            .map_err(|e| ConnectError::Bind(e.into()))?;
    }
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(ConnectError::from_io(e, addr)),
    }
    Ok(TcpStream::from_std(sock.into()))
}

/// The socket of a pending connection became writable (connected) or failed.
pub(crate) fn service(reactor: &Reactor, id: SlotId, ready: Ready) {
    let core = &*reactor.core;
    let Some(Entry::Connecting(mut c)) = core.take(id) else {
        return;
    };
    let (Some(sock), Some(addr)) = (c.sock.as_mut(), c.addr) else {
        core.restore(id, Entry::Connecting(c));
        return;
    };
    let connector = c.connector.clone();
    let outcome = match sock.take_error() {
        Ok(Some(e)) | Err(e) => Err(ConnectError::from_io(e, addr)),
        Ok(None) => match sock.peer_addr() {
            Ok(peer) => Ok(peer),
            Err(e) if e.kind() == io::ErrorKind::NotConnected && !ready.error => {
                // Not connected yet (spurious wakeup): keep waiting.
                core.restore(id, Entry::Connecting(c));
                return;
            }
            Err(e) => Err(ConnectError::from_io(e, addr)),
        },
    };
    match outcome {
        Err(reason) => {
            core.restore(id, Entry::Connecting(c));
            connector.fail(reactor, reason);
        }
        Ok(peer) => {
            let sock = c.sock.take().expect("checked above");
            drop(c);
            connected(reactor, id, connector, sock, peer);
        }
    }
}

fn connected(
    reactor: &Reactor,
    id: SlotId,
    connector: Connector,
    sock: TcpStream,
    peer: SocketAddr,
) {
    let inner = &*connector.inner;
    inner.pending.set(None);
    connector.cancel_timer();
    inner.state.set(ConnectorState::Connected);
    *inner.conn.borrow_mut() = Some(ConnectionHandle::new(reactor.weak(), id));
    let address = Address::Tcp(peer);
    let built = guard("build_protocol", || inner.factory.build_protocol(&address));
    let protocol: Box<dyn Protocol> = match built {
        Ok(Some(p)) => p,
        // As Twisted: a bare protocol and a clean close, reported as client_connection_lost.
        Ok(None) | Err(_) => Box::new(Refused),
    };
    super::connection::adopt(
        reactor,
        id,
        sock,
        peer,
        protocol,
        Some(connector.clone()),
        true,
    );
}

struct Refused;
impl Protocol for Refused {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        cx.transport().lose_connection();
    }
}

/// Reactor shutdown: fail a pending attempt.
pub(crate) fn abandon(reactor: &Reactor, id: SlotId) {
    let connector = {
        let slots = reactor.core.slots.borrow();
        match slots.get(id.key as usize) {
            Some(s) if s.generation == id.generation => match &s.entry {
                Entry::Connecting(c) => c.connector.clone(),
                _ => return,
            },
            _ => return,
        }
    };
    connector.fail(reactor, ConnectError::ReactorShutdown);
}
