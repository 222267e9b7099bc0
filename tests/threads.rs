//! Threads: `ReactorHandle::call_from_thread` from many threads, `call_in_thread`, and
//! several reactors running at once on their own threads.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::*;
use torsion::ReactorGone;

/// 4 threads × 10,000 calls: every call runs, and the calls of each thread run in the order
/// that thread made them.
#[test]
fn call_from_thread_from_four_threads_runs_all_in_order_per_thread() {
    const THREADS: usize = 4;
    const CALLS: u32 = 10_000;
    let r = reactor();
    let seen: Arc<Mutex<Vec<(usize, u32)>>> = Arc::default();
    let total = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (h, seen, total, start) = (r.handle(), seen.clone(), total.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for i in 0..CALLS {
                    let (seen, total) = (seen.clone(), total.clone());
                    h.call_from_thread(move |r| {
                        seen.lock().unwrap().push((t, i));
                        if total.fetch_add(1, Ordering::SeqCst) + 1 == THREADS * CALLS as usize {
                            r.stop().unwrap();
                        }
                    })
                    .expect("the reactor is alive");
                }
            })
        })
        .collect();
    run_for(&r, Duration::from_secs(30));
    for t in threads {
        t.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), THREADS * CALLS as usize);
    for t in 0..THREADS {
        let mine: Vec<u32> = seen.iter().filter(|s| s.0 == t).map(|s| s.1).collect();
        assert!(
            mine == (0..CALLS).collect::<Vec<_>>(),
            "thread {t}'s calls ran out of order or not all ran"
        );
    }
}

/// A call from another thread wakes a reactor that has nothing else to do.
#[test]
fn call_from_thread_wakes_an_idle_reactor() {
    let r = reactor();
    let h = r.handle();
    let latency: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let l = latency.clone();
    let t = std::thread::spawn(move || {
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(30));
            let sent = Instant::now();
            let l = l.clone();
            h.call_from_thread(move |_| l.lock().unwrap().push(sent.elapsed()))
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(30));
        h.stop().unwrap();
    });
    run(&r);
    t.join().unwrap();
    let latency = latency.lock().unwrap();
    assert_eq!(latency.len(), 5);
    for d in latency.iter() {
        assert!(
            *d < Duration::from_millis(100),
            "a call from a thread waited {d:?} to run"
        );
    }
}

/// Calls made before `run` run once it starts; after the reactor is gone,
/// `call_from_thread` says so instead of queueing forever.
#[test]
fn call_from_thread_before_run_and_after_the_reactor_is_gone() {
    let r = reactor();
    let h = r.handle();
    let ran = Arc::new(AtomicUsize::new(0));
    let ran2 = ran.clone();
    std::thread::spawn(move || {
        h.call_from_thread(move |r| {
            ran2.fetch_add(1, Ordering::SeqCst);
            r.stop().unwrap();
        })
        .unwrap();
    })
    .join()
    .unwrap();
    let h = r.handle();
    run(&r);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    drop(r);
    let res = std::thread::spawn(move || h.call_from_thread(|_| {}))
        .join()
        .unwrap();
    assert_eq!(res, Err(ReactorGone));
}

/// `call_in_thread` runs on the pool, off the reactor thread; results come back with
/// `call_from_thread`.
#[test]
fn call_in_thread_and_back() {
    const JOBS: u64 = 20;
    let r = reactor();
    let reactor_thread = std::thread::current().id();
    let results: Arc<Mutex<Vec<u64>>> = Arc::default();
    let pool_threads: Arc<Mutex<Vec<std::thread::ThreadId>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    for n in 0..JOBS {
        let h = r.handle();
        let (results, pool_threads, done) = (results.clone(), pool_threads.clone(), done.clone());
        r.call_in_thread(move || {
            pool_threads
                .lock()
                .unwrap()
                .push(std::thread::current().id());
            let sum: u64 = (0..=n).sum();
            h.call_from_thread(move |r| {
                assert_eq!(std::thread::current().id(), reactor_thread);
                results.lock().unwrap().push(sum);
                if done.fetch_add(1, Ordering::SeqCst) + 1 == JOBS as usize {
                    r.stop().unwrap();
                }
            })
            .unwrap();
        });
    }
    run(&r);
    let mut got = results.lock().unwrap().clone();
    got.sort();
    let want: Vec<u64> = (0..JOBS).map(|n| (0..=n).sum()).collect();
    assert_eq!(got, want);
    assert!(
        pool_threads
            .lock()
            .unwrap()
            .iter()
            .all(|t| *t != reactor_thread),
        "call_in_thread ran on the reactor thread"
    );
}

/// Two reactors, each on its own thread, run at the same time: each serves its own echo
/// listener to its own client, with its own timers.
#[test]
fn two_reactors_on_two_threads_at_once() {
    let running = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..2)
        .map(|i| {
            let running = running.clone();
            std::thread::spawn(move || {
                let r = reactor();
                let addr = listen(&r, echo_factory());
                let log = new_log();
                let l = log.clone();
                let msg = format!("reactor {i}");
                let m = msg.clone();
                r.call_when_running(move |r| {
                    // Both loops are running now; then each talks to its own server.
                    running.fetch_add(1, Ordering::SeqCst);
                    let t0 = Instant::now();
                    while running.load(Ordering::SeqCst) < 2 {
                        assert!(t0.elapsed() < Duration::from_secs(5), "the other never ran");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    r.connect_tcp(
                        "127.0.0.1",
                        addr.port(),
                        factory(move || {
                            let m = m.clone();
                            Rec::new(&l)
                                .on_made(move |cx| cx.transport().write(m.as_bytes()))
                                .on_data(|cx, _| {
                                    let h = cx.handle();
                                    cx.reactor()
                                        .call_later(Duration::from_millis(20), move |r| {
                                            h.lose_connection();
                                            r.stop().unwrap();
                                        });
                                })
                                .boxed()
                        }),
                    );
                });
                run(&r);
                (msg, received(&log))
            })
        })
        .collect();
    for t in threads {
        let (msg, got) = join(t);
        assert_eq!(got, msg.as_bytes());
    }
}

/// A new reactor works after an earlier one on the same thread stopped.
#[test]
fn a_new_reactor_after_the_last_one_stopped() {
    for round in 0..3 {
        let r = reactor();
        let addr = listen(&r, echo_factory());
        let client = client_then_stop(&r, move || {
            let mut s = connect(addr);
            echo_round_trip(&mut s, format!("round {round}").as_bytes())
        });
        run(&r);
        assert_eq!(join(client), format!("round {round}").as_bytes());
    }
}
