//! Factories build one protocol per connection and own what the connections share
//! (Twisted's `Factory`, `ServerFactory` and `ClientFactory`).
//!
//! Factory methods take `&self`: a factory is shared by every connection it built and by the
//! reactor, so state that changes lives in a `Cell` or `RefCell` inside it. Keep such borrows
//! inside one method; never hold one across a call into the reactor.

use crate::{Address, ConnectError, Connector, Protocol, Reason};

/// Builds protocols for a listening port (Twisted's `ServerFactory`).
///
/// ```
/// use std::rc::Rc;
/// use torsion::{Address, Cx, Factory, Protocol};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
///         cx.transport().write(data);
///     }
/// }
///
/// struct EchoFactory;
/// impl Factory for EchoFactory {
///     fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
///         Some(Box::new(Echo))
///     }
/// }
/// let _f: Rc<dyn Factory> = Rc::new(EchoFactory);
/// ```
pub trait Factory: 'static {
    /// Builds the protocol for a new connection from `addr`. `None` refuses it: the socket is
    /// closed in an orderly way and the listener goes on.
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>>;

    /// Called once when the first port or connector using this factory starts.
    fn start_factory(&self) {}

    /// Called once when the last port or connector using this factory stops.
    fn stop_factory(&self) {}
}

/// A factory for outgoing connections (Twisted's `ClientFactory`). Each callback gets the
/// [`Connector`], which can [`connect`](Connector::connect) again from inside it.
pub trait ClientFactory: Factory {
    /// A connection attempt has started.
    fn started_connecting(&self, connector: &Connector) {
        let _ = connector;
    }

    /// A connection attempt failed.
    fn client_connection_failed(&self, connector: &Connector, reason: ConnectError) {
        let _ = (connector, reason);
    }

    /// An established connection ended (after the protocol's own `connection_lost`).
    fn client_connection_lost(&self, connector: &Connector, reason: Reason) {
        let _ = (connector, reason);
    }
}

/// A factory made from a closure, for when a factory holds no shared state
/// (Twisted's `Factory.forProtocol`).
///
/// ```
/// use std::rc::Rc;
/// use torsion::{Cx, Protocol};
/// use torsion::factory::from_fn;
///
/// struct Discard;
/// impl Protocol for Discard {}
///
/// let factory = Rc::new(from_fn(|_addr| Some(Box::new(Discard) as Box<dyn Protocol>)));
/// # let _ = factory;
/// ```
pub fn from_fn<F>(build: F) -> FnFactory<F>
where
    F: Fn(&Address) -> Option<Box<dyn Protocol>> + 'static,
{
    FnFactory(build)
}

/// The factory returned by [`from_fn`]. It is also a [`ClientFactory`] whose callbacks do
/// nothing.
pub struct FnFactory<F>(F);

impl<F> Factory for FnFactory<F>
where
    F: Fn(&Address) -> Option<Box<dyn Protocol>> + 'static,
{
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        (self.0)(addr)
    }
}

impl<F> ClientFactory for FnFactory<F> where F: Fn(&Address) -> Option<Box<dyn Protocol>> + 'static {}
