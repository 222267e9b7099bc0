//! The reactor: one event loop over `mio`, with its timers, cross-thread queue, system event
//! triggers and thread pool (Twisted's `reactor`).
//!
//! # Shape
//!
//! A [`Reactor`] is a cheap, clonable, `!Send` handle to one loop. Every table the loop owns
//! (connections, listeners, timers) sits behind a `RefCell` that is borrowed only for the length
//! of one reactor operation and never while user code runs. A connection being called back is
//! taken out of its slot for the call and put back after (take–call–put); operations that target
//! it through a [`ConnectionHandle`](crate::ConnectionHandle) meanwhile are queued and applied
//! when it is put back. That is why any callback may touch any part of the reactor without a
//! double borrow.
//!
//! # Loop pass
//!
//! 1. calls queued by other threads, in FIFO order;
//! 2. due timers, in deadline order then scheduling order; a timer scheduled during this step
//!    runs on the next pass, never in this one;
//! 3. `epoll_wait` (no wait if work is already known to be pending);
//! 4. readiness dispatch: reads (a budget per connection per pass, remembered when exhausted,
//!    so one busy peer cannot starve the others), writes, accepts;
//! 5. remembered readiness from earlier passes;
//! 6. connections that ended: `connection_lost` for each, exactly once.
//!
//! # Differences from Twisted, on purpose
//!
//! - Equal deadlines fire in scheduling order (Twisted's heap does not promise that).
//! - A panic in server-side `connection_made` drops the connection (Twisted leaves it open).
//! - A reactor is a value: several can live in one process, one per thread.

mod signals;
mod thread;
mod threadpool;
pub(crate) mod timer;
mod timerfd;
mod triggers;
pub(crate) mod wheel;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Registry, Token};
use slab::Slab;

use crate::ReactorError;
use crate::tcp::{Connecting, Connection, Listener};
pub use thread::ReactorHandle;
pub(crate) use thread::Shared;
pub use timer::DelayedCall;
use triggers::Triggers;
pub use triggers::{Phase, TriggerId};
use wheel::Wheel;

const WAKER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
const TIMERFD: Token = Token(usize::MAX - 2);
/// Sub-millisecond wake-ups are rounded up to this grain (see `poll_timeout`): small against
/// the 100 µs promise, large enough that dense deadlines share a wake-up.
const TIMER_GRAIN_NS: u64 = 10_000;
/// Size of the one read buffer every connection of a reactor shares (Twisted reads 64 KiB).
pub(crate) const READ_BUFFER_SIZE: usize = 64 * 1024;

/// A slot in the reactor's table, addressed by `(key, generation)` so that a stale handle can
/// never reach the entry that reused its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) struct SlotId {
    pub(crate) key: u32,
    pub(crate) generation: u32,
}

impl SlotId {
    pub(crate) fn token(self) -> Token {
        Token(self.key as usize | ((self.generation as usize) << 32))
    }
    fn from_token(t: Token) -> SlotId {
        SlotId {
            key: t.0 as u32,
            generation: (t.0 >> 32) as u32,
        }
    }
}

pub(crate) enum Entry {
    Conn(Box<Connection>),
    Listener(Box<Listener>),
    Connecting(Box<Connecting>),
    /// Taken out while its callbacks run.
    Busy,
}

pub(crate) struct Slot {
    pub(crate) generation: u32,
    pub(crate) entry: Entry,
}

/// What readiness an event reported.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ready {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    pub(crate) read_closed: bool,
    pub(crate) error: bool,
}

/// An operation on a slot that was busy when it was asked for; applied on put-back.
pub(crate) enum Deferred {
    Write(Vec<u8>),
    LoseConnection,
    AbortConnection,
    LoseWriteConnection,
    PauseProducing,
    ResumeProducing,
    StopListening,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    NotStarted,
    Running,
    Stopping,
    Stopped,
}

/// Everything one reactor owns. Only reachable through `Rc<Core>` / `Weak<Core>`.
pub(crate) struct Core {
    poll: RefCell<Poll>,
    pub(crate) registry: Registry,
    events: RefCell<Events>,
    state: Cell<RunState>,
    pub(crate) slots: RefCell<Slab<Slot>>,
    next_gen: Cell<u32>,
    pub(crate) timers: RefCell<Wheel<timer::NodeRef>>,
    epoch: Instant,
    pub(crate) read_buf: RefCell<Vec<u8>>,
    /// Slots with work left over: read budget exhausted, resumed reading, pending half-close,
    /// accept batch cut short.
    pub(crate) ready: RefCell<VecDeque<SlotId>>,
    /// Connections whose `connection_lost` is due.
    pub(crate) closing: RefCell<VecDeque<SlotId>>,
    pub(crate) deferred: RefCell<Vec<(SlotId, Deferred)>>,
    triggers: RefCell<Triggers>,
    pub(crate) shared: Arc<Shared>,
    pool: RefCell<threadpool::ThreadPool>,
    factory_counts: RefCell<HashMap<usize, usize>>,
    /// A spare descriptor released when `accept` hits EMFILE (see `tcp::port`).
    pub(crate) reserve_fd: RefCell<Option<std::fs::File>>,
    install_signals: bool,
    /// For deadlines less than a millisecond away; `None` if it could not be created (then
    /// the loop polls without waiting for that last stretch).
    timerfd: Option<timerfd::TimerFd>,
}

impl Drop for Core {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Builds a [`Reactor`] with non-default settings.
///
/// ```
/// let reactor = torsion::Reactor::builder()
///     .install_signal_handlers(false)
///     .build()
///     .unwrap();
/// # let _ = reactor;
/// ```
#[derive(Debug, Clone)]
pub struct ReactorBuilder {
    install_signals: bool,
    events_capacity: usize,
    max_threads: usize,
}

impl ReactorBuilder {
    /// Whether `run` turns SIGINT and SIGTERM into a graceful `stop` (default true, as
    /// Twisted's `installSignalHandlers`).
    pub fn install_signal_handlers(mut self, yes: bool) -> Self {
        self.install_signals = yes;
        self
    }

    /// How many readiness events one `epoll_wait` may return (default 1024).
    pub fn events_capacity(mut self, n: usize) -> Self {
        self.events_capacity = n.max(1);
        self
    }

    /// Maximum size of the reactor's thread pool (default 10, as Twisted).
    pub fn max_threads(mut self, n: usize) -> Self {
        self.max_threads = n.max(1);
        self
    }

    /// Creates the reactor.
    pub fn build(self) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let timerfd = timerfd::TimerFd::new(poll.registry(), TIMERFD)
            .map_err(|e| tracing::warn!("no timerfd, sub-millisecond waits will poll: {e}"))
            .ok();
        Ok(Reactor {
            core: Rc::new(Core {
                poll: RefCell::new(poll),
                registry,
                events: RefCell::new(Events::with_capacity(self.events_capacity)),
                state: Cell::new(RunState::NotStarted),
                slots: RefCell::new(Slab::new()),
                next_gen: Cell::new(0),
                timers: RefCell::new(Wheel::new()),
                epoch: Instant::now(),
                read_buf: RefCell::new(vec![0; READ_BUFFER_SIZE]),
                ready: RefCell::default(),
                closing: RefCell::default(),
                deferred: RefCell::default(),
                triggers: RefCell::default(),
                shared: Arc::new(Shared::new(waker)),
                pool: RefCell::new(threadpool::ThreadPool::new(self.max_threads)),
                factory_counts: RefCell::default(),
                reserve_fd: RefCell::new(None),
                install_signals: self.install_signals,
                timerfd,
            }),
        })
    }
}

impl Default for ReactorBuilder {
    fn default() -> Self {
        ReactorBuilder {
            install_signals: true,
            events_capacity: 1024,
            max_threads: threadpool::DEFAULT_MAX_THREADS,
        }
    }
}

/// An event loop: timers, network I/O, calls from other threads.
///
/// `Reactor` is a cheap handle (`Clone`) to one loop and is not `Send`; use
/// [`Reactor::handle`] to reach it from another thread.
///
/// ```
/// use std::time::Duration;
/// use torsion::Reactor;
///
/// let reactor = Reactor::builder().install_signal_handlers(false).build().unwrap();
/// reactor.call_later(Duration::from_millis(10), |r| r.stop().unwrap());
/// reactor.run().unwrap();
/// assert!(reactor.run().is_err()); // not restartable, as in Twisted
/// ```
#[derive(Clone)]
pub struct Reactor {
    pub(crate) core: Rc<Core>,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("state", &self.core.state.get())
            .finish_non_exhaustive()
    }
}

impl Reactor {
    /// A reactor with default settings (see [`ReactorBuilder`]).
    pub fn new() -> io::Result<Reactor> {
        ReactorBuilder::default().build()
    }

    /// Starts building a reactor with non-default settings.
    pub fn builder() -> ReactorBuilder {
        ReactorBuilder::default()
    }

    pub(crate) fn from_core(core: Rc<Core>) -> Reactor {
        Reactor { core }
    }

    pub(crate) fn weak(&self) -> Weak<Core> {
        Rc::downgrade(&self.core)
    }

    /// Runs the loop until [`Reactor::stop`]: fires the `startup` triggers, loops, then runs
    /// the shutdown sequence (before triggers; every connection closed with `connection_lost`;
    /// listeners closed; during triggers; thread pool joined; after triggers).
    ///
    /// Errors with [`ReactorError::AlreadyRunning`] when called from inside the loop and
    /// [`ReactorError::NotRestartable`] after the reactor has stopped.
    pub fn run(&self) -> Result<(), ReactorError> {
        match self.core.state.get() {
            RunState::Running | RunState::Stopping => return Err(ReactorError::AlreadyRunning),
            RunState::Stopped => return Err(ReactorError::NotRestartable),
            RunState::NotStarted => {}
        }
        self.core.state.set(RunState::Running);
        let mut signals = None;
        if self.core.install_signals {
            match signals::Signals::install(&self.core.registry, SIGNALS) {
                Ok(s) => signals = Some(s),
                Err(e) => tracing::warn!("could not install signal handlers: {e}"),
            }
        }
        self.fire_system_event("startup");
        while self.core.state.get() == RunState::Running {
            self.iterate(&mut signals);
        }
        self.shutdown();
        if let Some(s) = signals {
            s.uninstall(&self.core.registry);
        }
        self.core.state.set(RunState::Stopped);
        Ok(())
    }

    /// Asks the loop to stop at the end of the current pass. Errors with
    /// [`ReactorError::NotRunning`] if it is not running or already stopping.
    pub fn stop(&self) -> Result<(), ReactorError> {
        if self.core.state.get() != RunState::Running {
            return Err(ReactorError::NotRunning);
        }
        self.core.state.set(RunState::Stopping);
        Ok(())
    }

    /// True while the loop runs (including during shutdown).
    pub fn is_running(&self) -> bool {
        matches!(
            self.core.state.get(),
            RunState::Running | RunState::Stopping
        )
    }

    /// Runs `f` once the reactor is running: at once if it already is, otherwise as an
    /// `after startup` trigger (Twisted's `callWhenRunning`).
    pub fn call_when_running<F: FnOnce(&Reactor) + 'static>(&self, f: F) -> Option<TriggerId> {
        if self.is_running() {
            let _ = guard("call_when_running callback", || f(self));
            None
        } else {
            Some(self.add_system_event_trigger(Phase::After, "startup", f))
        }
    }

    /// Registers `f` to run in `phase` of system event `event` (`"startup"`, `"shutdown"`, or
    /// one of your own fired with [`Reactor::fire_system_event`]). Each trigger runs once.
    ///
    /// ```
    /// use torsion::{Phase, Reactor};
    /// let reactor = Reactor::builder().install_signal_handlers(false).build().unwrap();
    /// reactor.add_system_event_trigger(Phase::After, "startup", |r| r.stop().unwrap());
    /// reactor.add_system_event_trigger(Phase::Before, "shutdown", |_| println!("bye"));
    /// reactor.run().unwrap();
    /// ```
    pub fn add_system_event_trigger<F: FnOnce(&Reactor) + 'static>(
        &self,
        phase: Phase,
        event: &str,
        f: F,
    ) -> TriggerId {
        self.core
            .triggers
            .borrow_mut()
            .add(phase, event, Box::new(f))
    }

    /// Removes a trigger that has not run yet.
    pub fn remove_system_event_trigger(&self, id: TriggerId) -> Result<(), ReactorError> {
        if self.core.triggers.borrow_mut().remove(id) {
            Ok(())
        } else {
            Err(ReactorError::UnknownTrigger)
        }
    }

    /// Runs the before, during and after triggers of `event`, in that order. A panicking
    /// trigger is logged and the others still run.
    pub fn fire_system_event(&self, event: &str) {
        for phase in [Phase::Before, Phase::During, Phase::After] {
            self.run_triggers(event, phase);
        }
    }

    fn run_triggers(&self, event: &str, phase: Phase) {
        loop {
            let next = self.core.triggers.borrow_mut().take_next(event, phase);
            let Some(f) = next else { break };
            let _ = guard("system event trigger", || f(self));
        }
    }

    /// Seconds on the reactor's monotonic clock (its epoch is when it was created).
    pub fn seconds(&self) -> f64 {
        self.core.epoch.elapsed().as_secs_f64()
    }

    /// Schedules `f` to run `delay` from now: never earlier, and at most 1/32 of `delay` (1 ms
    /// at most) later than the system's wake-up latency makes it, so that calls due close
    /// together share one loop pass. Calls run in deadline order, to the nanosecond; equal
    /// deadlines run in the order they were scheduled; a zero delay runs on the next loop
    /// pass, never inside the current callback. [`DelayedCall::reset`] and
    /// [`DelayedCall::delay`] recompute the slack from the new distance to the deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::Reactor;
    ///
    /// let reactor = Reactor::builder().install_signal_handlers(false).build().unwrap();
    /// reactor.call_later(Duration::ZERO, |r| {
    ///     r.call_later(Duration::from_millis(1), |r| r.stop().unwrap());
    /// });
    /// reactor.run().unwrap();
    /// ```
    pub fn call_later<F: FnOnce(&Reactor) + 'static>(&self, delay: Duration, f: F) -> DelayedCall {
        let node = timer::node(f);
        let deadline = self.core.deadline_after(delay);
        let key = self.core.timers.borrow_mut().insert_with_slack(
            deadline,
            timer::slack_for(delay),
            node.clone(),
        );
        timer::set_key(&node, key);
        DelayedCall {
            core: self.weak(),
            node,
        }
    }

    /// A `Send` handle for reaching this reactor from other threads.
    pub fn handle(&self) -> ReactorHandle {
        ReactorHandle {
            shared: self.core.shared.clone(),
        }
    }

    /// Runs `f` on the reactor's thread pool (at most 10 threads unless changed with
    /// [`Reactor::suggest_thread_pool_size`]). Send results back with
    /// [`ReactorHandle::call_from_thread`].
    pub fn call_in_thread<F: FnOnce() + Send + 'static>(&self, f: F) {
        self.core.pool.borrow_mut().submit(Box::new(f));
    }

    /// Sets the maximum size of the thread pool.
    pub fn suggest_thread_pool_size(&self, n: usize) {
        self.core.pool.borrow_mut().set_max(n);
    }

    fn iterate(&self, signals: &mut Option<signals::Signals>) {
        let core = &*self.core;
        for call in core.shared.take_calls() {
            let _ = guard("call_from_thread callback", || call(self));
        }
        self.run_timers();
        if core.state.get() != RunState::Running {
            return;
        }
        let timeout = self.poll_timeout();
        {
            let mut events = core.events.borrow_mut();
            if let Err(e) = core.poll.borrow_mut().poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("poll failed: {e}");
                }
                events.clear();
            }
        }
        // The events buffer stays borrowed while callbacks run; only this loop touches it.
        let events = core.events.borrow();
        for ev in events.iter() {
            match ev.token() {
                WAKER => {}
                TIMERFD => {
                    if let Some(t) = &core.timerfd {
                        t.fired();
                    }
                }
                SIGNALS => {
                    if signals.as_mut().is_some_and(|s| s.drain()) {
                        tracing::info!("received a stop signal; shutting down");
                        let _ = self.stop();
                    }
                }
                token => {
                    let ready = Ready {
                        readable: ev.is_readable(),
                        writable: ev.is_writable(),
                        read_closed: ev.is_read_closed(),
                        error: ev.is_error(),
                    };
                    self.dispatch(SlotId::from_token(token), ready);
                }
            }
        }
        drop(events);
        let n = core.ready.borrow().len();
        for _ in 0..n {
            let next = core.ready.borrow_mut().pop_front();
            let Some(id) = next else { break };
            self.dispatch(id, Ready::default());
        }
        self.process_closing();
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let core = &*self.core;
        if !core.ready.borrow().is_empty() || !core.closing.borrow().is_empty() {
            return Some(Duration::ZERO);
        }
        let (wake, earliest) = {
            let timers = core.timers.borrow();
            (timers.next_wake()?, timers.next_deadline()?)
        };
        let remaining = wake.saturating_sub(core.now_ns());
        // epoll waits in whole milliseconds (and mio rounds up): wait the whole milliseconds,
        // then let the timerfd wake us for the exact remainder.
        if remaining >= 1_000_000 {
            return Some(Duration::from_millis(remaining / 1_000_000));
        }
        if remaining > 0 {
            if let Some(t) = &core.timerfd {
                // `wake` is the latest the due timers allow; round it down to a 10 µs grain,
                // so that dense deadlines share one wake-up and one timerfd_settime, but not
                // below the earliest deadline (that wake-up would find nothing due).
                let target = (wake - wake % TIMER_GRAIN_NS).max(earliest).min(wake);
                let delay = remaining.saturating_sub(wake - target);
                if t.arm(target, Duration::from_nanos(delay)).is_ok() {
                    return None;
                }
            }
        }
        Some(Duration::ZERO)
    }

    fn run_timers(&self) {
        let core = &*self.core;
        let now = core.now_ns();
        let max_seq = core.timers.borrow().next_seq();
        loop {
            let next = core.timers.borrow_mut().pop_expired(now, max_seq);
            let Some((_, node)) = next else { break };
            let _ = guard("delayed call", || timer::fire(&node, self));
        }
    }

    fn dispatch(&self, id: SlotId, ready: Ready) {
        let kind = {
            let slots = self.core.slots.borrow();
            match slots.get(id.key as usize) {
                Some(s) if s.generation == id.generation => match s.entry {
                    Entry::Conn(_) => 0,
                    Entry::Listener(_) => 1,
                    Entry::Connecting(_) => 2,
                    Entry::Busy => return,
                },
                _ => return,
            }
        };
        match kind {
            0 => crate::tcp::connection::service(self, id, ready),
            1 => crate::tcp::port::service(self, id),
            _ => crate::tcp::connector::service(self, id, ready),
        }
    }

    pub(crate) fn process_closing(&self) {
        loop {
            let next = self.core.closing.borrow_mut().pop_front();
            let Some(id) = next else { break };
            crate::tcp::connection::finish(self, id);
        }
    }

    fn shutdown(&self) {
        self.run_triggers("shutdown", Phase::Before);
        // Twisted's own during-shutdown work (disconnectAll) comes before the user's.
        self.disconnect_all();
        self.run_triggers("shutdown", Phase::During);
        self.core.pool.borrow_mut().stop();
        self.run_triggers("shutdown", Phase::After);
        // Break reference cycles (handles kept inside callbacks) and free descriptors now.
        let timers = self.core.timers.borrow_mut().drain();
        for node in &timers {
            timer::discard(node);
        }
        drop(timers);
        self.core.triggers.borrow_mut().clear();
        self.core.deferred.borrow_mut().clear();
        self.core.ready.borrow_mut().clear();
    }

    fn disconnect_all(&self) {
        let ids: Vec<(SlotId, u8)> = self
            .core
            .slots
            .borrow()
            .iter()
            .map(|(k, s)| {
                let kind = match s.entry {
                    Entry::Conn(_) => 0,
                    Entry::Listener(_) => 1,
                    Entry::Connecting(_) => 2,
                    Entry::Busy => 3,
                };
                (
                    SlotId {
                        key: k as u32,
                        generation: s.generation,
                    },
                    kind,
                )
            })
            .collect();
        for &(id, kind) in &ids {
            match kind {
                0 => crate::tcp::connection::disconnect_for_shutdown(self, id),
                1 => crate::tcp::port::stop(self, id),
                2 => crate::tcp::connector::abandon(self, id),
                _ => {}
            }
        }
        self.process_closing();
    }
}

impl Core {
    pub(crate) fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos().min(u64::MAX as u128) as u64
    }

    pub(crate) fn deadline_after(&self, delay: Duration) -> u64 {
        self.now_ns()
            .saturating_add(delay.as_nanos().min(u64::MAX as u128) as u64)
    }

    /// Reserves a slot (busy) and returns its id.
    pub(crate) fn insert_busy(&self) -> SlotId {
        let generation = self.next_gen.get().wrapping_add(1) & 0x7fff_ffff;
        self.next_gen.set(generation);
        let key = self.slots.borrow_mut().insert(Slot {
            generation,
            entry: Entry::Busy,
        });
        SlotId {
            key: key as u32,
            generation,
        }
    }

    /// Takes a slot's entry out for a call, leaving it busy.
    pub(crate) fn take(&self, id: SlotId) -> Option<Entry> {
        let mut slots = self.slots.borrow_mut();
        match slots.get_mut(id.key as usize) {
            Some(s) if s.generation == id.generation && !matches!(s.entry, Entry::Busy) => {
                Some(std::mem::replace(&mut s.entry, Entry::Busy))
            }
            _ => None,
        }
    }

    pub(crate) fn restore(&self, id: SlotId, entry: Entry) {
        let mut slots = self.slots.borrow_mut();
        if let Some(s) = slots.get_mut(id.key as usize) {
            if s.generation == id.generation {
                s.entry = entry;
            }
        }
    }

    pub(crate) fn remove(&self, id: SlotId) -> Option<Entry> {
        let mut slots = self.slots.borrow_mut();
        match slots.get(id.key as usize) {
            Some(s) if s.generation == id.generation => Some(slots.remove(id.key as usize).entry),
            _ => None,
        }
    }

    /// Operations queued for `id` while it was busy.
    pub(crate) fn take_deferred(&self, id: SlotId) -> Vec<Deferred> {
        let mut deferred = self.deferred.borrow_mut();
        if deferred.is_empty() {
            return Vec::new();
        }
        let mut mine = Vec::new();
        let mut i = 0;
        while i < deferred.len() {
            if deferred[i].0 == id {
                mine.push(deferred.remove(i).1);
            } else {
                i += 1;
            }
        }
        mine
    }

    pub(crate) fn push_ready(&self, id: SlotId) {
        self.ready.borrow_mut().push_back(id);
    }

    pub(crate) fn factory_start(&self, key: usize, start: impl FnOnce()) {
        let first = {
            let mut counts = self.factory_counts.borrow_mut();
            let c = counts.entry(key).or_insert(0);
            *c += 1;
            *c == 1
        };
        if first {
            let _ = guard("start_factory", start);
        }
    }

    pub(crate) fn factory_stop(&self, key: usize, stop: impl FnOnce()) {
        let last = {
            let mut counts = self.factory_counts.borrow_mut();
            match counts.get_mut(&key) {
                Some(c) if *c > 1 => {
                    *c -= 1;
                    false
                }
                Some(_) => {
                    counts.remove(&key);
                    true
                }
                None => false,
            }
        };
        if last {
            let _ = guard("stop_factory", stop);
        }
    }
}

/// Identity of a factory for start/stop counting: the address of the shared object.
pub(crate) fn factory_key<T: ?Sized>(rc: &Rc<T>) -> usize {
    Rc::as_ptr(rc) as *const () as usize
}

/// Runs user code, catching and logging a panic. Returns the panic message if it panicked.
pub(crate) fn guard<R>(what: &str, f: impl FnOnce() -> R) -> Result<R, Arc<str>> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg: Arc<str> = panic_message(&*p).into();
        tracing::error!("panic in {what}: {msg}");
        msg
    })
}

pub(crate) fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
