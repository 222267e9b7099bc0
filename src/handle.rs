//! [`ConnectionHandle`]: a connection kept for later, usable from any callback.

use std::hash::{Hash, Hasher};
use std::rc::Weak;
use std::time::Duration;

use crate::reactor::{Core, Deferred, Entry, SlotId};
use crate::tcp::connection::{self, HandleOp};
use crate::{Address, Cx, Reactor, Transport};

/// A reference to a connection that outlives the callback it was taken in
/// ([`Cx::handle`](crate::Cx::handle)). It is `(slot, generation)`: once the connection is gone
/// every operation is a no-op, and it can never reach a newer connection that reused the slot.
///
/// Writing through a handle from inside another connection's callback is the idiom for
/// broadcasting (see `examples/chat.rs`).
#[derive(Clone)]
pub struct ConnectionHandle {
    core: Weak<Core>,
    id: SlotId,
}

impl ConnectionHandle {
    pub(crate) fn new(core: Weak<Core>, id: SlotId) -> Self {
        ConnectionHandle { core, id }
    }

    /// A handle that refers to no connection (what [`Cx::new`](crate::Cx::new) gives), told
    /// apart from others by `tag` (the address of the transport driven by hand).
    pub(crate) fn detached(tag: usize) -> Self {
        let tag = tag as u64;
        ConnectionHandle {
            core: Weak::new(),
            id: SlotId {
                key: tag as u32,
                generation: (tag >> 32) as u32,
            },
        }
    }

    fn op(&self, op: HandleOp<'_>) {
        if let Some(core) = self.core.upgrade() {
            connection::handle_op(&core, self.id, op);
        }
    }

    /// Writes to the connection (see [`Transport::write`]).
    pub fn write(&self, data: &[u8]) {
        self.op(HandleOp::Write(data));
    }

    /// Writes several buffers (see [`Transport::write_vectored`]).
    pub fn write_vectored(&self, bufs: &[&[u8]]) {
        self.op(HandleOp::WriteVectored(bufs));
    }

    /// Closes gracefully after sending what is buffered.
    pub fn lose_connection(&self) {
        self.op(HandleOp::Other(Deferred::LoseConnection));
    }

    /// Closes now, dropping what is buffered.
    pub fn abort_connection(&self) {
        self.op(HandleOp::Other(Deferred::AbortConnection));
    }

    /// Half-closes the write side after sending what is buffered.
    pub fn lose_write_connection(&self) {
        self.op(HandleOp::Other(Deferred::LoseWriteConnection));
    }

    /// Stops reading from the connection.
    pub fn pause_producing(&self) {
        self.op(HandleOp::Other(Deferred::PauseProducing));
    }

    /// Resumes reading.
    pub fn resume_producing(&self) {
        self.op(HandleOp::Other(Deferred::ResumeProducing));
    }

    /// Runs `f` with this connection's [`Cx`], as if it were one of the connection's own
    /// callbacks: at once if none of them is running, otherwise right after the one that is
    /// returns. This is how code that runs outside the connection, such as a timer, reaches
    /// its transport and its registered producer (`f` may write, pause, close, and call
    /// objects it shares with the protocol). Nothing happens once the connection is closed.
    /// A panic in `f` aborts the connection, as a panic in a callback does.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::{Cx, Protocol};
    ///
    /// /// Says goodbye and closes after five seconds.
    /// struct Brief;
    /// impl Protocol for Brief {
    ///     fn connection_made(&mut self, cx: &mut Cx<'_>) {
    ///         let me = cx.handle();
    ///         cx.reactor().call_later(Duration::from_secs(5), move |_| {
    ///             me.call(|cx| {
    ///                 cx.write(b"time is up\r\n");
    ///                 cx.transport().lose_connection();
    ///             });
    ///         });
    ///     }
    /// }
    /// ```
    pub fn call<F: FnOnce(&mut Cx<'_>) + 'static>(&self, f: F) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let reactor = Reactor::from_core(core);
        match reactor.core.take(self.id) {
            Some(Entry::Conn(mut conn)) => {
                if conn.t.is_connected() {
                    conn.call(&reactor, |_, cx| f(cx));
                }
                connection::put_back(&reactor, self.id, conn);
            }
            Some(other) => reactor.core.restore(self.id, other),
            None if connection::is_busy(&reactor.core, self.id) => {
                let me = self.clone();
                reactor.call_later(Duration::ZERO, move |_| me.call(f));
            }
            None => {}
        }
    }

    /// True while the connection is open and not closing. While the connection itself is
    /// in one of its own callbacks it cannot be inspected from outside and counts as
    /// connected; use `cx.transport()` there.
    pub fn is_connected(&self) -> bool {
        match self.core.upgrade() {
            Some(core) if connection::is_busy(&core, self.id) => true,
            _ => self.inspect(|t| t.is_connected()).unwrap_or(false),
        }
    }

    /// The peer's address, while the connection exists and is not in one of its own
    /// callbacks.
    pub fn peer(&self) -> Option<Address> {
        self.inspect(|t| t.peer())
    }

    /// Bytes waiting to be sent, while the connection exists and is not in one of its own
    /// callbacks.
    pub fn buffered_len(&self) -> Option<usize> {
        self.inspect(|t| t.buffered_len())
    }

    fn inspect<R>(&self, f: impl FnOnce(&dyn Transport) -> R) -> Option<R> {
        let core = self.core.upgrade()?;
        connection::inspect(&core, self.id, |t| f(t))
    }
}

impl PartialEq for ConnectionHandle {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && Weak::ptr_eq(&self.core, &other.core)
    }
}

impl Eq for ConnectionHandle {}

impl Hash for ConnectionHandle {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl std::fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ConnectionHandle({}#{})",
            self.id.key, self.id.generation
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use crate::testing::StringTransport;
    use crate::{Cx, Reactor};

    /// Handles from contexts built by hand tell their transports apart.
    #[test]
    fn detached_handles_are_equal_per_transport() {
        let reactor = Reactor::builder()
            .install_signal_handlers(false)
            .build()
            .unwrap();
        let (mut a, mut b) = (StringTransport::new(), StringTransport::new());
        let a1 = Cx::new(&mut a, &reactor).handle();
        let a2 = Cx::new(&mut a, &reactor).handle();
        let b1 = Cx::new(&mut b, &reactor).handle();
        assert_eq!(a1, a2);
        assert_ne!(a1, b1);
        let set: HashSet<_> = [a1.clone(), a2, b1.clone()].into_iter().collect();
        assert_eq!(set.len(), 2);
        // Operations on a detached handle do nothing.
        a1.write(b"lost");
        assert!(a.value().is_empty());
    }
}
