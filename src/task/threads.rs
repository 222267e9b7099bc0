//! Work on other threads, with results back on the reactor thread: [`defer_to_thread`] and
//! [`ReactorHandle::blocking_call_from_thread`].

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};

use crate::defer::{Deferred, Failure, FailureKind, TryDeferred, maybe_deferred};
use crate::{Reactor, ReactorGone, ReactorHandle};

/// Runs `f` on the reactor's thread pool and gives its outcome as a Deferred, fired on the
/// reactor thread on a later pass of its loop, never inside this call (Twisted's
/// `deferToThread`). A panic in `f` is a
/// [`FailureKind::Panicked`] failure. If the pool drops the job at shutdown, the Deferred
/// fails with [`FailureKind::ReactorGone`].
///
/// ```
/// use torsion::{task::defer_to_thread, Reactor};
///
/// let reactor = Reactor::builder().install_signal_handlers(false).build().unwrap();
/// let d = defer_to_thread(&reactor, || Ok(std::thread::current().id()));
/// let r = reactor.clone();
/// let reactor_thread = std::thread::current().id();
/// d.add_callback(move |worker| {
///     assert_ne!(worker, std::thread::current().id());
///     assert_eq!(std::thread::current().id(), reactor_thread);
///     r.stop().unwrap();
///     worker
/// });
/// reactor.run().unwrap();
/// assert!(d.take_result().unwrap().is_ok());
/// ```
pub fn defer_to_thread<T, F>(reactor: &Reactor, f: F) -> Deferred<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
        closed: false,
    }));
    let sender = Sender(slot.clone());
    reactor.call_in_thread(move || {
        let r = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(Failure::panicked(&*p)));
        sender.send(r);
    });
    reactor.spawn(Receiver {
        slot,
        polled: false,
    })
}

struct Slot<T> {
    value: Option<Result<T, Failure>>,
    waker: Option<Waker>,
    closed: bool,
}

/// The pool's end of a one-shot channel; dropping it unsent closes the channel.
struct Sender<T>(Arc<Mutex<Slot<T>>>);

impl<T> Sender<T> {
    fn send(self, r: Result<T, Failure>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).value = Some(r);
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
            s.closed = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

struct Receiver<T> {
    slot: Arc<Mutex<Slot<T>>>,
    polled: bool,
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, Failure>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The result always arrives on a later pass of the loop, as Twisted delivers it through
        // callFromThread, even when the job was done before the first poll.
        if !self.polled {
            self.polled = true;
            let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            s.waker = Some(cx.waker().clone());
            if s.value.is_some() || s.closed {
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = s.value.take() {
            return Poll::Ready(r);
        }
        if s.closed {
            return Poll::Ready(Err(Failure::with_kind(
                FailureKind::ReactorGone,
                ReactorGone,
            )));
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl ReactorHandle {
    /// From a thread other than the reactor's: runs `f` on the reactor thread, waits for its
    /// outcome (at once for a `Result`; when it fires for a Deferred, see [`TryDeferred`]) and
    /// returns it (Twisted's `blockingCallFromThread`).
    ///
    /// Fails with [`FailureKind::ReactorGone`] if the reactor is gone or drops the call (or
    /// the Deferred) without a result. Calling it from the reactor thread itself would wait
    /// forever, as in Twisted.
    ///
    /// ```
    /// use torsion::Reactor;
    ///
    /// let reactor = Reactor::builder().install_signal_handlers(false).build().unwrap();
    /// let handle = reactor.handle();
    /// let worker = std::thread::spawn(move || {
    ///     let n = handle.blocking_call_from_thread(|r| Ok(r.seconds() as u32 + 7)).unwrap();
    ///     handle.stop().unwrap();
    ///     n
    /// });
    /// reactor.run().unwrap();
    /// assert!(worker.join().unwrap() >= 7);
    /// ```
    pub fn blocking_call_from_thread<T, R, F>(&self, f: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        R: TryDeferred<T>,
        F: FnOnce(&Reactor) -> R + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.call_from_thread(move |r| {
            maybe_deferred(|| f(r)).on_result(move |result| {
                let _ = tx.send(result);
            });
        })
        .map_err(Failure::new)?;
        rx.recv()
            .unwrap_or_else(|_| Err(Failure::with_kind(FailureKind::ReactorGone, ReactorGone)))
    }
}
