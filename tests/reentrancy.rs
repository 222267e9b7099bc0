//! Re-entrancy: from inside one callback a protocol may write to and close other
//! connections, connect, listen, schedule timers and stop the reactor, with no panic, and
//! every connection still gets `connection_lost` exactly once.

mod common;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use torsion::{ConnectionHandle, Reactor, Reason};

/// Two client connections to one server. The server greets every connection once both are
/// up; the first client to read the greeting runs `act` with the other client's handle.
struct Pair {
    /// Logs of the two client connections, by connection order.
    clients: Vec<Log>,
    server: Rc<RefCell<Vec<Log>>>,
}

fn pair(
    r: &Reactor,
    act: impl Fn(&mut torsion::Cx<'_>, ConnectionHandle, SocketAddr) + 'static,
) -> Pair {
    let server_logs: Rc<RefCell<Vec<Log>>> = Rc::default();
    let server_conns: Rc<RefCell<Vec<ConnectionHandle>>> = Rc::default();
    let (sl, sc) = (server_logs.clone(), server_conns.clone());
    let addr = listen(
        r,
        factory(move || {
            let log = new_log();
            sl.borrow_mut().push(log.clone());
            let sc = sc.clone();
            Rec::new(&log)
                .on_made(move |cx| {
                    sc.borrow_mut().push(cx.handle());
                    if sc.borrow().len() == 2 {
                        // Writes to this connection and, through its handle, the other one.
                        for h in sc.borrow().iter() {
                            h.write(b"go");
                        }
                    }
                })
                .boxed()
        }),
    );
    let clients = [new_log(), new_log()];
    let handles: Rc<RefCell<Vec<Option<ConnectionHandle>>>> =
        Rc::new(RefCell::new(vec![None, None]));
    let acted = Rc::new(Cell::new(false));
    let act = Rc::new(act);
    for (i, log) in clients.iter().enumerate() {
        let (log, handles, acted, act) = (log.clone(), handles.clone(), acted.clone(), act.clone());
        r.connect_tcp(
            "127.0.0.1",
            addr.port(),
            factory(move || {
                let (h1, h2, acted, act) =
                    (handles.clone(), handles.clone(), acted.clone(), act.clone());
                Rec::new(&log)
                    .on_made(move |cx| h1.borrow_mut()[i] = Some(cx.handle()))
                    .on_data(move |cx, _| {
                        if acted.replace(true) {
                            return;
                        }
                        let other = h2.borrow()[1 - i]
                            .clone()
                            .expect("the other client is connected");
                        act(cx, other, addr);
                    })
                    .boxed()
            }),
        );
    }
    Pair {
        clients: clients.to_vec(),
        server: server_logs,
    }
}

/// In one `data_received`: close another connection, open a new one, schedule a timer and
/// stop the reactor. No panic; the closed one gets `connection_lost` exactly once, and so
/// does every other connection at shutdown.
#[test]
fn close_other_connect_schedule_and_stop_in_one_callback() {
    let r = reactor();
    let timer = Rc::new(RefCell::new(None));
    let t = timer.clone();
    let new_log_ = new_log();
    let nl = new_log_.clone();
    let p = pair(&r, move |cx, other, addr| {
        other.lose_connection();
        other.write(b"after lose");
        let nl = nl.clone();
        cx.reactor().connect_tcp(
            "127.0.0.1",
            addr.port(),
            factory(move || Rec::new(&nl).boxed()),
        );
        *t.borrow_mut() = Some(cx.reactor().call_later(Duration::ZERO, |_| {}));
        cx.reactor().stop().unwrap();
        assert_eq!(cx.reactor().stop(), Err(torsion::ReactorError::NotRunning));
        cx.transport().write(b"still fine");
    });
    run(&r);
    for log in p.clients.iter() {
        check_lifecycle(log);
    }
    for log in p.server.borrow().iter() {
        check_lifecycle(log);
    }
    // The new connection never got further than connecting, or was closed at shutdown.
    let n = new_log_.borrow();
    assert!(
        n.is_empty() || matches!(n.last(), Some(Ev::Lost(_))),
        "{n:?}"
    );
    assert!(timer.borrow().is_some());
}

/// The same without stopping at once: the other connection is closed (`ConnectionDone`, once),
/// the new connection is made, the timer fires, and then a stop from the new connection's
/// `connection_made` ends the run.
#[test]
fn close_other_connect_and_schedule_then_everything_happens() {
    let r = reactor();
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    let new_log_ = new_log();
    let nl = new_log_.clone();
    let p = pair(&r, move |cx, other, addr| {
        let me = cx.handle();
        other.lose_connection();
        let nl = nl.clone();
        let fc = f.clone();
        cx.reactor().connect_tcp(
            "127.0.0.1",
            addr.port(),
            factory(move || {
                let f = fc.clone();
                Rec::new(&nl)
                    .on_made(move |cx| {
                        let f = f.clone();
                        // Stop once the timer has fired too.
                        fn wait(r: &Reactor, f: Rc<Cell<bool>>) {
                            if f.get() {
                                r.stop().unwrap();
                            } else {
                                r.call_later(Duration::from_millis(1), move |r| wait(r, f));
                            }
                        }
                        wait(cx.reactor(), f);
                    })
                    .boxed()
            }),
        );
        let f2 = f.clone();
        cx.reactor()
            .call_later(Duration::from_millis(5), move |_| f2.set(true));
        // Writing to ourselves later, from a timer, through our own handle.
        cx.reactor()
            .call_later(Duration::from_millis(1), move |_| me.write(b"from a timer"));
    });
    run(&r);
    assert!(
        fired.get(),
        "the timer scheduled in data_received did not fire"
    );
    let n = new_log_.borrow().clone();
    assert!(
        matches!(n.first(), Some(Ev::Made)),
        "the new connection was not made: {n:?}"
    );
    // Exactly one client was closed by the other before shutdown, cleanly, once.
    let closed: Vec<Reason> = p
        .clients
        .iter()
        .map(check_lifecycle)
        .filter(|r| matches!(r, Reason::ConnectionDone))
        .collect();
    assert_eq!(closed.len(), 1, "the connection closed from the other one");
    for log in p.server.borrow().iter() {
        check_lifecycle(log);
    }
}

/// A callback aborts another connection and its own, writes to both after, starts a listener
/// and stops listening on the one it was accepted from, all in one `data_received`.
#[test]
fn abort_others_listen_and_stop_listening_from_a_callback() {
    let r = reactor();
    let server_logs: Rc<RefCell<Vec<Log>>> = Rc::default();
    let conns: Rc<RefCell<Vec<ConnectionHandle>>> = Rc::default();
    let port_cell: Rc<RefCell<Option<torsion::ListeningPort>>> = Rc::default();
    let new_port: Rc<RefCell<Option<torsion::ListeningPort>>> = Rc::default();
    let (sl, cs, pc, np) = (
        server_logs.clone(),
        conns.clone(),
        port_cell.clone(),
        new_port.clone(),
    );
    let port = r
        .listen_tcp_with(
            0,
            factory(move || {
                let log = new_log();
                sl.borrow_mut().push(log.clone());
                let (cs, cs2, pc, np) = (cs.clone(), cs.clone(), pc.clone(), np.clone());
                Rec::new(&log)
                    .on_made(move |cx| cs.borrow_mut().push(cx.handle()))
                    .on_data(move |cx, d| {
                        if d != b"now" {
                            return;
                        }
                        let me = cx.handle();
                        for h in cs2.borrow().iter() {
                            if *h != me {
                                h.abort_connection();
                                h.write(b"dropped");
                            }
                        }
                        cx.transport().abort_connection();
                        me.write(b"dropped");
                        pc.borrow().as_ref().unwrap().stop_listening();
                        let p = cx
                            .reactor()
                            .listen_tcp_with(
                                0,
                                echo_factory(),
                                torsion::TcpListenOptions {
                                    interface: "127.0.0.1".into(),
                                    ..Default::default()
                                },
                            )
                            .unwrap();
                        *np.borrow_mut() = Some(p);
                    })
                    .boxed()
            }),
            torsion::TcpListenOptions {
                interface: "127.0.0.1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    *port_cell.borrow_mut() = Some(port.clone());
    let addr = port.host().socket_addr().unwrap();
    let np = new_port.clone();
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    // Tell the client thread where the new listener is, once there is one.
    fn relay(
        r: &Reactor,
        np: Rc<RefCell<Option<torsion::ListeningPort>>>,
        tx: std::sync::mpsc::Sender<SocketAddr>,
    ) {
        let got = np
            .borrow()
            .as_ref()
            .map(|p| p.host().socket_addr().unwrap());
        match got {
            Some(a) => {
                let _ = tx.send(a);
            }
            None => {
                r.call_later(Duration::from_millis(1), move |r| relay(r, np, tx));
            }
        }
    }
    relay(&r, np, tx);
    let client = client_then_stop(&r, move || {
        use std::io::Write;
        let mut a = connect(addr);
        let mut b = connect(addr);
        // Both accepted before the trigger.
        std::thread::sleep(Duration::from_millis(50));
        a.write_all(b"now").unwrap();
        let (da, _) = read_until_closed(&mut a);
        let (db, _) = read_until_closed(&mut b);
        let new_addr = rx.recv_timeout(IO_TIMEOUT).unwrap();
        let mut c = connect(new_addr);
        let back = echo_round_trip(&mut c, b"new listener");
        let refused = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err();
        (da, db, back, refused)
    });
    run(&r);
    let (da, db, back, refused) = join(client);
    assert!(
        da.is_empty() && db.is_empty(),
        "bytes sent after abort: {da:?} {db:?}"
    );
    assert_eq!(back, b"new listener");
    assert!(
        refused,
        "the old listener still accepts after stop_listening"
    );
    assert!(!port.is_listening());
    let logs = server_logs.borrow();
    assert_eq!(logs.len(), 2);
    for log in logs.iter() {
        let reason = check_lifecycle(log);
        assert!(matches!(reason, Reason::ConnectionAborted), "{reason:?}");
    }
}

/// From `connection_lost`, a protocol writes to another connection, closes a third and
/// schedules a timer; a handle to itself is a no-op there.
#[test]
fn work_from_inside_connection_lost() {
    let r = reactor();
    let conns: Rc<RefCell<Vec<ConnectionHandle>>> = Rc::default();
    let logs: Rc<RefCell<Vec<Log>>> = Rc::default();
    let fired = Rc::new(Cell::new(false));
    let (cs, ls, f) = (conns.clone(), logs.clone(), fired.clone());
    let addr = listen(
        &r,
        factory(move || {
            let log = new_log();
            ls.borrow_mut().push(log.clone());
            let idx = ls.borrow().len() - 1;
            let (cs, cs2, f) = (cs.clone(), cs.clone(), f.clone());
            Rec::new(&log)
                .on_made(move |cx| cs.borrow_mut().push(cx.handle()))
                .on_lost(move |cx, _| {
                    if idx != 0 {
                        return;
                    }
                    let hs = cs2.borrow().clone();
                    hs[0].write(b"to myself, gone");
                    hs[0].lose_connection();
                    hs[1].write(b"from a dying connection");
                    hs[2].lose_connection();
                    let f = f.clone();
                    cx.reactor().call_later(Duration::from_millis(1), move |r| {
                        f.set(true);
                        r.call_later(Duration::from_millis(50), |r| r.stop().unwrap());
                    });
                })
                .boxed()
        }),
    );
    let client = std::thread::spawn(move || {
        use std::io::Read;
        let first = connect(addr);
        std::thread::sleep(Duration::from_millis(30));
        let mut second = connect(addr);
        std::thread::sleep(Duration::from_millis(30));
        let mut third = connect(addr);
        std::thread::sleep(Duration::from_millis(30));
        drop(first);
        let mut buf = vec![0u8; b"from a dying connection".len()];
        second.read_exact(&mut buf).unwrap();
        let (rest, err) = read_until_closed(&mut third);
        (buf, rest, err.map(|e| e.kind()))
    });
    run(&r);
    let (buf, rest, err) = join(client);
    assert_eq!(buf, b"from a dying connection");
    assert!(
        rest.is_empty() && err.is_none(),
        "the third connection must be closed cleanly"
    );
    assert!(fired.get());
    let logs = logs.borrow();
    assert_eq!(logs.len(), 3);
    check_lifecycle(&logs[0]);
    assert!(matches!(check_lifecycle(&logs[2]), Reason::ConnectionDone));
}
