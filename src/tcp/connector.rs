//! Outgoing connections, TCP and UNIX: [`Connector`] (Twisted's `IConnector`) and the connect
//! sequence (for TCP, resolve off the reactor thread; then a non-blocking `connect(2)`, the
//! timeout, `build_protocol`).
//!
//! A UNIX `connect(2)` completes or fails at once; when the listener's backlog is full it
//! says EAGAIN, and the attempt is tried again every few milliseconds until it gets in or
//! the timeout ends it (a blocking client would sleep in the kernel for the same).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::Duration;

use mio::Interest;
use mio::net::{TcpStream, UnixStream};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};

use super::stream::Stream;

use crate::reactor::{Core, Entry, Ready, SlotId, factory_key, guard};
use crate::{
    Address, ClientFactory, ConnectError, ConnectionHandle, ConnectorError, Cx, DelayedCall,
    Protocol, Reactor, Reason,
};

/// How long to wait before trying again to connect to a UNIX socket whose backlog is full.
const UNIX_BUSY_RETRY: Duration = Duration::from_millis(5);

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

/// Where a [`Connector`] connects to.
///
/// ```
/// use torsion::Destination;
/// let d = Destination::Unix("/run/app.sock".into());
/// assert_eq!(d.to_string(), "unix:/run/app.sock");
/// let d = Destination::Tcp { host: "example.com".into(), port: 80 };
/// assert_eq!(d.to_string(), "tcp:example.com:80");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Destination {
    /// A TCP host (a name or an IP literal) and port.
    Tcp {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
    },
    /// A UNIX socket path, or a Linux abstract name written `@name`.
    Unix(PathBuf),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Tcp { host, port } if host.contains(':') && !host.starts_with('[') => {
                write!(f, "tcp:[{host}]:{port}")
            }
            Destination::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Destination::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A connection in progress: its socket (once resolved) and its connector.
pub(crate) struct Connecting {
    sock: Option<Stream>,
    /// The TCP address being connected to (`None` for UNIX).
    addr: Option<SocketAddr>,
    connector: Connector,
}

struct Inner {
    core: Weak<Core>,
    factory: Rc<dyn ClientFactory>,
    dest: Destination,
    /// What [`Connector::destination`] lends for a UNIX path: the path as text.
    path_text: String,
    timeout: Option<Duration>,
    bind_address: Option<SocketAddr>,
    state: Cell<ConnectorState>,
    factory_started: Cell<bool>,
    attempt: Cell<u64>,
    pending: Cell<Option<SlotId>>,
    timer: RefCell<Option<DelayedCall>>,
    conn: RefCell<Option<ConnectionHandle>>,
}

/// Drives connection attempts to one destination (TCP or UNIX) for one [`ClientFactory`]
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
            .field("destination", &self.inner.dest)
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
        let dest = Destination::Tcp {
            host: host.to_owned(),
            port,
        };
        Connector::start(self, dest, opts.timeout, opts.bind_address, factory)
    }
}

impl Connector {
    /// A new connector, with its first attempt started.
    pub(crate) fn start(
        reactor: &Reactor,
        dest: Destination,
        timeout: Option<Duration>,
        bind_address: Option<SocketAddr>,
        factory: Rc<dyn ClientFactory>,
    ) -> Connector {
        let path_text = match &dest {
            Destination::Unix(p) => p.to_string_lossy().into_owned(),
            Destination::Tcp { .. } => String::new(),
        };
        let c = Connector {
            inner: Rc::new(Inner {
                core: reactor.weak(),
                factory,
                dest,
                path_text,
                timeout,
                bind_address,
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
        if let Some(t) = inner.timeout {
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

    /// The host and port this connector connects to. For a UNIX connector: the path as text
    /// (lossily, if it is not UTF-8) and port 0; [`Connector::destination_address`] has it
    /// exactly.
    pub fn destination(&self) -> (&str, u16) {
        match &self.inner.dest {
            Destination::Tcp { host, port } => (host, *port),
            Destination::Unix(_) => (&self.inner.path_text, 0),
        }
    }

    /// Where this connector connects to (Twisted's `getDestination`).
    pub fn destination_address(&self) -> &Destination {
        &self.inner.dest
    }

    /// The reactor this connector belongs to (`None` once it is dropped). Handy in
    /// [`ClientFactory`] callbacks, to wait before `connect` again or to stop.
    pub fn reactor(&self) -> Option<Reactor> {
        self.inner.core.upgrade().map(Reactor::from_core)
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
        let (host, port) = match &self.inner.dest {
            Destination::Unix(path) => {
                self.start_unix(reactor, id, path);
                return;
            }
            Destination::Tcp { host, port } => (host, *port),
        };
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            self.start_socket(reactor, id, SocketAddr::new(ip, port));
            return;
        }
        let handle = reactor.handle();
        let host = host.clone();
        reactor.call_in_thread(move || {
            let res = (host.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| e.to_string())
                .and_then(|mut a| a.next().ok_or_else(|| "no addresses".to_owned()));
            let _ = handle.call_from_thread(move |r| resolved(r, id, host, res));
        });
    }

    fn start_socket(&self, reactor: &Reactor, id: SlotId, addr: SocketAddr) {
        match open(addr, self.inner.bind_address) {
            Ok(sock) => self.install(reactor, id, Stream::Tcp(sock), Some(addr)),
            Err(e) => self.fail(reactor, e),
        }
    }

    fn start_unix(&self, reactor: &Reactor, id: SlotId, path: &Path) {
        match open_unix(path) {
            Ok(sock) => self.install(reactor, id, Stream::Unix(sock), None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The listener's backlog is full: knock again shortly, until the timeout.
                let me = self.clone();
                let attempt = self.inner.attempt.get();
                reactor.call_later(UNIX_BUSY_RETRY, move |r| {
                    if me.is_attempt(attempt) {
                        if let Destination::Unix(path) = &me.inner.dest {
                            me.start_unix(r, id, path);
                        }
                    }
                });
            }
            Err(e) => self.fail(reactor, ConnectError::from_unix_io(e, path)),
        }
    }

    /// Waits for the socket of a started connect to become writable (connected or failed).
    fn install(&self, reactor: &Reactor, id: SlotId, mut sock: Stream, addr: Option<SocketAddr>) {
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
                c.addr = addr;
            }
        }
    }

    /// Maps an OS error from the connect in progress to a reason.
    fn connect_error(&self, err: io::Error, addr: Option<SocketAddr>) -> ConnectError {
        match (&self.inner.dest, addr) {
            (Destination::Unix(path), _) => ConnectError::from_unix_io(err, path),
            (Destination::Tcp { .. }, Some(addr)) => ConnectError::from_io(err, addr),
            (Destination::Tcp { .. }, None) => ConnectError::Other(err.into()),
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
        tracing::debug!(destination = %inner.dest, "connection failed: {reason}");
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

/// Starts a non-blocking connect to a UNIX socket. It completes or fails at once on Linux;
/// `WouldBlock` means the listener's backlog is full.
fn open_unix(path: &Path) -> io::Result<UnixStream> {
    let addr = crate::unix::sock_addr(path)?;
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    sock.set_cloexec(true)?;
    match sock.connect(&addr) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(UnixStream::from_std(sock.into()))
}

/// The socket of a pending connection became writable (connected) or failed.
pub(crate) fn service(reactor: &Reactor, id: SlotId, ready: Ready) {
    let core = &*reactor.core;
    let Some(Entry::Connecting(mut c)) = core.take(id) else {
        return;
    };
    let addr = c.addr;
    let connector = c.connector.clone();
    let Some(sock) = c.sock.as_mut() else {
        core.restore(id, Entry::Connecting(c));
        return;
    };
    let outcome = match sock.take_error() {
        Ok(Some(e)) | Err(e) => Err(connector.connect_error(e, addr)),
        Ok(None) => match sock.peer_address() {
            Ok(peer) => Ok(peer),
            Err(e) if e.kind() == io::ErrorKind::NotConnected && !ready.error => {
                // Not connected yet (spurious wakeup): keep waiting.
                core.restore(id, Entry::Connecting(c));
                return;
            }
            Err(e) => Err(connector.connect_error(e, addr)),
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

fn connected(reactor: &Reactor, id: SlotId, connector: Connector, sock: Stream, peer: Address) {
    let inner = &*connector.inner;
    inner.pending.set(None);
    connector.cancel_timer();
    inner.state.set(ConnectorState::Connected);
    *inner.conn.borrow_mut() = Some(ConnectionHandle::new(reactor.weak(), id));
    let built = guard("build_protocol", || inner.factory.build_protocol(&peer));
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
