//! Connection life cycle over real loopback sockets: `connection_made` once and first,
//! `connection_lost` once and last, with the reason that tells how the connection ended;
//! `build_protocol` returning `None`.

mod common;

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use socket2::{Domain, Socket, Type};
use torsion::factory::from_fn;
use torsion::{Address, Protocol, Reason};

/// A peer that writes and then closes cleanly: `connection_made`, the data, then
/// `connection_lost(ConnectionDone)`.
#[test]
fn peer_close_gives_connection_done_after_all_data() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let addr = listen(
        &r,
        factory(move || {
            Rec::new(&l)
                .on_made(|cx| cx.transport().write(b"hi"))
                .on_lost(|cx, _| cx.reactor().stop().unwrap())
                .boxed()
        }),
    );
    let client = std::thread::spawn(move || {
        let mut s = connect(addr);
        let mut hi = [0u8; 2];
        s.read_exact(&mut hi).unwrap();
        s.write_all(b"hello, ").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        s.write_all(b"world").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let (rest, err) = read_until_closed(&mut s);
        (hi, rest, err.map(|e| e.kind()))
    });
    run(&r);
    let (hi, rest, err) = join(client);
    assert_eq!(&hi, b"hi");
    assert!(rest.is_empty() && err.is_none(), "{rest:?} {err:?}");
    let reason = check_lifecycle(&log);
    assert!(
        matches!(reason, Reason::ConnectionDone),
        "a peer's clean close must give ConnectionDone, got {reason:?}"
    );
    assert_eq!(received(&log), b"hello, world");
}

/// Our own `lose_connection` gives `ConnectionDone`, after the peer got what was written.
#[test]
fn own_lose_connection_gives_connection_done() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let addr = listen(
        &r,
        factory(move || {
            Rec::new(&l)
                .on_made(|cx| {
                    cx.transport().write(b"bye");
                    cx.transport().lose_connection();
                    assert!(cx.transport().is_disconnecting());
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let mut s = connect(addr);
        let (data, err) = read_until_closed(&mut s);
        (data, err.map(|e| e.kind()))
    });
    run(&r);
    let (data, err) = join(client);
    assert_eq!(data, b"bye");
    assert_eq!(err, None, "the peer must see an orderly close");
    let reason = check_lifecycle(&log);
    assert!(
        matches!(reason, Reason::ConnectionDone),
        "lose_connection must give ConnectionDone, got {reason:?}"
    );
}

/// A peer that resets the connection (SO_LINGER 0) gives `ConnectionLost`.
#[test]
fn peer_reset_gives_connection_lost() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let addr = listen(
        &r,
        factory(move || {
            Rec::new(&l)
                .on_made(|cx| cx.transport().write(b"ready"))
                .on_lost(|cx, _| cx.reactor().stop().unwrap())
                .boxed()
        }),
    );
    let client = std::thread::spawn(move || {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.connect_timeout(&addr.into(), IO_TIMEOUT).unwrap();
        let mut s: std::net::TcpStream = s.into();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut ready = [0u8; 5];
        s.read_exact(&mut ready).unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s); // close(2) with SO_LINGER 0 sends RST
    });
    run(&r);
    join(client);
    let reason = check_lifecycle(&log);
    assert!(
        matches!(reason, Reason::ConnectionLost(_)),
        "a peer's reset must give ConnectionLost, got {reason:?}"
    );
    assert!(reason.is_lost());
}

/// `abort_connection` gives `ConnectionAborted`, and not from inside the call that asked for
/// it: `connection_lost` comes after the current callback returns.
#[test]
fn abort_connection_gives_connection_aborted_later() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let addr = listen(
        &r,
        factory(move || {
            let l2 = l.clone();
            Rec::new(&l)
                .on_made(move |cx| {
                    cx.transport().write(b"x");
                    cx.transport().abort_connection();
                    assert!(!cx.transport().is_connected());
                    l2.borrow_mut().push(Ev::Note("abort returned"));
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let Some(mut s) = connect_or_reset(addr) else {
            return Some(std::io::ErrorKind::ConnectionReset);
        };
        let (_, err) = read_until_closed(&mut s);
        err.map(|e| e.kind())
    });
    run(&r);
    let err = join(client);
    if let Some(kind) = err {
        assert_eq!(
            kind,
            std::io::ErrorKind::ConnectionReset,
            "unexpected error"
        );
    }
    let reason = check_lifecycle(&log);
    assert!(
        matches!(reason, Reason::ConnectionAborted),
        "abort_connection must give ConnectionAborted, got {reason:?}"
    );
    let events = log.borrow();
    let note = events
        .iter()
        .position(|e| matches!(e, Ev::Note("abort returned")))
        .unwrap();
    let lost = events
        .iter()
        .position(|e| matches!(e, Ev::Lost(_)))
        .unwrap();
    assert!(
        note < lost,
        "connection_lost ran inside abort_connection: {events:?}"
    );
}

/// Abort, then lose, then abort again, then writes: one `connection_lost(ConnectionAborted)`.
#[test]
fn repeated_closes_give_one_connection_lost() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let addr = listen(
        &r,
        factory(move || {
            Rec::new(&l)
                .on_data(|cx, _| {
                    let h = cx.handle();
                    cx.transport().abort_connection();
                    cx.transport().lose_connection();
                    cx.transport().abort_connection();
                    h.lose_connection();
                    h.abort_connection();
                    cx.transport().write(b"dropped");
                    h.write(b"dropped");
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let mut s = connect(addr);
        s.write_all(b"go").unwrap();
        let (data, _) = read_until_closed(&mut s);
        data
    });
    run(&r);
    let data = join(client);
    assert!(
        data.is_empty(),
        "nothing may be sent after an abort: {data:?}"
    );
    let reason = check_lifecycle(&log);
    assert!(matches!(reason, Reason::ConnectionAborted), "{reason:?}");
}

/// Several connections at once each get their own `connection_made` first and
/// `connection_lost` last, and the data of one never reaches another.
#[test]
fn concurrent_connections_each_keep_their_own_order() {
    const N: usize = 20;
    let r = reactor();
    let logs: Rc<std::cell::RefCell<Vec<Log>>> = Rc::default();
    let ls = logs.clone();
    let addr = listen(
        &r,
        factory(move || {
            let log = new_log();
            ls.borrow_mut().push(log.clone());
            Rec::new(&log)
                .on_data(|cx, d| cx.transport().write(d))
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let mut streams: Vec<_> = (0..N).map(|_| connect(addr)).collect();
        for (i, s) in streams.iter_mut().enumerate() {
            let msg = format!("<{i}>");
            assert_eq!(echo_round_trip(s, msg.as_bytes()), msg.as_bytes());
        }
        for s in &streams {
            s.shutdown(Shutdown::Write).unwrap();
        }
        for mut s in streams {
            let (rest, err) = read_until_closed(&mut s);
            assert!(rest.is_empty() && err.is_none());
        }
    });
    run(&r);
    join(client);
    let logs = logs.borrow();
    assert_eq!(logs.len(), N);
    let mut seen: Vec<String> = logs
        .iter()
        .map(|log| {
            let reason = check_lifecycle(log);
            assert!(matches!(reason, Reason::ConnectionDone), "{reason:?}");
            String::from_utf8(received(log)).unwrap()
        })
        .collect();
    seen.sort();
    let mut want: Vec<String> = (0..N).map(|i| format!("<{i}>")).collect();
    want.sort();
    assert_eq!(seen, want);
}

/// `build_protocol` returning `None` closes the accepted socket in an orderly way, and the
/// listener keeps accepting.
#[test]
fn build_protocol_none_closes_orderly_and_listener_goes_on() {
    let r = reactor();
    let calls = Rc::new(Cell::new(0u32));
    let c = calls.clone();
    let addr = listen(
        &r,
        Rc::new(from_fn(move |addr: &Address| {
            assert!(matches!(addr, Address::Tcp(a) if a.ip().is_loopback()));
            c.set(c.get() + 1);
            if c.get() == 1 {
                None
            } else {
                Some(Box::new(Echo) as Box<dyn Protocol>)
            }
        })),
    );
    let client = client_then_stop(&r, move || {
        let mut refused = connect(addr);
        let mut buf = [0u8; 16];
        let n = refused.read(&mut buf);
        let first = n.map_err(|e| e.kind());
        let mut ok = connect(addr);
        let back = echo_round_trip(&mut ok, b"still here");
        let mut ok2 = connect(addr);
        let back2 = echo_round_trip(&mut ok2, b"and again");
        (first, back, back2)
    });
    run(&r);
    let (first, back, back2) = join(client);
    assert_eq!(
        first,
        Ok(0),
        "a refused connection must be closed in an orderly way (read returns 0)"
    );
    assert_eq!(back, b"still here");
    assert_eq!(back2, b"and again");
    assert_eq!(calls.get(), 3);
}

/// `peer()` and `host()` name the two ends.
#[test]
fn peer_and_host_addresses() {
    let r = reactor();
    let seen = Rc::new(std::cell::RefCell::new(None));
    let s2 = seen.clone();
    let addr = listen(
        &r,
        factory(move || {
            let s3 = s2.clone();
            let log = new_log();
            Rec::new(&log)
                .on_made(move |cx| {
                    let t = cx.transport();
                    *s3.borrow_mut() = Some((t.peer(), t.host()));
                    t.lose_connection();
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let mut s = connect(addr);
        let local = s.local_addr().unwrap();
        read_until_closed(&mut s);
        local
    });
    run(&r);
    let local = join(client);
    let (peer, host) = seen.borrow().clone().expect("connection_made ran");
    assert_eq!(peer, Address::Tcp(local));
    assert_eq!(host, Address::Tcp(addr));
}

/// A handle kept from a closed connection never reaches a newer connection, even one that
/// reuses its slot: writes and closes through it do nothing.
#[test]
fn stale_handle_never_reaches_a_newer_connection() {
    let r = reactor();
    let handles: Rc<std::cell::RefCell<Vec<torsion::ConnectionHandle>>> = Rc::default();
    let hs = handles.clone();
    let addr = listen(
        &r,
        factory(move || {
            let hs = hs.clone();
            let log = new_log();
            Rec::new(&log)
                .on_made(move |cx| {
                    let stale = hs.borrow().first().cloned();
                    hs.borrow_mut().push(cx.handle());
                    if let Some(old) = stale {
                        assert!(!old.is_connected());
                        assert_eq!(old.peer(), None);
                        assert_ne!(old, cx.handle());
                        old.write(b"STALE");
                        old.lose_connection();
                        old.abort_connection();
                    }
                    cx.transport().write(b"fresh");
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let mut first = connect(addr);
        let mut hello = [0u8; 5];
        first.read_exact(&mut hello).unwrap();
        first.shutdown(Shutdown::Write).unwrap();
        read_until_closed(&mut first);
        drop(first);
        std::thread::sleep(Duration::from_millis(20));
        let mut second = connect(addr);
        second
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n) = second.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    run(&r);
    let got = join(client);
    assert_eq!(got, b"fresh", "a stale handle reached the new connection");
    assert_eq!(handles.borrow().len(), 2);
}

/// `write_vectored` sends its buffers in order, whether the kernel takes them at once or they
/// queue behind buffered bytes.
#[test]
fn write_vectored_keeps_order() {
    let r = reactor();
    let big = Rc::new(pattern(2 * 1024 * 1024));
    let b = big.clone();
    let addr = listen(
        &r,
        factory(move || {
            let b = b.clone();
            let log = new_log();
            Rec::new(&log)
                .on_made(move |cx| {
                    cx.transport().write_vectored(&[b"<", b"", b"head", b">"]);
                    cx.transport().write(&b);
                    cx.transport().write_vectored(&[b"[", b"tail", b"]"]);
                    cx.handle().write_vectored(&[b"(", b"handle", b")"]);
                    cx.transport().lose_connection();
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let mut s = connect(addr);
        read_until_closed(&mut s).0
    });
    run(&r);
    let got = join(client);
    let mut want = b"<head>".to_vec();
    want.extend_from_slice(&big);
    want.extend_from_slice(b"[tail](handle)");
    assert_eq!(got.len(), want.len());
    assert!(got == want, "write_vectored bytes arrived out of order");
}

/// `pause_producing` stops `data_received` until `resume_producing`; then everything the peer
/// sent meanwhile arrives, in order.
#[test]
fn pause_and_resume_reading() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let during_pause = Rc::new(Cell::new(0usize));
    let dp = during_pause.clone();
    let addr = listen(
        &r,
        factory(move || {
            let (l2, dp) = (l.clone(), dp.clone());
            Rec::new(&l)
                .on_made(move |cx| {
                    cx.transport().pause_producing();
                    let h = cx.handle();
                    let (l3, dp) = (l2.clone(), dp.clone());
                    cx.reactor()
                        .call_later(Duration::from_millis(200), move |_| {
                            dp.set(received(&l3).len());
                            h.resume_producing();
                        });
                })
                .on_data(|cx, d| {
                    if d.ends_with(b"end") {
                        cx.transport().write(b"ok");
                    }
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let mut s = connect(addr);
        s.write_all(b"sent while paused ").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(b"and more end").unwrap();
        let mut ok = [0u8; 2];
        s.read_exact(&mut ok).unwrap();
        ok
    });
    run(&r);
    assert_eq!(&join(client), b"ok");
    assert_eq!(during_pause.get(), 0, "data_received ran while paused");
    assert_eq!(received(&log), b"sent while paused and more end");
}

/// A peer that closes while the connection is paused, with nothing left unread, is noticed:
/// `connection_lost(ConnectionDone)` comes without resuming.
#[test]
fn peer_close_while_paused_is_noticed() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let addr = listen(
        &r,
        factory(move || {
            Rec::new(&l)
                .on_made(|cx| cx.transport().pause_producing())
                .on_lost(|cx, _| cx.reactor().stop().unwrap())
                .boxed()
        }),
    );
    let client = std::thread::spawn(move || {
        let s = connect(addr);
        std::thread::sleep(Duration::from_millis(50));
        drop(s);
    });
    run(&r);
    join(client);
    let reason = check_lifecycle(&log);
    assert!(matches!(reason, Reason::ConnectionDone), "{reason:?}");
}

/// A handle sees its live connection as connected from anywhere, including from inside that
/// connection's own callbacks (a broadcast loop over every handle meets its own), and from
/// another connection's callback it also gives the peer and the buffered length.
#[test]
fn handle_sees_its_live_connection() {
    let r = reactor();
    let own: Rc<std::cell::RefCell<Vec<bool>>> = Rc::default();
    type Seen = (bool, Option<Address>, Option<usize>);
    let other: Rc<std::cell::RefCell<Vec<Seen>>> = Rc::default();
    let handles: Rc<std::cell::RefCell<Vec<torsion::ConnectionHandle>>> = Rc::default();
    let (o1, o2, hs) = (own.clone(), other.clone(), handles.clone());
    let addr = listen(
        &r,
        factory(move || {
            let (o1, o2, hs) = (o1.clone(), o2.clone(), hs.clone());
            let log = new_log();
            Rec::new(&log)
                .on_made(move |cx| {
                    o1.borrow_mut().push(cx.handle().is_connected());
                    if let Some(first) = hs.borrow().first() {
                        o2.borrow_mut().push((
                            first.is_connected(),
                            first.peer(),
                            first.buffered_len(),
                        ));
                    }
                    hs.borrow_mut().push(cx.handle());
                })
                .on_data(|cx, _| cx.transport().write(b"ok"))
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let mut first = connect(addr);
        first.write_all(b"?").unwrap();
        let mut ok = [0u8; 2];
        first.read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"ok");
        let _second = connect(addr);
        std::thread::sleep(Duration::from_millis(50));
        first.local_addr().unwrap()
    });
    run(&r);
    let first_local = join(client);
    assert_eq!(*own.borrow(), [true, true]);
    assert_eq!(
        *other.borrow(),
        [(true, Some(Address::Tcp(first_local)), Some(0))]
    );
}
