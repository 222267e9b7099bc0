//! [`LimitTotalConnectionsFactory`]: at most so many connections at once, the rest refused
//! or served by an overflow protocol (Twisted's `LimitTotalConnectionsFactory`).

use std::cell::Cell;
use std::rc::Rc;

use super::wrapper::{ProtocolWrapper, Release};
use crate::{Address, Factory, Protocol};

/// Limits how many connections are served at once (Twisted's
/// `LimitTotalConnectionsFactory`). Below the limit, protocols come from the wrapped
/// factory; at the limit, from the overflow factory if there is one (to say "busy, try
/// later"), else the connection is refused. Overflow connections count too. The count goes
/// up in `build_protocol` and down in `connection_lost`.
///
/// ```
/// use std::rc::Rc;
/// use torsion::factory::from_fn;
/// use torsion::protocols::policies::LimitTotalConnectionsFactory;
/// use torsion::{Address, Cx, Factory, Protocol};
///
/// struct Busy;
/// impl Protocol for Busy {
///     fn connection_made(&mut self, cx: &mut Cx<'_>) {
///         cx.write(b"busy, try again later\r\n");
///         cx.transport().lose_connection();
///     }
/// }
/// struct Service;
/// impl Protocol for Service {}
///
/// let service = Rc::new(from_fn(|_| Some(Box::new(Service) as Box<dyn Protocol>)));
/// let busy = Rc::new(from_fn(|_| Some(Box::new(Busy) as Box<dyn Protocol>)));
/// let factory = LimitTotalConnectionsFactory::new(service, Some(1)).with_overflow(busy);
/// let first = factory.build_protocol(&Address::Unknown);
/// let second = factory.build_protocol(&Address::Unknown); // a Busy
/// assert_eq!(factory.connection_count(), 2);
/// ```
pub struct LimitTotalConnectionsFactory<F: ?Sized = dyn Factory> {
    wrapped: Rc<F>,
    limit: Option<usize>,
    overflow: Option<Rc<dyn Factory>>,
    count: Rc<Cell<usize>>,
}

impl<F: Factory + ?Sized> LimitTotalConnectionsFactory<F> {
    /// Serves at most `limit` connections at once from `wrapped` (`None`: no limit,
    /// Twisted's default).
    pub fn new(wrapped: Rc<F>, limit: Option<usize>) -> Self {
        LimitTotalConnectionsFactory {
            wrapped,
            limit,
            overflow: None,
            count: Rc::default(),
        }
    }

    /// Serves connections over the limit with protocols from `overflow` (Twisted's
    /// `overflowProtocol`) instead of refusing them.
    pub fn with_overflow(mut self, overflow: Rc<dyn Factory>) -> Self {
        self.overflow = Some(overflow);
        self
    }

    /// The limit.
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// Connections built and not yet lost, overflow ones included (Twisted's
    /// `connectionCount`).
    pub fn connection_count(&self) -> usize {
        self.count.get()
    }
}

impl<F: Factory + ?Sized> Factory for LimitTotalConnectionsFactory<F> {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        let under = self.limit.is_none_or(|l| self.count.get() < l);
        let wrapped = if under {
            self.wrapped.build_protocol(addr)?
        } else if let Some(overflow) = &self.overflow {
            overflow.build_protocol(addr)?
        } else {
            tracing::info!(peer = %addr, "connection limit reached, refusing");
            return None;
        };
        self.count.set(self.count.get() + 1);
        let count = self.count.clone();
        let release = Release::new(move || count.set(count.get() - 1));
        Some(Box::new(ProtocolWrapper::new(wrapped).releasing(release)))
    }

    fn start_factory(&self) {
        self.wrapped.start_factory();
    }

    fn stop_factory(&self) {
        self.wrapped.stop_factory();
    }
}

#[cfg(test)]
mod tests {
    //! Twisted's `LimitTotalConnectionsFactoryTests`.

    use std::cell::Cell;

    use super::*;
    use crate::factory::from_fn;
    use crate::testing::StringTransport;
    use crate::{Cx, Reactor, Reason};

    struct Plain;
    impl Protocol for Plain {}

    fn plain() -> Rc<dyn Factory> {
        Rc::new(from_fn(|_| Some(Box::new(Plain) as Box<dyn Protocol>)))
    }

    fn lose(p: &mut Box<dyn Protocol>) {
        let reactor = Reactor::new().unwrap();
        let mut t = StringTransport::new();
        p.connection_lost(&mut Cx::new(&mut t, &reactor), Reason::ConnectionDone);
    }

    #[test]
    fn connection_counting() {
        let factory = LimitTotalConnectionsFactory::new(plain(), None);
        assert_eq!(factory.connection_count(), 0);
        let mut p1 = factory.build_protocol(&Address::Unknown).unwrap();
        assert_eq!(factory.connection_count(), 1);
        let mut p2 = factory.build_protocol(&Address::Unknown).unwrap();
        assert_eq!(factory.connection_count(), 2);
        lose(&mut p1);
        assert_eq!(factory.connection_count(), 1);
        lose(&mut p2);
        assert_eq!(factory.connection_count(), 0);
        // Dropping after connection_lost does not count down twice.
        drop((p1, p2));
        assert_eq!(factory.connection_count(), 0);
    }

    #[test]
    fn connection_limiting() {
        let factory = LimitTotalConnectionsFactory::new(plain(), Some(1));
        let mut p = factory.build_protocol(&Address::Unknown).unwrap();
        assert_eq!(factory.connection_count(), 1);
        assert!(factory.build_protocol(&Address::Unknown).is_none());
        assert_eq!(factory.connection_count(), 1);

        let overflowed = Rc::new(Cell::new(false));
        struct Overflow(Rc<Cell<bool>>);
        impl Protocol for Overflow {
            fn connection_made(&mut self, _: &mut Cx<'_>) {
                self.0.set(true);
            }
        }
        let o = overflowed.clone();
        let factory = LimitTotalConnectionsFactory {
            overflow: Some(Rc::new(from_fn(move |_| {
                Some(Box::new(Overflow(o.clone())) as Box<dyn Protocol>)
            }))),
            ..factory
        };
        let mut op = factory.build_protocol(&Address::Unknown).unwrap();
        let reactor = Reactor::new().unwrap();
        op.connection_made(&mut Cx::new(&mut StringTransport::new(), &reactor));
        assert!(overflowed.get());
        assert_eq!(factory.connection_count(), 2);
        lose(&mut p);
        assert_eq!(factory.connection_count(), 1);
        lose(&mut op);
        assert_eq!(factory.connection_count(), 0);
    }

    #[test]
    fn a_protocol_dropped_unconnected_gives_its_place_back() {
        let factory = LimitTotalConnectionsFactory::new(plain(), Some(1));
        drop(factory.build_protocol(&Address::Unknown));
        assert_eq!(factory.connection_count(), 0);
        assert!(factory.build_protocol(&Address::Unknown).is_some());
    }
}
