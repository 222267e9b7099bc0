//! The reactor's own life cycle: run / stop errors, startup and shutdown triggers, and what
//! shutdown does to connections, listeners and factories.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use common::*;
use torsion::{Address, Factory, Phase, Protocol, ReactorError, Reason};

type Order = Rc<RefCell<Vec<String>>>;

fn note(order: &Order, what: &str) {
    order.borrow_mut().push(what.to_owned());
}

fn pos(order: &[String], what: &str) -> usize {
    order
        .iter()
        .position(|s| s == what)
        .unwrap_or_else(|| panic!("{what:?} never happened: {order:?}"))
}

/// `stop` when not running is `NotRunning` (before run, after run, and a second stop);
/// `run` again is `NotRestartable`; `run` from inside is `AlreadyRunning`.
#[test]
fn run_and_stop_errors() {
    let r = reactor();
    assert!(!r.is_running());
    assert_eq!(r.stop(), Err(ReactorError::NotRunning));
    let inside: Rc<RefCell<Vec<Result<(), ReactorError>>>> = Rc::default();
    let i = inside.clone();
    r.call_later(Duration::from_millis(1), move |r| {
        assert!(r.is_running());
        i.borrow_mut().push(r.run());
        i.borrow_mut().push(r.stop());
        i.borrow_mut().push(r.stop());
    });
    run(&r);
    assert_eq!(
        *inside.borrow(),
        [
            Err(ReactorError::AlreadyRunning),
            Ok(()),
            Err(ReactorError::NotRunning)
        ]
    );
    assert!(!r.is_running());
    assert_eq!(r.stop(), Err(ReactorError::NotRunning));
    assert_eq!(r.run(), Err(ReactorError::NotRestartable));
}

/// Startup triggers run before, during, after; `call_when_running` registered before `run`
/// runs once the reactor runs, and called while running it runs at once.
#[test]
fn startup_triggers_and_call_when_running() {
    let r = reactor();
    let order: Order = Rc::default();
    let (a, b, c, d) = (order.clone(), order.clone(), order.clone(), order.clone());
    r.add_system_event_trigger(Phase::After, "startup", move |_| note(&a, "after"));
    let id = r.call_when_running(move |r| {
        note(&b, "when running");
        let e = b.clone();
        let immediate = r.call_when_running(move |_| note(&e, "at once"));
        assert!(
            immediate.is_none(),
            "while running, call_when_running runs at once"
        );
        note(&b, "returned");
        r.call_later(Duration::from_millis(1), |r| r.stop().unwrap());
    });
    assert!(id.is_some());
    r.add_system_event_trigger(Phase::During, "startup", move |_| note(&c, "during"));
    r.add_system_event_trigger(Phase::Before, "startup", move |_| note(&d, "before"));
    run(&r);
    assert_eq!(
        *order.borrow(),
        [
            "before",
            "during",
            "after",
            "when running",
            "at once",
            "returned"
        ]
    );
}

/// A removed trigger never runs; removing it twice is an error.
#[test]
fn remove_system_event_trigger() {
    let r = reactor();
    let ran = Rc::new(Cell::new(false));
    let rn = ran.clone();
    let id = r.add_system_event_trigger(Phase::Before, "shutdown", move |_| rn.set(true));
    assert_eq!(r.remove_system_event_trigger(id), Ok(()));
    assert_eq!(
        r.remove_system_event_trigger(id),
        Err(ReactorError::UnknownTrigger)
    );
    r.call_later(Duration::from_millis(1), |r| r.stop().unwrap());
    run(&r);
    assert!(!ran.get());
}

/// Shutdown: the before triggers run while connections are still open, then every
/// connection's `connection_lost` (with `ConnectionLost`), then the during and after
/// triggers; listeners are closed and factories stopped.
#[test]
fn shutdown_order_triggers_and_connection_lost() {
    let r = reactor();
    let order: Order = Rc::default();

    struct F(Order);
    impl Factory for F {
        fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> {
            let o = self.0.clone();
            let log = new_log();
            Some(
                Rec::new(&log)
                    .on_lost(move |_, reason| {
                        assert!(
                            matches!(reason, Reason::ConnectionLost(_)),
                            "shutdown must give ConnectionLost, got {reason:?}"
                        );
                        note(&o, "connection_lost");
                    })
                    .boxed(),
            )
        }
        fn start_factory(&self) {
            note(&self.0, "start_factory");
        }
        fn stop_factory(&self) {
            note(&self.0, "stop_factory");
        }
    }
    let f = Rc::new(F(order.clone()));
    let port = r
        .listen_tcp_with(
            0,
            f.clone(),
            torsion::TcpListenOptions {
                interface: "127.0.0.1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    // A second port with the same factory: start_factory and stop_factory run once.
    let port2 = r
        .listen_tcp_with(
            0,
            f,
            torsion::TcpListenOptions {
                interface: "127.0.0.1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let addr = port.host().socket_addr().unwrap();

    let handles: Rc<RefCell<Vec<torsion::ConnectionHandle>>> = Rc::default();
    let (o1, o2, o3, hs) = (order.clone(), order.clone(), order.clone(), handles.clone());
    let p = port.clone();
    r.add_system_event_trigger(Phase::Before, "shutdown", move |_| {
        note(&o1, "before");
        assert!(
            p.is_listening(),
            "listeners close after the before triggers"
        );
        let open = hs.borrow().iter().filter(|h| h.is_connected()).count();
        assert_eq!(open, 2, "connections close after the before triggers");
    });
    r.add_system_event_trigger(Phase::During, "shutdown", move |_| note(&o2, "during"));
    r.add_system_event_trigger(Phase::After, "shutdown", move |_| note(&o3, "after"));

    // Two connections from the reactor itself, then stop once both are up on both ends.
    let client_logs = [new_log(), new_log()];
    for log in client_logs.iter() {
        let (l, hs) = (log.clone(), handles.clone());
        r.connect_tcp(
            "127.0.0.1",
            addr.port(),
            factory(move || {
                let hs = hs.clone();
                Rec::new(&l)
                    .on_made(move |cx| {
                        hs.borrow_mut().push(cx.handle());
                        if hs.borrow().len() == 2 {
                            // Give the server side a pass to accept both.
                            cx.reactor()
                                .call_later(Duration::from_millis(20), |r| r.stop().unwrap());
                        }
                    })
                    .boxed()
            }),
        );
    }
    run(&r);
    let order = order.borrow().clone();
    let before = pos(&order, "before");
    let during = pos(&order, "during");
    let after = pos(&order, "after");
    let lost: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, s)| *s == "connection_lost")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        lost.len(),
        2,
        "both server connections must be lost: {order:?}"
    );
    assert!(
        lost.iter().all(|&i| before < i && i < during && i < after),
        "connection_lost must come between the before and the during/after triggers: \
         {order:?}"
    );
    assert!(before < during && during < after, "{order:?}");
    let starts = order.iter().filter(|s| *s == "start_factory").count();
    let stops = order.iter().filter(|s| *s == "stop_factory").count();
    assert_eq!((starts, stops), (1, 1), "{order:?}");
    assert!(pos(&order, "stop_factory") < after, "{order:?}");
    for log in client_logs.iter() {
        let reason = check_lifecycle(log);
        assert!(matches!(reason, Reason::ConnectionLost(_)), "{reason:?}");
    }
    assert!(!port.is_listening() && !port2.is_listening());
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "the listener must be closed after shutdown"
    );
}

/// `stop_listening` from a callback closes the port at once, runs `stop_factory` for its
/// last port, and leaves accepted connections open.
#[test]
fn stop_listening_keeps_accepted_connections() {
    let r = reactor();
    let stopped = Rc::new(Cell::new(0));
    let port_cell: Rc<RefCell<Option<torsion::ListeningPort>>> = Rc::default();
    struct F(Rc<Cell<u32>>, Rc<RefCell<Option<torsion::ListeningPort>>>);
    impl Factory for F {
        fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> {
            let (port, stopped) = (self.1.clone(), self.0.clone());
            let log = new_log();
            Some(
                Rec::new(&log)
                    .on_data(move |cx, d| {
                        if d == b"stop listening" {
                            let p = port.borrow().clone().unwrap();
                            p.stop_listening();
                            assert!(!p.is_listening());
                            p.stop_listening(); // idempotent
                            assert_eq!(stopped.get(), 1, "stop_factory runs at once");
                            cx.transport().write(b"stopped");
                        } else {
                            cx.transport().write(d);
                        }
                    })
                    .boxed(),
            )
        }
        fn stop_factory(&self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let port = r
        .listen_tcp_with(
            0,
            Rc::new(F(stopped.clone(), port_cell.clone())),
            torsion::TcpListenOptions {
                interface: "127.0.0.1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    *port_cell.borrow_mut() = Some(port.clone());
    let addr = port.host().socket_addr().unwrap();
    let client = client_then_stop(&r, move || {
        use std::io::{Read, Write};
        let mut s = connect(addr);
        assert_eq!(echo_round_trip(&mut s, b"one"), b"one");
        s.write_all(b"stop listening").unwrap();
        let mut ack = [0u8; 7];
        s.read_exact(&mut ack).unwrap();
        assert_eq!(&ack, b"stopped");
        let refused = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err();
        (refused, echo_round_trip(&mut s, b"two"))
    });
    run(&r);
    let (refused, two) = join(client);
    assert!(refused, "a stopped port must refuse connections");
    assert_eq!(two, b"two", "an accepted connection must outlive its port");
    assert_eq!(stopped.get(), 1);
    assert!(!port.is_listening());
}

/// After `stop()` from a timer, the other timers already due in that pass still run (as in
/// Twisted); a zero-delay call made after the stop never runs.
#[test]
fn stop_lets_due_timers_run_but_not_new_ones() {
    let r = reactor();
    let order: Order = Rc::default();
    let (a, b) = (order.clone(), order.clone());
    r.call_later(Duration::from_millis(5), move |r| {
        note(&a, "stopper");
        r.stop().unwrap();
        let a2 = a.clone();
        r.call_later(Duration::ZERO, move |_| note(&a2, "scheduled after stop"));
    });
    r.call_later(Duration::from_millis(5), move |_| note(&b, "due too"));
    // Both are due before the loop first looks at its timers.
    std::thread::sleep(Duration::from_millis(10));
    run(&r);
    assert_eq!(*order.borrow(), ["stopper", "due too"]);
}

/// A trigger may add another trigger to the phase that is running; it runs too, in the same
/// phase.
#[test]
fn a_trigger_added_during_its_phase_runs() {
    let r = reactor();
    let order: Order = Rc::default();
    let (a, b) = (order.clone(), order.clone());
    r.add_system_event_trigger(Phase::Before, "shutdown", move |r| {
        note(&a, "first");
        let a2 = a.clone();
        r.add_system_event_trigger(Phase::Before, "shutdown", move |_| note(&a2, "added"));
    });
    r.add_system_event_trigger(Phase::After, "shutdown", move |_| note(&b, "after"));
    r.call_later(Duration::from_millis(1), |r| r.stop().unwrap());
    run(&r);
    assert_eq!(*order.borrow(), ["first", "added", "after"]);
}

/// Custom system events fire their phases in order.
#[test]
fn custom_system_event() {
    let r = reactor();
    let order: Order = Rc::default();
    for phase in [Phase::After, Phase::Before, Phase::During] {
        let o = order.clone();
        r.add_system_event_trigger(phase, "reload", move |_| note(&o, &format!("{phase:?}")));
    }
    r.fire_system_event("reload");
    assert_eq!(*order.borrow(), ["Before", "During", "After"]);
    r.fire_system_event("reload");
    assert_eq!(order.borrow().len(), 3, "each trigger runs once");
}
