//! Protocols: one object per connection, driven through callbacks (Twisted's `Protocol`).

use std::os::fd::OwnedFd;

use crate::handle::ConnectionHandle;
use crate::reactor::SlotId;
use crate::{Reactor, Reason, Transport};

/// The context lent to every protocol callback: this connection's transport, the reactor,
/// and a handle to keep for later.
///
/// A `Cx` lives only for one callback. Nothing in the reactor is borrowed while the callback
/// runs, so from here a protocol may write to or close any connection, schedule timers, listen,
/// connect and stop the reactor.
pub struct Cx<'a> {
    transport: &'a mut dyn Transport,
    reactor: &'a Reactor,
    /// The connection's slot; the handle is built only when asked for.
    id: Option<SlotId>,
}

impl<'a> Cx<'a> {
    /// Builds a context around any transport, for driving a protocol by hand in tests
    /// (see [`testing::StringTransport`](crate::testing::StringTransport)).
    /// [`Cx::handle`] then returns a detached handle whose operations do nothing.
    ///
    /// ```
    /// use torsion::{Cx, Protocol, Reactor};
    /// use torsion::testing::StringTransport;
    ///
    /// struct Hello;
    /// impl Protocol for Hello {
    ///     fn connection_made(&mut self, cx: &mut Cx<'_>) {
    ///         cx.transport().write(b"hello\r\n");
    ///     }
    /// }
    ///
    /// let reactor = Reactor::new().unwrap();
    /// let mut t = StringTransport::new();
    /// Hello.connection_made(&mut Cx::new(&mut t, &reactor));
    /// assert_eq!(t.value(), b"hello\r\n");
    /// ```
    pub fn new(transport: &'a mut dyn Transport, reactor: &'a Reactor) -> Self {
        Cx {
            transport,
            reactor,
            id: None,
        }
    }

    pub(crate) fn for_connection(
        transport: &'a mut dyn Transport,
        reactor: &'a Reactor,
        id: SlotId,
    ) -> Self {
        Cx {
            transport,
            reactor,
            id: Some(id),
        }
    }

    /// This connection's transport.
    pub fn transport(&mut self) -> &mut dyn Transport {
        self.transport
    }

    /// The reactor running this connection.
    pub fn reactor(&self) -> &Reactor {
        self.reactor
    }

    /// A handle to this connection that can be stored and used from any later callback.
    pub fn handle(&self) -> ConnectionHandle {
        match self.id {
            Some(id) => ConnectionHandle::new(self.reactor.weak(), id),
            None => ConnectionHandle::detached(),
        }
    }

    /// Shorthand for `cx.transport().write(data)`.
    pub fn write(&mut self, data: &[u8]) {
        self.transport.write(data);
    }
}

/// One connection's behaviour. Every callback has a default that does nothing.
///
/// `connection_made` comes once, before any `data_received`; `connection_lost` comes exactly
/// once, last. `data_received` gets a slice of the reactor's shared read buffer: consume it or
/// copy what you need to keep. Chunk boundaries are arbitrary.
///
/// ```
/// use torsion::{Cx, Protocol};
///
/// /// RFC 862: send back what arrives.
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
///         cx.transport().write(data);
///     }
/// }
/// ```
pub trait Protocol: 'static {
    /// The connection is established; `cx.transport()` is ready.
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        let _ = cx;
    }

    /// Bytes arrived.
    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        let _ = (cx, data);
    }

    /// The connection is gone; writes through `cx` do nothing now.
    fn connection_lost(&mut self, cx: &mut Cx<'_>, reason: Reason) {
        let _ = (cx, reason);
    }

    /// Return true to opt into half-close (Twisted's `IHalfCloseableProtocol`): a FIN from the
    /// peer then calls [`Protocol::read_connection_lost`] instead of closing, and the connection
    /// stays writable.
    fn half_closeable(&self) -> bool {
        false
    }

    /// The peer shut down its write side (only if [`Protocol::half_closeable`]).
    fn read_connection_lost(&mut self, cx: &mut Cx<'_>) {
        let _ = cx;
    }

    /// Our `lose_write_connection` has completed (only if [`Protocol::half_closeable`]).
    fn write_connection_lost(&mut self, cx: &mut Cx<'_>) {
        let _ = cx;
    }

    /// More than the high water mark is waiting to be sent: stop writing for now (asyncio's
    /// `pause_writing`, for protocols that do not register a producer).
    fn pause_writing(&mut self, cx: &mut Cx<'_>) {
        let _ = cx;
    }

    /// The write buffer fell to the low water mark after a [`Protocol::pause_writing`].
    fn resume_writing(&mut self, cx: &mut Cx<'_>) {
        let _ = cx;
    }

    /// A file descriptor arrived from the peer of a UNIX connection (`SCM_RIGHTS`, Twisted's
    /// `IFileDescriptorReceiver`). It comes before the `data_received` of the bytes it
    /// arrived with (each descriptor rides on at least one byte of data). It is close-on-exec
    /// and yours: keep it, or drop it to close it (the default).
    fn file_descriptor_received(&mut self, cx: &mut Cx<'_>, fd: OwnedFd) {
        let _ = (cx, fd);
    }
}
