//! `call_later` and `DelayedCall` on a running reactor: order, cancel / reset / delay and
//! their errors, zero delays that are not re-entrant, and many timers at once.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use torsion::{DelayedCall, Reactor, TimerError};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

type Order = Rc<RefCell<Vec<u32>>>;

fn push(order: &Order, v: u32) -> impl FnOnce(&Reactor) + 'static {
    let o = order.clone();
    move |_| o.borrow_mut().push(v)
}

/// Timers fire in deadline order, whatever order they were scheduled in.
#[test]
fn timers_fire_in_deadline_order() {
    let r = reactor();
    let order: Order = Rc::default();
    for d in [50u32, 10, 40, 20, 30, 0, 5] {
        r.call_later(ms(d as u64), push(&order, d));
    }
    r.call_later(ms(80), |r| r.stop().unwrap());
    run(&r);
    assert_eq!(*order.borrow(), [0, 5, 10, 20, 30, 40, 50]);
}

/// Timers scheduled together from inside one callback fire by deadline, and those with the
/// same delay fire in the order they were scheduled.
#[test]
fn equal_delays_fire_in_scheduling_order() {
    const N: u32 = 3000;
    let r = reactor();
    let order: Rc<RefCell<Vec<(u64, u32)>>> = Rc::default();
    let o = order.clone();
    r.call_later(Duration::ZERO, move |r| {
        for i in 0..N {
            let d = [30u64, 10, 20][(i % 3) as usize];
            let o = o.clone();
            r.call_later(ms(d), move |_| o.borrow_mut().push((d, i)));
        }
        r.call_later(ms(100), |r| r.stop().unwrap());
    });
    run(&r);
    let got = order.borrow().clone();
    assert_eq!(got.len(), N as usize);
    let mut want = got.clone();
    want.sort(); // by delay, then by scheduling order
    assert!(got == want, "timers fired out of order");
}

/// Many timers with the very same delay, scheduled back to back, fire FIFO.
#[test]
fn same_delay_is_fifo() {
    let r = reactor();
    let order: Order = Rc::default();
    let o = order.clone();
    r.call_later(Duration::ZERO, move |r| {
        for i in 0..1000 {
            r.call_later(ms(1), push(&o, i));
        }
        for i in 1000..2000 {
            r.call_later(Duration::ZERO, push(&o, i));
        }
    });
    r.call_later(ms(50), |r| r.stop().unwrap());
    run(&r);
    let got = order.borrow().clone();
    let zeros: Vec<u32> = got.iter().copied().filter(|&v| v >= 1000).collect();
    let ones: Vec<u32> = got.iter().copied().filter(|&v| v < 1000).collect();
    assert_eq!(zeros, (1000..2000).collect::<Vec<_>>());
    assert_eq!(ones, (0..1000).collect::<Vec<_>>());
}

/// A timer never fires before its deadline (deadlines are not rounded to milliseconds in a
/// way that fires early).
#[test]
fn timers_never_fire_early() {
    let r = reactor();
    let late: Rc<RefCell<Vec<(Duration, Duration)>>> = Rc::default();
    for us in [100u64, 900, 1_500, 2_300, 7_700, 15_000, 33_333] {
        let want = Duration::from_micros(us);
        let start = Instant::now();
        let l = late.clone();
        r.call_later(want, move |_| l.borrow_mut().push((want, start.elapsed())));
    }
    r.call_later(ms(60), |r| r.stop().unwrap());
    run(&r);
    let late = late.borrow();
    assert_eq!(late.len(), 7);
    for (want, got) in late.iter() {
        assert!(got >= want, "a {want:?} timer fired after only {got:?}");
    }
}

/// `time()` is the deadline on the reactor's clock; `seconds()` is monotonic.
#[test]
fn time_is_the_deadline() {
    let r = reactor();
    let before = r.seconds();
    let call = r.call_later(Duration::from_secs(3), |_| {});
    let after = r.seconds();
    let t = call.time().expect("pending call has a time");
    assert!(t >= before + 3.0 - 1e-9 && t <= after + 3.0 + 1e-9, "{t}");
    assert!(r.seconds() >= after);
    call.cancel().unwrap();
    assert_eq!(call.time(), None);
}

/// Cancel: the call never runs; a second cancel, a reset or a delay are `AlreadyCancelled`.
#[test]
fn cancel_and_its_errors() {
    let r = reactor();
    let ran = Rc::new(Cell::new(false));
    let rn = ran.clone();
    let call = r.call_later(ms(10), move |_| rn.set(true));
    assert!(call.active());
    assert_eq!(call.cancel(), Ok(()));
    assert!(!call.active());
    assert_eq!(call.cancel(), Err(TimerError::AlreadyCancelled));
    assert_eq!(call.reset(ms(1)), Err(TimerError::AlreadyCancelled));
    assert_eq!(call.delay(1.0), Err(TimerError::AlreadyCancelled));
    r.call_later(ms(40), |r| r.stop().unwrap());
    run(&r);
    assert!(!ran.get(), "a cancelled call ran");
}

/// After a call ran: `cancel`, `reset` and `delay` are `AlreadyCalled`, and `active()` is
/// false. Inside its own call it already counts as called.
#[test]
fn called_and_its_errors_also_from_inside_the_call() {
    let r = reactor();
    let me: Rc<RefCell<Option<DelayedCall>>> = Rc::default();
    let inside: Rc<RefCell<Vec<Result<(), TimerError>>>> = Rc::default();
    let (m, ins) = (me.clone(), inside.clone());
    let call = r.call_later(ms(5), move |_| {
        let me = m.borrow().clone().unwrap();
        let mut ins = ins.borrow_mut();
        ins.push(me.cancel());
        ins.push(me.reset(ms(5)));
        ins.push(me.delay(0.1));
        ins.push(if me.active() {
            Ok(())
        } else {
            Err(TimerError::AlreadyCalled)
        });
    });
    *me.borrow_mut() = Some(call.clone());
    r.call_later(ms(30), |r| r.stop().unwrap());
    run(&r);
    assert_eq!(
        *inside.borrow(),
        [Err(TimerError::AlreadyCalled); 4],
        "inside its own call a DelayedCall must be already called"
    );
    assert!(!call.active());
    assert_eq!(call.cancel(), Err(TimerError::AlreadyCalled));
    assert_eq!(call.reset(ms(1)), Err(TimerError::AlreadyCalled));
    assert_eq!(call.delay(1.0), Err(TimerError::AlreadyCalled));
    assert_eq!(call.time(), None);
}

/// `reset` moves a call relative to now, earlier or later.
#[test]
fn reset_moves_the_call() {
    let r = reactor();
    let order: Order = Rc::default();
    let far = r.call_later(Duration::from_secs(60), push(&order, 1));
    let a = r.call_later(ms(10), push(&order, 2));
    r.call_later(ms(30), push(&order, 3));
    // 60 s → 20 ms: now before 3; 10 ms → 45 ms: now after 3.
    far.reset(ms(20)).unwrap();
    a.reset(ms(45)).unwrap();
    let t = far.time().unwrap();
    assert!((t - (r.seconds() + 0.020)).abs() < 0.005, "{t}");
    r.call_later(ms(80), |r| r.stop().unwrap());
    run(&r);
    assert_eq!(*order.borrow(), [1, 3, 2]);
}

/// `delay` moves a call relative to its own deadline: later with a positive number, earlier
/// with a negative one.
#[test]
fn delay_moves_the_call_relative_to_its_deadline() {
    let r = reactor();
    let order: Order = Rc::default();
    let a = r.call_later(ms(10), push(&order, 1));
    r.call_later(ms(30), push(&order, 2));
    let c = r.call_later(Duration::from_secs(10), push(&order, 3));
    let (ta, tc) = (a.time().unwrap(), c.time().unwrap());
    a.delay(0.040).unwrap(); // 10 ms → 50 ms
    c.delay(-9.980).unwrap(); // 10 s → 20 ms
    assert!((a.time().unwrap() - (ta + 0.040)).abs() < 1e-6);
    assert!((c.time().unwrap() - (tc - 9.980)).abs() < 1e-6);
    r.call_later(ms(90), |r| r.stop().unwrap());
    run(&r);
    assert_eq!(*order.borrow(), [3, 2, 1]);
}

/// Twisted's own example (§2.10): a call due at t+10, delayed by 3, is due at t+13; `reset(1)`
/// makes it now+1; `delay(-2)` puts it in the past, so it fires at once.
#[test]
fn delay_reset_delay_sequence() {
    let r = reactor();
    let fired_at = Rc::new(Cell::new(None::<Instant>));
    let f = fired_at.clone();
    let call = r.call_later(Duration::from_secs(10), move |_| {
        f.set(Some(Instant::now()))
    });
    let t0 = call.time().unwrap();
    call.delay(3.0).unwrap();
    assert!((call.time().unwrap() - (t0 + 3.0)).abs() < 1e-6);
    call.reset(Duration::from_secs(1)).unwrap();
    let now = r.seconds();
    assert!((call.time().unwrap() - (now + 1.0)).abs() < 0.01);
    call.delay(-2.0).unwrap();
    // Now in the past (a reactor's clock starts at 0, so the value may be clamped there).
    assert!(call.time().unwrap() <= now, "{:?}", call.time());
    let start = Instant::now();
    r.call_later(ms(100), |r| r.stop().unwrap());
    run(&r);
    let at = fired_at
        .get()
        .expect("a call moved into the past must fire");
    assert!(at - start < ms(50), "fired {:?} after start", at - start);
}

/// `call_later(ZERO)` from inside a callback runs after that callback returns, never inside.
#[test]
fn call_later_zero_is_not_reentrant() {
    let r = reactor();
    let log: Rc<RefCell<Vec<&'static str>>> = Rc::default();
    let l = log.clone();
    r.call_later(Duration::ZERO, move |r| {
        l.borrow_mut().push("outer start");
        let l2 = l.clone();
        r.call_later(Duration::ZERO, move |r| {
            l2.borrow_mut().push("inner");
            r.stop().unwrap();
        });
        l.borrow_mut().push("outer end");
    });
    run(&r);
    assert_eq!(*log.borrow(), ["outer start", "outer end", "inner"]);
}

/// A zero-delay call scheduled during a timer pass waits for the next pass: a call already
/// due before it still runs first, and a chain of zero-delay calls neither recurses nor
/// starves I/O-free progress.
#[test]
fn zero_delay_chain_runs_one_per_pass() {
    const CHAIN: u32 = 20_000;
    let r = reactor();
    let order: Rc<RefCell<Vec<&'static str>>> = Rc::default();
    let o = order.clone();
    r.call_later(Duration::ZERO, move |r| {
        o.borrow_mut().push("a");
        let o2 = o.clone();
        r.call_later(Duration::ZERO, move |_| o2.borrow_mut().push("b"));
    });
    r.call_later(Duration::ZERO, push_str(&order, "c"));
    // A long chain: if zero-delay calls ran inside their caller this would overflow the stack.
    let count = Rc::new(Cell::new(0u32));
    fn step(r: &Reactor, count: Rc<Cell<u32>>) {
        count.set(count.get() + 1);
        if count.get() == CHAIN {
            r.stop().unwrap();
        } else {
            r.call_later(Duration::ZERO, move |r| step(r, count));
        }
    }
    let c = count.clone();
    r.call_later(ms(5), move |r| step(r, c));
    run_for(&r, Duration::from_secs(30));
    assert_eq!(order.borrow()[..3], ["a", "c", "b"]);
    assert_eq!(count.get(), CHAIN);
}

fn push_str(
    order: &Rc<RefCell<Vec<&'static str>>>,
    v: &'static str,
) -> impl FnOnce(&Reactor) + 'static {
    let o = order.clone();
    move |_| o.borrow_mut().push(v)
}

/// A callback may cancel another timer that is due in the same pass: it does not run.
#[test]
fn cancel_a_due_timer_from_another_timer() {
    let r = reactor();
    let ran = Rc::new(Cell::new(false));
    let rn = ran.clone();
    let victim = Rc::new(RefCell::new(None::<DelayedCall>));
    let v = victim.clone();
    r.call_later(ms(5), move |_| {
        assert_eq!(v.borrow().as_ref().unwrap().cancel(), Ok(()));
    });
    *victim.borrow_mut() = Some(r.call_later(ms(5), move |_| rn.set(true)));
    r.call_later(ms(30), |r| r.stop().unwrap());
    // Let both become due before the loop looks at the timers.
    std::thread::sleep(ms(10));
    run(&r);
    assert!(
        !ran.get(),
        "a call cancelled by an earlier one in the same pass ran"
    );
}

/// 100,000 timers, 90% cancelled: the other 10,000 all fire, in deadline order, and no
/// cancelled one does.
#[test]
fn hundred_thousand_timers_ninety_percent_cancelled() {
    const N: u32 = 100_000;
    let r = reactor();
    let fired: Rc<RefCell<Vec<(u32, f64)>>> = Rc::default();
    let bad = Rc::new(Cell::new(0u32));
    let mut kept = Vec::new();
    let mut calls = Vec::with_capacity(N as usize);
    for i in 0..N {
        let delay = Duration::from_micros(1_000 + (i as u64 * 7919) % 200_000);
        let (f, b) = (fired.clone(), bad.clone());
        let call = r.call_later(delay, move |r| {
            if i % 10 == 0 {
                f.borrow_mut().push((i, r.seconds()));
            } else {
                b.set(b.get() + 1);
            }
        });
        calls.push(call);
    }
    for (i, call) in calls.iter().enumerate() {
        if i % 10 == 0 {
            kept.push((i as u32, call.time().unwrap()));
        } else {
            assert_eq!(call.cancel(), Ok(()));
        }
    }
    let n_kept = kept.len();
    let f = fired.clone();
    fn wait(r: &Reactor, f: Rc<RefCell<Vec<(u32, f64)>>>, n: usize) {
        if f.borrow().len() >= n {
            r.call_later(ms(20), |r| r.stop().unwrap());
        } else {
            r.call_later(ms(5), move |r| wait(r, f, n));
        }
    }
    wait(&r, f, n_kept);
    run_for(&r, Duration::from_secs(30));
    assert_eq!(bad.get(), 0, "cancelled timers fired");
    let fired = fired.borrow();
    assert_eq!(fired.len(), n_kept, "not every remaining timer fired");
    // Deadline order: sort the kept ones by (deadline, scheduling order) and compare.
    kept.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let want: Vec<u32> = kept.iter().map(|k| k.0).collect();
    let got: Vec<u32> = fired.iter().map(|k| k.0).collect();
    assert!(
        got == want,
        "the remaining timers fired out of deadline order"
    );
    for (i, at) in fired.iter() {
        let due = kept.iter().find(|k| k.0 == *i).unwrap().1;
        assert!(*at >= due - 1e-9, "timer {i} fired before its deadline");
    }
    assert!(calls.iter().all(|c| !c.active()));
}

/// Timers scheduled before `run` and a stop from a timer: the reactor stops promptly even
/// when far-future timers are pending.
#[test]
fn far_future_timers_do_not_delay_stop() {
    let r = reactor();
    let far = r.call_later(Duration::from_secs(3600), |_| panic!("must not run"));
    let start = Instant::now();
    r.call_later(ms(10), |r| r.stop().unwrap());
    run(&r);
    assert!(start.elapsed() < Duration::from_secs(2));
    // The reactor is gone; the call can never run.
    assert!(!far.active());
}

/// Timers spread from 0 to 1.5 s (across the levels of any hierarchical structure), some
/// moved with `reset` and `delay` and some cancelled, fire in deadline order and never before
/// their deadline.
#[test]
fn timers_across_ranges_with_moves_fire_in_order_and_never_early() {
    const N: u64 = 600;
    let r = reactor();
    let fired: Rc<RefCell<Vec<(u64, f64)>>> = Rc::default();
    let mut calls = Vec::new();
    // A small deterministic pseudo-random sequence.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..N {
        let delay = Duration::from_micros(next() % 1_500_000);
        let f = fired.clone();
        calls.push(r.call_later(delay, move |r| f.borrow_mut().push((i, r.seconds()))));
    }
    let mut cancelled = std::collections::HashSet::new();
    for (i, call) in calls.iter().enumerate() {
        match next() % 5 {
            0 => call
                .reset(Duration::from_micros(next() % 1_500_000))
                .unwrap(),
            1 => {
                let shift = (next() % 1_000_000) as f64 / 1e6 - 0.5;
                call.delay(shift).unwrap();
            }
            2 if i % 2 == 0 => {
                call.cancel().unwrap();
                cancelled.insert(i as u64);
            }
            _ => {}
        }
    }
    let mut due: Vec<(f64, u64)> = calls
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.time().map(|t| (t, i as u64)))
        .collect();
    due.sort_by(|a, b| a.0.total_cmp(&b.0));
    let expected = due.len();
    r.call_later(Duration::from_millis(2_200), |r| r.stop().unwrap());
    run(&r);
    let fired = fired.borrow();
    assert_eq!(fired.len(), expected, "not every live timer fired");
    assert!(fired.iter().all(|(i, _)| !cancelled.contains(i)));
    for (i, at) in fired.iter() {
        let t = due.iter().find(|d| d.1 == *i).unwrap().0;
        assert!(
            *at >= t - 1e-9,
            "timer {i} fired at {at}, before its deadline {t}"
        );
    }
    let got: Vec<f64> = fired
        .iter()
        .map(|(i, _)| due.iter().find(|d| d.1 == *i).unwrap().0)
        .collect();
    assert!(
        got.windows(2).all(|w| w[0] <= w[1]),
        "timers fired out of deadline order"
    );
}

/// Enormous delays neither panic nor disturb the timers around them.
#[test]
fn enormous_delays_are_harmless() {
    let r = reactor();
    let huge = r.call_later(Duration::MAX, |_| panic!("must not run"));
    let big = r.call_later(Duration::from_secs(100 * 365 * 24 * 3600), |_| {
        panic!("must not run")
    });
    assert!(huge.time().unwrap() >= big.time().unwrap());
    let ran = Rc::new(Cell::new(false));
    let rn = ran.clone();
    r.call_later(ms(5), move |_| rn.set(true));
    r.call_later(ms(20), |r| r.stop().unwrap());
    big.delay(1e12).unwrap();
    huge.reset(Duration::MAX).unwrap();
    run(&r);
    assert!(ran.get());
    assert!(!huge.active() && !big.active(), "the reactor stopped");
}

/// CPU time of this thread so far (the reactor runs on it; other tests run on other threads).
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[test]
fn sub_millisecond_deadlines_are_kept_without_spinning() {
    let reactor = reactor();
    let lateness = Rc::new(RefCell::new(Vec::new()));
    let start = std::time::Instant::now();
    // One deadline every 700 µs for about 0.35 s, each scheduled from the previous one.
    fn next(r: &Reactor, n: u32, start: std::time::Instant, late: Rc<RefCell<Vec<Duration>>>) {
        let due = Duration::from_micros(700) * (n + 1);
        let delay = due.saturating_sub(start.elapsed());
        r.call_later(delay, move |r| {
            late.borrow_mut().push(start.elapsed().saturating_sub(due));
            if n == 500 {
                r.stop().unwrap();
            } else {
                next(r, n + 1, start, late);
            }
        });
    }
    next(&reactor, 0, start, lateness.clone());
    let cpu_before = cpu_time();
    run(&reactor);
    let (wall, cpu) = (start.elapsed(), cpu_time() - cpu_before);
    let mut late = lateness.borrow().clone();
    late.sort();
    let p50 = late[late.len() / 2];
    assert!(p50 < Duration::from_micros(500), "median lateness {p50:?}");
    // A loop that spins until each deadline would use about 100% of a core.
    assert!(
        cpu < wall.mul_f64(0.3),
        "the reactor used {cpu:?} of CPU in {wall:?}: it spins"
    );
}
