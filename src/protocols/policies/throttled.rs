//! One throttled connection: what its protocol and producer do, and how the factory's timers
//! pause and resume them without undoing the connection's own flow control.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::reach::Reach;
use super::wrapper::{Hooks, with_hooks};
use crate::producer::{Producer, RegisterProducerError};
use crate::{Cx, Protocol, Reason, Transport};

/// Bytes read and written by all the connections of one factory since the last check.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) read: Cell<u64>,
    pub(super) written: Cell<u64>,
}

fn add(c: &Cell<u64>, n: usize) {
    c.set(c.get().saturating_add(n as u64));
}

/// The state of one connection, shared by its protocol wrapper, the producer wrapper
/// registered on its transport, and the factory's timers.
pub(super) struct Conn {
    protocol: RefCell<Box<dyn Protocol>>,
    counters: Rc<Counters>,
    reach: RefCell<Option<Rc<dyn Reach>>>,
    /// The wrapped protocol paused its own transport.
    paused_by_protocol: Cell<bool>,
    reads_throttled: Cell<bool>,
    writes_throttled: Cell<bool>,
    /// The write buffer is above its high water mark (`pause_writing` came, `resume_writing`
    /// not yet): the transport has paused the producer itself.
    marks_paused: Cell<bool>,
    /// The wrapped protocol's producer; out of the cell while it runs.
    producer: RefCell<Option<Box<dyn Producer>>>,
    /// `Some(streaming)` while a producer is registered through this wrapper.
    streaming: Cell<Option<bool>>,
    /// Counts registrations, so that a producer that unregistered while it ran is not put
    /// back.
    epoch: Cell<u64>,
    /// A pull producer taken off the transport while writes are throttled (a pull producer
    /// that writes nothing would be asked again at once, over and over).
    parked: Cell<bool>,
    /// `lose_connection` came while the pull producer was parked: close once it is back, so
    /// that the close still waits for it.
    lose_pending: Cell<bool>,
}

impl Conn {
    pub(super) fn new(protocol: Box<dyn Protocol>, counters: Rc<Counters>) -> Rc<Conn> {
        Rc::new(Conn {
            protocol: RefCell::new(protocol),
            counters,
            reach: RefCell::new(None),
            paused_by_protocol: Cell::new(false),
            reads_throttled: Cell::new(false),
            writes_throttled: Cell::new(false),
            marks_paused: Cell::new(false),
            producer: RefCell::new(None),
            streaming: Cell::new(None),
            epoch: Cell::new(0),
            parked: Cell::new(false),
            lose_pending: Cell::new(false),
        })
    }

    pub(super) fn set_reach(&self, reach: Rc<dyn Reach>) {
        *self.reach.borrow_mut() = Some(reach);
    }

    fn reach(self: &Rc<Self>, f: impl FnOnce(&Rc<Conn>, &mut Cx<'_>) + 'static) {
        let reach = self.reach.borrow().clone();
        if let Some(reach) = reach {
            let me = self.clone();
            reach.reach(Box::new(move |cx| f(&me, cx)));
        }
    }

    pub(super) fn count_read(&self, n: usize) {
        add(&self.counters.read, n);
    }

    /// Calls the wrapped protocol with a transport that counts and intercepts.
    pub(super) fn relay(
        self: &Rc<Self>,
        cx: &mut Cx<'_>,
        f: impl FnOnce(&mut dyn Protocol, &mut Cx<'_>),
    ) {
        // Never busy here: timers reach a connection only between its callbacks.
        let Ok(mut p) = self.protocol.try_borrow_mut() else {
            tracing::error!("throttling: a protocol callback was re-entered; skipped");
            return;
        };
        with_hooks(cx, &mut ThrottleHooks(self), |cx| f(&mut **p, cx));
    }

    /// Calls the producer, if one is registered, taken out of its cell for the call.
    fn call_producer(
        self: &Rc<Self>,
        cx: &mut Cx<'_>,
        f: impl FnOnce(&mut dyn Producer, &mut Cx<'_>),
    ) {
        let Some(mut p) = self.producer.borrow_mut().take() else {
            return;
        };
        let epoch = self.epoch.get();
        with_hooks(cx, &mut ThrottleHooks(self), |cx| f(&mut *p, cx));
        if self.epoch.get() == epoch && self.streaming.get().is_some() {
            let mut slot = self.producer.borrow_mut();
            if slot.is_none() {
                *slot = Some(p);
            }
        }
    }

    pub(super) fn lost(self: &Rc<Self>, cx: &mut Cx<'_>, reason: Reason) {
        self.relay(cx, |p, cx| p.connection_lost(cx, reason));
        self.streaming.set(None);
        self.producer.borrow_mut().take();
        self.reach.borrow_mut().take();
    }

    pub(super) fn half_closeable(&self) -> bool {
        self.protocol.try_borrow().is_ok_and(|p| p.half_closeable())
    }

    /// The transport's `pause_writing`.
    pub(super) fn marks_pause(self: &Rc<Self>, cx: &mut Cx<'_>) {
        self.marks_paused.set(true);
        if !self.writes_throttled.get() {
            self.relay(cx, |p, cx| p.pause_writing(cx));
        }
    }

    /// The transport's `resume_writing`.
    pub(super) fn marks_resume(self: &Rc<Self>, cx: &mut Cx<'_>) {
        self.marks_paused.set(false);
        if !self.writes_throttled.get() {
            self.relay(cx, |p, cx| p.resume_writing(cx));
        }
    }

    /// Twisted's `throttleReads`: pause the transport.
    pub(super) fn throttle_reads(self: &Rc<Self>) {
        if !self.reads_throttled.replace(true) {
            self.reach(|_, cx| cx.transport().pause_producing());
        }
    }

    /// Twisted's `unthrottleReads`: resume the transport, unless the protocol paused it.
    pub(super) fn unthrottle_reads(self: &Rc<Self>) {
        if self.reads_throttled.replace(false) {
            self.reach(|me, cx| {
                if !me.reads_throttled.get() && !me.paused_by_protocol.get() {
                    cx.transport().resume_producing();
                }
            });
        }
    }

    /// Twisted's `throttleWrites`: pause the producer (and tell the protocol).
    pub(super) fn throttle_writes(self: &Rc<Self>) {
        if !self.writes_throttled.replace(true) {
            self.reach(|me, cx| me.pause_writes(cx));
        }
    }

    /// Twisted's `unthrottleWrites`.
    pub(super) fn unthrottle_writes(self: &Rc<Self>) {
        if self.writes_throttled.replace(false) {
            self.reach(|me, cx| me.resume_writes(cx));
        }
    }

    fn pause_writes(self: &Rc<Self>, cx: &mut Cx<'_>) {
        if !self.writes_throttled.get() {
            return;
        }
        match self.streaming.get() {
            Some(false) if !self.parked.get() => {
                self.parked.set(true);
                cx.transport().unregister_producer();
            }
            Some(true) if !self.marks_paused.get() => {
                self.call_producer(cx, |p, cx| p.pause_producing(cx));
            }
            _ => {}
        }
        if !self.marks_paused.get() {
            self.relay(cx, |p, cx| p.pause_writing(cx));
        }
    }

    fn resume_writes(self: &Rc<Self>, cx: &mut Cx<'_>) {
        if self.writes_throttled.get() {
            return;
        }
        if !self.marks_paused.get() {
            self.relay(cx, |p, cx| p.resume_writing(cx));
        }
        match self.streaming.get() {
            Some(true) if !self.marks_paused.get() => {
                self.call_producer(cx, |p, cx| p.resume_producing(cx));
            }
            Some(false) if self.parked.replace(false) => {
                let wrapper = Box::new(Throttled {
                    conn: self.clone(),
                    streaming: false,
                });
                if cx.transport().register_producer(wrapper, false).is_err() {
                    self.streaming.set(None);
                    self.producer.borrow_mut().take();
                }
            }
            _ => {}
        }
        if self.lose_pending.replace(false) {
            cx.transport().lose_connection();
        }
    }
}

/// What the wrapped protocol's transport calls report.
struct ThrottleHooks<'a>(&'a Rc<Conn>);

impl Hooks for ThrottleHooks<'_> {
    fn wrote(&mut self, len: usize) {
        add(&self.0.counters.written, len);
    }

    fn register_producer(
        &mut self,
        t: &mut dyn Transport,
        producer: Box<dyn Producer>,
        streaming: bool,
    ) -> Result<(), RegisterProducerError> {
        let conn = self.0;
        if conn.streaming.get().is_some() {
            return Err(RegisterProducerError::AlreadyRegistered(producer));
        }
        if conn.writes_throttled.get() && !streaming && !t.is_connected() {
            return Err(RegisterProducerError::Disconnected(producer));
        }
        *conn.producer.borrow_mut() = Some(producer);
        conn.streaming.set(Some(streaming));
        conn.epoch.set(conn.epoch.get() + 1);
        if conn.writes_throttled.get() {
            if !streaming {
                // Registered while throttled: it waits for the unthrottle.
                conn.parked.set(true);
                return Ok(());
            }
            // Paused as soon as this callback returns.
            conn.reach(|me, cx| {
                if me.writes_throttled.get() && !me.marks_paused.get() {
                    me.call_producer(cx, |p, cx| p.pause_producing(cx));
                }
            });
        }
        let wrapper = Box::new(Throttled {
            conn: conn.clone(),
            streaming,
        });
        match t.register_producer(wrapper, streaming) {
            Ok(()) => Ok(()),
            Err(e) => {
                conn.streaming.set(None);
                let mine = conn.producer.borrow_mut().take().expect("just stored");
                Err(match e {
                    RegisterProducerError::AlreadyRegistered(_) => {
                        RegisterProducerError::AlreadyRegistered(mine)
                    }
                    RegisterProducerError::Disconnected(_) => {
                        RegisterProducerError::Disconnected(mine)
                    }
                })
            }
        }
    }

    fn unregister_producer(&mut self, t: &mut dyn Transport) {
        let conn = self.0;
        conn.streaming.set(None);
        conn.epoch.set(conn.epoch.get() + 1);
        conn.producer.borrow_mut().take();
        let was_parked = conn.parked.replace(false);
        t.unregister_producer();
        if was_parked && conn.lose_pending.replace(false) {
            t.lose_connection();
        }
    }

    fn pause_producing(&mut self, t: &mut dyn Transport) {
        self.0.paused_by_protocol.set(true);
        t.pause_producing();
    }

    fn resume_producing(&mut self, t: &mut dyn Transport) {
        self.0.paused_by_protocol.set(false);
        if !self.0.reads_throttled.get() {
            t.resume_producing();
        }
    }

    fn lose_connection(&mut self, t: &mut dyn Transport) {
        if self.0.parked.get() {
            self.0.lose_pending.set(true);
        } else {
            t.lose_connection();
        }
    }
}

/// Registered on the real transport in place of the wrapped protocol's producer: it absorbs
/// the transport's pause and resume while writes are throttled.
struct Throttled {
    conn: Rc<Conn>,
    streaming: bool,
}

impl Producer for Throttled {
    fn pause_producing(&mut self, cx: &mut Cx<'_>) {
        if !self.conn.writes_throttled.get() {
            self.conn.call_producer(cx, |p, cx| p.pause_producing(cx));
        }
    }

    fn resume_producing(&mut self, cx: &mut Cx<'_>) {
        if !self.streaming || !self.conn.writes_throttled.get() {
            self.conn.call_producer(cx, |p, cx| p.resume_producing(cx));
        }
    }

    fn stop_producing(&mut self, cx: &mut Cx<'_>) {
        self.conn.call_producer(cx, |p, cx| p.stop_producing(cx));
    }
}
