//! A TCP port forwarder (Twisted's `twisted.protocols.portforward`): every connection
//! accepted by a [`ProxyFactory`] is joined to a new connection to the destination, and bytes
//! flow both ways.
//!
//! Memory stays flat whatever the speeds: when one side's write buffer goes over its high
//! water mark, reading from the other side pauses until it drains to the low mark
//! ([`Protocol::pause_writing`]). A half-close (FIN) on one side is passed on as a half-close
//! of the other; a clean close closes the other side cleanly once its buffer is sent; a reset
//! or error aborts the other side.
//!
//! ```no_run
//! use std::rc::Rc;
//! use torsion::Reactor;
//! use torsion::protocols::portforward::ProxyFactory;
//!
//! let reactor = Reactor::new()?;
//! reactor.listen_tcp(8080, Rc::new(ProxyFactory::new("127.0.0.1", 80)))?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::{
    Address, ClientFactory, ConnectError, ConnectionHandle, Connector, Cx, Factory, Protocol,
    Reason,
};

/// The two ends of one forwarded connection. Either may be missing: the outgoing one until it
/// connects, either once it is gone.
#[derive(Default)]
struct Link {
    server: RefCell<Option<ConnectionHandle>>,
    client: RefCell<Option<ConnectionHandle>>,
    /// The accepted side's peer half-closed before the outgoing side was connected; pass the
    /// half-close on as soon as it is.
    server_eof: Cell<bool>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

impl Link {
    fn other(&self, side: Side) -> Option<ConnectionHandle> {
        match side {
            Side::Server => self.client.borrow().clone(),
            Side::Client => self.server.borrow().clone(),
        }
    }
}

/// One side of a forwarded connection; both sides behave the same towards the other. The
/// accepted side holds its reading until the outgoing side is connected.
struct Proxy {
    link: Rc<Link>,
    side: Side,
    /// Where the accepted side connects to.
    dest: Option<(Rc<str>, u16)>,
}

impl Protocol for Proxy {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        match self.side {
            Side::Server => {
                cx.transport().pause_producing();
                *self.link.server.borrow_mut() = Some(cx.handle());
                if let Some((host, port)) = &self.dest {
                    let factory = Rc::new(ProxyClientFactory {
                        link: self.link.clone(),
                    });
                    cx.reactor().connect_tcp(host, *port, factory);
                }
            }
            Side::Client => {
                *self.link.client.borrow_mut() = Some(cx.handle());
                if let Some(server) = self.link.other(Side::Client) {
                    server.resume_producing();
                }
                if self.link.server_eof.get() {
                    cx.transport().lose_write_connection();
                }
            }
        }
    }

    fn data_received(&mut self, _cx: &mut Cx<'_>, data: &[u8]) {
        if let Some(peer) = self.link.other(self.side) {
            peer.write(data);
        }
    }

    fn connection_lost(&mut self, _cx: &mut Cx<'_>, reason: Reason) {
        let peer = self.link.other(self.side);
        match self.side {
            Side::Server => self.link.server.borrow_mut().take(),
            Side::Client => self.link.client.borrow_mut().take(),
        };
        if let Some(peer) = peer {
            if reason.is_clean() {
                peer.lose_connection();
            } else {
                peer.abort_connection();
            }
        }
    }

    fn half_closeable(&self) -> bool {
        true
    }

    fn read_connection_lost(&mut self, _cx: &mut Cx<'_>) {
        match self.link.other(self.side) {
            Some(peer) => peer.lose_write_connection(),
            None if self.side == Side::Server => self.link.server_eof.set(true),
            None => {}
        }
    }

    fn pause_writing(&mut self, _cx: &mut Cx<'_>) {
        if let Some(peer) = self.link.other(self.side) {
            peer.pause_producing();
        }
    }

    fn resume_writing(&mut self, _cx: &mut Cx<'_>) {
        if let Some(peer) = self.link.other(self.side) {
            peer.resume_producing();
        }
    }
}

/// Serves a listening port by forwarding each connection to `host:port`.
pub struct ProxyFactory {
    host: Rc<str>,
    port: u16,
}

impl ProxyFactory {
    /// Forwards to `host:port` (a name is resolved off the reactor thread).
    pub fn new(host: &str, port: u16) -> Self {
        ProxyFactory {
            host: host.into(),
            port,
        }
    }
}

impl Factory for ProxyFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Proxy {
            link: Rc::default(),
            side: Side::Server,
            dest: Some((self.host.clone(), self.port)),
        }))
    }
}

/// Builds the outgoing side of one forwarded connection.
struct ProxyClientFactory {
    link: Rc<Link>,
}

impl Factory for ProxyClientFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        if self.link.server.borrow().is_none() {
            // The accepted side is already gone.
            return None;
        }
        Some(Box::new(Proxy {
            link: self.link.clone(),
            side: Side::Client,
            dest: None,
        }))
    }
}

impl ClientFactory for ProxyClientFactory {
    fn client_connection_failed(&self, _connector: &Connector, reason: ConnectError) {
        tracing::debug!("forwarding failed: {reason}");
        if let Some(server) = self.link.server.borrow_mut().take() {
            server.lose_connection();
        }
    }
}
