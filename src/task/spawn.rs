//! A small single-threaded executor per reactor: [`Reactor::spawn`] runs local (`!Send`)
//! futures on the reactor thread and gives their outcome as a [`Deferred`].
//!
//! Tasks live in a slab owned by the reactor's executor. A poll lends the future a waker that
//! lives on the stack and only becomes a real (`Arc`) waker if the future clones it, so a task
//! that completes without keeping its waker allocates nothing for it; and the Deferred's
//! canceller is only made for a task still pending after its first poll.
//!
//! A waker puts its task's id in a ready
//! queue and, for the first id of a batch, schedules one drain of the queue: a zero-delay
//! `call_later` when woken on the reactor thread, `call_from_thread` when woken from another
//! thread. A task is first polled inside `spawn` itself, so a future that is ready at once
//! gives an already fired Deferred, as Twisted's `ensureDeferred` does.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Wake, Waker};
use std::thread::{self, ThreadId};
use std::time::Duration;

use slab::Slab;

use crate::defer::{Deferred, Failure, clear_awaited, take_awaited};
use crate::rc_pool as pool;
use crate::reactor::Core;
use crate::{Phase, Reactor, ReactorHandle};

/// A task's future, in a cell recycled through the Deferred cell pool (a task that finishes
/// at once, the common case for `spawn` of ready work, then costs no trip to the allocator).
struct LocalTask(pool::Pooled<dyn TaskFuture>);

/// A future kept in an `Rc` that is never cloned: its one owner is the task's slab entry, or
/// the poll in progress, which has taken it out of the slab. `Rc::get_mut` checks that at each
/// poll; the future never moves until it is dropped in place, which is what pinning asks.
trait TaskFuture: pool::Release {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

struct TaskCell<W> {
    fut: W,
}

impl<W: Future<Output = ()> + 'static> TaskFuture for TaskCell<W> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: the future lives in its `Rc` allocation from `LocalTask::new` until it is
        // dropped in place there (`release`); it is never moved out.
        unsafe { Pin::new_unchecked(&mut self.fut) }.poll(cx)
    }
}

impl<W> pool::Release for TaskCell<W> {
    fn release(self: Rc<Self>) {
        pool::recycle(self);
    }
}

impl<W> pool::Recycle for TaskCell<W> {
    fn needs_drop(&mut self) -> bool {
        std::mem::needs_drop::<W>()
    }
}

impl LocalTask {
    fn new<W: Future<Output = ()> + 'static>(fut: W) -> Self {
        let cell: Rc<dyn TaskFuture> = pool::rc_new(move || TaskCell { fut });
        LocalTask(pool::Pooled::new(cell))
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.0
            .get_mut()
            .expect("a task's future is never shared")
            .poll(cx)
    }
}

struct Task {
    generation: u32,
    /// Out of the slab while it is being polled.
    future: Option<LocalTask>,
    /// What the task waits on; cancelling the task cancels it.
    awaited: Option<crate::defer::Awaited>,
    /// Cancelled while being polled: drop it when the poll returns.
    cancelled: bool,
    /// The drain batch that last polled it, so a task woken twice is polled once per batch.
    batch: u64,
}

/// What wakers (any thread) share with the executor (reactor thread).
struct ReadyQueue {
    ready: Mutex<Vec<u64>>,
    scheduled: AtomicBool,
    handle: ReactorHandle,
    owner: ThreadId,
    core_addr: usize,
}

struct TaskWaker {
    id: u64,
    queue: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.push(self.id);
    }
}

/// The waker a poll lends its future, on the poll's stack.
struct PollWaker<'a> {
    id: u64,
    queue: &'a Arc<ReadyQueue>,
}

static LENT_VTABLE: RawWakerVTable =
    RawWakerVTable::new(lent_clone, lent_wake, lent_wake, lent_drop);

/// # Safety
/// `p` points to the live `PollWaker` of the poll in progress.
unsafe fn lent_clone(p: *const ()) -> RawWaker {
    // SAFETY: as documented; only read.
    let lent = unsafe { &*(p as *const PollWaker<'_>) };
    let owned = std::mem::ManuallyDrop::new(Waker::from(Arc::new(TaskWaker {
        id: lent.id,
        queue: lent.queue.clone(),
    })));
    // The clone owns the `Arc` that `owned` would have dropped.
    RawWaker::new(owned.data(), owned.vtable())
}

/// # Safety
/// As [`lent_clone`].
unsafe fn lent_wake(p: *const ()) {
    // SAFETY: as documented; only read.
    let lent = unsafe { &*(p as *const PollWaker<'_>) };
    lent.queue.push(lent.id);
}

/// Nothing to free: the lent waker owns nothing.
unsafe fn lent_drop(_: *const ()) {}

impl ReadyQueue {
    fn push(&self, id: u64) {
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id);
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        if thread::current().id() == self.owner {
            if let Some(reactor) = find(self.core_addr).and_then(|e| e.reactor()) {
                reactor.call_later(Duration::ZERO, drain);
                return;
            }
        }
        if self.handle.call_from_thread(drain).is_err() {
            self.scheduled.store(false, Ordering::Release);
        }
    }
}

/// The executor of one reactor.
pub(crate) struct Executor {
    core: Weak<Core>,
    core_addr: usize,
    tasks: RefCell<Slab<Task>>,
    next_generation: Cell<u32>,
    batch: Cell<u64>,
    queue: Arc<ReadyQueue>,
}

thread_local! {
    static EXECUTORS: RefCell<Vec<Rc<Executor>>> = const { RefCell::new(Vec::new()) };
}

fn find(core_addr: usize) -> Option<Rc<Executor>> {
    EXECUTORS
        .try_with(|e| {
            let e = e.try_borrow().ok()?;
            e.iter().find(|x| x.core_addr == core_addr).cloned()
        })
        .ok()
        .flatten()
}

fn id_of(key: usize, generation: u32) -> u64 {
    (key as u64) | ((generation as u64) << 32)
}

fn drain(reactor: &Reactor) {
    let Some(exec) = find(Rc::as_ptr(&reactor.core) as usize) else {
        return;
    };
    exec.queue.scheduled.store(false, Ordering::Release);
    let ids = std::mem::take(&mut *exec.queue.ready.lock().unwrap_or_else(|p| p.into_inner()));
    exec.batch.set(exec.batch.get() + 1);
    for id in ids {
        exec.poll(id, true);
    }
}

impl Executor {
    /// The executor of `reactor`, made on first use.
    pub(crate) fn of(reactor: &Reactor) -> Rc<Executor> {
        let addr = Rc::as_ptr(&reactor.core) as usize;
        if let Some(e) = find(addr) {
            return e;
        }
        let exec = Rc::new(Executor {
            core: reactor.weak(),
            core_addr: addr,
            tasks: RefCell::new(Slab::new()),
            next_generation: Cell::new(0),
            batch: Cell::new(0),
            queue: Arc::new(ReadyQueue {
                ready: Mutex::new(Vec::new()),
                scheduled: AtomicBool::new(false),
                handle: reactor.handle(),
                owner: thread::current().id(),
                core_addr: addr,
            }),
        });
        let dead: Vec<Rc<Executor>> = EXECUTORS.with(|e| {
            let mut e = e.borrow_mut();
            let (live, dead): (Vec<_>, Vec<_>) =
                e.drain(..).partition(|x| x.core.strong_count() > 0);
            *e = live;
            e.push(exec.clone());
            dead
        });
        for d in dead {
            d.clear();
        }
        reactor.add_system_event_trigger(Phase::After, "shutdown", move |r| {
            let addr = Rc::as_ptr(&r.core) as usize;
            let gone = EXECUTORS.with(|e| {
                let mut e = e.borrow_mut();
                let pos = e.iter().position(|x| x.core_addr == addr);
                pos.map(|p| e.remove(p))
            });
            if let Some(g) = gone {
                g.clear();
            }
        });
        exec
    }

    fn reactor(&self) -> Option<Reactor> {
        self.core.upgrade().map(Reactor::from_core)
    }

    /// Drops every task: the reactor is gone or has shut down, so none can make progress.
    fn clear(&self) {
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        drop(tasks);
    }

    fn spawn<T: 'static, F>(self: &Rc<Self>, fut: F) -> Deferred<T>
    where
        F: Future<Output = Result<T, Failure>> + 'static,
    {
        let generation = self.next_generation.get().wrapping_add(1);
        self.next_generation.set(generation);
        let out = Deferred::new();
        let target = out.clone();
        let task = LocalTask::new(async move {
            let mut fut = std::pin::pin!(fut);
            let r = std::future::poll_fn(|cx| {
                catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx)))
                    .unwrap_or_else(|p| Poll::Ready(Err(Failure::panicked(&*p))))
            })
            .await;
            let _ = target.resolve(r);
        });
        let id = {
            let mut tasks = self.tasks.borrow_mut();
            let entry = tasks.vacant_entry();
            let id = id_of(entry.key(), generation);
            entry.insert(Task {
                generation,
                future: Some(task),
                awaited: None,
                cancelled: false,
                batch: 0,
            });
            id
        };
        if self.poll(id, false) {
            // Ready at once: no canceller needed, nothing left to cancel.
            return out;
        }
        let weak = Rc::downgrade(self);
        out.set_canceller(move |_| {
            if let Some(exec) = weak.upgrade() {
                exec.cancel(id);
            }
        });
        out
    }

    /// Polls task `id` once; true if it finished (or is gone).
    fn poll(&self, id: u64, batched: bool) -> bool {
        let key = id as u32 as usize;
        let generation = (id >> 32) as u32;
        let batch = self.batch.get();
        let mut fut = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(t) = tasks.get_mut(key) else {
                return true;
            };
            if t.generation != generation || (batched && t.batch == batch) {
                return false;
            }
            t.batch = batch;
            let Some(f) = t.future.take() else {
                return false;
            };
            f
        };
        let lent = PollWaker {
            id,
            queue: &self.queue,
        };
        // SAFETY: the vtable's functions only read `lent`, which outlives this waker. The
        // waker is lent to the future through `Context` for this one poll; a future that
        // keeps it must clone it, and a clone is a new owned `Arc` waker (`lent_clone`).
        let waker = unsafe {
            Waker::from_raw(RawWaker::new(
                &lent as *const PollWaker<'_> as *const (),
                &LENT_VTABLE,
            ))
        };
        clear_awaited();
        let ready = fut.poll(&mut Context::from_waker(&waker)).is_ready();
        drop(waker);
        let awaited = take_awaited();
        let finished = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(key) {
                Some(t) if t.generation == generation => {
                    if ready || t.cancelled {
                        Some(tasks.remove(key))
                    } else {
                        t.future = Some(fut);
                        t.awaited = awaited;
                        return false;
                    }
                }
                _ => None,
            }
        };
        drop(finished);
        true
    }

    fn cancel(&self, id: u64) {
        let key = id as u32 as usize;
        let generation = (id >> 32) as u32;
        let (task, awaited) = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(key) {
                Some(t) if t.generation == generation => {
                    if t.future.is_some() {
                        let mut t = tasks.remove(key);
                        let a = t.awaited.take();
                        (Some(t), a)
                    } else {
                        t.cancelled = true;
                        (None, t.awaited.take())
                    }
                }
                _ => (None, None),
            }
        };
        if let Some(a) = awaited {
            a.cancel();
        }
        drop(task);
    }
}

impl Reactor {
    /// Runs `future` on this reactor's thread and gives its outcome as a Deferred (Twisted's
    /// `ensureDeferred`). The future need not be `Send`; inside it, `.await` Deferreds, timers
    /// ([`sleep`](crate::sleep)) and anything else that wakes its waker.
    ///
    /// The future is polled once at once, so one that is ready straight away gives an already
    /// fired Deferred. A panic in it becomes a [`FailureKind::Panicked`](crate::FailureKind)
    /// failure. Cancelling the Deferred drops the future, after cancelling the Deferred it was
    /// waiting on. Tasks still pending when the reactor shuts down are dropped.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::{sleep, Reactor};
    ///
    /// let reactor = Reactor::builder().install_signal_handlers(false).build().unwrap();
    /// let r = reactor.clone();
    /// let d = reactor.spawn(async move {
    ///     sleep(&r, Duration::from_millis(1)).await?;
    ///     Ok(6 * 7)
    /// });
    /// let stop = reactor.clone();
    /// d.add_callback(move |n| {
    ///     stop.stop().unwrap();
    ///     n
    /// });
    /// reactor.run().unwrap();
    /// assert_eq!(d.take_result().unwrap().unwrap(), 42);
    /// ```
    pub fn spawn<T, F>(&self, future: F) -> Deferred<T>
    where
        T: 'static,
        F: Future<Output = Result<T, Failure>> + 'static,
    {
        Executor::of(self).spawn(future)
    }
}

impl<T: 'static> Deferred<T> {
    /// The outcome of `future`, run on `reactor` (the same as [`Reactor::spawn`]). A future
    /// needs an executor to be polled, and a reactor is where this one lives.
    pub fn from_future<F>(reactor: &Reactor, future: F) -> Deferred<T>
    where
        F: Future<Output = Result<T, Failure>> + 'static,
    {
        reactor.spawn(future)
    }
}
