//! `listen_tls` and `connect_tls` (Twisted's `listenSSL` / `connectSSL`): TCP with a TLS layer
//! installed the moment each connection is made, and the STARTTLS helpers.
//!
//! The user's factory is wrapped: its protocols are wrapped in turn by one that installs the
//! layer in `connection_made` and then hands every callback through. As in Twisted, the
//! user's `connection_made` runs at once, before the handshake; what it writes is held by
//! the layer until the handshake completes, and a failed handshake reaches
//! `connection_lost` as [`Reason::Tls`].

use std::io;
use std::rc::{Rc, Weak};

use super::{ClientTlsConfig, ServerTlsConfig, TlsLayer};
use crate::layer::LayerError;
use crate::reactor::{Core, factory_key};
use crate::{
    Address, CannotListen, ClientFactory, ConnectError, Connector, Cx, Factory, ListeningPort,
    Protocol, Reactor, Reason, TcpConnectOptions, TcpListenOptions, Transport,
};

impl Reactor {
    /// Listens on TCP `port` (0 picks one) and serves each connection over TLS with
    /// `config`, with a protocol from `factory`.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use torsion::{Cx, Protocol, Reactor};
    /// use torsion::factory::from_fn;
    /// use torsion::tls::{generate_self_signed, ServerTlsConfig};
    ///
    /// struct Echo;
    /// impl Protocol for Echo {
    ///     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
    ///         cx.transport().write(data);
    ///     }
    /// }
    ///
    /// let (cert, key) = generate_self_signed(&["localhost"])?;
    /// let config = ServerTlsConfig::from_pem(cert.as_bytes(), key.as_bytes())?;
    /// let reactor = Reactor::new()?;
    /// let factory = Rc::new(from_fn(|_| Some(Box::new(Echo) as Box<dyn Protocol>)));
    /// let port = reactor.listen_tls(0, factory, &config)?;
    /// assert_ne!(port.host().port(), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn listen_tls(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        config: &ServerTlsConfig,
    ) -> Result<ListeningPort, CannotListen> {
        self.listen_tls_with(port, factory, config, TcpListenOptions::default())
    }

    /// [`Reactor::listen_tls`] with a backlog, an interface and `SO_REUSEPORT`.
    pub fn listen_tls_with(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        config: &ServerTlsConfig,
        opts: TcpListenOptions,
    ) -> Result<ListeningPort, CannotListen> {
        let wrapped = Rc::new(TlsServerFactory {
            inner: factory,
            make: Rc::new(MakeLayer::Server(config.clone())),
            core: self.weak(),
        });
        self.listen_tcp_with(port, wrapped, opts)
    }

    /// Connects to `host:port` over TCP, then TLS with `config` (which names the server to
    /// verify, usually `host`), reporting to `factory` as
    /// [`Reactor::connect_tcp`] does. A failed handshake reaches the protocol's
    /// `connection_lost` (and `client_connection_lost`) as [`Reason::Tls`].
    ///
    /// ```
    /// use std::rc::Rc;
    /// use torsion::{Protocol, Reactor};
    /// use torsion::factory::from_fn;
    /// use torsion::tls::ClientTlsConfig;
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {}
    ///
    /// let reactor = Reactor::new()?;
    /// let config = ClientTlsConfig::new("localhost")?;
    /// let factory = Rc::new(from_fn(|_| Some(Box::new(Quiet) as Box<dyn Protocol>)));
    /// let connector = reactor.connect_tls("127.0.0.1", 9, factory, &config);
    /// # let _ = connector;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_tls(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        config: &ClientTlsConfig,
    ) -> Connector {
        self.connect_tls_with(host, port, factory, config, TcpConnectOptions::default())
    }

    /// [`Reactor::connect_tls`] with a timeout and a bind address.
    pub fn connect_tls_with(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        config: &ClientTlsConfig,
        opts: TcpConnectOptions,
    ) -> Connector {
        let wrapped = Rc::new(TlsClientFactory {
            inner: factory,
            make: Rc::new(MakeLayer::Client(config.clone())),
            core: self.weak(),
        });
        self.connect_tcp_with(host, port, wrapped, opts)
    }
}

/// Switches a live connection to TLS as the server (STARTTLS): what was written before goes
/// out in clear, what is written after is encrypted. Call it from the callback that reads
/// the clear-text request to switch, after writing the clear-text answer.
///
/// ```
/// use torsion::{Cx, Protocol};
/// use torsion::tls::{start_tls_server, ServerTlsConfig};
///
/// struct Smtpish {
///     tls: ServerTlsConfig,
/// }
/// impl Protocol for Smtpish {
///     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
///         if data == b"STARTTLS\r\n" {
///             cx.transport().write(b"220 go ahead\r\n");
///             if start_tls_server(cx.transport(), &self.tls).is_err() {
///                 cx.transport().lose_connection();
///             }
///         }
///     }
/// }
/// ```
pub fn start_tls_server(transport: &mut dyn Transport, config: &ServerTlsConfig) -> io::Result<()> {
    let layer = config.layer().map_err(io::Error::other)?;
    transport.start_tls(Box::new(layer))
}

/// Switches a live connection to TLS as the client (STARTTLS), verifying the server against
/// `config`. Call it once the server has agreed to switch.
///
/// ```
/// use torsion::{Cx, Protocol};
/// use torsion::tls::{start_tls_client, ClientTlsConfig};
///
/// struct Client {
///     tls: ClientTlsConfig,
/// }
/// impl Protocol for Client {
///     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
///         if data.starts_with(b"220 ") && start_tls_client(cx.transport(), &self.tls).is_ok() {
///             cx.transport().write(b"EHLO me\r\n"); // encrypted
///         }
///     }
/// }
/// ```
pub fn start_tls_client(transport: &mut dyn Transport, config: &ClientTlsConfig) -> io::Result<()> {
    let layer = config.layer().map_err(io::Error::other)?;
    transport.start_tls(Box::new(layer))
}

enum MakeLayer {
    Server(ServerTlsConfig),
    Client(ClientTlsConfig),
}

impl MakeLayer {
    fn layer(&self) -> Result<TlsLayer, LayerError> {
        match self {
            MakeLayer::Server(c) => c.layer(),
            MakeLayer::Client(c) => c.layer(),
        }
    }
}

fn wrap(inner: Option<Box<dyn Protocol>>, make: &Rc<MakeLayer>) -> Option<Box<dyn Protocol>> {
    inner.map(|inner| {
        Box::new(TlsProtocol {
            inner,
            make: make.clone(),
            started: false,
        }) as Box<dyn Protocol>
    })
}

/// Starts and stops the user's factory through the reactor's own count, keyed by the user's
/// factory, so that one factory behind several TLS and TCP ports starts once and stops once.
fn start_inner<F: Factory + ?Sized>(core: &Weak<Core>, inner: &Rc<F>) {
    match core.upgrade() {
        Some(core) => core.factory_start(factory_key(inner), || inner.start_factory()),
        None => inner.start_factory(),
    }
}

fn stop_inner<F: Factory + ?Sized>(core: &Weak<Core>, inner: &Rc<F>) {
    match core.upgrade() {
        Some(core) => core.factory_stop(factory_key(inner), || inner.stop_factory()),
        None => inner.stop_factory(),
    }
}

struct TlsServerFactory {
    inner: Rc<dyn Factory>,
    make: Rc<MakeLayer>,
    core: Weak<Core>,
}

impl Factory for TlsServerFactory {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        wrap(self.inner.build_protocol(addr), &self.make)
    }

    fn start_factory(&self) {
        start_inner(&self.core, &self.inner);
    }

    fn stop_factory(&self) {
        stop_inner(&self.core, &self.inner);
    }
}

struct TlsClientFactory {
    inner: Rc<dyn ClientFactory>,
    make: Rc<MakeLayer>,
    core: Weak<Core>,
}

impl Factory for TlsClientFactory {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        wrap(self.inner.build_protocol(addr), &self.make)
    }

    fn start_factory(&self) {
        start_inner(&self.core, &self.inner);
    }

    fn stop_factory(&self) {
        stop_inner(&self.core, &self.inner);
    }
}

impl ClientFactory for TlsClientFactory {
    fn started_connecting(&self, connector: &Connector) {
        self.inner.started_connecting(connector);
    }

    fn client_connection_failed(&self, connector: &Connector, reason: ConnectError) {
        self.inner.client_connection_failed(connector, reason);
    }

    fn client_connection_lost(&self, connector: &Connector, reason: Reason) {
        self.inner.client_connection_lost(connector, reason);
    }
}

/// Installs the layer, then is the user's protocol. If the layer cannot be installed the
/// connection is aborted before the user's protocol sees it: it must never write in clear
/// on a connection its user asked to be encrypted. Such a protocol gets neither
/// `connection_made` nor `connection_lost`.
struct TlsProtocol {
    inner: Box<dyn Protocol>,
    make: Rc<MakeLayer>,
    started: bool,
}

impl Protocol for TlsProtocol {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        let installed = self
            .make
            .layer()
            .map_err(io::Error::other)
            .and_then(|layer| {
                let t = cx.transport();
                t.start_tls(Box::new(layer))
            });
        match installed {
            Ok(()) => {
                self.started = true;
                self.inner.connection_made(cx);
            }
            Err(e) => {
                let peer = cx.transport().peer();
                tracing::error!("cannot start TLS on the connection with {peer}: {e}");
                cx.transport().abort_connection();
            }
        }
    }

    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        if self.started {
            self.inner.data_received(cx, data);
        }
    }

    fn connection_lost(&mut self, cx: &mut Cx<'_>, reason: Reason) {
        if self.started {
            self.inner.connection_lost(cx, reason);
        }
    }

    fn half_closeable(&self) -> bool {
        self.inner.half_closeable()
    }

    fn read_connection_lost(&mut self, cx: &mut Cx<'_>) {
        if self.started {
            self.inner.read_connection_lost(cx);
        }
    }

    fn write_connection_lost(&mut self, cx: &mut Cx<'_>) {
        if self.started {
            self.inner.write_connection_lost(cx);
        }
    }

    fn pause_writing(&mut self, cx: &mut Cx<'_>) {
        if self.started {
            self.inner.pause_writing(cx);
        }
    }

    fn resume_writing(&mut self, cx: &mut Cx<'_>) {
        if self.started {
            self.inner.resume_writing(cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer::{Producer, RegisterProducerError};
    use crate::testing::StringTransport;
    use crate::tls::generate_self_signed;
    use std::cell::RefCell;

    /// A transport that cannot carry a layer, whatever `StringTransport` learns to do.
    struct NoLayers(StringTransport);

    impl Transport for NoLayers {
        fn write(&mut self, data: &[u8]) {
            self.0.write(data);
        }
        fn lose_connection(&mut self) {
            self.0.lose_connection();
        }
        fn abort_connection(&mut self) {
            self.0.abort_connection();
        }
        fn lose_write_connection(&mut self) {
            self.0.lose_write_connection();
        }
        fn pause_producing(&mut self) {}
        fn resume_producing(&mut self) {}
        fn peer(&self) -> Address {
            self.0.peer()
        }
        fn host(&self) -> Address {
            self.0.host()
        }
        fn buffered_len(&self) -> usize {
            0
        }
        fn is_disconnecting(&self) -> bool {
            self.0.is_disconnecting()
        }
        fn is_connected(&self) -> bool {
            self.0.is_connected()
        }
        fn register_producer(
            &mut self,
            producer: Box<dyn Producer>,
            streaming: bool,
        ) -> Result<(), RegisterProducerError> {
            self.0.register_producer(producer, streaming)
        }
        fn unregister_producer(&mut self) {}
        fn set_write_buffer_limits(&mut self, _high: usize, _low: usize) {}
        fn write_buffer_limits(&self) -> (usize, usize) {
            (0, 0)
        }
        fn start_tls(&mut self, _layer: Box<dyn crate::layer::StreamLayer>) -> io::Result<()> {
            Err(io::ErrorKind::Unsupported.into())
        }
    }

    struct Record(Rc<RefCell<Vec<&'static str>>>);
    impl Protocol for Record {
        fn connection_made(&mut self, cx: &mut Cx<'_>) {
            self.0.borrow_mut().push("made");
            cx.transport().write(b"secret");
        }
        fn connection_lost(&mut self, _cx: &mut Cx<'_>, _reason: Reason) {
            self.0.borrow_mut().push("lost");
        }
    }

    #[test]
    fn a_transport_without_layers_is_aborted_before_the_protocol_sees_it() {
        let (cert, key) = generate_self_signed(&["localhost"]).unwrap();
        let cfg = ServerTlsConfig::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let make = Rc::new(MakeLayer::Server(cfg));
        let mut p = wrap(Some(Box::new(Record(log.clone()))), &make).unwrap();
        let reactor = Reactor::new().unwrap();
        let mut t = NoLayers(StringTransport::new());
        p.connection_made(&mut Cx::new(&mut t, &reactor));
        p.connection_lost(&mut Cx::new(&mut t, &reactor), Reason::ConnectionAborted);
        assert!(log.borrow().is_empty());
        assert!(t.0.value().is_empty(), "nothing may be written in clear");
        assert!(t.0.disconnecting() || t.0.disconnected());
    }
}
