//! The transport interface a protocol writes through (Twisted's `ITransport` and
//! `ITCPTransport`).
//!
//! TCP connections and [`testing::StringTransport`](crate::testing::StringTransport) both
//! implement [`Transport`], so protocol code is tested without sockets.

use std::io;
use std::os::fd::BorrowedFd;

use crate::layer::{LayerInfo, StreamLayer};
use crate::producer::{Producer, RegisterProducerError};
use crate::{Address, Credentials};

/// What a protocol can do with its connection.
///
/// Every method is safe to call at any time: writing to or closing a transport that is
/// closing or closed does nothing, never panics.
pub trait Transport {
    /// Queues `data` for sending. TCP transports try `send(2)` at once and keep only what the
    /// kernel did not take. Never blocks.
    fn write(&mut self, data: &[u8]);

    /// Writes several buffers as if by one `write` each, in one system call where possible
    /// (Twisted's `writeSequence`).
    fn write_vectored(&mut self, bufs: &[&[u8]]) {
        for b in bufs {
            self.write(b);
        }
    }

    /// Closes gracefully: stops reading, sends every byte already written, then closes.
    /// `connection_lost` then gets [`Reason::ConnectionDone`](crate::Reason::ConnectionDone).
    fn lose_connection(&mut self);

    /// Closes now, dropping unsent bytes (the peer sees a reset).
    /// `connection_lost` gets [`Reason::ConnectionAborted`](crate::Reason::ConnectionAborted)
    /// after the current callback returns.
    fn abort_connection(&mut self);

    /// Half-close: sends what is buffered, then shuts down the write side. Reading goes on.
    fn lose_write_connection(&mut self);

    /// Stops reading from the connection (flow control on inbound data).
    fn pause_producing(&mut self);

    /// Resumes reading after [`Transport::pause_producing`].
    fn resume_producing(&mut self);

    /// Stops for good: the same as [`Transport::lose_connection`], as in Twisted.
    fn stop_producing(&mut self) {
        self.lose_connection();
    }

    /// The address of the other end.
    fn peer(&self) -> Address;

    /// The address of this end.
    fn host(&self) -> Address;

    /// Bytes written but not yet handed to the kernel.
    fn buffered_len(&self) -> usize;

    /// True once `lose_connection` or `abort_connection` was called.
    fn is_disconnecting(&self) -> bool;

    /// True until the connection is closed.
    fn is_connected(&self) -> bool;

    /// Registers `producer` as the source of this transport's outgoing data (Twisted's
    /// `registerProducer`). `streaming` producers are paused above the high water mark and
    /// resumed at the low one; pull producers get `resume_producing` once at once and then each
    /// time the buffer drains. While a pull producer is registered, `lose_connection` waits for
    /// it to unregister. See [`crate::producer`].
    fn register_producer(
        &mut self,
        producer: Box<dyn Producer>,
        streaming: bool,
    ) -> Result<(), RegisterProducerError>;

    /// Forgets the registered producer (it gets no more calls).
    fn unregister_producer(&mut self);

    /// Sets the write buffer's high and low water marks (64 KiB and 16 KiB by default).
    fn set_write_buffer_limits(&mut self, high: usize, low: usize);

    /// The write buffer's (high, low) water marks.
    fn write_buffer_limits(&self) -> (usize, usize);

    /// Puts `layer` (TLS) between the socket and the protocol from now on (Twisted's
    /// `startTLS`): what was written before goes out as it was, what is written after goes
    /// through the layer. Errors if the transport cannot carry a layer or already has one.
    fn start_tls(&mut self, layer: Box<dyn StreamLayer>) -> io::Result<()> {
        let _ = layer;
        Err(io::ErrorKind::Unsupported.into())
    }

    /// What the layer negotiated (ALPN, version, peer certificates), once it has.
    fn layer_info(&self) -> Option<LayerInfo> {
        None
    }

    /// Sets `TCP_NODELAY` (off by default, as in Twisted).
    fn set_tcp_nodelay(&mut self, enabled: bool) -> io::Result<()> {
        let _ = enabled;
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Reads `TCP_NODELAY`.
    fn tcp_nodelay(&self) -> io::Result<bool> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Sets `SO_KEEPALIVE` (off by default, as in Twisted).
    fn set_tcp_keepalive(&mut self, enabled: bool) -> io::Result<()> {
        let _ = enabled;
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Reads `SO_KEEPALIVE`.
    fn tcp_keepalive(&self) -> io::Result<bool> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// The process at the other end of a UNIX connection: its pid, uid and gid when it
    /// connected (`SO_PEERCRED`). [`io::ErrorKind::Unsupported`] for other transports.
    fn peer_credentials(&self) -> io::Result<Credentials> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Passes a copy of `fd` to the other end of a UNIX connection (`SCM_RIGHTS`, Twisted's
    /// `sendFileDescriptor`); the peer's protocol gets it in
    /// [`Protocol::file_descriptor_received`](crate::Protocol::file_descriptor_received).
    /// The caller keeps `fd`: the peer gets its own descriptor for the same open file.
    ///
    /// The descriptor travels at once, in order with the byte stream, attached to one NUL
    /// byte that this call writes: the peer's `data_received` sees that byte, as a Twisted
    /// peer sees the data byte a descriptor rides on. A descriptor cannot wait in the write
    /// buffer behind earlier bytes: if some are still waiting after one more attempt to send
    /// them (or the kernel's buffer is full), this sends nothing and returns
    /// [`io::ErrorKind::WouldBlock`]; try again once [`Transport::buffered_len`] is 0 (for
    /// example from [`Protocol::resume_writing`](crate::Protocol::resume_writing) or a pull
    /// producer). [`io::ErrorKind::NotConnected`] once the transport is closing;
    /// [`io::ErrorKind::Unsupported`] for transports that are not UNIX sockets or that carry
    /// a TLS layer.
    fn send_file_descriptor(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let _ = fd;
        Err(io::ErrorKind::Unsupported.into())
    }
}
