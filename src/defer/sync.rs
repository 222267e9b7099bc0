//! Asynchronous primitives with FIFO waiters: [`DeferredLock`], [`DeferredSemaphore`],
//! [`DeferredQueue`].
//!
//! A waiter is a Deferred; cancelling it takes it out of the line and fails it with
//! [`Cancelled`](crate::defer::Cancelled).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use super::deferred::Deferred;
use super::transform::{TryDeferred, maybe_deferred, succeed};

/// `release` without a matching `acquire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("release() without a matching acquire()")]
pub struct NotAcquired;

/// A semaphore needs at least one token (Twisted raises `ValueError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a DeferredSemaphore needs at least one token")]
pub struct NoTokens;

/// [`DeferredQueue::put`] on a full queue; the value comes back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the DeferredQueue is full")]
pub struct QueueOverflow<T>(pub T);

/// [`DeferredQueue::get`] when the backlog of waiting getters is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the DeferredQueue's backlog of waiting getters is full")]
pub struct QueueUnderflow;

/// A line of waiting Deferreds, each of which leaves the line when cancelled.
struct Waiters<T: 'static> {
    line: VecDeque<Deferred<T>>,
}

impl<T: 'static> Waiters<T> {
    fn new() -> Self {
        Waiters {
            line: VecDeque::new(),
        }
    }
}

/// A waiter that removes itself from the line found through `owner` when cancelled.
fn waiter<S: 'static, T: 'static>(
    owner: &Rc<RefCell<S>>,
    line: fn(&mut S) -> &mut Waiters<T>,
) -> Deferred<T> {
    let weak: Weak<RefCell<S>> = Rc::downgrade(owner);
    Deferred::with_canceller(move |d: &Deferred<T>| {
        if let Some(s) = weak.upgrade() {
            let removed = {
                let mut s = s.borrow_mut();
                let waiters = line(&mut s);
                let pos = waiters.line.iter().position(|w| w.ptr_eq(d));
                pos.and_then(|p| waiters.line.remove(p))
            };
            drop(removed);
        }
    })
}

/// Gives `value` to the first waiter in line that can still take it; the value comes back if
/// none can.
fn hand_to_first<S, T: 'static>(
    owner: &RefCell<S>,
    line: fn(&mut S) -> &mut Waiters<T>,
    mut value: T,
) -> Result<(), T> {
    loop {
        let next = line(&mut owner.borrow_mut()).line.pop_front();
        let Some(d) = next else { return Err(value) };
        match d.offer(value) {
            Ok(()) => return Ok(()),
            Err(v) => value = v,
        }
    }
}

struct LockState {
    locked: bool,
    waiting: Waiters<()>,
}

/// A lock for asynchronous code (Twisted's `DeferredLock`): [`acquire`](Self::acquire) gives a
/// Deferred that fires when the lock is yours; waiters get it in FIFO order.
///
/// ```
/// use torsion::defer::DeferredLock;
///
/// let lock = DeferredLock::new();
/// let first = lock.acquire();
/// let second = lock.acquire();
/// assert!(first.called() && !second.called());
/// lock.release().unwrap();
/// assert!(second.called() && lock.locked());
/// ```
#[derive(Clone)]
pub struct DeferredLock {
    inner: Rc<RefCell<LockState>>,
}

impl Default for DeferredLock {
    fn default() -> Self {
        DeferredLock::new()
    }
}

impl std::fmt::Debug for DeferredLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.borrow();
        f.debug_struct("DeferredLock")
            .field("locked", &st.locked)
            .field("waiting", &st.waiting.line.len())
            .finish()
    }
}

impl DeferredLock {
    /// An unlocked lock.
    pub fn new() -> Self {
        DeferredLock {
            inner: Rc::new(RefCell::new(LockState {
                locked: false,
                waiting: Waiters::new(),
            })),
        }
    }

    /// True while someone holds the lock.
    pub fn locked(&self) -> bool {
        self.inner.borrow().locked
    }

    /// A Deferred that fires when the lock is yours: at once if it is free.
    pub fn acquire(&self) -> Deferred<()> {
        let mut st = self.inner.borrow_mut();
        if !st.locked {
            st.locked = true;
            return succeed(());
        }
        let d = waiter(&self.inner, |s: &mut LockState| &mut s.waiting);
        st.waiting.line.push_back(d.clone());
        d
    }

    /// Releases the lock, handing it to the next waiter if there is one.
    pub fn release(&self) -> Result<(), NotAcquired> {
        if !self.inner.borrow().locked {
            return Err(NotAcquired);
        }
        if hand_to_first(&self.inner, |s: &mut LockState| &mut s.waiting, ()).is_err() {
            self.inner.borrow_mut().locked = false;
        }
        Ok(())
    }

    /// Acquires the lock, runs `f` (which returns a `Result` or a Deferred, see
    /// [`TryDeferred`]), and releases the lock once `f`'s outcome is known; the Deferred has
    /// that outcome. A panic in `f` is a failure, as in [`maybe_deferred`].
    pub fn run<T: 'static, R: TryDeferred<T>>(
        &self,
        f: impl FnOnce() -> R + 'static,
    ) -> Deferred<T> {
        let lock = self.clone();
        self.acquire().and_then(move |()| {
            maybe_deferred(f).then(move |r| {
                let _ = lock.release();
                r
            })
        })
    }
}

struct SemState {
    tokens: usize,
    limit: usize,
    waiting: Waiters<()>,
}

/// At most `tokens` holders at a time (Twisted's `DeferredSemaphore`); waiters are served in
/// FIFO order.
///
/// ```
/// use torsion::defer::DeferredSemaphore;
///
/// let sem = DeferredSemaphore::new(2).unwrap();
/// let (a, b, c) = (sem.acquire(), sem.acquire(), sem.acquire());
/// assert!(a.called() && b.called() && !c.called());
/// sem.release().unwrap();
/// assert!(c.called());
/// assert!(DeferredSemaphore::new(0).is_err());
/// ```
#[derive(Clone)]
pub struct DeferredSemaphore {
    inner: Rc<RefCell<SemState>>,
}

impl std::fmt::Debug for DeferredSemaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.borrow();
        f.debug_struct("DeferredSemaphore")
            .field("tokens", &st.tokens)
            .field("limit", &st.limit)
            .field("waiting", &st.waiting.line.len())
            .finish()
    }
}

impl DeferredSemaphore {
    /// A semaphore with `tokens` tokens; zero is an error.
    pub fn new(tokens: usize) -> Result<Self, NoTokens> {
        if tokens == 0 {
            return Err(NoTokens);
        }
        Ok(DeferredSemaphore {
            inner: Rc::new(RefCell::new(SemState {
                tokens,
                limit: tokens,
                waiting: Waiters::new(),
            })),
        })
    }

    /// Tokens free now.
    pub fn tokens(&self) -> usize {
        self.inner.borrow().tokens
    }

    /// The number of tokens the semaphore was made with.
    pub fn limit(&self) -> usize {
        self.inner.borrow().limit
    }

    /// A Deferred that fires when a token is yours: at once if one is free.
    pub fn acquire(&self) -> Deferred<()> {
        let mut st = self.inner.borrow_mut();
        if st.tokens > 0 {
            st.tokens -= 1;
            return succeed(());
        }
        let d = waiter(&self.inner, |s: &mut SemState| &mut s.waiting);
        st.waiting.line.push_back(d.clone());
        d
    }

    /// Gives a token back, to the next waiter if there is one.
    pub fn release(&self) -> Result<(), NotAcquired> {
        {
            let st = self.inner.borrow();
            if st.tokens >= st.limit {
                return Err(NotAcquired);
            }
        }
        if hand_to_first(&self.inner, |s: &mut SemState| &mut s.waiting, ()).is_err() {
            self.inner.borrow_mut().tokens += 1;
        }
        Ok(())
    }

    /// Acquires a token, runs `f` (which returns a `Result` or a Deferred, see
    /// [`TryDeferred`]), and releases the token once `f`'s outcome is known; the Deferred has
    /// that outcome. A panic in `f` is a failure, as in [`maybe_deferred`].
    pub fn run<T: 'static, R: TryDeferred<T>>(
        &self,
        f: impl FnOnce() -> R + 'static,
    ) -> Deferred<T> {
        let sem = self.clone();
        self.acquire().and_then(move |()| {
            maybe_deferred(f).then(move |r| {
                let _ = sem.release();
                r
            })
        })
    }
}

struct QueueState<T: 'static> {
    pending: VecDeque<T>,
    waiting: Waiters<T>,
    size: Option<usize>,
    backlog: Option<usize>,
}

/// A queue whose [`get`](Self::get) gives a Deferred (Twisted's `DeferredQueue`).
///
/// `size` bounds the values waiting for a getter ([`QueueOverflow`] past it) and `backlog`
/// bounds the getters waiting for a value ([`QueueUnderflow`] past it); `None` is unbounded.
///
/// ```
/// use torsion::defer::DeferredQueue;
///
/// let q = DeferredQueue::with_limits(Some(1), Some(1));
/// let getter = q.get().unwrap();
/// assert!(q.get().is_err()); // backlog full
/// q.put("a").unwrap();
/// assert_eq!(getter.take_result().unwrap().unwrap(), "a");
/// q.put("b").unwrap();
/// assert_eq!(q.put("c").unwrap_err().0, "c"); // size reached
/// ```
pub struct DeferredQueue<T: 'static> {
    inner: Rc<RefCell<QueueState<T>>>,
}

impl<T: 'static> Clone for DeferredQueue<T> {
    fn clone(&self) -> Self {
        DeferredQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T: 'static> Default for DeferredQueue<T> {
    fn default() -> Self {
        DeferredQueue::new()
    }
}

impl<T: 'static> std::fmt::Debug for DeferredQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.borrow();
        f.debug_struct("DeferredQueue")
            .field("pending", &st.pending.len())
            .field("waiting", &st.waiting.line.len())
            .field("size", &st.size)
            .field("backlog", &st.backlog)
            .finish()
    }
}

impl<T: 'static> DeferredQueue<T> {
    /// An unbounded queue.
    pub fn new() -> Self {
        DeferredQueue::with_limits(None, None)
    }

    /// A queue with at most `size` pending values and `backlog` waiting getters.
    pub fn with_limits(size: Option<usize>, backlog: Option<usize>) -> Self {
        DeferredQueue {
            inner: Rc::new(RefCell::new(QueueState {
                pending: VecDeque::new(),
                waiting: Waiters::new(),
                size,
                backlog,
            })),
        }
    }

    /// Values waiting for a getter.
    pub fn len(&self) -> usize {
        self.inner.borrow().pending.len()
    }

    /// True if no value is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Getters waiting for a value.
    pub fn waiting(&self) -> usize {
        self.inner.borrow().waiting.line.len()
    }

    /// Gives `value` to the oldest waiting getter, or keeps it for the next one.
    pub fn put(&self, value: T) -> Result<(), QueueOverflow<T>> {
        let value = match hand_to_first(&self.inner, |s: &mut QueueState<T>| &mut s.waiting, value)
        {
            Ok(()) => return Ok(()),
            Err(v) => v,
        };
        let mut st = self.inner.borrow_mut();
        if st.size.is_some_and(|size| st.pending.len() >= size) {
            return Err(QueueOverflow(value));
        }
        st.pending.push_back(value);
        Ok(())
    }

    /// A Deferred of the oldest pending value: fired at once if there is one.
    pub fn get(&self) -> Result<Deferred<T>, QueueUnderflow> {
        let mut st = self.inner.borrow_mut();
        if let Some(v) = st.pending.pop_front() {
            drop(st);
            return Ok(succeed(v));
        }
        if st.backlog.is_some_and(|b| st.waiting.line.len() >= b) {
            return Err(QueueUnderflow);
        }
        let d = waiter(&self.inner, |s: &mut QueueState<T>| &mut s.waiting);
        st.waiting.line.push_back(d.clone());
        Ok(d)
    }
}

#[cfg(test)]
mod tests;
