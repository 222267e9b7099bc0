//! Listening ports, TCP and UNIX: accept in batches, build a protocol per connection,
//! survive running out of descriptors.
//!
//! Both kinds share one [`Listener`] around a [`ListenSocket`]; only binding differs (TCP
//! here, UNIX in [`crate::unix`]). A UNIX listener owns its socket file and removes it when
//! the listener goes away (stop, reactor shutdown, or the reactor being dropped).
//!
//! EMFILE / ENFILE: like Twisted, the reactor keeps one spare descriptor. When `accept` fails
//! for lack of descriptors it releases the spare, accepts and closes what waits in the backlog
//! (so those peers see a close instead of hanging, and the edge-triggered listener has nothing
//! left to report), takes the spare again, and tries the listener again after a short pause.
//! The loop never spins and the listener never stops for good.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::Duration;

use mio::event::Source;
use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};

use super::stream::Stream;
use crate::reactor::{Core, Deferred, Entry, SlotId, factory_key, guard};
use crate::unix::SocketFile;
use crate::{Address, CannotListen, Factory, Reactor};

/// Accepts per listener per loop pass (Twisted starts its batch at 100).
const ACCEPT_BATCH: usize = 128;
/// How long to wait before trying `accept` again after running out of descriptors.
const EMFILE_RETRY: Duration = Duration::from_millis(100);

/// A bound, listening socket of either kind.
pub(crate) enum ListenSocket {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        /// The socket file to remove when the listener goes away (`None` for an abstract
        /// name, which has no file).
        _file: Option<SocketFile>,
    },
}

impl ListenSocket {
    /// Accepts one connection: the stream and the peer's address.
    fn accept(&self) -> io::Result<(Stream, Address)> {
        match self {
            ListenSocket::Tcp(l) => l.accept().map(|(s, a)| (Stream::Tcp(s), Address::Tcp(a))),
            ListenSocket::Unix { listener, .. } => listener
                .accept()
                .map(|(s, a)| (Stream::Unix(s), Address::from_unix(&a))),
        }
    }
}

impl Source for ListenSocket {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            ListenSocket::Tcp(l) => l.register(r, t, i),
            ListenSocket::Unix { listener, .. } => listener.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            ListenSocket::Tcp(l) => l.reregister(r, t, i),
            ListenSocket::Unix { listener, .. } => listener.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            ListenSocket::Tcp(l) => l.deregister(r),
            ListenSocket::Unix { listener, .. } => listener.deregister(r),
        }
    }
}

pub(crate) struct Listener {
    sock: ListenSocket,
    factory: Rc<dyn Factory>,
    addr: Address,
}

/// Options for [`Reactor::listen_tcp_with`].
#[derive(Debug, Clone)]
pub struct TcpListenOptions {
    /// Listen backlog (default 50, as Twisted).
    pub backlog: i32,
    /// Interface to bind: an IPv4 or IPv6 literal; `""` means every IPv4 interface
    /// (default `""`, as Twisted).
    pub interface: String,
    /// Set `SO_REUSEPORT`, so that several reactors (one per core) can share the port.
    pub reuse_port: bool,
}

impl Default for TcpListenOptions {
    fn default() -> Self {
        TcpListenOptions {
            backlog: 50,
            interface: String::new(),
            reuse_port: false,
        }
    }
}

/// A listening port (Twisted's `IListeningPort`), TCP or UNIX. Dropping it does not stop
/// listening; call [`ListeningPort::stop_listening`]. Connections already accepted stay open.
#[derive(Clone, Debug)]
pub struct ListeningPort {
    core: Weak<Core>,
    id: SlotId,
    addr: Address,
}

impl ListeningPort {
    /// The address the port is bound to: [`Address::Tcp`] with the real port number when 0
    /// was asked for, or [`Address::Unix`] with the path (or `@name`).
    pub fn host(&self) -> Address {
        self.addr.clone()
    }

    /// Stops accepting and closes the listening socket (a UNIX port also removes its socket
    /// file); the factory's `stop_factory` runs if this was its last port. Idempotent.
    pub fn stop_listening(&self) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let busy = {
            let slots = core.slots.borrow();
            match slots.get(self.id.key as usize) {
                Some(s) if s.generation == self.id.generation => matches!(s.entry, Entry::Busy),
                _ => return,
            }
        };
        if busy {
            core.deferred
                .borrow_mut()
                .push((self.id, Deferred::StopListening));
        } else {
            stop(&Reactor::from_core(core), self.id);
        }
    }

    /// True until [`ListeningPort::stop_listening`] (or reactor shutdown).
    pub fn is_listening(&self) -> bool {
        self.core.upgrade().is_some_and(|core| {
            let slots = core.slots.borrow();
            matches!(slots.get(self.id.key as usize), Some(s) if s.generation == self.id.generation)
        })
    }
}

fn bind(port: u16, opts: &TcpListenOptions) -> io::Result<TcpListener> {
    let ip: IpAddr = if opts.interface.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        opts.interface
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not an IP address"))?
    };
    let addr = SocketAddr::new(ip, port);
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    if opts.reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.set_cloexec(true)?;
    sock.bind(&addr.into())?;
    sock.listen(opts.backlog)?;
    Ok(TcpListener::from_std(sock.into()))
}

impl Reactor {
    /// Listens on TCP `port` on every IPv4 interface (port 0 picks a free port) and serves
    /// each connection with a protocol from `factory`.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use torsion::{Cx, Protocol, Reactor};
    /// use torsion::factory::from_fn;
    ///
    /// struct Echo;
    /// impl Protocol for Echo {
    ///     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
    ///         cx.transport().write(data);
    ///     }
    /// }
    ///
    /// let reactor = Reactor::new().unwrap();
    /// let port = reactor
    ///     .listen_tcp(0, Rc::new(from_fn(|_| Some(Box::new(Echo) as Box<dyn Protocol>))))
    ///     .unwrap();
    /// assert_ne!(port.host().port(), Some(0));
    /// ```
    pub fn listen_tcp(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
    ) -> Result<ListeningPort, CannotListen> {
        self.listen_tcp_with(port, factory, TcpListenOptions::default())
    }

    /// [`Reactor::listen_tcp`] with a backlog, an interface and `SO_REUSEPORT`.
    pub fn listen_tcp_with(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        opts: TcpListenOptions,
    ) -> Result<ListeningPort, CannotListen> {
        let fail = |source| CannotListen {
            address: tcp_address(&opts.interface, port),
            source,
        };
        let sock = bind(port, &opts).map_err(fail)?;
        let addr = sock.local_addr().map_err(fail)?;
        start_listening(self, ListenSocket::Tcp(sock), Address::Tcp(addr), factory).map_err(fail)
    }
}

/// How a TCP listen request is named in errors: `INTERFACE:PORT`, an IPv6 literal in brackets.
fn tcp_address(interface: &str, port: u16) -> String {
    if interface.contains(':') && !interface.starts_with('[') {
        format!("[{interface}]:{port}")
    } else {
        format!("{interface}:{port}")
    }
}

/// Registers a bound socket as a listener of `reactor` and starts its factory.
pub(crate) fn start_listening(
    reactor: &Reactor,
    mut sock: ListenSocket,
    addr: Address,
    factory: Rc<dyn Factory>,
) -> io::Result<ListeningPort> {
    let core = &*reactor.core;
    let id = core.insert_busy();
    if let Err(e) = core
        .registry
        .register(&mut sock, id.token(), Interest::READABLE)
    {
        core.remove(id);
        return Err(e);
    }
    reserve_descriptor(core);
    let f = factory.clone();
    core.restore(
        id,
        Entry::Listener(Box::new(Listener {
            sock,
            factory,
            addr: addr.clone(),
        })),
    );
    core.factory_start(factory_key(&f), || f.start_factory());
    tracing::debug!("listening on {addr}");
    Ok(ListeningPort {
        core: reactor.weak(),
        id,
        addr,
    })
}

fn reserve_descriptor(core: &Core) {
    let mut reserve = core.reserve_fd.borrow_mut();
    if reserve.is_none() {
        *reserve = std::fs::File::open("/dev/null").ok();
    }
}

/// Accepts a batch of connections.
pub(crate) fn service(reactor: &Reactor, id: SlotId) {
    let core = &*reactor.core;
    let Some(Entry::Listener(l)) = core.take(id) else {
        return;
    };
    let mut accepted = 0;
    loop {
        if accepted == ACCEPT_BATCH {
            core.push_ready(id);
            break;
        }
        match l.sock.accept() {
            Ok((stream, addr)) => {
                accepted += 1;
                accept_one(reactor, &l.factory, stream, addr);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR | libc::ECONNABORTED | libc::EPERM | libc::EPROTO) => {}
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    out_of_descriptors(reactor, id, &l, &e);
                    break;
                }
                _ => {
                    tracing::error!("accept on {} failed: {e}", l.addr);
                    break;
                }
            },
        }
    }
    let stop_now = core
        .take_deferred(id)
        .into_iter()
        .any(|op| matches!(op, Deferred::StopListening));
    core.restore(id, Entry::Listener(l));
    if stop_now {
        stop(reactor, id);
    }
}

fn accept_one(reactor: &Reactor, factory: &Rc<dyn Factory>, stream: Stream, address: Address) {
    match guard("build_protocol", || factory.build_protocol(&address)) {
        // Dropping the socket closes it in an orderly way: the peer sees a clean close.
        Ok(None) | Err(_) => drop(stream),
        Ok(Some(protocol)) => {
            let id = reactor.core.insert_busy();
            super::connection::adopt(reactor, id, stream, address, protocol, None, false);
        }
    }
}

fn out_of_descriptors(reactor: &Reactor, id: SlotId, l: &Listener, err: &io::Error) {
    let core = &*reactor.core;
    let spare = core.reserve_fd.borrow_mut().take();
    if let Some(spare) = spare {
        tracing::warn!("{err} on accept; releasing the reserve descriptor");
        drop(spare);
        for _ in 0..ACCEPT_BATCH {
            match l.sock.accept() {
                Ok((sock, addr)) => {
                    tracing::info!("out of descriptors: closed connection from {addr}");
                    drop(sock);
                }
                Err(_) => break,
            }
        }
        reserve_descriptor(core);
    } else {
        tracing::warn!("{err} on accept; no reserve descriptor, retrying later");
    }
    // Whatever is left in the backlog gets another try once descriptors may be free.
    reactor.call_later(EMFILE_RETRY, move |r| {
        let still_there = {
            let slots = r.core.slots.borrow();
            matches!(slots.get(id.key as usize), Some(s) if s.generation == id.generation)
        };
        if still_there {
            r.core.push_ready(id);
        }
    });
}

/// Closes a listener and stops its factory.
pub(crate) fn stop(reactor: &Reactor, id: SlotId) {
    let core = &*reactor.core;
    let Some(Entry::Listener(mut l)) = core.take(id) else {
        return;
    };
    core.remove(id);
    let _ = core.registry.deregister(&mut l.sock);
    tracing::debug!("stopped listening on {}", l.addr);
    let factory = l.factory.clone();
    drop(l);
    core.factory_stop(factory_key(&factory), || factory.stop_factory());
}
