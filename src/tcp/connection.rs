//! One stream connection (TCP or UNIX): its socket, its pending writes, its optional TLS
//! layer and its protocol.
//!
//! Hot-path rules kept here: reads go into the reactor's one shared buffer; a write is tried
//! with `send(2)` at once (several buffers with one `writev(2)`) and only the rest is buffered
//! in one contiguous [`WriteBuffer`]; WRITABLE interest is registered only while bytes wait;
//! reads stop after a budget per pass and the readiness is remembered.
//!
//! Idle connections stay small: everything a quiet connection does not need (the write
//! buffer, the reason it is ending, producers and water marks, the connector, a peer address
//! that is not IPv4, the TLS layer) lives in one `Cold` box that exists only while one of
//! them is in use. An idle IPv4 echo connection is a 56-byte box plus its slab slot.

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::os::fd::BorrowedFd;

use mio::Interest;

use super::stream::{Stream, pack_v4, unpack_v4};
use crate::buffer::WriteBuffer;
use crate::layer::{LayerInfo, StreamLayer};
use crate::producer::{Crossing, Producer, RegisterProducerError, WaterMarks};
use crate::reactor::{Core, Deferred, Entry, Ready, SlotId, guard};
use crate::{Address, Connector, Credentials, Cx, Protocol, Reactor, Reason, Transport};

mod handle_ops;
mod transport;

pub(crate) use handle_ops::{
    HandleOp, disconnect_for_shutdown, finish, handle_op, inspect, is_busy,
};

/// Reads per connection per loop pass before others get a turn.
const READ_BUDGET: u32 = 4;
/// Pull-producer requests per connection per loop pass while the kernel keeps taking data.
const PULL_BUDGET: u32 = 16;

const DISCONNECTING: u32 = 1 << 0;
const ABORTED: u32 = 1 << 1;
const WRITE_SHUT_REQ: u32 = 1 << 2;
const WRITE_SHUT_DONE: u32 = 1 << 3;
const READ_EOF: u32 = 1 << 4;
const PAUSED: u32 = 1 << 5;
const READ_PENDING: u32 = 1 << 6;
const REG_WRITABLE: u32 = 1 << 7;
const CLOSED: u32 = 1 << 8;
const QUEUED: u32 = 1 << 9;
const CLOSE_QUEUED: u32 = 1 << 10;
const HALF_CLOSEABLE: u32 = 1 << 11;
/// `pause_writing` is due (the buffer crossed the high mark).
const NOTIFY_PAUSE: u32 = 1 << 12;
/// `resume_writing` is due (the buffer fell to the low mark).
const NOTIFY_RESUME: u32 = 1 << 13;
/// A pull producer is to be asked for more.
const PULL_DUE: u32 = 1 << 14;
const NOTIFY_ANY: u32 = NOTIFY_PAUSE | NOTIFY_RESUME | PULL_DUE;
/// Above the default high mark, for connections without a `Flow`.
const MARKS_PAUSED: u32 = 1 << 15;
/// The peer's FIN was reported (edge-triggered, so only once): read on to end of stream
/// whenever reading next happens, even past short reads.
const PEER_CLOSED: u32 = 1 << 16;
/// The layer's closing bytes (TLS close_notify) have been queued.
const LAYER_CLOSED: u32 = 1 << 17;

/// Producer registration and water marks.
#[derive(Default)]
struct Flow {
    marks: WaterMarks,
    /// `None` while it is taken out for a call, or when none is registered.
    producer: Option<Box<dyn Producer>>,
    registered: bool,
    streaming: bool,
    producer_paused: bool,
    /// Bumped on every (un)registration, so a producer that unregistered (or was replaced)
    /// during its own call is not put back.
    epoch: u32,
}

/// What a connection needs only some of the time.
#[derive(Default)]
struct Cold {
    wbuf: Option<WriteBuffer>,
    /// Set once the connection must end, with why.
    lost: Option<Reason>,
    flow: Option<Flow>,
    connector: Option<Connector>,
    /// The peer when it does not pack into 8 bytes (IPv6, UNIX).
    peer: Option<Address>,
    layer: Option<Box<dyn StreamLayer>>,
    /// Reused buffers for what the layer produces: bytes for the wire, plaintext.
    wire: Vec<u8>,
    plain: Vec<u8>,
}

impl Cold {
    fn is_idle(&self) -> bool {
        self.wbuf.is_none()
            && self.lost.is_none()
            && self.flow.is_none()
            && self.connector.is_none()
            && self.peer.is_none()
            && self.layer.is_none()
    }
}

/// The transport half of a connection (what `Cx::transport()` lends).
pub(crate) struct StreamTransport {
    stream: Stream,
    flags: u32,
    id: SlotId,
    peer_v4: u64,
    cold: Option<Box<Cold>>,
}

pub(crate) struct Connection {
    pub(crate) t: StreamTransport,
    pub(crate) protocol: Box<dyn Protocol>,
}

fn is_retry(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

impl StreamTransport {
    fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }

    fn cold(&mut self) -> &mut Cold {
        self.cold.get_or_insert_with(Box::default)
    }

    /// Frees the cold part once nothing in it is in use.
    fn trim(&mut self) {
        if self.cold.as_ref().is_some_and(|c| c.is_idle()) {
            self.cold = None;
        }
    }

    fn wbuf(&self) -> Option<&WriteBuffer> {
        self.cold.as_ref()?.wbuf.as_ref()
    }

    fn pending(&self) -> bool {
        self.wbuf().is_some()
    }

    fn lost(&self) -> bool {
        self.cold.as_ref().is_some_and(|c| c.lost.is_some())
    }

    fn flow(&self) -> Option<&Flow> {
        self.cold.as_ref()?.flow.as_ref()
    }

    fn flow_mut(&mut self) -> Option<&mut Flow> {
        self.cold.as_mut()?.flow.as_mut()
    }

    fn end(&mut self, reason: Reason) {
        let cold = self.cold();
        if cold.lost.is_none() {
            cold.lost = Some(reason);
        }
        cold.wbuf = None;
    }

    /// `lose_write_connection` was asked for and the shutdown has not happened yet.
    fn half_close_pending(&self) -> bool {
        self.has(WRITE_SHUT_REQ) && !self.has(WRITE_SHUT_DONE)
    }

    fn can_write(&self) -> bool {
        !self.has(CLOSED | ABORTED | WRITE_SHUT_REQ) && !self.lost()
    }

    fn pull_registered(&self) -> bool {
        self.flow().is_some_and(|f| f.registered && !f.streaming)
    }

    /// Notes water-mark crossings after the buffer grew or shrank. Without a `Flow` the
    /// default marks apply and their paused state lives in `MARKS_PAUSED` (no allocation).
    fn check_marks(&mut self) {
        let buffered = self.buffered_len();
        let crossing = match self.flow_mut() {
            Some(f) => f.marks.update(buffered),
            None => {
                let mut m = WaterMarks::default();
                if self.has(MARKS_PAUSED) {
                    let _ = m.update(usize::MAX);
                }
                let c = m.update(buffered);
                if m.is_paused() {
                    self.flags |= MARKS_PAUSED;
                } else {
                    self.flags &= !MARKS_PAUSED;
                }
                c
            }
        };
        match crossing {
            // A pause and a resume not yet delivered cancel out.
            Some(Crossing::Pause) if self.has(NOTIFY_RESUME) => self.flags &= !NOTIFY_RESUME,
            Some(Crossing::Pause) => self.flags |= NOTIFY_PAUSE,
            Some(Crossing::Resume) if self.has(NOTIFY_PAUSE) => self.flags &= !NOTIFY_PAUSE,
            Some(Crossing::Resume) => self.flags |= NOTIFY_RESUME,
            None => {}
        }
        if buffered == 0 && self.pull_registered() {
            self.flags |= PULL_DUE;
        }
    }

    /// Sends wire bytes: at once if nothing waits, else after what waits.
    fn send_wire(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if let Some(buf) = self.cold.as_mut().and_then(|c| c.wbuf.as_mut()) {
            buf.extend(data);
            self.check_marks();
            return;
        }
        let mut rest = data;
        while !rest.is_empty() {
            match self.stream.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_retry(&e) => {}
                Err(e) => {
                    self.end(Reason::lost(e));
                    return;
                }
            }
        }
        if !rest.is_empty() {
            self.cold().wbuf = Some(WriteBuffer::from_slice(rest));
            self.check_marks();
        }
    }

    /// Runs `f` with the layer and the reusable wire buffer, then sends what it produced.
    /// A layer error ends the connection once its last bytes (an alert) are sent.
    fn through_layer(
        &mut self,
        f: impl FnOnce(&mut dyn StreamLayer, &mut Vec<u8>) -> Result<(), crate::layer::LayerError>,
    ) {
        let Some(cold) = self.cold.as_mut() else {
            return;
        };
        let Some(layer) = cold.layer.as_mut() else {
            return;
        };
        let mut wire = std::mem::take(&mut cold.wire);
        let res = f(&mut **layer, &mut wire);
        self.send_wire(&wire);
        wire.clear();
        if let Some(cold) = self.cold.as_mut() {
            cold.wire = wire;
        }
        if let Err(e) = res {
            self.fail_layer(e);
        }
    }

    fn fail_layer(&mut self, e: crate::layer::LayerError) {
        tracing::debug!("TLS failure: {e}");
        // Give the alert a chance to leave before the socket closes.
        self.flush();
        self.end(Reason::Tls(e));
    }

    /// The layer holds plaintext it cannot send yet (the handshake is not done).
    fn layer_holding(&self) -> bool {
        self.cold
            .as_ref()
            .and_then(|c| c.layer.as_ref())
            .is_some_and(|l| l.buffered_plaintext() > 0)
    }

    fn has_layer(&self) -> bool {
        self.cold.as_ref().is_some_and(|c| c.layer.is_some())
    }

    /// Sends as much of the buffer as the kernel takes.
    fn flush(&mut self) {
        while let Some(buf) = self.cold.as_mut().and_then(|c| c.wbuf.as_mut()) {
            match self.stream.write(buf.as_slice()) {
                Ok(n) => {
                    buf.consume(n);
                    if buf.is_empty() {
                        self.cold().wbuf = None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_retry(&e) => {}
                Err(e) => {
                    self.end(Reason::lost(e));
                    return;
                }
            }
        }
        self.check_marks();
    }

    fn apply(&mut self, op: Deferred) {
        match op {
            Deferred::Write(data) => self.write(&data),
            Deferred::LoseConnection => self.lose_connection(),
            Deferred::AbortConnection => self.abort_connection(),
            Deferred::LoseWriteConnection => self.lose_write_connection(),
            Deferred::PauseProducing => self.pause_producing(),
            Deferred::ResumeProducing => self.resume_producing(),
            Deferred::StopListening => {}
        }
    }
}

impl StreamTransport {
    /// Runs user code with a `Cx` over this transport, catching a panic (which aborts the
    /// connection).
    fn call(&mut self, reactor: &Reactor, what: &str, f: impl FnOnce(&mut Cx<'_>)) {
        let id = self.id;
        let res = guard(what, || f(&mut Cx::for_connection(self, reactor, id)));
        if let Err(msg) = res {
            tracing::error!(peer = %self.peer(), "aborting connection after a panic in its {what}");
            if !self.has(CLOSED) {
                self.flags |= ABORTED | DISCONNECTING;
                self.cold().lost = Some(Reason::Panicked(msg));
                self.cold().wbuf = None;
            }
        }
    }

    /// Calls the registered producer, if any. It is taken out for the call and put back
    /// unless it unregistered meanwhile.
    fn call_producer(&mut self, reactor: &Reactor, f: impl FnOnce(&mut dyn Producer, &mut Cx<'_>)) {
        let Some(flow) = self.flow_mut() else {
            return;
        };
        let Some(mut p) = flow.producer.take() else {
            return;
        };
        let epoch = flow.epoch;
        self.call(reactor, "producer", |cx| f(&mut *p, cx));
        if let Some(flow) = self.flow_mut() {
            if flow.epoch == epoch && flow.registered {
                flow.producer = Some(p);
            }
        }
    }

    /// Delivers due flow-control calls: `pause_writing` / `resume_writing` to the protocol and
    /// pause / resume to the producer. Loops because a producer's writes can cross a mark
    /// again within the same cycle.
    fn deliver_flow(&mut self, reactor: &Reactor, protocol: &mut dyn Protocol) {
        let mut pulls = 0;
        while self.has(NOTIFY_ANY) && !self.has(CLOSED) && !self.lost() {
            if self.has(NOTIFY_PAUSE) {
                self.flags &= !NOTIFY_PAUSE;
                self.call(reactor, "protocol", |cx| protocol.pause_writing(cx));
                let due = self.flow_mut().is_some_and(|f| {
                    let due = f.registered && f.streaming && !f.producer_paused;
                    f.producer_paused |= due;
                    due
                });
                if due {
                    self.call_producer(reactor, |p, cx| p.pause_producing(cx));
                }
            } else if self.has(NOTIFY_RESUME) {
                self.flags &= !NOTIFY_RESUME;
                self.call(reactor, "protocol", |cx| protocol.resume_writing(cx));
                let due = self.flow_mut().is_some_and(|f| {
                    let due = f.registered && f.streaming && f.producer_paused;
                    f.producer_paused &= !due;
                    due
                });
                if due {
                    self.call_producer(reactor, |p, cx| p.resume_producing(cx));
                }
            } else {
                if pulls == PULL_BUDGET {
                    // Let other connections have a turn; PULL_DUE stays set for next pass.
                    return;
                }
                self.flags &= !PULL_DUE;
                pulls += 1;
                if self.pull_registered() && !self.pending() {
                    self.call_producer(reactor, |p, cx| p.resume_producing(cx));
                    if !self.pending() && self.pull_registered() {
                        self.flags |= PULL_DUE;
                    }
                }
            }
        }
    }

    /// Queues the layer's closing bytes once, before a clean close or a half-close.
    fn close_layer(&mut self) {
        if self.has_layer() && !self.has(LAYER_CLOSED) {
            self.flags |= LAYER_CLOSED;
            self.through_layer(|layer, wire| {
                layer.close(wire);
                Ok(())
            });
        }
    }
}

impl Connection {
    /// Calls one protocol callback with a `Cx`, catching a panic (which aborts the connection).
    pub(crate) fn call(
        &mut self,
        reactor: &Reactor,
        f: impl FnOnce(&mut dyn Protocol, &mut Cx<'_>),
    ) {
        let Connection { t, protocol } = self;
        t.call(reactor, "protocol", |cx| f(&mut **protocol, cx));
    }
}

/// Registers a new connected socket and calls `connection_made`. `id` is a busy slot;
/// `registered` says the socket is already registered under it (a client that connected).
pub(crate) fn adopt(
    reactor: &Reactor,
    id: SlotId,
    mut stream: Stream,
    peer: Address,
    protocol: Box<dyn Protocol>,
    connector: Option<Connector>,
    registered: bool,
) {
    let core = &*reactor.core;
    let reg = if registered {
        core.registry
            .reregister(&mut stream, id.token(), Interest::READABLE)
    } else {
        core.registry
            .register(&mut stream, id.token(), Interest::READABLE)
    };
    if let Err(e) = reg {
        tracing::error!(peer = %peer, "could not register a connection: {e}");
        core.remove(id);
        return;
    }
    let flags = if protocol.half_closeable() {
        HALF_CLOSEABLE
    } else {
        0
    };
    let peer_v4 = pack_v4(&peer);
    let mut t = StreamTransport {
        stream,
        flags,
        id,
        peer_v4,
        cold: None,
    };
    if peer_v4 == 0 {
        t.cold().peer = Some(peer);
    }
    if connector.is_some() {
        t.cold().connector = connector;
    }
    let mut conn = Box::new(Connection { t, protocol });
    conn.call(reactor, |p, cx| p.connection_made(cx));
    put_back(reactor, id, conn);
}

/// Handles readiness (or remembered work) for a connection.
pub(crate) fn service(reactor: &Reactor, id: SlotId, ready: Ready) {
    let core = &*reactor.core;
    let Some(Entry::Conn(mut conn)) = core.take(id) else {
        return;
    };
    conn.t.flags &= !QUEUED;
    if !conn.t.has(CLOSED | CLOSE_QUEUED) {
        let Connection { t, protocol } = &mut *conn;
        if ready.error {
            match t.stream.take_error() {
                Ok(Some(e)) | Err(e) => t.end(Reason::lost(e)),
                Ok(None) => {}
            }
        }
        if t.pending() && ready.writable {
            t.flush();
        }
        if t.has(NOTIFY_ANY) {
            t.deliver_flow(reactor, &mut **protocol);
        }
        if t.half_close_pending() && !t.pending() && !t.lost() {
            t.close_layer();
        }
        if t.half_close_pending() && !t.pending() && !t.lost() {
            t.flags |= WRITE_SHUT_DONE;
            let _ = t.stream.shutdown(Shutdown::Write);
            if t.has(HALF_CLOSEABLE) {
                t.call(reactor, "protocol", |cx| protocol.write_connection_lost(cx));
            }
            if t.has(READ_EOF) {
                t.end(Reason::ConnectionDone);
            }
        }
        if ready.readable || ready.read_closed || t.has(READ_PENDING) {
            read(reactor, &mut conn, ready.read_closed);
        }
    }
    put_back(reactor, id, conn);
}

fn read(reactor: &Reactor, conn: &mut Connection, read_closed: bool) {
    let core = &*reactor.core;
    if read_closed {
        conn.t.flags |= PEER_CLOSED;
    }
    let read_closed = conn.t.has(PEER_CLOSED);
    if conn.t.has(PAUSED) {
        // Remember the readiness; resume_producing reads it. But a peer that closed with
        // nothing left unread is reported now, paused or not (Twisted misses it, #11168).
        conn.t.flags |= READ_PENDING;
        if read_closed {
            match conn.t.stream.peek_eof() {
                Ok(0) => {
                    conn.t.flags &= !READ_PENDING;
                    eof(reactor, conn);
                }
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => conn.t.end(Reason::lost(e)),
                _ => {}
            }
        }
        return;
    }
    conn.t.flags &= !READ_PENDING;
    let mut buf = std::mem::take(&mut *core.read_buf.borrow_mut());
    let mut reads = 0;
    loop {
        // A closing connection stops reading, except while its TLS layer still holds
        // plaintext: the handshake must finish for that plaintext (and close_notify) to go.
        let closing = conn.t.has(DISCONNECTING) && !conn.t.layer_holding();
        if closing || conn.t.has(ABORTED | CLOSED | READ_EOF) || conn.t.lost() {
            break;
        }
        if conn.t.has(PAUSED) {
            conn.t.flags |= READ_PENDING;
            break;
        }
        // Stays unallocated unless a descriptor arrives (UNIX only).
        let mut fds = Vec::new();
        let res = conn.t.stream.read_with_fds(&mut buf, &mut fds);
        for fd in fds {
            conn.call(reactor, |p, cx| p.file_descriptor_received(cx, fd));
        }
        match res {
            Ok(_) if conn.t.has(ABORTED) => break,
            Ok(0) => {
                eof(reactor, conn);
                break;
            }
            Ok(n) => {
                if conn.t.has_layer() {
                    received_through_layer(reactor, conn, &buf[..n]);
                } else {
                    conn.call(reactor, |p, cx| p.data_received(cx, &buf[..n]));
                }
                reads += 1;
                // A short read drained the socket; the next edge will tell us of more.
                if n < buf.len() && !read_closed {
                    break;
                }
                if reads >= READ_BUDGET {
                    conn.t.flags |= READ_PENDING;
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if is_retry(&e) => {}
            Err(e) => {
                conn.t.end(Reason::lost(e));
                break;
            }
        }
    }
    *core.read_buf.borrow_mut() = buf;
}

/// Wire bytes through the layer; the plaintext they complete goes to `data_received`.
fn received_through_layer(reactor: &Reactor, conn: &mut Connection, data: &[u8]) {
    let mut plain = conn
        .t
        .cold
        .as_mut()
        .map(|c| std::mem::take(&mut c.plain))
        .unwrap_or_default();
    conn.t
        .through_layer(|layer, wire| layer.read_wire(data, &mut plain, wire));
    if !plain.is_empty() && !conn.t.has(CLOSED | ABORTED) {
        conn.call(reactor, |p, cx| p.data_received(cx, &plain));
    }
    plain.clear();
    if let Some(c) = conn.t.cold.as_mut() {
        c.plain = plain;
    }
}

fn eof(reactor: &Reactor, conn: &mut Connection) {
    if let Some(Err(e)) = conn
        .t
        .cold
        .as_mut()
        .and_then(|c| c.layer.as_mut())
        .map(|l| l.wire_closed())
    {
        conn.t.end(Reason::Tls(e));
        return;
    }
    if conn.t.has(HALF_CLOSEABLE) {
        conn.t.flags |= READ_EOF;
        conn.call(reactor, |p, cx| p.read_connection_lost(cx));
        if conn.t.has(WRITE_SHUT_DONE) {
            conn.t.end(Reason::ConnectionDone);
        }
    } else {
        conn.t.end(Reason::ConnectionDone);
    }
}

/// Applies operations queued while the connection was busy, decides what it needs next
/// (interest, more work, closing) and puts it back in its slot.
pub(crate) fn put_back(reactor: &Reactor, id: SlotId, mut conn: Box<Connection>) {
    let core = &*reactor.core;
    for op in core.take_deferred(id) {
        conn.t.apply(op);
    }
    settle(core, &mut conn.t);
    core.restore(id, Entry::Conn(conn));
}

fn queue_close(core: &Core, t: &mut StreamTransport) {
    t.flags |= CLOSE_QUEUED;
    core.closing.borrow_mut().push_back(t.id);
}

/// Brings registration and queues in line with the transport's state. Runs no user code.
fn settle(core: &Core, t: &mut StreamTransport) {
    if t.has(CLOSED | CLOSE_QUEUED) {
        return;
    }
    let closable = |t: &StreamTransport| {
        !t.lost()
            && t.has(DISCONNECTING)
            && !t.pending()
            && !t.half_close_pending()
            && !t.pull_registered()
            && !t.layer_holding()
    };
    if closable(t) {
        t.close_layer();
    }
    if closable(t) {
        t.cold().lost = Some(Reason::ConnectionDone);
    }
    if t.lost() {
        queue_close(core, t);
        return;
    }
    let want_writable = t.pending();
    if want_writable != t.has(REG_WRITABLE) {
        let interest = if want_writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match core
            .registry
            .reregister(&mut t.stream, t.id.token(), interest)
        {
            Ok(()) => t.flags ^= REG_WRITABLE,
            Err(e) => {
                t.end(Reason::lost(e));
                queue_close(core, t);
                return;
            }
        }
    }
    let more_reading =
        t.has(READ_PENDING) && !t.has(PAUSED) && (!t.has(DISCONNECTING) || t.layer_holding());
    let half_close_due = t.half_close_pending() && !t.pending();
    if (more_reading || half_close_due || t.has(NOTIFY_ANY)) && !t.has(QUEUED) {
        t.flags |= QUEUED;
        core.push_ready(t.id);
    }
    t.trim();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_fits_a_small_allocation() {
        // 56 bytes is a 64-byte malloc chunk: the idle-memory budget depends on it. The socket
        // is 8 bytes in release builds; mio adds a selector id to it in debug builds.
        let socket_extra = std::mem::size_of::<Stream>() - 8;
        let size = std::mem::size_of::<Connection>() - socket_extra;
        assert!(size <= 56, "{size}");
    }
}
