//! [`WrappingFactory`] and [`ProtocolWrapper`]: the decorator every policy is built on
//! (Twisted's `WrappingFactory` and `ProtocolWrapper`), and the transport that wrappers put
//! between the wrapped protocol and the real transport to see what it does.

use std::cell::RefCell;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::rc::Rc;

use slab::Slab;

use crate::layer::{LayerInfo, StreamLayer};
use crate::producer::{Producer, RegisterProducerError};
use crate::{
    Address, ClientFactory, ConnectError, ConnectionHandle, Connector, Credentials, Cx, Factory,
    Protocol, Reason, Transport,
};

/// The connections of one factory that are made and not yet lost (Twisted's
/// `WrappingFactory.protocols`).
#[derive(Default)]
pub(super) struct Live(RefCell<Slab<ConnectionHandle>>);

impl Live {
    pub(super) fn insert(&self, handle: ConnectionHandle) -> usize {
        self.0.borrow_mut().insert(handle)
    }

    pub(super) fn remove(&self, key: usize) {
        self.0.borrow_mut().try_remove(key);
    }

    pub(super) fn handles(&self) -> Vec<ConnectionHandle> {
        self.0.borrow().iter().map(|(_, h)| h.clone()).collect()
    }

    pub(super) fn len(&self) -> usize {
        self.0.borrow().len()
    }
}

/// Runs a closure once: at `connection_lost`, or when dropped if the connection never got
/// that far (a protocol built and then dropped unconnected must not leak its count).
pub(super) struct Release(Option<Box<dyn FnOnce()>>);

impl Release {
    pub(super) fn new(f: impl FnOnce() + 'static) -> Self {
        Release(Some(Box::new(f)))
    }

    pub(super) fn run(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        self.run();
    }
}

/// Wraps the factory it is given: every protocol it builds is wrapped in a
/// [`ProtocolWrapper`], and it keeps the handles of the live connections (Twisted's
/// `WrappingFactory`). `start_factory`, `stop_factory` and, for a client factory, the
/// connector callbacks are passed on.
///
/// ```
/// use std::rc::Rc;
/// use torsion::factory::from_fn;
/// use torsion::protocols::policies::WrappingFactory;
/// use torsion::testing::StringTransport;
/// use torsion::{Address, Cx, Factory, Protocol, Reactor, Reason};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
///         cx.write(data);
///     }
/// }
///
/// let factory = WrappingFactory::new(Rc::new(from_fn(|_| Some(Box::new(Echo) as Box<dyn Protocol>))));
/// let reactor = Reactor::new()?;
/// let mut t = StringTransport::new();
/// let mut p = factory.build_protocol(&Address::Unknown).unwrap();
/// p.connection_made(&mut Cx::new(&mut t, &reactor));
/// p.data_received(&mut Cx::new(&mut t, &reactor), b"hi");
/// assert_eq!((t.value(), factory.len()), (&b"hi"[..], 1));
/// p.connection_lost(&mut Cx::new(&mut t, &reactor), Reason::ConnectionDone);
/// assert!(factory.is_empty());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct WrappingFactory<F: ?Sized = dyn Factory> {
    wrapped: Rc<F>,
    live: Rc<Live>,
}

impl<F: Factory + ?Sized> WrappingFactory<F> {
    /// Wraps `wrapped`.
    pub fn new(wrapped: Rc<F>) -> Self {
        WrappingFactory {
            wrapped,
            live: Rc::default(),
        }
    }

    /// The wrapped factory.
    pub fn wrapped(&self) -> &Rc<F> {
        &self.wrapped
    }

    /// Handles to the connections whose protocol this factory built, made and not yet lost.
    pub fn connections(&self) -> Vec<ConnectionHandle> {
        self.live.handles()
    }

    /// How many connections are live.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<F: Factory + ?Sized> Factory for WrappingFactory<F> {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        let wrapped = self.wrapped.build_protocol(addr)?;
        Some(Box::new(ProtocolWrapper::registered(
            wrapped,
            self.live.clone(),
        )))
    }

    fn start_factory(&self) {
        self.wrapped.start_factory();
    }

    fn stop_factory(&self) {
        self.wrapped.stop_factory();
    }
}

impl<F: ClientFactory + ?Sized> ClientFactory for WrappingFactory<F> {
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

/// A protocol that passes every callback on to the protocol it wraps (Twisted's
/// `ProtocolWrapper`). The wrapped protocol sees the real transport and the real
/// connection handle.
///
/// ```
/// use torsion::protocols::policies::ProtocolWrapper;
/// use torsion::testing::StringTransport;
/// use torsion::{Cx, Protocol, Reactor};
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn connection_made(&mut self, cx: &mut Cx<'_>) {
///         cx.write(b"hello");
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let mut t = StringTransport::new();
/// let mut p = ProtocolWrapper::new(Box::new(Hello));
/// p.connection_made(&mut Cx::new(&mut t, &reactor));
/// assert_eq!(t.value(), b"hello");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct ProtocolWrapper {
    wrapped: Box<dyn Protocol>,
    live: Option<Rc<Live>>,
    key: Option<usize>,
    release: Option<Release>,
}

impl ProtocolWrapper {
    /// Wraps `wrapped`.
    pub fn new(wrapped: Box<dyn Protocol>) -> Self {
        ProtocolWrapper {
            wrapped,
            live: None,
            key: None,
            release: None,
        }
    }

    /// Wraps `wrapped` and lists its connection in `live` while it is up.
    pub(super) fn registered(wrapped: Box<dyn Protocol>, live: Rc<Live>) -> Self {
        ProtocolWrapper {
            wrapped,
            live: Some(live),
            key: None,
            release: None,
        }
    }

    /// Runs `release` when the connection is lost (or this wrapper is dropped unconnected).
    pub(super) fn releasing(mut self, release: Release) -> Self {
        self.release = Some(release);
        self
    }

    /// The wrapped protocol.
    pub fn wrapped(&self) -> &dyn Protocol {
        &*self.wrapped
    }

    /// The wrapped protocol, mutably.
    pub fn wrapped_mut(&mut self) -> &mut dyn Protocol {
        &mut *self.wrapped
    }
}

impl Drop for ProtocolWrapper {
    fn drop(&mut self) {
        if let (Some(live), Some(key)) = (&self.live, self.key.take()) {
            live.remove(key);
        }
    }
}

impl Protocol for ProtocolWrapper {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        if let Some(live) = &self.live {
            self.key = Some(live.insert(cx.handle()));
        }
        self.wrapped.connection_made(cx);
    }

    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        self.wrapped.data_received(cx, data);
    }

    fn connection_lost(&mut self, cx: &mut Cx<'_>, reason: Reason) {
        // As Twisted: the factory forgets the connection before the protocol hears of it.
        if let (Some(live), Some(key)) = (&self.live, self.key.take()) {
            live.remove(key);
        }
        if let Some(r) = self.release.as_mut() {
            r.run();
        }
        self.wrapped.connection_lost(cx, reason);
    }

    fn half_closeable(&self) -> bool {
        self.wrapped.half_closeable()
    }

    fn read_connection_lost(&mut self, cx: &mut Cx<'_>) {
        self.wrapped.read_connection_lost(cx);
    }

    fn write_connection_lost(&mut self, cx: &mut Cx<'_>) {
        self.wrapped.write_connection_lost(cx);
    }

    fn pause_writing(&mut self, cx: &mut Cx<'_>) {
        self.wrapped.pause_writing(cx);
    }

    fn resume_writing(&mut self, cx: &mut Cx<'_>) {
        self.wrapped.resume_writing(cx);
    }

    fn file_descriptor_received(&mut self, cx: &mut Cx<'_>, fd: OwnedFd) {
        self.wrapped.file_descriptor_received(cx, fd);
    }
}

/// What a wrapper wants to see of the calls the wrapped protocol makes on its transport.
/// Each default passes the call on unchanged.
pub(super) trait Hooks {
    /// `len` bytes were written (by `write` or `write_vectored`).
    fn wrote(&mut self, len: usize) {
        let _ = len;
    }

    fn register_producer(
        &mut self,
        t: &mut dyn Transport,
        producer: Box<dyn Producer>,
        streaming: bool,
    ) -> Result<(), RegisterProducerError> {
        t.register_producer(producer, streaming)
    }

    fn unregister_producer(&mut self, t: &mut dyn Transport) {
        t.unregister_producer();
    }

    fn pause_producing(&mut self, t: &mut dyn Transport) {
        t.pause_producing();
    }

    fn lose_connection(&mut self, t: &mut dyn Transport) {
        t.lose_connection();
    }

    fn resume_producing(&mut self, t: &mut dyn Transport) {
        t.resume_producing();
    }
}

/// Calls `f` with a context for the same connection whose transport reports to `hooks`.
pub(super) fn with_hooks<R>(
    cx: &mut Cx<'_>,
    hooks: &mut dyn Hooks,
    f: impl FnOnce(&mut Cx<'_>) -> R,
) -> R {
    let (inner, parts) = cx.split();
    let mut t = Intercept { inner, hooks };
    f(&mut parts.cx(&mut t))
}

/// A transport that passes everything on to the real one and tells its [`Hooks`]. Every
/// method of [`Transport`] is forwarded explicitly, so none falls back to a default.
struct Intercept<'t> {
    inner: &'t mut dyn Transport,
    hooks: &'t mut dyn Hooks,
}

impl Transport for Intercept<'_> {
    fn write(&mut self, data: &[u8]) {
        self.hooks.wrote(data.len());
        self.inner.write(data);
    }

    fn write_vectored(&mut self, bufs: &[&[u8]]) {
        self.hooks.wrote(bufs.iter().map(|b| b.len()).sum());
        self.inner.write_vectored(bufs);
    }

    fn lose_connection(&mut self) {
        self.hooks.lose_connection(self.inner);
    }

    fn abort_connection(&mut self) {
        self.inner.abort_connection();
    }

    fn lose_write_connection(&mut self) {
        self.inner.lose_write_connection();
    }

    fn pause_producing(&mut self) {
        self.hooks.pause_producing(self.inner);
    }

    fn resume_producing(&mut self) {
        self.hooks.resume_producing(self.inner);
    }

    fn stop_producing(&mut self) {
        self.inner.stop_producing();
    }

    fn peer(&self) -> Address {
        self.inner.peer()
    }

    fn host(&self) -> Address {
        self.inner.host()
    }

    fn buffered_len(&self) -> usize {
        self.inner.buffered_len()
    }

    fn is_disconnecting(&self) -> bool {
        self.inner.is_disconnecting()
    }

    fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    fn register_producer(
        &mut self,
        producer: Box<dyn Producer>,
        streaming: bool,
    ) -> Result<(), RegisterProducerError> {
        self.hooks
            .register_producer(self.inner, producer, streaming)
    }

    fn unregister_producer(&mut self) {
        self.hooks.unregister_producer(self.inner);
    }

    fn set_write_buffer_limits(&mut self, high: usize, low: usize) {
        self.inner.set_write_buffer_limits(high, low);
    }

    fn write_buffer_limits(&self) -> (usize, usize) {
        self.inner.write_buffer_limits()
    }

    fn start_tls(&mut self, layer: Box<dyn StreamLayer>) -> io::Result<()> {
        self.inner.start_tls(layer)
    }

    fn layer_info(&self) -> Option<LayerInfo> {
        self.inner.layer_info()
    }

    fn set_tcp_nodelay(&mut self, enabled: bool) -> io::Result<()> {
        self.inner.set_tcp_nodelay(enabled)
    }

    fn tcp_nodelay(&self) -> io::Result<bool> {
        self.inner.tcp_nodelay()
    }

    fn set_tcp_keepalive(&mut self, enabled: bool) -> io::Result<()> {
        self.inner.set_tcp_keepalive(enabled)
    }

    fn tcp_keepalive(&self) -> io::Result<bool> {
        self.inner.tcp_keepalive()
    }

    fn peer_credentials(&self) -> io::Result<Credentials> {
        self.inner.peer_credentials()
    }

    fn send_file_descriptor(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.inner.send_file_descriptor(fd)
    }
}
