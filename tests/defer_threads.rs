//! Threads and the reactor: defer_to_thread and blocking_call_from_thread.

use std::cell::Cell;
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use torsion::defer::{Deferred, Failure, FailureKind, gather_results};
use torsion::defer_to_thread;

mod common;
use common::{reactor, run_bounded, stop_when_done};

#[test]
fn results_arrive_on_the_reactor_thread() {
    let reactor = reactor();
    let me = thread::current().id();
    let seen_on = Rc::new(Cell::new(None));
    let jobs: Vec<Deferred<(thread::ThreadId, u32)>> = (0..25)
        .map(|i| {
            let s = seen_on.clone();
            let d = defer_to_thread(&reactor, move || {
                thread::sleep(Duration::from_millis(2));
                Ok((thread::current().id(), i))
            });
            d.add_callback(move |v| {
                s.set(Some(thread::current().id()));
                v
            });
            d
        })
        .collect();
    let all = gather_results(jobs, false);
    stop_when_done(&reactor, &all);
    run_bounded(&reactor);
    let results = all.take_result().unwrap().unwrap();
    assert_eq!(
        results.iter().map(|r| r.1).collect::<Vec<_>>(),
        (0..25).collect::<Vec<_>>()
    );
    assert!(
        results.iter().all(|r| r.0 != me),
        "the work ran on pool threads"
    );
    assert_eq!(
        seen_on.get(),
        Some(me),
        "callbacks ran on the reactor thread"
    );
}

#[test]
fn the_result_never_arrives_inside_the_call() {
    let reactor = reactor();
    let d = defer_to_thread(&reactor, || Ok(1));
    thread::sleep(Duration::from_millis(50));
    assert!(!d.called(), "delivered on a later pass, not synchronously");
    stop_when_done(&reactor, &d);
    run_bounded(&reactor);
    assert_eq!(d.take_result().unwrap().unwrap(), 1);
}

#[test]
fn failures_and_panics_in_threads_become_failures() {
    let reactor = reactor();
    let failed = defer_to_thread(&reactor, || Err::<(), _>(Failure::msg("thread said no")));
    let panicked = defer_to_thread(&reactor, || -> Result<(), Failure> {
        panic!("thread panic")
    });
    let both = gather_results(
        vec![
            failed.then(|r| Ok(r.unwrap_err().kind())),
            panicked.then(|r| Ok(r.unwrap_err().kind())),
        ],
        false,
    );
    stop_when_done(&reactor, &both);
    run_bounded(&reactor);
    assert_eq!(
        both.take_result().unwrap().unwrap(),
        vec![FailureKind::Other, FailureKind::Panicked]
    );
}

#[test]
fn spawned_tasks_can_await_thread_results() {
    let reactor = reactor();
    let r = reactor.clone();
    let d = reactor.spawn(async move {
        let a = defer_to_thread(&r, || Ok(20)).await?;
        let b = defer_to_thread(&r, move || Ok(a + 1)).await?;
        Ok(b * 2)
    });
    stop_when_done(&reactor, &d);
    run_bounded(&reactor);
    assert_eq!(d.take_result().unwrap().unwrap(), 42);
}

#[test]
fn blocking_call_from_thread_values_failures_and_deferreds() {
    let reactor = reactor();
    let handle = reactor.handle();
    let worker = thread::spawn(move || {
        let value = handle.blocking_call_from_thread(|_| Ok(7u8));
        let failure = handle.blocking_call_from_thread(|_| Err::<u8, _>(Failure::msg("no")));
        let later = handle.blocking_call_from_thread(|r| {
            torsion::task::defer_later(r, Duration::from_millis(5), || Ok("later"))
        });
        let on_reactor = handle
            .blocking_call_from_thread(|_| Ok(thread::current().id()))
            .unwrap();
        handle.stop().unwrap();
        (value, failure, later, on_reactor)
    });
    run_bounded(&reactor);
    let (value, failure, later, on_reactor) = worker.join().unwrap();
    assert_eq!(value.unwrap(), 7);
    assert_eq!(failure.unwrap_err().to_string(), "no");
    assert_eq!(later.unwrap(), "later");
    assert_eq!(on_reactor, thread::current().id());
}

#[test]
fn blocking_call_from_thread_after_the_reactor_is_gone_fails() {
    let reactor = reactor();
    let handle = reactor.handle();
    drop(reactor);
    let r = thread::spawn(move || handle.blocking_call_from_thread(|_| Ok(1)))
        .join()
        .unwrap();
    assert_eq!(r.unwrap_err().kind(), FailureKind::ReactorGone);
}
