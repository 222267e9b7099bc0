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
    /// Whose context this is; the handle is built only when asked for.
    id: Owner,
}

/// What a [`Cx`]'s handle refers to.
#[derive(Clone, Copy, Debug)]
enum Owner {
    /// A connection of the reactor, by slot.
    Connection(SlotId),
    /// A transport driven by hand ([`Cx::new`]), by its address: handles taken for the same
    /// transport are equal, for different ones not.
    Detached(usize),
}

impl<'a> Cx<'a> {
    /// Builds a context around any transport, for driving a protocol by hand in tests
    /// (see [`testing::StringTransport`](crate::testing::StringTransport)).
    /// [`Cx::handle`] then returns a detached handle whose operations do nothing. Handles taken
    /// for the same transport (at the same address: keep it in one place) compare equal and
    /// for different live transports not, so protocol code that tells connections apart by
    /// handle (a chat room's members) can be driven with several `StringTransport`s.
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
        let id = Owner::Detached(transport as *const dyn Transport as *const () as usize);
        Cx {
            transport,
            reactor,
            id,
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
            id: Owner::Connection(id),
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
            Owner::Connection(id) => ConnectionHandle::new(self.reactor.weak(), id),
            Owner::Detached(addr) => ConnectionHandle::detached(addr),
        }
    }

    /// Splits the context into its transport and the rest, so that a protocol wrapper can
    /// give the protocol it wraps a context for the same connection (the same reactor, the
    /// same [`Cx::handle`]) over a transport that wraps this one, as Twisted's
    /// `ProtocolWrapper` is the wrapped protocol's transport.
    ///
    /// ```
    /// use torsion::{Address, Cx, Protocol, Reactor, Transport};
    /// use torsion::producer::{Producer, RegisterProducerError};
    /// use torsion::testing::StringTransport;
    ///
    /// /// A transport that counts what goes through it.
    /// struct Counting<'t> { inner: &'t mut dyn Transport, written: &'t mut usize }
    /// impl Transport for Counting<'_> {
    ///     fn write(&mut self, data: &[u8]) {
    ///         *self.written += data.len();
    ///         self.inner.write(data);
    ///     }
    ///     // ... the rest delegates to `inner`:
    /// #   fn lose_connection(&mut self) { self.inner.lose_connection() }
    /// #   fn abort_connection(&mut self) { self.inner.abort_connection() }
    /// #   fn lose_write_connection(&mut self) { self.inner.lose_write_connection() }
    /// #   fn pause_producing(&mut self) { self.inner.pause_producing() }
    /// #   fn resume_producing(&mut self) { self.inner.resume_producing() }
    /// #   fn peer(&self) -> Address { self.inner.peer() }
    /// #   fn host(&self) -> Address { self.inner.host() }
    /// #   fn buffered_len(&self) -> usize { self.inner.buffered_len() }
    /// #   fn is_disconnecting(&self) -> bool { self.inner.is_disconnecting() }
    /// #   fn is_connected(&self) -> bool { self.inner.is_connected() }
    /// #   fn register_producer(&mut self, p: Box<dyn Producer>, s: bool)
    /// #       -> Result<(), RegisterProducerError> { self.inner.register_producer(p, s) }
    /// #   fn unregister_producer(&mut self) { self.inner.unregister_producer() }
    /// #   fn set_write_buffer_limits(&mut self, h: usize, l: usize) {
    /// #       self.inner.set_write_buffer_limits(h, l)
    /// #   }
    /// #   fn write_buffer_limits(&self) -> (usize, usize) { self.inner.write_buffer_limits() }
    /// }
    ///
    /// /// Counts the bytes its protocol writes.
    /// struct Meter<P> { wrapped: P, written: usize }
    /// impl<P: Protocol> Protocol for Meter<P> {
    ///     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
    ///         let (inner, parts) = cx.split();
    ///         let mut counting = Counting { inner, written: &mut self.written };
    ///         self.wrapped.data_received(&mut parts.cx(&mut counting), data);
    ///     }
    /// }
    ///
    /// struct Echo;
    /// impl Protocol for Echo {
    ///     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
    ///         cx.write(data);
    ///     }
    /// }
    ///
    /// let reactor = Reactor::new()?;
    /// let mut t = StringTransport::new();
    /// let mut p = Meter { wrapped: Echo, written: 0 };
    /// p.data_received(&mut Cx::new(&mut t, &reactor), b"hello");
    /// assert_eq!((t.value(), p.written), (&b"hello"[..], 5));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn split(&mut self) -> (&mut dyn Transport, CxParts<'_>) {
        let parts = CxParts {
            reactor: self.reactor,
            id: self.id,
        };
        (self.transport, parts)
    }

    /// Shorthand for `cx.transport().write(data)`.
    pub fn write(&mut self, data: &[u8]) {
        self.transport.write(data);
    }
}

/// What a [`Cx`] holds besides its transport: the reactor and the connection it belongs to
/// (see [`Cx::split`]).
#[derive(Clone, Copy)]
pub struct CxParts<'a> {
    reactor: &'a Reactor,
    id: Owner,
}

impl<'a> CxParts<'a> {
    /// A context for the same connection over `transport`.
    pub fn cx<'t>(self, transport: &'t mut dyn Transport) -> Cx<'t>
    where
        'a: 't,
    {
        Cx {
            transport,
            reactor: self.reactor,
            id: self.id,
        }
    }

    /// The reactor.
    pub fn reactor(&self) -> &'a Reactor {
        self.reactor
    }
}

impl std::fmt::Debug for CxParts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CxParts")
            .field("id", &self.id)
            .finish_non_exhaustive()
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
