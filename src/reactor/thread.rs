//! The one `Send` door into a reactor: [`ReactorHandle::call_from_thread`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::{Reactor, ReactorGone};

pub(crate) type ThreadCall = Box<dyn FnOnce(&Reactor) + Send>;

/// What other threads share with the reactor: a FIFO of calls and the waker.
pub(crate) struct Shared {
    queue: Mutex<Vec<ThreadCall>>,
    waker: mio::Waker,
    /// Set by a caller that queued work and woke the loop; cleared by the loop before it drains.
    /// Saves both the lock on every loop pass and a `write(2)` per call in a burst.
    wake_pending: AtomicBool,
    alive: AtomicBool,
}

impl Shared {
    pub(crate) fn new(waker: mio::Waker) -> Self {
        Shared {
            queue: Mutex::new(Vec::new()),
            waker,
            wake_pending: AtomicBool::new(false),
            alive: AtomicBool::new(true),
        }
    }

    /// Takes the queued calls if any were announced since the last take.
    pub(crate) fn take_calls(&self) -> Vec<ThreadCall> {
        if !self.wake_pending.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn close(&self) {
        self.alive.store(false, Ordering::Release);
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A `Send + Clone` handle to a reactor running on another thread.
///
/// ```
/// use torsion::Reactor;
///
/// let reactor = Reactor::builder().install_signal_handlers(false).build().unwrap();
/// let handle = reactor.handle();
/// std::thread::spawn(move || {
///     handle.call_from_thread(|r| { r.stop().unwrap(); }).unwrap();
/// });
/// reactor.run().unwrap();
/// ```
#[derive(Clone)]
pub struct ReactorHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ReactorHandle {
    /// Queues `f` to run on the reactor thread at the start of its next loop pass, and wakes
    /// the loop. Calls made from one thread run in the order they were made.
    pub fn call_from_thread<F>(&self, f: F) -> Result<(), ReactorGone>
    where
        F: FnOnce(&Reactor) + Send + 'static,
    {
        if !self.shared.alive.load(Ordering::Acquire) {
            return Err(ReactorGone);
        }
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(f));
        if !self.shared.wake_pending.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.shared.waker.wake() {
                tracing::error!("could not wake the reactor: {e}");
            }
        }
        Ok(())
    }

    /// Asks the reactor to stop, from any thread. Stopping a reactor that is not running is
    /// ignored.
    pub fn stop(&self) -> Result<(), ReactorGone> {
        self.call_from_thread(|r| {
            let _ = r.stop();
        })
    }
}

impl std::fmt::Debug for ReactorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReactorHandle").finish_non_exhaustive()
    }
}
