//! Timer benchmark: schedule N timers with random delays, cancel 90% of them, fire the rest;
//! and how late a 200 µs timer fires.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::sys;

#[derive(
    ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash,
)]
pub enum TimerImpl {
    /// `Reactor::call_later`, `DelayedCall::cancel`.
    Torsion,
    /// tokio::time::sleep in a spawned task per timer, cancelled with `JoinHandle::abort`.
    TokioSleep,
    /// tokio_util::time::DelayQueue (tokio's timer wheel): insert, remove, poll_expired.
    TokioDelayQueue,
}

impl TimerImpl {
    pub const ALL: [TimerImpl; 3] = [
        TimerImpl::Torsion,
        TimerImpl::TokioSleep,
        TimerImpl::TokioDelayQueue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TimerImpl::Torsion => "torsion",
            TimerImpl::TokioSleep => "tokio sleep+abort",
            TimerImpl::TokioDelayQueue => "tokio DelayQueue",
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct TimerArgs {
    #[arg(long = "impl", value_enum)]
    pub imp: TimerImpl,
    /// Timers to schedule.
    #[arg(long, default_value_t = 1_000_000)]
    pub n: usize,
    /// Delays are uniform in [0, this).
    #[arg(long, default_value_t = 10_000)]
    pub max_delay_ms: u64,
    /// Samples of the 200 µs deadline check.
    #[arg(long, default_value_t = 200)]
    pub precision_samples: usize,
    /// Pin to this CPU (when the machine has two or more).
    #[arg(long)]
    pub core: Option<usize>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct TimerResult {
    pub ok: bool,
    pub error: Option<String>,
    pub scheduled: u64,
    pub cancelled: u64,
    pub fired: u64,
    pub schedule_ns: f64,
    pub cancel_ns: f64,
    /// Schedule and cancel together, per operation.
    pub schedule_cancel_ns: f64,
    /// CPU time of the firing phase per fired timer.
    pub fire_ns: f64,
    /// Lateness of a 200 µs timer past its deadline, µs.
    pub late_p50_us: f64,
    pub late_p99_us: f64,
    pub late_max_us: f64,
    /// Timers that fired before their deadline.
    pub early: u64,
}

struct Workload {
    delays: Vec<Duration>,
    cancel: Vec<bool>,
    n_cancel: u64,
}

fn workload(n: usize, max_delay_ms: u64) -> Workload {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let max_ns = max_delay_ms.max(1) * 1_000_000;
    let delays: Vec<Duration> = (0..n)
        .map(|_| Duration::from_nanos(next() % max_ns))
        .collect();
    let cancel: Vec<bool> = (0..n).map(|_| next() % 10 != 0).collect();
    let n_cancel = cancel.iter().filter(|c| **c).count() as u64;
    Workload {
        delays,
        cancel,
        n_cancel,
    }
}

pub fn run(args: &TimerArgs) -> TimerResult {
    if let Some(core) = args.core {
        sys::pin_to_core(core);
    }
    let w = workload(args.n, args.max_delay_ms);
    let mut r = match args.imp {
        TimerImpl::Torsion => torsion_timers(&w, args),
        TimerImpl::TokioSleep => tokio_sleep_timers(&w, args),
        TimerImpl::TokioDelayQueue => tokio_delay_queue(&w, args),
    };
    r.scheduled = w.delays.len() as u64;
    r.cancelled = w.n_cancel;
    let ops = (r.scheduled + r.cancelled).max(1) as f64;
    r.schedule_cancel_ns =
        (r.schedule_ns * r.scheduled as f64 + r.cancel_ns * r.cancelled as f64) / ops;
    let want = r.scheduled - r.cancelled;
    if r.error.is_none() && r.fired != want {
        r.error = Some(format!("{} timers fired, expected {want}", r.fired));
    }
    r.ok = r.error.is_none();
    r
}

fn lateness(r: &mut TimerResult, target: Duration, samples: &[(Instant, Instant)]) {
    let mut late: Vec<f64> = Vec::with_capacity(samples.len());
    for &(scheduled, fired) in samples {
        let due = scheduled + target;
        if fired < due {
            r.early += 1;
            late.push(0.0);
        } else {
            late.push((fired - due).as_secs_f64() * 1e6);
        }
    }
    late.sort_by(|a, b| a.total_cmp(b));
    let pick = |p: f64| {
        late.get(((late.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    r.late_p50_us = pick(0.5);
    r.late_p99_us = pick(0.99);
    r.late_max_us = late.last().copied().unwrap_or(0.0);
}

const PRECISION_DELAY: Duration = Duration::from_micros(200);

fn torsion_timers(w: &Workload, args: &TimerArgs) -> TimerResult {
    use torsion::Reactor;
    let mut r = TimerResult::default();
    let reactor = match Reactor::builder().install_signal_handlers(false).build() {
        Ok(re) => re,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    let fired = Rc::new(Cell::new(0u64));
    let remaining = w.delays.len() as u64 - w.n_cancel;
    let t = Instant::now();
    let mut calls = Vec::with_capacity(w.delays.len());
    for &d in &w.delays {
        let f = fired.clone();
        calls.push(reactor.call_later(d, move |re| {
            f.set(f.get() + 1);
            if f.get() == remaining {
                let _ = re.stop();
            }
        }));
    }
    r.schedule_ns = t.elapsed().as_nanos() as f64 / w.delays.len().max(1) as f64;
    let t = Instant::now();
    for (c, &cancel) in calls.iter().zip(&w.cancel) {
        if cancel {
            let _ = c.cancel();
        }
    }
    r.cancel_ns = t.elapsed().as_nanos() as f64 / w.n_cancel.max(1) as f64;
    drop(calls);
    // A bound on the whole run, should a timer never fire.
    let guard = reactor.call_later(
        Duration::from_millis(args.max_delay_ms) + Duration::from_secs(5),
        |re| {
            let _ = re.stop();
        },
    );
    if remaining == 0 {
        let _ = guard.reset(Duration::ZERO);
    }
    let cpu = sys::self_cpu();
    if let Err(e) = reactor.run() {
        r.error = Some(e.to_string());
        return r;
    }
    r.fire_ns = (sys::self_cpu() - cpu).as_nanos() as f64 / remaining.max(1) as f64;
    r.fired = fired.get();

    // Deadline check on a fresh reactor: a chain of 200 µs timers.
    let Ok(reactor) = Reactor::builder().install_signal_handlers(false).build() else {
        return r;
    };
    let samples = Rc::new(std::cell::RefCell::new(Vec::with_capacity(
        args.precision_samples,
    )));
    fn arm(
        re: &torsion::Reactor,
        samples: Rc<std::cell::RefCell<Vec<(Instant, Instant)>>>,
        n: usize,
    ) {
        let at = Instant::now();
        re.call_later(PRECISION_DELAY, move |re| {
            let now = Instant::now();
            samples.borrow_mut().push((at, now));
            if samples.borrow().len() >= n {
                let _ = re.stop();
            } else {
                arm(re, samples, n);
            }
        });
    }
    arm(&reactor, samples.clone(), args.precision_samples.max(1));
    let _ = reactor.run();
    lateness(&mut r, PRECISION_DELAY, &samples.borrow());
    r
}

/// Counters shared by the spawned timer tasks.
#[derive(Default)]
struct Counts {
    started: AtomicU64,
    fired: AtomicU64,
    /// Fired timers that the workload meant to cancel (they fired before their cancel).
    fired_flagged: AtomicU64,
    dropped: AtomicU64,
    waker: Mutex<Option<Waker>>,
    target: AtomicU64,
}

struct DropCount(Arc<Counts>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

fn tokio_sleep_timers(w: &Workload, args: &TimerArgs) -> TimerResult {
    let mut r = TimerResult::default();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    let n = w.delays.len() as u64;
    rt.block_on(async {
        let counts = Arc::new(Counts::default());
        let remaining = n - w.n_cancel;
        counts.target.store(remaining, Ordering::Relaxed);
        // Schedule: spawn, and let every task run once (its first poll registers the sleep).
        let t = Instant::now();
        let mut handles = Vec::with_capacity(w.delays.len());
        for (&d, &flagged) in w.delays.iter().zip(&w.cancel) {
            let c = counts.clone();
            handles.push(tokio::spawn(async move {
                let guard = DropCount(c);
                guard.0.started.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(d).await;
                let c = &guard.0;
                if flagged {
                    c.fired_flagged.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let fired = c.fired.fetch_add(1, Ordering::Relaxed) + 1;
                if fired == c.target.load(Ordering::Relaxed) {
                    if let Some(waker) = c.waker.lock().expect("waker lock").take() {
                        waker.wake();
                    }
                }
            }));
        }
        while counts.started.load(Ordering::Relaxed) < n {
            tokio::task::yield_now().await;
        }
        r.schedule_ns = t.elapsed().as_nanos() as f64 / n.max(1) as f64;
        // Cancel: abort, and let the runtime drop the aborted tasks.
        let t = Instant::now();
        for (h, &flagged) in handles.iter().zip(&w.cancel) {
            if flagged {
                h.abort();
            }
        }
        loop {
            // Once every aborted task is gone: dropped = fired + fired_flagged +
            // (n_cancel - fired_flagged).
            let fired = counts.fired.load(Ordering::Relaxed);
            if counts.dropped.load(Ordering::Relaxed) >= fired + w.n_cancel {
                break;
            }
            tokio::task::yield_now().await;
        }
        r.cancel_ns = t.elapsed().as_nanos() as f64 / w.n_cancel.max(1) as f64;
        drop(handles);
        // Fire the rest: sleep until the last one wakes us (bounded).
        let cpu = sys::self_cpu();
        let counts2 = counts.clone();
        let all_fired = std::future::poll_fn(move |cx| {
            if counts2.fired.load(Ordering::Relaxed) >= remaining {
                return Poll::Ready(());
            }
            *counts2.waker.lock().expect("waker lock") = Some(cx.waker().clone());
            if counts2.fired.load(Ordering::Relaxed) >= remaining {
                return Poll::Ready(());
            }
            Poll::Pending
        });
        let bound = Duration::from_millis(args.max_delay_ms) + Duration::from_secs(5);
        let _ = tokio::time::timeout(bound, all_fired).await;
        r.fire_ns = (sys::self_cpu() - cpu).as_nanos() as f64 / remaining.max(1) as f64;
        r.fired = counts.fired.load(Ordering::Relaxed);

        let mut samples = Vec::with_capacity(args.precision_samples);
        for _ in 0..args.precision_samples.max(1) {
            let at = Instant::now();
            tokio::time::sleep(PRECISION_DELAY).await;
            samples.push((at, Instant::now()));
        }
        lateness(&mut r, PRECISION_DELAY, &samples);
    });
    r
}

fn tokio_delay_queue(w: &Workload, args: &TimerArgs) -> TimerResult {
    use tokio_util::time::DelayQueue;
    let mut r = TimerResult::default();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    rt.block_on(async {
        let n = w.delays.len();
        let remaining = n as u64 - w.n_cancel;
        let mut q: DelayQueue<u32> = DelayQueue::with_capacity(n);
        let t = Instant::now();
        let keys: Vec<_> = w
            .delays
            .iter()
            .enumerate()
            .map(|(i, &d)| q.insert(i as u32, d))
            .collect();
        r.schedule_ns = t.elapsed().as_nanos() as f64 / n.max(1) as f64;
        let t = Instant::now();
        for (k, &cancel) in keys.iter().zip(&w.cancel) {
            if cancel {
                q.remove(k);
            }
        }
        r.cancel_ns = t.elapsed().as_nanos() as f64 / w.n_cancel.max(1) as f64;
        drop(keys);
        let cpu = sys::self_cpu();
        let bound = Duration::from_millis(args.max_delay_ms) + Duration::from_secs(5);
        let mut fired = 0u64;
        let _ = tokio::time::timeout(bound, async {
            while std::future::poll_fn(|cx| q.poll_expired(cx))
                .await
                .is_some()
            {
                fired += 1;
            }
        })
        .await;
        r.fire_ns = (sys::self_cpu() - cpu).as_nanos() as f64 / remaining.max(1) as f64;
        r.fired = fired;

        let mut samples = Vec::with_capacity(args.precision_samples);
        for _ in 0..args.precision_samples.max(1) {
            let at = Instant::now();
            q.insert(0, PRECISION_DELAY);
            let _ = std::future::poll_fn(|cx| q.poll_expired(cx)).await;
            samples.push((at, Instant::now()));
        }
        lateness(&mut r, PRECISION_DELAY, &samples);
    });
    r
}
