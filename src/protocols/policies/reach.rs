//! How a policy's timers get back into a connection: through its [`ConnectionHandle`] in
//! production, through a shared [`StringTransport`](crate::testing::StringTransport) in
//! the unit tests.

use std::rc::Rc;

use crate::{ConnectionHandle, Cx};

/// Something that runs code with a connection's [`Cx`] from outside its callbacks.
pub(crate) trait Reach {
    /// Runs `f` with the connection's context, now or right after its running callback.
    fn reach(&self, f: Box<dyn FnOnce(&mut Cx<'_>)>);
}

impl Reach for ConnectionHandle {
    fn reach(&self, f: Box<dyn FnOnce(&mut Cx<'_>)>) {
        self.call(f);
    }
}

/// Picks the [`Reach`] of a new connection: its handle, unless a test put something else in.
pub(crate) type ReachFn = Rc<dyn Fn(&mut Cx<'_>) -> Rc<dyn Reach>>;

/// The connection's [`Reach`]: from `over` when a test set one, else the connection's handle.
pub(crate) fn reach_of(over: Option<&ReachFn>, cx: &mut Cx<'_>) -> Rc<dyn Reach> {
    match over {
        Some(f) => f(cx),
        None => Rc::new(cx.handle()),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::{Reach, ReachFn};
    use crate::testing::StringTransport;
    use crate::{Cx, Protocol, Reactor, Reason};

    /// A protocol on a [`StringTransport`] that its policy's timers can reach, as Twisted's
    /// tests use `StringTransportWithDisconnection` with a `task.Clock`.
    pub(crate) struct Conn {
        pub reactor: Reactor,
        pub t: Rc<RefCell<StringTransport>>,
        pub p: Box<dyn Protocol>,
    }

    struct Shared {
        reactor: Reactor,
        t: Rc<RefCell<StringTransport>>,
    }

    impl Reach for Shared {
        fn reach(&self, f: Box<dyn FnOnce(&mut Cx<'_>)>) {
            let mut t = self.t.borrow_mut();
            f(&mut Cx::new(&mut *t, &self.reactor));
        }
    }

    impl Conn {
        /// A transport, and the [`ReachFn`] to give the factory before it builds `p`.
        pub fn transport() -> (Rc<RefCell<StringTransport>>, Reactor, ReachFn) {
            let reactor = Reactor::new().expect("reactor");
            let t = Rc::new(RefCell::new(StringTransport::new()));
            let shared = Rc::new(Shared {
                reactor: reactor.clone(),
                t: t.clone(),
            });
            let f: ReachFn = Rc::new(move |_: &mut Cx<'_>| shared.clone() as Rc<dyn Reach>);
            (t, reactor, f)
        }

        /// Connects `p` over `t`.
        pub fn connect(
            reactor: Reactor,
            t: Rc<RefCell<StringTransport>>,
            p: Box<dyn Protocol>,
        ) -> Conn {
            let mut c = Conn { reactor, t, p };
            c.with(|p, cx| p.connection_made(cx));
            c
        }

        /// Calls the protocol with a context over the shared transport.
        pub fn with<R>(&mut self, f: impl FnOnce(&mut dyn Protocol, &mut Cx<'_>) -> R) -> R {
            let mut t = self.t.borrow_mut();
            f(&mut *self.p, &mut Cx::new(&mut *t, &self.reactor))
        }

        pub fn feed(&mut self, data: &[u8]) {
            self.with(|p, cx| p.data_received(cx, data));
        }

        pub fn lose(&mut self) {
            self.with(|p, cx| p.connection_lost(cx, Reason::ConnectionDone));
        }
    }
}
