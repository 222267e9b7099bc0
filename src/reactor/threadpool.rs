//! The reactor's thread pool (Twisted's `reactor.getThreadPool()`): at most `max` worker
//! threads, started lazily, joined at shutdown.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

pub(crate) type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
    stopping: bool,
}

#[derive(Default)]
struct Inner {
    queue: Mutex<Queue>,
    cond: Condvar,
}

/// Twisted's default maximum number of reactor threads.
pub(crate) const DEFAULT_MAX_THREADS: usize = 10;

pub(crate) struct ThreadPool {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
    max: usize,
}

impl ThreadPool {
    pub(crate) fn new(max: usize) -> Self {
        ThreadPool {
            inner: Arc::default(),
            threads: Vec::new(),
            max: max.max(1),
        }
    }

    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max.max(1);
    }

    pub(crate) fn submit(&mut self, job: Job) {
        let spawn = {
            let mut q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.stopping {
                tracing::warn!("thread pool is stopped; dropping a job");
                return;
            }
            q.jobs.push_back(job);
            if q.idle > 0 {
                self.inner.cond.notify_one();
                false
            } else {
                self.threads.len() < self.max
            }
        };
        if spawn {
            let inner = self.inner.clone();
            let n = self.threads.len();
            match std::thread::Builder::new()
                .name(format!("torsion-pool-{n}"))
                .spawn(move || worker(&inner))
            {
                Ok(h) => self.threads.push(h),
                Err(e) => tracing::error!("could not start a pool thread: {e}"),
            }
        }
    }

    /// Running jobs finish; queued ones are dropped (and logged).
    pub(crate) fn stop(&mut self) {
        let dropped = {
            let mut q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.stopping = true;
            let n = q.jobs.len();
            q.jobs.clear();
            n
        };
        if dropped > 0 {
            tracing::info!("thread pool stopping: dropped {dropped} queued job(s)");
        }
        self.inner.cond.notify_all();
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.stop();
    }
}

fn worker(inner: &Inner) {
    loop {
        let job = {
            let mut q = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if q.stopping {
                    return;
                }
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                q.idle += 1;
                q = inner.cond.wait(q).unwrap_or_else(|p| p.into_inner());
                q.idle -= 1;
            }
        };
        if let Err(p) = catch_unwind(AssertUnwindSafe(job)) {
            tracing::error!(
                "a job in the reactor thread pool panicked: {}",
                crate::reactor::panic_message(&*p)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_jobs_on_at_most_max_threads() {
        let mut pool = ThreadPool::new(3);
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..50 {
            let done = done.clone();
            let tx = tx.clone();
            pool.submit(Box::new(move || {
                done.fetch_add(1, Ordering::SeqCst);
                tx.send(()).unwrap();
            }));
        }
        for _ in 0..50 {
            rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        }
        assert!(pool.threads.len() <= 3);
        pool.stop();
        assert_eq!(done.load(Ordering::SeqCst), 50);
    }

    #[test]
    fn a_panicking_job_does_not_kill_the_pool() {
        let mut pool = ThreadPool::new(1);
        let (tx, rx) = std::sync::mpsc::channel();
        pool.submit(Box::new(|| panic!("boom")));
        pool.submit(Box::new(move || tx.send(7).unwrap()));
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap(),
            7
        );
    }
}
