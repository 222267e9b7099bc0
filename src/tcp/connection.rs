//! One TCP connection: its socket, its pending writes and its protocol.
//!
//! Hot-path rules kept here: reads go into the reactor's one shared buffer; a write is tried
//! with `send(2)` at once and only the rest is buffered (the buffer exists only while bytes
//! wait, and drains with vectored writes); WRITABLE interest is registered only while bytes
//! wait; reads stop after a budget per pass and the readiness is remembered.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::Interest;
use mio::net::TcpStream;

use crate::reactor::{Core, Deferred, Entry, Ready, SlotId, guard};
use crate::{Address, Connector, Cx, Protocol, Reactor, Reason, Transport};

/// Reads per connection per loop pass before others get a turn.
const READ_BUDGET: u32 = 4;

const DISCONNECTING: u16 = 1 << 0;
const ABORTED: u16 = 1 << 1;
const WRITE_SHUT_REQ: u16 = 1 << 2;
const WRITE_SHUT_DONE: u16 = 1 << 3;
const READ_EOF: u16 = 1 << 4;
const PAUSED: u16 = 1 << 5;
const READ_PENDING: u16 = 1 << 6;
const REG_WRITABLE: u16 = 1 << 7;
const CLOSED: u16 = 1 << 8;
const QUEUED: u16 = 1 << 9;
const CLOSE_QUEUED: u16 = 1 << 10;
const HALF_CLOSEABLE: u16 = 1 << 11;

/// The transport half of a connection (what `Cx::transport()` lends).
pub(crate) struct TcpTransport {
    sock: TcpStream,
    id: SlotId,
    flags: u16,
    wbuf: Option<Box<VecDeque<u8>>>,
    /// Set once the connection must end, with why.
    lost: Option<Box<Reason>>,
    peer: SocketAddr,
}

pub(crate) struct Connection {
    pub(crate) t: TcpTransport,
    pub(crate) protocol: Box<dyn Protocol>,
    pub(crate) connector: Option<Connector>,
}

impl TcpTransport {
    fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }

    fn end(&mut self, reason: Reason) {
        if self.lost.is_none() {
            self.lost = Some(Box::new(reason));
        }
        self.wbuf = None;
    }

    fn can_write(&self) -> bool {
        !self.has(CLOSED | ABORTED | WRITE_SHUT_REQ) && self.lost.is_none()
    }

    /// Sends as much of the buffer as the kernel takes.
    fn flush(&mut self) {
        while let Some(buf) = self.wbuf.as_mut() {
            let (a, b) = buf.as_slices();
            let res = self
                .sock
                .write_vectored(&[IoSlice::new(a), IoSlice::new(b)]);
            match res {
                Ok(n) => {
                    buf.drain(..n);
                    if buf.is_empty() {
                        self.wbuf = None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.end(Reason::lost(e));
                    return;
                }
            }
        }
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
            self.wbuf = Some(Box::new(VecDeque::from(rest.to_vec())));
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

impl Connection {
    /// Calls one protocol callback with a `Cx`, catching a panic (which aborts the connection).
    pub(crate) fn call(
        &mut self,
        reactor: &Reactor,
        f: impl FnOnce(&mut dyn Protocol, &mut Cx<'_>),
    ) {
        let Connection { t, protocol, .. } = self;
        let (peer, id) = (t.peer, t.id);
        let res = guard("protocol callback", || {
            let mut cx = Cx::for_connection(t, reactor, id);
            f(&mut **protocol, &mut cx)
        });
        if let Err(msg) = res {
            tracing::error!(peer = %peer, "aborting connection after a panic in its protocol");
            if !t.has(CLOSED) {
                t.flags |= ABORTED | DISCONNECTING;
                t.lost = Some(Box::new(Reason::Panicked(msg)));
                t.wbuf = None;
            }
        }
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
    let t = &mut conn.t;
    t.flags &= !QUEUED;
    if !t.has(CLOSED | CLOSE_QUEUED) {
        if ready.error {
            match t.sock.take_error() {
                Ok(Some(e)) | Err(e) => t.end(Reason::lost(e)),
                Ok(None) => {}
            }
        }
        if t.wbuf.is_some() && ready.writable {
            t.flush();
        }
        if t.has(WRITE_SHUT_REQ) && !t.has(WRITE_SHUT_DONE) && t.wbuf.is_none() && t.lost.is_none()
        {
            t.flags |= WRITE_SHUT_DONE;
            let _ = t.sock.shutdown(Shutdown::Write);
            if t.has(HALF_CLOSEABLE) {
                conn.call(reactor, |p, cx| p.write_connection_lost(cx));
            }
            if conn.t.has(READ_EOF) {
                conn.t.end(Reason::ConnectionDone);
            }
        }
        if ready.readable || ready.read_closed || conn.t.has(READ_PENDING) {
            read(reactor, &mut conn, ready.read_closed);
        }
    }
    put_back(reactor, id, conn);
}

fn read(reactor: &Reactor, conn: &mut Connection, read_closed: bool) {
    let core = &*reactor.core;
    if conn.t.has(PAUSED) {
        // Remember the readiness; resume_producing reads it.
        conn.t.flags |= READ_PENDING;
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
        && !(t.has(WRITE_SHUT_REQ) && !t.has(WRITE_SHUT_DONE))
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
    let half_close_due = t.has(WRITE_SHUT_REQ) && !t.has(WRITE_SHUT_DONE) && t.wbuf.is_none();
    if (more_reading || half_close_due) && !t.has(QUEUED) {
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
