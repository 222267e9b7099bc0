//! A [`Deferred`] is a [`Future`]: `d.await` gives its result.
//!
//! Awaiting adds one step at the end of the chain that moves the result out and wakes the
//! awaiting tasks, so the result counts as handled (an awaited failure is not logged). The other
//! direction, a future becoming a Deferred, is [`Reactor::spawn`](crate::Reactor::spawn).

use std::cell::RefCell;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use super::callback::Callback;
use super::deferred::{Chain, Deferred, Erased, Outcome};
use super::failure::Failure;

thread_local! {
    /// The last pending Deferred a task awaited during its current poll.
    static AWAITED: RefCell<Option<Weak<dyn Erased>>> = const { RefCell::new(None) };
}

/// The Deferred a task was waiting on when it last returned `Pending`; cancelling the task
/// cancels it, as Twisted does for the Deferred an `inlineCallbacks` generator waits on.
pub(crate) struct Awaited(Weak<dyn Erased>);

impl Awaited {
    pub(crate) fn cancel(self) {
        if let Some(d) = self.0.upgrade() {
            d.cancel();
        }
    }
}

/// Forgets what an earlier poll awaited; call before polling a task.
pub(crate) fn clear_awaited() {
    let _ = AWAITED.try_with(|a| a.borrow_mut().take());
}

/// What the poll that just ended awaited last, if anything.
pub(crate) fn take_awaited() -> Option<Awaited> {
    AWAITED
        .try_with(|a| a.borrow_mut().take())
        .ok()
        .flatten()
        .map(Awaited)
}

fn deliver<T: 'static>(chain: &Weak<Chain<T>>, r: Result<T, Failure>) {
    let Some(chain) = chain.upgrade() else { return };
    let wakers = chain.with_await(|a| {
        a.output = Some(r);
        a.delivered = true;
        mem::take(&mut a.wakers)
    });
    for w in wakers {
        w.wake();
    }
}

impl<T: 'static> Future for Deferred<T> {
    type Output = Result<T, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.chain();
        if !inner.await_registered() {
            if let Some(r) = inner.take_ready() {
                return Poll::Ready(r);
            }
            inner.with_await(|a| a.wakers.push(cx.waker().clone()));
            let weak = Rc::downgrade(inner);
            inner.push(Callback::new(move |r| {
                deliver(&weak, r);
                Outcome::Taken
            }));
        }
        let out = inner.with_await(|a| {
            if let Some(r) = a.output.take() {
                return Some(r);
            }
            if a.delivered {
                return Some(Err(Failure::consumed()));
            }
            if !a.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                a.wakers.push(cx.waker().clone());
            }
            None
        });
        match out {
            Some(r) => Poll::Ready(r),
            None => {
                let weak: Weak<dyn Erased> = Rc::downgrade(inner) as Weak<Chain<T>>;
                let _ = AWAITED.try_with(|a| *a.borrow_mut() = Some(weak));
                Poll::Pending
            }
        }
    }
}
