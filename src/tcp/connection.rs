//! One TCP connection: its socket, its pending writes and its protocol.
//!
//! Hot-path rules kept here: reads go into the reactor's one shared buffer; a write is tried
//! with `send(2)` at once (several buffers with one `writev(2)`) and only the rest is buffered
//! in one contiguous [`WriteBuffer`] that exists only while bytes wait; WRITABLE interest is registered only while bytes
//! wait; reads stop after a budget per pass and the readiness is remembered.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::Interest;
use mio::net::TcpStream;

use crate::buffer::WriteBuffer;
use crate::producer::{Crossing, Producer, RegisterProducerError, WaterMarks};
use crate::reactor::{Core, Deferred, Entry, Ready, SlotId, guard};
use crate::{Address, Connector, Cx, Protocol, Reactor, Reason, Transport};

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

/// Producer registration and water marks; allocated only when a connection uses them.
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

/// The transport half of a connection (what `Cx::transport()` lends).
pub(crate) struct TcpTransport {
    sock: TcpStream,
    id: SlotId,
    flags: u32,
    /// Boxed so that an idle connection pays one pointer, not an empty buffer.
    wbuf: Option<Box<WriteBuffer>>,
    /// Set once the connection must end, with why.
    lost: Option<Box<Reason>>,
    peer: SocketAddr,
    flow: Option<Box<Flow>>,
}

pub(crate) struct Connection {
    pub(crate) t: TcpTransport,
    pub(crate) protocol: Box<dyn Protocol>,
    pub(crate) connector: Option<Connector>,
}

impl TcpTransport {
    fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }

    fn end(&mut self, reason: Reason) {
        if self.lost.is_none() {
            self.lost = Some(Box::new(reason));
        }
        self.wbuf = None;
    }

    /// `lose_write_connection` was asked for and the shutdown has not happened yet.
    fn half_close_pending(&self) -> bool {
        self.has(WRITE_SHUT_REQ) && !self.has(WRITE_SHUT_DONE)
    }

    fn can_write(&self) -> bool {
        !self.has(CLOSED | ABORTED | WRITE_SHUT_REQ) && self.lost.is_none()
    }

    fn pull_registered(&self) -> bool {
        self.flow
            .as_ref()
            .is_some_and(|f| f.registered && !f.streaming)
    }

    /// Notes water-mark crossings after the buffer grew or shrank. A connection that never
    /// registered a producer nor set limits has no `Flow`: it uses the default marks and keeps
    /// their paused state in `MARKS_PAUSED`, so it allocates nothing.
    fn check_marks(&mut self) {
        let buffered = self.buffered_len();
        let crossing = match self.flow.as_mut() {
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

    /// Sends as much of the buffer as the kernel takes.
    fn flush(&mut self) {
        while let Some(buf) = self.wbuf.as_mut() {
            match self.sock.write(buf.as_slice()) {
                Ok(n) => {
                    buf.consume(n);
                    if buf.is_empty() {
                        self.wbuf = None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
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

impl Transport for TcpTransport {
    fn write(&mut self, data: &[u8]) {
        if data.is_empty() || !self.can_write() {
            return;
        }
        if let Some(buf) = self.wbuf.as_mut() {
            buf.extend(data);
            self.check_marks();
            return;
        }
        let mut rest = data;
        while !rest.is_empty() {
            match self.sock.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.end(Reason::lost(e));
                    return;
                }
            }
        }
        if !rest.is_empty() {
            self.wbuf = Some(Box::new(WriteBuffer::from_slice(rest)));
            self.check_marks();
        }
    }

    fn write_vectored(&mut self, bufs: &[&[u8]]) {
        if !self.can_write() {
            return;
        }
        if self.wbuf.is_some() {
            for b in bufs {
                self.write(b);
            }
            return;
        }
        let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let mut sent = loop {
            match self.sock.write_vectored(&slices) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.end(Reason::lost(e));
                    return;
                }
            }
        };
        for b in bufs {
            if sent >= b.len() {
                sent -= b.len();
            } else {
                self.write(&b[sent..]);
                sent = 0;
            }
        }
    }

    fn lose_connection(&mut self) {
        self.flags |= DISCONNECTING;
    }

    fn abort_connection(&mut self) {
        if self.has(CLOSED | ABORTED) {
            return;
        }
        self.flags |= ABORTED | DISCONNECTING;
        self.end(Reason::ConnectionAborted);
    }

    fn lose_write_connection(&mut self) {
        self.flags |= WRITE_SHUT_REQ;
    }

    fn pause_producing(&mut self) {
        self.flags |= PAUSED;
    }

    fn resume_producing(&mut self) {
        if self.has(PAUSED) {
            // Edge-triggered readiness may have come and gone while paused: read again.
            self.flags = (self.flags & !PAUSED) | READ_PENDING;
        }
    }

    fn register_producer(
        &mut self,
        producer: Box<dyn Producer>,
        streaming: bool,
    ) -> Result<(), RegisterProducerError> {
        if self.has(CLOSED | ABORTED) || self.lost.is_some() {
            return Err(RegisterProducerError::Disconnected(producer));
        }
        let flow = self.flow.get_or_insert_with(|| {
            let mut f = Box::<Flow>::default();
            if self.flags & MARKS_PAUSED != 0 {
                let _ = f.marks.update(usize::MAX);
            }
            f
        });
        if flow.registered {
            return Err(RegisterProducerError::AlreadyRegistered(producer));
        }
        flow.producer = Some(producer);
        flow.registered = true;
        flow.streaming = streaming;
        flow.producer_paused = false;
        flow.epoch = flow.epoch.wrapping_add(1);
        if !streaming {
            self.flags |= PULL_DUE;
        }
        Ok(())
    }

    fn unregister_producer(&mut self) {
        if let Some(flow) = self.flow.as_mut() {
            flow.producer = None;
            flow.registered = false;
            flow.epoch = flow.epoch.wrapping_add(1);
        }
        self.flags &= !PULL_DUE;
    }

    fn set_write_buffer_limits(&mut self, high: usize, low: usize) {
        let paused = self.has(MARKS_PAUSED);
        let flow = self.flow.get_or_insert_with(Box::default);
        let was_paused = paused || flow.marks.is_paused();
        flow.marks = WaterMarks::new(high, low);
        if was_paused {
            let _ = flow.marks.update(usize::MAX);
        }
        self.flags &= !MARKS_PAUSED;
        self.check_marks();
    }

    fn write_buffer_limits(&self) -> (usize, usize) {
        self.flow
            .as_ref()
            .map_or(WaterMarks::default().limits(), |f| f.marks.limits())
    }

    fn peer(&self) -> Address {
        Address::Tcp(self.peer)
    }

    fn host(&self) -> Address {
        self.sock
            .local_addr()
            .map(Address::Tcp)
            .unwrap_or(Address::Unknown)
    }

    fn buffered_len(&self) -> usize {
        self.wbuf.as_ref().map_or(0, |b| b.len())
    }

    fn is_disconnecting(&self) -> bool {
        self.has(DISCONNECTING | ABORTED | CLOSED)
    }

    fn is_connected(&self) -> bool {
        !self.has(CLOSED | ABORTED) && self.lost.is_none()
    }

    fn set_tcp_nodelay(&mut self, enabled: bool) -> io::Result<()> {
        self.sock.set_nodelay(enabled)
    }

    fn tcp_nodelay(&self) -> io::Result<bool> {
        self.sock.nodelay()
    }

    fn set_tcp_keepalive(&mut self, enabled: bool) -> io::Result<()> {
        socket2::SockRef::from(&self.sock).set_keepalive(enabled)
    }

    fn tcp_keepalive(&self) -> io::Result<bool> {
        socket2::SockRef::from(&self.sock).keepalive()
    }
}

impl TcpTransport {
    /// Runs user code with a `Cx` over this transport, catching a panic (which aborts the
    /// connection).
    fn call(&mut self, reactor: &Reactor, what: &str, f: impl FnOnce(&mut Cx<'_>)) {
        let (peer, id) = (self.peer, self.id);
        let res = guard(what, || f(&mut Cx::for_connection(self, reactor, id)));
        if let Err(msg) = res {
            tracing::error!(peer = %peer, "aborting connection after a panic in its {what}");
            if !self.has(CLOSED) {
                self.flags |= ABORTED | DISCONNECTING;
                self.lost = Some(Box::new(Reason::Panicked(msg)));
                self.wbuf = None;
            }
        }
    }

    /// Calls the registered producer, if any. It is taken out for the call and put back
    /// unless it unregistered meanwhile.
    fn call_producer(&mut self, reactor: &Reactor, f: impl FnOnce(&mut dyn Producer, &mut Cx<'_>)) {
        let Some(flow) = self.flow.as_mut() else {
            return;
        };
        let Some(mut p) = flow.producer.take() else {
            return;
        };
        let epoch = flow.epoch;
        self.call(reactor, "producer", |cx| f(&mut *p, cx));
        if let Some(flow) = self.flow.as_mut() {
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
        while self.has(NOTIFY_ANY) && !self.has(CLOSED) && self.lost.is_none() {
            if self.has(NOTIFY_PAUSE) {
                self.flags &= !NOTIFY_PAUSE;
                self.call(reactor, "protocol", |cx| protocol.pause_writing(cx));
                let due = self.flow.as_mut().is_some_and(|f| {
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
                let due = self.flow.as_mut().is_some_and(|f| {
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
                if self.pull_registered() && self.wbuf.is_none() {
                    self.call_producer(reactor, |p, cx| p.resume_producing(cx));
                    if self.wbuf.is_none() && self.pull_registered() {
                        self.flags |= PULL_DUE;
                    }
                }
            }
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
        let Connection { t, protocol, .. } = self;
        t.call(reactor, "protocol", |cx| f(&mut **protocol, cx));
    }
}

/// Registers a new connected socket and calls `connection_made`. `id` is a busy slot.
pub(crate) fn adopt(
    reactor: &Reactor,
    id: SlotId,
    mut sock: TcpStream,
    peer: SocketAddr,
    protocol: Box<dyn Protocol>,
    connector: Option<Connector>,
    registered: bool,
) {
    let core = &*reactor.core;
    let reg = if registered {
        core.registry
            .reregister(&mut sock, id.token(), Interest::READABLE)
    } else {
        core.registry
            .register(&mut sock, id.token(), Interest::READABLE)
    };
    if let Err(e) = reg {
        tracing::error!(peer = %peer, "could not register a connection: {e}");
        core.remove(id);
        return;
    }
    let half = if protocol.half_closeable() {
        HALF_CLOSEABLE
    } else {
        0
    };
    let mut conn = Box::new(Connection {
        t: TcpTransport {
            sock,
            id,
            flags: half,
            wbuf: None,
            lost: None,
            peer,
            flow: None,
        },
        protocol,
        connector,
    });
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
        let Connection { t, protocol, .. } = &mut *conn;
        if ready.error {
            match t.sock.take_error() {
                Ok(Some(e)) | Err(e) => t.end(Reason::lost(e)),
                Ok(None) => {}
            }
        }
        if t.wbuf.is_some() && ready.writable {
            t.flush();
        }
        if t.has(NOTIFY_ANY) {
            t.deliver_flow(reactor, &mut **protocol);
        }
        if t.half_close_pending() && t.wbuf.is_none() && t.lost.is_none() {
            t.flags |= WRITE_SHUT_DONE;
            let _ = t.sock.shutdown(Shutdown::Write);
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
            let mut probe = [0u8; 1];
            match conn.t.sock.peek(&mut probe) {
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
        if conn.t.has(DISCONNECTING | ABORTED | CLOSED | READ_EOF) || conn.t.lost.is_some() {
            break;
        }
        if conn.t.has(PAUSED) {
            conn.t.flags |= READ_PENDING;
            break;
        }
        match conn.t.sock.read(&mut buf) {
            Ok(0) => {
                eof(reactor, conn);
                break;
            }
            Ok(n) => {
                conn.call(reactor, |p, cx| p.data_received(cx, &buf[..n]));
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
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                conn.t.end(Reason::lost(e));
                break;
            }
        }
    }
    *core.read_buf.borrow_mut() = buf;
}

fn eof(reactor: &Reactor, conn: &mut Connection) {
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

/// Brings registration and queues in line with the transport's state. Runs no user code.
fn settle(core: &Core, t: &mut TcpTransport) {
    if t.has(CLOSED | CLOSE_QUEUED) {
        return;
    }
    if t.lost.is_none()
        && t.has(DISCONNECTING)
        && t.wbuf.is_none()
        && !t.half_close_pending()
        && !t.pull_registered()
    {
        t.lost = Some(Box::new(Reason::ConnectionDone));
    }
    if t.lost.is_some() {
        t.flags |= CLOSE_QUEUED;
        core.closing.borrow_mut().push_back(t.id);
        return;
    }
    let want_writable = t.wbuf.is_some();
    if want_writable != t.has(REG_WRITABLE) {
        let interest = if want_writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match core
            .registry
            .reregister(&mut t.sock, t.id.token(), interest)
        {
            Ok(()) => t.flags ^= REG_WRITABLE,
            Err(e) => {
                t.end(Reason::lost(e));
                t.flags |= CLOSE_QUEUED;
                core.closing.borrow_mut().push_back(t.id);
                return;
            }
        }
    }
    let more_reading = t.has(READ_PENDING) && !t.has(PAUSED | DISCONNECTING);
    let half_close_due = t.half_close_pending() && t.wbuf.is_none();
    if (more_reading || half_close_due || t.has(NOTIFY_ANY)) && !t.has(QUEUED) {
        t.flags |= QUEUED;
        core.push_ready(t.id);
    }
}

/// An operation through a [`ConnectionHandle`](crate::ConnectionHandle).
pub(crate) fn handle_op(core: &Core, id: SlotId, op: HandleOp<'_>) {
    let mut slots = core.slots.borrow_mut();
    let Some(slot) = slots.get_mut(id.key as usize) else {
        return;
    };
    if slot.generation != id.generation {
        return;
    }
    match &mut slot.entry {
        Entry::Conn(conn) => {
            let t = &mut conn.t;
            match op {
                HandleOp::Write(d) => t.write(d),
                HandleOp::WriteVectored(b) => t.write_vectored(b),
                HandleOp::Other(op) => t.apply(op),
            }
            settle(core, t);
        }
        Entry::Busy => {
            let op = match op {
                HandleOp::Write(d) => Deferred::Write(d.to_vec()),
                HandleOp::WriteVectored(b) => Deferred::Write(b.concat()),
                HandleOp::Other(op) => op,
            };
            drop(slots);
            core.deferred.borrow_mut().push((id, op));
        }
        _ => {}
    }
}

pub(crate) enum HandleOp<'a> {
    Write(&'a [u8]),
    WriteVectored(&'a [&'a [u8]]),
    Other(Deferred),
}

/// Reads state of a connection through a handle: `None` if it is gone.
pub(crate) fn inspect<R>(core: &Core, id: SlotId, f: impl FnOnce(&TcpTransport) -> R) -> Option<R> {
    let slots = core.slots.borrow();
    match slots.get(id.key as usize) {
        Some(s) if s.generation == id.generation => match &s.entry {
            Entry::Conn(c) => Some(f(&c.t)),
            _ => None,
        },
        _ => None,
    }
}

/// True while the connection is taken out of its slot for one of its callbacks.
pub(crate) fn is_busy(core: &Core, id: SlotId) -> bool {
    let slots = core.slots.borrow();
    matches!(slots.get(id.key as usize), Some(s) if s.generation == id.generation && matches!(s.entry, Entry::Busy))
}

/// Delivers `connection_lost`, exactly once, and closes the socket.
pub(crate) fn finish(reactor: &Reactor, id: SlotId) {
    let core = &*reactor.core;
    let mut conn = {
        let mut slots = core.slots.borrow_mut();
        match slots.get(id.key as usize) {
            Some(s) if s.generation == id.generation && matches!(s.entry, Entry::Conn(_)) => {
                match slots.remove(id.key as usize).entry {
                    Entry::Conn(c) => c,
                    _ => return,
                }
            }
            _ => return,
        }
    };
    let reason = conn.t.lost.take().map_or(Reason::ConnectionDone, |b| *b);
    let t = &mut conn.t;
    t.flags |= CLOSED;
    t.wbuf = None;
    if t.flow.as_ref().is_some_and(|f| f.registered) {
        t.call_producer(reactor, |p, cx| p.stop_producing(cx));
        t.unregister_producer();
    }
    let _ = core.registry.deregister(&mut t.sock);
    let sock = socket2::SockRef::from(&t.sock);
    match reason {
        Reason::ConnectionAborted | Reason::Panicked(_) => {
            // SO_LINGER 0: close(2) sends RST and drops what is unsent.
            let _ = sock.set_linger(Some(std::time::Duration::ZERO));
        }
        Reason::ConnectionDone => {
            let _ = sock.shutdown(Shutdown::Both);
        }
        _ => {}
    }
    if !reason.is_clean() {
        tracing::debug!(peer = %conn.t.peer, "connection lost: {reason}");
    }
    let r = reason.clone();
    conn.call(reactor, move |p, cx| p.connection_lost(cx, r));
    let connector = conn.connector.take();
    drop(conn);
    if let Some(c) = connector {
        c.connection_lost(reactor, reason);
    }
}

/// Reactor shutdown: send what can go without waiting, then close with `ConnectionLost`.
pub(crate) fn disconnect_for_shutdown(reactor: &Reactor, id: SlotId) {
    let core = &*reactor.core;
    let mut slots = core.slots.borrow_mut();
    let Some(slot) = slots.get_mut(id.key as usize) else {
        return;
    };
    if slot.generation != id.generation {
        return;
    }
    if let Entry::Conn(conn) = &mut slot.entry {
        let t = &mut conn.t;
        if t.has(CLOSED | CLOSE_QUEUED) {
            return;
        }
        t.flush();
        t.end(Reason::ConnectionLost(None));
        t.flags |= CLOSE_QUEUED;
        core.closing.borrow_mut().push_back(t.id);
    }
}
