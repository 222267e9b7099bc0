//! [`Cooperator`]: many long jobs sharing the reactor thread in small steps (Twisted's
//! `task.Cooperator`, `cooperate` and `coiterate`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use super::{Clock, ScheduledCall};
use crate::defer::{Deferred, Failure};

/// What one step of a cooperative task asks for next.
///
/// A task is any iterator whose items convert into a `Step`: `()` (go on), a
/// `Deferred<()>` (wait for it), an `Option<Deferred<()>>`, or a `Result` of one of those (an
/// `Err` ends the task as failed). The iterator ending ends the task as done.
///
/// ```
/// use torsion::defer::{Deferred, Failure};
/// use torsion::task::Step;
///
/// // Three steps of work, then wait for a Deferred, then fail.
/// let gate = Deferred::<()>::new();
/// let steps = vec![Step::Continue, Step::Continue, Step::Continue, Step::Wait(gate)];
/// let job = steps.into_iter().chain(std::iter::once(Step::Fail(Failure::msg("done badly"))));
/// # let _ = job;
/// assert!(matches!(Step::from(()), Step::Continue));
/// ```
#[derive(Debug)]
pub enum Step {
    /// Carry on with this task at its next turn.
    Continue,
    /// Pause this task until the Deferred fires; a failure ends the task as failed with it.
    Wait(Deferred<()>),
    /// End the task as failed with this failure.
    Fail(Failure),
}

impl From<()> for Step {
    fn from((): ()) -> Step {
        Step::Continue
    }
}

impl From<Deferred<()>> for Step {
    fn from(d: Deferred<()>) -> Step {
        Step::Wait(d)
    }
}

impl From<Option<Deferred<()>>> for Step {
    fn from(d: Option<Deferred<()>>) -> Step {
        d.map_or(Step::Continue, Step::Wait)
    }
}

impl<T: Into<Step>> From<Result<T, Failure>> for Step {
    fn from(r: Result<T, Failure>) -> Step {
        match r {
            Ok(s) => s.into(),
            Err(f) => Step::Fail(f),
        }
    }
}

/// Why an operation on a [`CooperativeTask`] was refused, and what its
/// [`when_done`](CooperativeTask::when_done) Deferreds fail with (Twisted's exceptions of the
/// same names).
///
/// ```
/// use torsion::task::{Cooperator, TaskError};
/// use torsion::testing::Clock;
///
/// let coop = Cooperator::new(Clock::new());
/// let task = coop.cooperate(std::iter::repeat(()));
/// let done = task.when_done();
/// task.stop().unwrap();
/// assert_eq!(task.stop(), Err(TaskError::TaskStopped));
/// let failure = done.take_result().unwrap().unwrap_err();
/// assert_eq!(failure.downcast_ref::<TaskError>(), Some(&TaskError::TaskStopped));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The task's iterator has ended.
    #[error("the cooperative task is done")]
    TaskDone,
    /// The task was stopped with [`CooperativeTask::stop`].
    #[error("the cooperative task was stopped")]
    TaskStopped,
    /// The task failed (its `when_done` Deferreds get the failure itself).
    #[error("the cooperative task failed")]
    TaskFailed,
    /// Its [`Cooperator`] was stopped.
    #[error("the cooperator was stopped")]
    SchedulerStopped,
    /// [`CooperativeTask::resume`] on a task that is not paused.
    #[error("the cooperative task is not paused")]
    NotPaused,
}

type Job = Box<dyn Iterator<Item = Step>>;
type MakePredicate = Box<dyn Fn() -> Box<dyn FnMut() -> bool>>;

/// The scheduler a task reports to; the `Cooperator` behind a trait object so that tasks do
/// not carry its clock type.
trait Scheduler {
    fn add(&self, task: &Rc<TaskInner>);
    fn remove(&self, task: &Rc<TaskInner>);
}

struct TaskInner {
    /// Out of the cell while it runs; `None` once the task has completed.
    job: RefCell<Option<Job>>,
    pauses: Cell<u32>,
    completion: Cell<Option<TaskError>>,
    result: RefCell<Option<Result<(), Failure>>>,
    waiters: RefCell<Vec<Deferred<()>>>,
    scheduler: Rc<dyn Scheduler>,
}

/// One iterator run by a [`Cooperator`] (Twisted's `CooperativeTask`). Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use torsion::task::{Cooperator, TaskError};
/// use torsion::testing::Clock;
///
/// let clock = Clock::new();
/// let coop = Cooperator::new(clock.clone());
/// let task = coop.cooperate((0..1000).map(|_| ()));
/// task.pause().unwrap();
/// assert_eq!(task.resume(), Ok(()));
/// assert_eq!(task.resume(), Err(TaskError::NotPaused));
/// let done = task.when_done();
/// clock.advance(Duration::ZERO);
/// assert!(done.take_result().unwrap().is_ok());
/// assert_eq!(task.pause(), Err(TaskError::TaskDone));
/// ```
#[derive(Clone)]
pub struct CooperativeTask {
    inner: Rc<TaskInner>,
}

impl fmt::Debug for CooperativeTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CooperativeTask")
            .field("paused", &self.inner.pauses.get())
            .field("completion", &self.inner.completion.get())
            .finish()
    }
}

impl CooperativeTask {
    /// A Deferred that fires when the task ends: succeeds when its iterator ends; fails with
    /// the task's own failure, or with [`TaskError::TaskStopped`] or
    /// [`TaskError::SchedulerStopped`]. Asked after the end, it has already fired.
    pub fn when_done(&self) -> Deferred<()> {
        if let Some(r) = self.inner.result.borrow().as_ref() {
            return Deferred::from_result(r.clone());
        }
        let d = Deferred::new();
        self.inner.waiters.borrow_mut().push(d.clone());
        d
    }

    /// Stops running the task until [`resume`](Self::resume); counted.
    pub fn pause(&self) -> Result<(), TaskError> {
        self.inner.check_finish()?;
        self.inner.pause();
        Ok(())
    }

    /// Undoes one [`pause`](Self::pause); the task runs again when none is left.
    pub fn resume(&self) -> Result<(), TaskError> {
        self.inner.resume()
    }

    /// Ends the task now: its iterator is dropped and `when_done` fails with
    /// [`TaskError::TaskStopped`].
    pub fn stop(&self) -> Result<(), TaskError> {
        self.inner.check_finish()?;
        self.inner.complete(
            TaskError::TaskStopped,
            Err(Failure::new(TaskError::TaskStopped)),
        );
        Ok(())
    }

    /// How the task ended, or `None` while it has not.
    pub fn completion(&self) -> Option<TaskError> {
        self.inner.completion.get()
    }
}

impl TaskInner {
    fn check_finish(&self) -> Result<(), TaskError> {
        self.completion.get().map_or(Ok(()), Err)
    }

    fn pause(self: &Rc<Self>) {
        let n = self.pauses.get() + 1;
        self.pauses.set(n);
        if n == 1 {
            self.scheduler.remove(self);
        }
    }

    fn resume(self: &Rc<Self>) -> Result<(), TaskError> {
        let n = self.pauses.get();
        if n == 0 {
            return Err(TaskError::NotPaused);
        }
        self.pauses.set(n - 1);
        if n == 1 && self.completion.get().is_none() {
            self.scheduler.add(self);
        }
        Ok(())
    }

    /// Ends the task (once): drop the iterator, leave the scheduler, fire the waiters.
    fn complete(self: &Rc<Self>, how: TaskError, result: Result<(), Failure>) {
        if self.completion.get().is_some() {
            return;
        }
        self.completion.set(Some(how));
        *self.result.borrow_mut() = Some(result.clone());
        self.scheduler.remove(self);
        let job = self.job.borrow_mut().take();
        drop(job);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for d in waiters {
            let _ = d.resolve(result.clone());
        }
    }

    /// Runs one step of the iterator.
    fn work(self: &Rc<Self>) {
        let Some(mut job) = self.job.borrow_mut().take() else {
            return;
        };
        let step = catch_unwind(AssertUnwindSafe(|| job.next()))
            .unwrap_or_else(|p| Some(Step::Fail(Failure::panicked(&*p))));
        if self.completion.get().is_some() {
            // Stopped from inside its own step.
            drop(job);
            return;
        }
        *self.job.borrow_mut() = Some(job);
        match step {
            None => self.complete(TaskError::TaskDone, Ok(())),
            Some(Step::Continue) => {}
            Some(Step::Fail(f)) => self.complete(TaskError::TaskFailed, Err(f)),
            Some(Step::Wait(d)) => {
                self.pause();
                let me = self.clone();
                d.on_result(move |r| match r {
                    Ok(()) => {
                        let _ = me.resume();
                    }
                    Err(f) => me.complete(TaskError::TaskFailed, Err(f)),
                });
            }
        }
    }
}

struct Coop<C: Clock> {
    clock: C,
    tick_delay: Cell<Duration>,
    make_predicate: RefCell<MakePredicate>,
    /// Tasks that are neither paused nor done, in round-robin order.
    runnable: RefCell<Vec<Rc<TaskInner>>>,
    /// Where the next turn starts in `runnable`.
    cursor: Cell<usize>,
    /// Every task not yet done, paused ones included, for `stop`.
    members: RefCell<Vec<Weak<TaskInner>>>,
    stopped: Cell<bool>,
    tick: RefCell<Option<C::Call>>,
    me: Weak<Coop<C>>,
}

impl<C: Clock + 'static> Scheduler for Coop<C>
where
    C::Call: 'static,
{
    fn add(&self, task: &Rc<TaskInner>) {
        if self.stopped.get() {
            task.complete(
                TaskError::SchedulerStopped,
                Err(Failure::new(TaskError::SchedulerStopped)),
            );
            return;
        }
        self.runnable.borrow_mut().push(task.clone());
        self.reschedule();
    }

    fn remove(&self, task: &Rc<TaskInner>) {
        let removed = {
            let mut runnable = self.runnable.borrow_mut();
            let at = runnable.iter().position(|t| Rc::ptr_eq(t, task));
            at.map(|i| {
                if i < self.cursor.get() {
                    self.cursor.set(self.cursor.get() - 1);
                }
                runnable.remove(i)
            })
        };
        if self.runnable.borrow().is_empty() {
            // Nothing left to run: no need to wake up for the next tick.
            if let Some(t) = self.tick.borrow_mut().take() {
                let _ = t.cancel();
            }
        }
        if task.completion.get().is_some() {
            self.members
                .borrow_mut()
                .retain(|m| m.strong_count() > 0 && !std::ptr::eq(m.as_ptr(), &**task));
        }
        drop(removed);
    }
}

impl<C: Clock + 'static> Coop<C>
where
    C::Call: 'static,
{
    fn reschedule(&self) {
        if self.stopped.get() || self.runnable.borrow().is_empty() {
            return;
        }
        if self.tick.borrow().as_ref().is_some_and(|t| t.active()) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        let call = self
            .clock
            .call_later(self.tick_delay.get(), move || me.run_tick());
        *self.tick.borrow_mut() = Some(call);
    }

    /// One tick: round-robin one step at a time until the time slice is used up or nothing
    /// is runnable.
    fn run_tick(&self) {
        self.tick.borrow_mut().take();
        let mut done = (self.make_predicate.borrow())();
        loop {
            let next = {
                let runnable = self.runnable.borrow();
                if runnable.is_empty() {
                    None
                } else {
                    let i = self.cursor.get() % runnable.len();
                    self.cursor.set(i + 1);
                    Some(runnable[i].clone())
                }
            };
            let Some(task) = next else { break };
            task.work();
            if self.stopped.get() || done() {
                break;
            }
        }
        self.reschedule();
    }

    fn stop(&self) {
        self.stopped.set(true);
        if let Some(t) = self.tick.borrow_mut().take() {
            let _ = t.cancel();
        }
        let members: Vec<Rc<TaskInner>> = std::mem::take(&mut *self.members.borrow_mut())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for t in members {
            t.complete(
                TaskError::SchedulerStopped,
                Err(Failure::new(TaskError::SchedulerStopped)),
            );
        }
        self.runnable.borrow_mut().clear();
    }
}

/// Runs many iterators a step at a time, round-robin, in ticks scheduled on a [`Clock`]
/// (Twisted's `Cooperator`): each tick runs steps until its time slice (10 ms by default)
/// is used up, then gives the reactor back until the next tick, so long jobs share the
/// thread with network I/O and with each other.
///
/// A task that yields a Deferred is paused until it fires (a failure ends the task as
/// failed). [`stop`](Self::stop) ends every task, paused ones included, with
/// [`TaskError::SchedulerStopped`], and refuses new ones the same way. The reactor's own
/// cooperator ([`Reactor::cooperator`](crate::Reactor::cooperator), used by [`cooperate`]
/// and [`coiterate`]) is stopped when the reactor shuts down.
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
/// use torsion::task::Cooperator;
/// use torsion::testing::Clock;
///
/// let clock = Clock::new();
/// // Three steps per tick, one tick per millisecond on the test clock.
/// let coop = Cooperator::new(clock.clone())
///     .tick_delay(Duration::from_millis(1))
///     .steps_per_tick(3);
/// let (a, b) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
/// let (ca, cb) = (a.clone(), b.clone());
/// coop.cooperate(std::iter::repeat_with(move || ca.set(ca.get() + 1)).take(4));
/// let done = coop.coiterate(std::iter::repeat_with(move || cb.set(cb.get() + 1)).take(4));
/// clock.advance(Duration::from_millis(1));
/// assert_eq!((a.get(), b.get()), (2, 1)); // a, b, a
/// clock.advance(Duration::from_millis(1));
/// assert_eq!((a.get(), b.get()), (3, 3)); // b, a, b
/// clock.pump(&[Duration::from_millis(1); 3]);
/// assert!(done.take_result().unwrap().is_ok());
/// ```
pub struct Cooperator<C: Clock + 'static> {
    coop: Rc<Coop<C>>,
}

impl<C: Clock + 'static> Clone for Cooperator<C> {
    fn clone(&self) -> Self {
        Cooperator {
            coop: self.coop.clone(),
        }
    }
}

impl<C: Clock + 'static> fmt::Debug for Cooperator<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cooperator")
            .field("runnable", &self.coop.runnable.borrow().len())
            .field("stopped", &self.coop.stopped.get())
            .finish()
    }
}

/// The default time slice of one tick (Twisted's `_Timer.MAX_SLICE`).
pub const DEFAULT_SLICE: Duration = Duration::from_millis(10);

fn slice_predicate(slice: Duration) -> MakePredicate {
    Box::new(move || {
        let end = Instant::now() + slice;
        Box::new(move || Instant::now() >= end)
    })
}

impl<C: Clock + 'static> Cooperator<C>
where
    C::Call: 'static,
{
    /// A running cooperator whose ticks are scheduled on `clock`, each `Duration::ZERO`
    /// after the last (on the reactor: the next loop pass, after I/O), with a 10 ms slice.
    pub fn new(clock: C) -> Self {
        Cooperator {
            coop: Rc::new_cyclic(|me| Coop {
                clock,
                tick_delay: Cell::new(Duration::ZERO),
                make_predicate: RefCell::new(slice_predicate(DEFAULT_SLICE)),
                runnable: RefCell::new(Vec::new()),
                cursor: Cell::new(0),
                members: RefCell::new(Vec::new()),
                stopped: Cell::new(false),
                tick: RefCell::new(None),
                me: me.clone(),
            }),
        }
    }

    /// How long each tick may run steps (default [`DEFAULT_SLICE`]).
    pub fn slice(self, slice: Duration) -> Self {
        *self.coop.make_predicate.borrow_mut() = slice_predicate(slice);
        self
    }

    /// Runs exactly `n` steps per tick (at least one), whatever the time; handy for tests
    /// (Twisted's `terminationPredicateFactory`).
    pub fn steps_per_tick(self, n: usize) -> Self {
        self.termination(move || {
            let mut left = n.max(1);
            move || {
                left -= 1;
                left == 0
            }
        })
    }

    /// Ends each tick when the predicate made for it by `make` returns true; it is asked
    /// after every step (Twisted's `terminationPredicateFactory`).
    pub fn termination<P>(self, make: impl Fn() -> P + 'static) -> Self
    where
        P: FnMut() -> bool + 'static,
    {
        *self.coop.make_predicate.borrow_mut() = Box::new(move || Box::new(make()));
        self
    }

    /// The delay from the end of one tick to the next (default zero).
    pub fn tick_delay(self, delay: Duration) -> Self {
        self.coop.tick_delay.set(delay);
        self
    }

    /// Adds an iterator as a task (Twisted's `cooperate`). See [`Step`] for what it may
    /// yield.
    pub fn cooperate<I>(&self, iter: I) -> CooperativeTask
    where
        I: IntoIterator,
        I::Item: Into<Step> + 'static,
        I::IntoIter: 'static,
    {
        let job: Job = Box::new(iter.into_iter().map(Into::into));
        let inner = Rc::new(TaskInner {
            job: RefCell::new(Some(job)),
            pauses: Cell::new(0),
            completion: Cell::new(None),
            result: RefCell::new(None),
            waiters: RefCell::new(Vec::new()),
            scheduler: self.coop.clone(),
        });
        if !self.coop.stopped.get() {
            self.coop.members.borrow_mut().push(Rc::downgrade(&inner));
        }
        self.coop.add(&inner);
        CooperativeTask { inner }
    }

    /// Adds an iterator as a task and gives its [`when_done`](CooperativeTask::when_done)
    /// (Twisted's `coiterate`).
    pub fn coiterate<I>(&self, iter: I) -> Deferred<()>
    where
        I: IntoIterator,
        I::Item: Into<Step> + 'static,
        I::IntoIter: 'static,
    {
        self.cooperate(iter).when_done()
    }

    /// Ends every task with [`TaskError::SchedulerStopped`] and refuses new ones.
    pub fn stop(&self) {
        self.coop.stop();
    }

    /// True until [`stop`](Self::stop).
    pub fn running(&self) -> bool {
        !self.coop.stopped.get()
    }
}

mod reactor;

pub use reactor::{coiterate, cooperate};

#[cfg(test)]
mod tests;
