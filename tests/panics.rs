//! Panic isolation: a panic in user code is caught at the callback boundary, that
//! connection is aborted (its `connection_lost` still runs, with `Reason::Panicked`), and the
//! reactor goes on serving everyone else.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::Duration;

use common::*;
use torsion::{Phase, Reason};

/// An echo server whose protocol panics when it reads "boom".
fn fragile_echo(logs: &Rc<RefCell<Vec<Log>>>) -> std::rc::Rc<impl torsion::ClientFactory> {
    let ls = logs.clone();
    factory(move || {
        let log = new_log();
        ls.borrow_mut().push(log.clone());
        Rec::new(&log)
            .on_data(|cx, d| {
                if d.windows(4).any(|w| w == b"boom") {
                    panic!("boom in data_received");
                }
                cx.transport().write(d);
            })
            .boxed()
    })
}

/// One connection's protocol panics on an input: that connection gets `connection_lost`
/// (`Panicked`) once and its peer sees it closed, while another connection keeps being served
/// and new ones are accepted.
#[test]
fn panic_in_data_received_only_drops_that_connection() {
    let r = reactor();
    let logs: Rc<RefCell<Vec<Log>>> = Rc::default();
    let addr = listen(&r, fragile_echo(&logs));
    let client = client_then_stop(&r, move || {
        let mut steady = connect(addr);
        assert_eq!(echo_round_trip(&mut steady, b"before"), b"before");
        let mut victim = connect(addr);
        assert_eq!(echo_round_trip(&mut victim, b"fine"), b"fine");
        victim.write_all(b"boom").unwrap();
        let (rest, err) = read_until_closed(&mut victim);
        assert!(rest.is_empty(), "{rest:?}");
        if let Some(e) = &err {
            assert!(is_reset(e), "unexpected error {e}");
        }
        assert_eq!(echo_round_trip(&mut steady, b"after"), b"after");
        let mut fresh = connect(addr);
        assert_eq!(echo_round_trip(&mut fresh, b"new"), b"new");
        assert_eq!(echo_round_trip(&mut steady, b"still"), b"still");
    });
    run(&r);
    join(client);
    let logs = logs.borrow();
    assert_eq!(logs.len(), 3);
    let victim = check_lifecycle(&logs[1]);
    match victim {
        Reason::Panicked(msg) => assert!(msg.contains("boom in data_received"), "{msg}"),
        other => panic!("the panicking connection must get Panicked, got {other:?}"),
    }
    // The others were open until shutdown.
    for i in [0, 2] {
        let events = logs[i].borrow();
        let lost: Vec<_> = events.iter().filter(|e| matches!(e, Ev::Lost(_))).collect();
        assert!(
            lost.len() <= 1
                && !lost
                    .iter()
                    .any(|e| matches!(e, Ev::Lost(Reason::Panicked(_)))),
            "{events:?}"
        );
    }
}

/// A panic in a server's `connection_made` drops that connection (its `connection_lost` runs)
/// and the listener keeps serving.
#[test]
fn panic_in_server_connection_made_drops_the_connection() {
    let r = reactor();
    let logs: Rc<RefCell<Vec<Log>>> = Rc::default();
    let n = Rc::new(Cell::new(0));
    let (ls, n2) = (logs.clone(), n.clone());
    let addr = listen(
        &r,
        factory(move || {
            let log = new_log();
            ls.borrow_mut().push(log.clone());
            n2.set(n2.get() + 1);
            let first = n2.get() == 1;
            Rec::new(&log)
                .on_made(move |_| {
                    if first {
                        panic!("boom in connection_made");
                    }
                })
                .on_data(|cx, d| cx.transport().write(d))
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let (data, err) = match connect_or_reset(addr) {
            Some(mut dropped) => read_until_closed(&mut dropped),
            None => (Vec::new(), None),
        };
        if let Some(e) = &err {
            assert!(is_reset(e), "unexpected error {e}");
        }
        let mut ok = connect(addr);
        let back = echo_round_trip(&mut ok, b"next one works");
        (data, back)
    });
    run(&r);
    let (data, back) = join(client);
    assert!(data.is_empty(), "{data:?}");
    assert_eq!(back, b"next one works");
    let logs = logs.borrow();
    let reason = check_lifecycle(&logs[0]);
    assert!(matches!(reason, Reason::Panicked(_)), "{reason:?}");
}

/// A panic in a client's `connection_made`: the connection is dropped, `connection_lost`
/// gets `Panicked`, and the factory's `client_connection_lost` still runs.
#[test]
fn panic_in_client_connection_made() {
    let r = reactor();
    let server_log = new_log();
    let sl = server_log.clone();
    let addr = listen(&r, factory(move || Rec::new(&sl).boxed()));
    let log = new_log();
    let l = log.clone();
    let h = r.handle();
    struct F(Log, torsion::ReactorHandle, Rc<RefCell<Vec<Reason>>>);
    impl torsion::Factory for F {
        fn build_protocol(&self, _: &torsion::Address) -> Option<Box<dyn torsion::Protocol>> {
            Some(
                Rec::new(&self.0)
                    .on_made(|_| panic!("boom in client connection_made"))
                    .boxed(),
            )
        }
    }
    impl torsion::ClientFactory for F {
        fn client_connection_lost(&self, _: &torsion::Connector, reason: Reason) {
            self.2.borrow_mut().push(reason);
            let _ = self.1.stop();
        }
    }
    let ccl: Rc<RefCell<Vec<Reason>>> = Rc::default();
    r.connect_tcp("127.0.0.1", addr.port(), Rc::new(F(l, h, ccl.clone())));
    run(&r);
    let reason = check_lifecycle(&log);
    assert!(matches!(reason, Reason::Panicked(_)), "{reason:?}");
    let ccl = ccl.borrow();
    assert_eq!(ccl.len(), 1);
    assert!(matches!(ccl[0], Reason::Panicked(_)), "{ccl:?}");
}

/// A panic inside `connection_lost` is logged; the reactor carries on.
#[test]
fn panic_in_connection_lost_is_contained() {
    let r = reactor();
    let addr = listen(
        &r,
        factory(|| {
            let log = new_log();
            Rec::new(&log)
                .on_lost(|_, _| panic!("boom in connection_lost"))
                .on_data(|cx, d| cx.transport().write(d))
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let first = connect(addr);
        drop(first);
        std::thread::sleep(Duration::from_millis(50));
        let mut second = connect(addr);
        echo_round_trip(&mut second, b"alive")
    });
    run(&r);
    assert_eq!(join(client), b"alive");
}

/// A panicking timer does not stop the reactor or the timers after it.
#[test]
fn panicking_timer_does_not_stop_the_reactor() {
    let r = reactor();
    let order: Rc<RefCell<Vec<u32>>> = Rc::default();
    let (o1, o2, o3) = (order.clone(), order.clone(), order.clone());
    r.call_later(Duration::from_millis(1), move |_| {
        o1.borrow_mut().push(1);
        panic!("boom in a timer");
    });
    r.call_later(Duration::from_millis(1), move |_| o2.borrow_mut().push(2));
    r.call_later(Duration::from_millis(20), move |r| {
        o3.borrow_mut().push(3);
        r.stop().unwrap();
    });
    run(&r);
    assert_eq!(*order.borrow(), [1, 2, 3]);
}

/// A panicking `call_from_thread` callback and a panicking trigger are contained too: later
/// calls and the other triggers still run.
#[test]
fn panicking_thread_call_and_trigger_are_contained() {
    let r = reactor();
    let seen: Rc<RefCell<Vec<&'static str>>> = Rc::default();
    let (s1, s2) = (seen.clone(), seen.clone());
    r.add_system_event_trigger(Phase::Before, "shutdown", |_| panic!("boom in a trigger"));
    r.add_system_event_trigger(Phase::Before, "shutdown", move |_| {
        s1.borrow_mut().push("before")
    });
    r.add_system_event_trigger(Phase::After, "shutdown", move |_| {
        s2.borrow_mut().push("after")
    });
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handle = r.handle();
    let ran2 = ran.clone();
    let t = std::thread::spawn(move || {
        handle
            .call_from_thread(|_| panic!("boom in call_from_thread"))
            .unwrap();
        handle
            .call_from_thread(move |r| {
                ran2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                r.stop().unwrap();
            })
            .unwrap();
    });
    run(&r);
    t.join().unwrap();
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(*seen.borrow(), ["before", "after"]);
}

/// Panics in `build_protocol` refuse that connection and the listener goes on.
#[test]
fn panic_in_build_protocol_refuses_only_that_connection() {
    let r = reactor();
    let n = Rc::new(Cell::new(0));
    let n2 = n.clone();
    let addr = listen(
        &r,
        Rc::new(torsion::factory::from_fn(move |_| {
            n2.set(n2.get() + 1);
            if n2.get() == 1 {
                panic!("boom in build_protocol");
            }
            Some(Box::new(Echo) as Box<dyn torsion::Protocol>)
        })),
    );
    let client = client_then_stop(&r, move || {
        let mut first = connect(addr);
        let mut buf = [0u8; 4];
        let closed = matches!(first.read(&mut buf), Ok(0) | Err(_));
        let mut second = connect(addr);
        (closed, echo_round_trip(&mut second, b"ok"))
    });
    run(&r);
    let (closed, back) = join(client);
    assert!(
        closed,
        "the connection whose build_protocol panicked must be closed"
    );
    assert_eq!(back, b"ok");
}
