//! [`LimitConnectionsByPeer`]: at most so many connections from each peer host (Twisted's
//! `LimitConnectionsByPeer`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

use super::wrapper::{ProtocolWrapper, Release};
use crate::{Address, ClientFactory, ConnectError, Connector, Factory, Protocol, Reason};

/// Twisted's default: five connections per peer host.
pub const DEFAULT_PER_PEER: usize = 5;

/// Who counts as one peer: the IP address of a TCP peer (any port), or the whole address of
/// any other kind of peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PeerKey {
    Ip(IpAddr),
    Other(Address),
}

impl PeerKey {
    fn of(addr: &Address) -> PeerKey {
        match addr.socket_addr() {
            Some(a) => PeerKey::Ip(a.ip()),
            None => PeerKey::Other(addr.clone()),
        }
    }
}

/// Wraps a factory to refuse a connection when its peer host already has
/// [`max_per_peer`](Self::max_per_peer) live ones (Twisted's `LimitConnectionsByPeer`, 5 by
/// default). The count for a host goes up in `build_protocol` and down in
/// `connection_lost`.
///
/// ```
/// use std::rc::Rc;
/// use torsion::factory::from_fn;
/// use torsion::protocols::policies::LimitConnectionsByPeer;
/// use torsion::{Address, Factory, Protocol};
///
/// struct Service;
/// impl Protocol for Service {}
///
/// let service = Rc::new(from_fn(|_| Some(Box::new(Service) as Box<dyn Protocol>)));
/// let factory = LimitConnectionsByPeer::new(service).with_max_per_peer(1);
/// let peer = Address::Tcp("192.0.2.7:40000".parse().unwrap());
/// let same_host = Address::Tcp("192.0.2.7:40001".parse().unwrap());
/// let _first = factory.build_protocol(&peer).unwrap();
/// assert!(factory.build_protocol(&same_host).is_none());
/// ```
pub struct LimitConnectionsByPeer<F: ?Sized = dyn Factory> {
    wrapped: Rc<F>,
    max_per_peer: usize,
    peers: Rc<RefCell<HashMap<PeerKey, usize>>>,
}

impl<F: Factory + ?Sized> LimitConnectionsByPeer<F> {
    /// Wraps `wrapped`, five connections per peer host.
    pub fn new(wrapped: Rc<F>) -> Self {
        LimitConnectionsByPeer {
            wrapped,
            max_per_peer: DEFAULT_PER_PEER,
            peers: Rc::default(),
        }
    }

    /// Sets the limit per peer host (Twisted's `maxConnectionsPerPeer`).
    pub fn with_max_per_peer(mut self, n: usize) -> Self {
        self.max_per_peer = n;
        self
    }

    /// The limit per peer host.
    pub fn max_per_peer(&self) -> usize {
        self.max_per_peer
    }

    /// Live connections from the host of `addr` (for TCP, the port does not matter).
    pub fn connections_from(&self, addr: &Address) -> usize {
        let key = PeerKey::of(addr);
        self.peers.borrow().get(&key).copied().unwrap_or(0)
    }
}

impl<F: Factory + ?Sized> Factory for LimitConnectionsByPeer<F> {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        let key = PeerKey::of(addr);
        if self.peers.borrow().get(&key).copied().unwrap_or(0) >= self.max_per_peer {
            tracing::info!(peer = %addr, "too many connections from this peer, refusing");
            return None;
        }
        let wrapped = self.wrapped.build_protocol(addr)?;
        *self.peers.borrow_mut().entry(key.clone()).or_insert(0) += 1;
        let peers = self.peers.clone();
        let release = Release::new(move || {
            let mut peers = peers.borrow_mut();
            if let Some(n) = peers.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    peers.remove(&key);
                }
            }
        });
        Some(Box::new(ProtocolWrapper::new(wrapped).releasing(release)))
    }

    fn start_factory(&self) {
        self.wrapped.start_factory();
    }

    fn stop_factory(&self) {
        self.wrapped.stop_factory();
    }
}

/// For outgoing connections: the connector callbacks go to the wrapped client factory.
impl<F: ClientFactory + ?Sized> ClientFactory for LimitConnectionsByPeer<F> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::factory::from_fn;
    use crate::testing::StringTransport;
    use crate::{Cx, Reactor, Reason};

    struct Plain;
    impl Protocol for Plain {}

    fn tcp(s: &str) -> Address {
        Address::Tcp(s.parse().unwrap())
    }

    #[test]
    fn five_per_host_by_default_and_a_place_comes_back_on_loss() {
        let plain = Rc::new(from_fn(|_| Some(Box::new(Plain) as Box<dyn Protocol>)));
        let factory = LimitConnectionsByPeer::new(plain);
        assert_eq!(factory.max_per_peer(), 5);
        let mut built: Vec<_> = (0..5)
            .map(|i| {
                factory
                    .build_protocol(&tcp(&format!("10.1.1.1:{}", 1000 + i)))
                    .unwrap()
            })
            .collect();
        assert!(factory.build_protocol(&tcp("10.1.1.1:2000")).is_none());
        // Another host, and the same address over IPv6, are other peers.
        assert!(factory.build_protocol(&tcp("10.1.1.2:2000")).is_some());
        assert!(factory.build_protocol(&tcp("[::1]:2000")).is_some());
        assert_eq!(factory.connections_from(&tcp("10.1.1.1:1")), 5);
        let reactor = Reactor::new().unwrap();
        let mut t = StringTransport::new();
        built[0].connection_lost(&mut Cx::new(&mut t, &reactor), Reason::ConnectionDone);
        assert_eq!(factory.connections_from(&tcp("10.1.1.1:1")), 4);
        assert!(factory.build_protocol(&tcp("10.1.1.1:2000")).is_some());
        built.clear();
        assert_eq!(factory.connections_from(&tcp("10.1.1.1:1")), 0);
    }

    #[test]
    fn unix_peers_count_by_address() {
        let plain = Rc::new(from_fn(|_| Some(Box::new(Plain) as Box<dyn Protocol>)));
        let factory = LimitConnectionsByPeer::new(plain).with_max_per_peer(2);
        let unnamed = Address::Unix(None);
        let a = factory.build_protocol(&unnamed);
        let b = factory.build_protocol(&unnamed);
        assert!(a.is_some() && b.is_some());
        assert!(factory.build_protocol(&unnamed).is_none());
    }
}
