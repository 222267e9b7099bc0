//! `ConnectionHandle::call`: running code in a connection's context from outside its
//! callbacks (a timer), from inside them (deferred until they return), and after the
//! connection is gone (nothing happens).

mod common;

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use torsion::ConnectionHandle;

#[test]
fn a_timer_reaches_the_connection_through_its_handle() {
    let reactor = reactor();
    let log = new_log();
    let l = log.clone();
    let addr = listen(
        &reactor,
        factory(move || {
            Rec::new(&l)
                .on_made(|cx| {
                    let me = cx.handle();
                    cx.reactor()
                        .call_later(Duration::from_millis(20), move |_| {
                            me.call(|cx| {
                                cx.write(b"from a timer");
                                cx.transport().lose_connection();
                            });
                        });
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&reactor, move || {
        let mut s = connect(addr);
        read_until_closed(&mut s).0
    });
    run(&reactor);
    assert_eq!(join(client), b"from a timer");
    assert!(check_lifecycle(&log).is_clean());
}

#[test]
fn a_call_from_inside_the_connection_runs_after_the_callback() {
    let reactor = reactor();
    let order = Rc::new(RefCell::new(Vec::new()));
    let o = order.clone();
    let addr = listen(
        &reactor,
        factory(move || {
            let o = o.clone();
            let log = new_log();
            Rec::new(&log)
                .on_data(move |cx, _| {
                    let o2 = o.clone();
                    cx.handle().call(move |cx| {
                        o2.borrow_mut().push("call");
                        cx.write(b"2");
                        cx.transport().lose_connection();
                    });
                    o.borrow_mut().push("callback");
                    cx.write(b"1");
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&reactor, move || {
        let mut s = connect(addr);
        s.write_all(b"go").unwrap();
        read_until_closed(&mut s).0
    });
    run(&reactor);
    assert_eq!(join(client), b"12");
    assert_eq!(*order.borrow(), ["callback", "call"]);
}

#[test]
fn a_call_after_the_connection_is_gone_does_nothing() {
    let reactor = reactor();
    let kept: Rc<RefCell<Option<ConnectionHandle>>> = Rc::default();
    let k = kept.clone();
    let ran = Rc::new(RefCell::new(false));
    let r = ran.clone();
    let addr = listen(
        &reactor,
        factory(move || {
            let (k, r) = (k.clone(), r.clone());
            let log = new_log();
            let k2 = k.clone();
            Rec::new(&log)
                .on_made(move |cx| *k2.borrow_mut() = Some(cx.handle()))
                .on_lost(move |cx, _| {
                    let handle = k.borrow().clone().unwrap();
                    let r = r.clone();
                    cx.reactor().call_later(Duration::ZERO, move |reactor| {
                        handle.call(move |_| *r.borrow_mut() = true);
                        let _ = reactor.stop();
                    });
                })
                .boxed()
        }),
    );
    let client = std::thread::spawn(move || drop(connect(addr)));
    run(&reactor);
    client.join().unwrap();
    assert!(kept.borrow().is_some());
    assert!(
        !*ran.borrow(),
        "a handle to a closed connection must not run the call"
    );
}
