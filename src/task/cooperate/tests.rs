//! `Cooperator` on `testing::Clock` (one tick per millisecond), and the reactor's own.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::Reactor;
use crate::defer::FailureKind;
use crate::testing::Clock as TestClock;

const MS: Duration = Duration::from_millis(1);

type Log = Rc<RefCell<Vec<String>>>;

/// A task that logs `name{i}` at each of its `n` steps.
fn steps(log: &Log, name: &'static str, n: usize) -> impl Iterator<Item = ()> + 'static {
    let log = log.clone();
    (0..n).map(move |i| log.borrow_mut().push(format!("{name}{i}")))
}

fn coop(per_tick: usize) -> (TestClock, Cooperator<TestClock>) {
    let clock = TestClock::new();
    let c = Cooperator::new(clock.clone())
        .tick_delay(MS)
        .steps_per_tick(per_tick);
    (clock, c)
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.borrow_mut())
}

#[test]
fn ticks_round_robin_the_tasks() {
    let (clock, c) = coop(3);
    let log: Log = Rc::default();
    let a = c.coiterate(steps(&log, "a", 3));
    let b = c.coiterate(steps(&log, "b", 2));
    assert!(take(&log).is_empty(), "nothing runs before the first tick");
    clock.advance(MS);
    assert_eq!(take(&log), ["a0", "b0", "a1"]);
    clock.advance(MS);
    assert_eq!(take(&log), ["b1", "a2"]);
    // b ended on its third turn (its iterator was exhausted), a then too.
    assert!(b.take_result().unwrap().is_ok());
    clock.advance(MS);
    assert!(a.take_result().unwrap().is_ok());
    assert!(take(&log).is_empty());
    assert!(
        clock.calls().is_empty(),
        "no tick while nothing is runnable"
    );
}

#[test]
fn a_task_added_during_a_tick_joins_the_rotation() {
    let (clock, c) = coop(4);
    let log: Log = Rc::default();
    let (c2, log2) = (c.clone(), log.clone());
    let mut spawned = false;
    c.cooperate(steps(&log, "a", 3).map(move |()| {
        if !spawned {
            spawned = true;
            c2.cooperate(steps(&log2, "b", 2));
        }
    }));
    clock.advance(MS);
    assert_eq!(take(&log), ["a0", "b0", "a1", "b1"]);
}

#[test]
fn each_tick_runs_until_its_time_slice_is_used() {
    let clock = TestClock::new();
    let c = Cooperator::new(clock.clone())
        .tick_delay(MS)
        .slice(Duration::from_millis(10));
    let n = Rc::new(Cell::new(0));
    let n2 = n.clone();
    c.cooperate(std::iter::repeat_with(move || {
        n2.set(n2.get() + 1);
        std::thread::sleep(Duration::from_millis(4));
    }));
    clock.advance(MS);
    // 4, 8, 12 ms: the third step uses up the slice (fewer on a slow machine).
    let first = n.get();
    assert!((1..=3).contains(&first), "{first} steps in one tick");
    clock.advance(MS);
    assert!(n.get() > first, "the next tick goes on");
    c.stop();
}

#[test]
fn a_zero_slice_runs_one_step_per_tick() {
    let clock = TestClock::new();
    let c = Cooperator::new(clock.clone())
        .tick_delay(MS)
        .slice(Duration::ZERO);
    let log: Log = Rc::default();
    c.cooperate(steps(&log, "a", 5));
    c.cooperate(steps(&log, "b", 5));
    clock.advance(MS);
    assert_eq!(take(&log), ["a0"]);
    clock.advance(MS);
    assert_eq!(take(&log), ["b0"]);
}

#[test]
fn the_default_tick_runs_everything_in_one_advance() {
    let clock = TestClock::new();
    let c = Cooperator::new(clock.clone());
    let log: Log = Rc::default();
    let done = c.coiterate(steps(&log, "a", 1000));
    clock.advance(Duration::ZERO);
    assert_eq!(log.borrow().len(), 1000);
    assert!(done.take_result().unwrap().is_ok());
}

#[test]
fn a_yielded_deferred_pauses_only_that_task() {
    let (clock, c) = coop(10);
    let log: Log = Rc::default();
    let gate = Deferred::<()>::new();
    let (g, l) = (gate.clone(), log.clone());
    let mut i = 0;
    let a = c.cooperate(std::iter::from_fn(move || {
        i += 1;
        l.borrow_mut().push(format!("a{i}"));
        match i {
            1 => Some(Step::Wait(g.clone())),
            2 => Some(Step::Continue),
            _ => None,
        }
    }));
    c.cooperate(steps(&log, "b", 3));
    clock.advance(MS);
    assert_eq!(take(&log), ["a1", "b0", "b1", "b2"]);
    assert_eq!(a.pause(), Ok(()), "a waiting task can still be paused");
    assert_eq!(a.resume(), Ok(()));
    clock.advance(MS);
    assert!(take(&log).is_empty(), "a waits for its Deferred");
    gate.callback(()).unwrap();
    clock.advance(MS);
    assert_eq!(take(&log), ["a2", "a3"]);
    assert_eq!(a.completion(), Some(TaskError::TaskDone));
}

#[test]
fn a_failed_deferred_fails_the_task_with_that_failure() {
    let (clock, c) = coop(10);
    let gate = Deferred::<()>::new();
    let g = gate.clone();
    let task = c.cooperate(std::iter::once(Step::Wait(g)));
    let done = task.when_done();
    clock.advance(MS);
    let f = Failure::msg("gate broke");
    gate.errback(f.clone()).unwrap();
    assert!(done.take_result().unwrap().unwrap_err().ptr_eq(&f));
    assert_eq!(task.completion(), Some(TaskError::TaskFailed));
    assert_eq!(task.pause(), Err(TaskError::TaskFailed));
    assert_eq!(task.stop(), Err(TaskError::TaskFailed));
    // Asked after the end: already failed with the same failure.
    assert!(
        task.when_done()
            .take_result()
            .unwrap()
            .unwrap_err()
            .ptr_eq(&f)
    );
}

#[test]
fn errors_and_panics_in_a_step_fail_the_task() {
    let (clock, c) = coop(10);
    let failing = c.cooperate(vec![Ok(()), Err(Failure::msg("bad step")), Ok(())]);
    let panicking = c.cooperate(std::iter::repeat_with(|| -> () { panic!("step panicked") }));
    let (f1, f2) = (failing.when_done(), panicking.when_done());
    clock.advance(MS);
    assert_eq!(
        f1.take_result().unwrap().unwrap_err().to_string(),
        "bad step"
    );
    let p = f2.take_result().unwrap().unwrap_err();
    assert_eq!(p.kind(), FailureKind::Panicked);
    assert_eq!(failing.completion(), Some(TaskError::TaskFailed));
    assert_eq!(panicking.completion(), Some(TaskError::TaskFailed));
}

#[test]
fn pause_and_resume_are_counted() {
    let (clock, c) = coop(1);
    let log: Log = Rc::default();
    let t = c.cooperate(steps(&log, "a", 3));
    assert_eq!(t.resume(), Err(TaskError::NotPaused));
    t.pause().unwrap();
    t.pause().unwrap();
    clock.advance(MS);
    assert!(take(&log).is_empty());
    t.resume().unwrap();
    clock.advance(MS);
    assert!(take(&log).is_empty(), "still paused once");
    t.resume().unwrap();
    clock.advance(MS);
    assert_eq!(take(&log), ["a0"]);
    assert_eq!(t.resume(), Err(TaskError::NotPaused));
}

#[test]
fn stop_ends_the_task_and_drops_its_iterator() {
    let (clock, c) = coop(1);
    let alive = Rc::new(());
    let held = alive.clone();
    let t = c.cooperate(std::iter::repeat_with(move || {
        let _ = &held;
    }));
    let (d1, d2) = (t.when_done(), t.when_done());
    clock.advance(MS);
    t.stop().unwrap();
    assert_eq!(Rc::strong_count(&alive), 1, "the iterator is gone");
    for d in [d1, d2] {
        let f = d.take_result().unwrap().unwrap_err();
        assert_eq!(f.downcast_ref::<TaskError>(), Some(&TaskError::TaskStopped));
    }
    assert_eq!(t.stop(), Err(TaskError::TaskStopped));
    assert_eq!(t.pause(), Err(TaskError::TaskStopped));
    assert!(clock.calls().is_empty());
}

#[test]
fn a_task_can_stop_itself_from_its_own_step() {
    let (clock, c) = coop(10);
    let me: Rc<RefCell<Option<CooperativeTask>>> = Rc::default();
    let m = me.clone();
    let steps_run = Rc::new(Cell::new(0));
    let s = steps_run.clone();
    let t = c.cooperate(std::iter::repeat_with(move || {
        s.set(s.get() + 1);
        if s.get() == 2 {
            m.borrow().as_ref().unwrap().stop().unwrap();
        }
    }));
    *me.borrow_mut() = Some(t.clone());
    clock.advance(MS);
    assert_eq!(steps_run.get(), 2);
    assert_eq!(t.completion(), Some(TaskError::TaskStopped));
    me.borrow_mut().take();
}

#[test]
fn done_tasks_refuse_pause_and_stop() {
    let (clock, c) = coop(10);
    let t = c.cooperate(std::iter::empty::<()>());
    clock.advance(MS);
    assert_eq!(t.completion(), Some(TaskError::TaskDone));
    assert_eq!(t.pause(), Err(TaskError::TaskDone));
    assert_eq!(t.stop(), Err(TaskError::TaskDone));
    assert!(t.when_done().take_result().unwrap().is_ok());
}

#[test]
fn stopping_the_cooperator_fails_every_task_with_scheduler_stopped() {
    let (clock, c) = coop(1);
    let log: Log = Rc::default();
    let running = c.cooperate(steps(&log, "a", 100));
    let paused = c.cooperate(steps(&log, "b", 100));
    paused.pause().unwrap();
    let waiting = c.cooperate(std::iter::once(Step::Wait(Deferred::new())));
    let ds = [&running, &paused, &waiting].map(|t| t.when_done());
    clock.advance(MS); // a0
    clock.advance(MS); // the waiting task pauses on its Deferred
    c.stop();
    assert!(!c.running());
    for d in ds {
        let f = d.take_result().unwrap().unwrap_err();
        assert_eq!(
            f.downcast_ref::<TaskError>(),
            Some(&TaskError::SchedulerStopped)
        );
    }
    assert_eq!(running.pause(), Err(TaskError::SchedulerStopped));
    assert!(clock.calls().is_empty(), "the next tick was cancelled");
    // New tasks are refused the same way.
    let late = c.cooperate(steps(&log, "c", 1));
    assert_eq!(late.completion(), Some(TaskError::SchedulerStopped));
    let f = late.when_done().take_result().unwrap().unwrap_err();
    assert_eq!(
        f.downcast_ref::<TaskError>(),
        Some(&TaskError::SchedulerStopped)
    );
    // Resuming the paused one does not bring it back.
    paused.resume().unwrap();
    clock.advance(MS);
    assert_eq!(take(&log), ["a0"]);
}

#[test]
fn steps_convert_from_what_iterators_yield() {
    assert!(matches!(Step::from(()), Step::Continue));
    assert!(matches!(Step::from(None::<Deferred<()>>), Step::Continue));
    assert!(matches!(Step::from(Some(Deferred::new())), Step::Wait(_)));
    assert!(matches!(Step::from(Deferred::new()), Step::Wait(_)));
    assert!(matches!(
        Step::from(Ok::<_, Failure>(Deferred::new())),
        Step::Wait(_)
    ));
    assert!(matches!(
        Step::from(Err::<(), _>(Failure::msg("x"))),
        Step::Fail(_)
    ));
}

#[test]
fn the_reactors_cooperator_runs_tasks_and_stops_at_shutdown() {
    let reactor = Reactor::builder()
        .install_signal_handlers(false)
        .build()
        .unwrap();
    let c = reactor.cooperator();
    assert!(Rc::ptr_eq(&c.coop, &reactor.cooperator().coop));
    let count = Rc::new(Cell::new(0u32));
    let n = count.clone();
    let done = coiterate(&reactor, (0..10_000).map(move |_| n.set(n.get() + 1)));
    let forever = cooperate(&reactor, std::iter::repeat(()));
    let stop = reactor.clone();
    done.add_callback(move |()| {
        stop.call_later(Duration::from_millis(5), |r| r.stop().unwrap());
    });
    reactor.run().unwrap();
    assert_eq!(count.get(), 10_000);
    assert_eq!(forever.completion(), Some(TaskError::SchedulerStopped));
    assert!(!c.running());
}
