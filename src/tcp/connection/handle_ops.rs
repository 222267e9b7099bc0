//! What reaches a connection from outside its own callbacks: operations through a
//! [`ConnectionHandle`](crate::ConnectionHandle), reading its state, and its end (closing the
//! socket and calling `connection_lost`), including at reactor shutdown.

use super::*;

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
pub(crate) fn inspect<R>(
    core: &Core,
    id: SlotId,
    f: impl FnOnce(&StreamTransport) -> R,
) -> Option<R> {
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
    let t = &mut conn.t;
    let reason = t
        .cold
        .as_mut()
        .and_then(|c| c.lost.take())
        .unwrap_or(Reason::ConnectionDone);
    t.flags |= CLOSED;
    if let Some(c) = t.cold.as_mut() {
        c.wbuf = None;
    }
    if t.flow().is_some_and(|f| f.registered) {
        t.call_producer(reactor, |p, cx| p.stop_producing(cx));
        t.unregister_producer();
    }
    let _ = core.registry.deregister(&mut t.stream);
    // An orderly close is close(2) alone: the socket is close-on-exec, so this process holds
    // its only descriptor and closing it sends the FIN. (Twisted calls shutdown(2) first "just
    // to be safe", its own comment says, at one more system call per connection.)
    if matches!(reason, Reason::ConnectionAborted | Reason::Panicked(_)) {
        // SO_LINGER 0: close(2) sends RST and drops what is unsent.
        let sock = socket2::SockRef::from(&t.stream);
        let _ = sock.set_linger(Some(std::time::Duration::ZERO));
    }
    if !reason.is_clean() {
        tracing::debug!(peer = %t.peer(), "connection lost: {reason}");
    }
    let connector = t.cold.as_mut().and_then(|c| c.connector.take());
    let r = reason.clone();
    conn.call(reactor, move |p, cx| p.connection_lost(cx, r));
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
        queue_close(core, t);
    }
}
