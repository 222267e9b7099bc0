//! Closing: `lose_connection` flushes every byte first, `abort_connection` drops them, writes
//! after either are harmless, and half-close (`lose_write_connection`,
//! `read_connection_lost`).

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use socket2::{Domain, Socket, Type};
use torsion::{ConnectionHandle, Reason};

const BIG: usize = 8 * 1024 * 1024;

/// `lose_connection` right after one 8 MiB `write`: the peer gets every byte, in order, then
/// an orderly close.
#[test]
fn lose_connection_after_8_mib_write_delivers_every_byte() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let buffered = Rc::new(Cell::new(0usize));
    let b = buffered.clone();
    let big = Rc::new(pattern(BIG));
    let addr = listen(
        &r,
        factory(move || {
            let b = b.clone();
            let big = big.clone();
            Rec::new(&l)
                .on_made(move |cx| {
                    cx.transport().write(&big);
                    b.set(cx.transport().buffered_len());
                    cx.transport().lose_connection();
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let mut s = small_window_client(addr).expect("connect");
        // Let the server's write fill every buffer before reading.
        std::thread::sleep(Duration::from_millis(300));
        let (data, err) = read_until_closed(&mut s);
        (data, err.map(|e| e.to_string()))
    });
    run_for(&r, Duration::from_secs(30));
    let (data, err) = join(client);
    assert_eq!(err, None, "the peer must see an orderly close");
    assert_eq!(data.len(), BIG, "the peer must get every byte");
    assert!(
        data == pattern(BIG),
        "the bytes arrived altered or reordered"
    );
    assert!(
        buffered.get() > 0,
        "precondition: the kernel took all 8 MiB at once, so nothing was buffered"
    );
    let reason = check_lifecycle(&log);
    assert!(matches!(reason, Reason::ConnectionDone), "{reason:?}");
}

/// A client socket with a small receive buffer, so that a big write stays mostly in the
/// server's own buffer.
fn small_window_client(addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(64 * 1024).unwrap();
    s.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    Ok(s)
}

/// `abort_connection` right after an 8 MiB `write` drops what was not sent yet, and what is
/// written afterwards never goes out.
#[test]
fn abort_connection_after_8_mib_write_drops_the_buffer() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let buffered = Rc::new(Cell::new(0usize));
    let b = buffered.clone();
    let (aborted_tx, aborted_rx) = mpsc::channel::<()>();
    let big = Rc::new(pattern(BIG));
    let addr = listen(
        &r,
        factory(move || {
            let b = b.clone();
            let tx = aborted_tx.clone();
            let big = big.clone();
            Rec::new(&l)
                .on_made(move |cx| {
                    let h = cx.handle();
                    cx.transport().write(&big);
                    b.set(cx.transport().buffered_len());
                    cx.transport().abort_connection();
                    cx.transport().write(b"AFTER ABORT");
                    h.write(b"AFTER ABORT");
                    assert_eq!(cx.transport().buffered_len(), 0);
                    let _ = tx.send(());
                })
                .on_lost(|cx, _| {
                    cx.transport().write(b"AFTER LOST");
                    cx.handle().write(b"AFTER LOST");
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        // The server aborts as soon as it accepts: the reset may beat connect(2) home.
        let s = small_window_client(addr);
        aborted_rx
            .recv_timeout(IO_TIMEOUT)
            .expect("the server aborted");
        std::thread::sleep(Duration::from_millis(50));
        match s {
            Ok(mut s) => read_until_closed(&mut s),
            Err(e) if is_reset(&e) => (Vec::new(), Some(e)),
            Err(e) => panic!("connect: {e}"),
        }
    });
    run_for(&r, Duration::from_secs(20));
    let (data, err) = join(client);
    assert!(
        buffered.get() > 0,
        "precondition: something must have been buffered when abort_connection ran"
    );
    assert!(
        data.len() < BIG / 2,
        "abort_connection must drop the buffer, yet the peer got {} bytes",
        data.len()
    );
    assert!(
        data == pattern(data.len()),
        "the peer got bytes written after the abort"
    );
    if let Some(e) = &err {
        assert!(is_reset(e), "unexpected error {e}");
    }
    let reason = check_lifecycle(&log);
    assert!(matches!(reason, Reason::ConnectionAborted), "{reason:?}");
}

/// Writing after `lose_connection`, through the transport and a handle, and after
/// `connection_lost` through a kept handle: no panic, the bytes written before the close
/// arrive, and the connection still closes cleanly.
#[test]
fn writes_after_lose_connection_are_harmless() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let kept: Rc<RefCell<Option<ConnectionHandle>>> = Rc::default();
    let k = kept.clone();
    let addr = listen(
        &r,
        factory(move || {
            let k = k.clone();
            Rec::new(&l)
                .on_made(move |cx| {
                    *k.borrow_mut() = Some(cx.handle());
                    cx.transport().write(b"before");
                    cx.transport().lose_connection();
                    cx.transport().write(b"+t");
                    cx.handle().write(b"+h");
                    cx.transport().lose_connection();
                })
                .on_lost(|cx, _| {
                    let h = cx.handle();
                    cx.reactor().call_later(Duration::from_millis(5), move |_| {
                        h.write(b"late");
                        h.lose_connection();
                        h.abort_connection();
                    });
                })
                .boxed()
        }),
    );
    let client = std::thread::spawn(move || {
        let mut s = connect(addr);
        let (data, err) = read_until_closed(&mut s);
        (data, err.map(|e| e.kind()))
    });
    // Stop a little after the close, so that the late writes above run.
    let stopper = kept.clone();
    r.call_later(Duration::from_millis(10), move |r| {
        fn poll(r: &torsion::Reactor, h: Rc<RefCell<Option<ConnectionHandle>>>) {
            let gone = h.borrow().as_ref().is_some_and(|h| !h.is_connected());
            if gone {
                r.call_later(Duration::from_millis(50), |r| {
                    let _ = r.stop();
                });
            } else {
                r.call_later(Duration::from_millis(5), move |r| poll(r, h));
            }
        }
        poll(r, stopper);
    });
    run(&r);
    let (data, err) = join(client);
    assert_eq!(err, None);
    assert!(
        data.starts_with(b"before"),
        "bytes written before lose_connection must arrive: {data:?}"
    );
    assert!(!data.windows(4).any(|w| w == b"late"), "{data:?}");
    let reason = check_lifecycle(&log);
    assert!(matches!(reason, Reason::ConnectionDone), "{reason:?}");
    let h = kept.borrow().clone().unwrap();
    assert!(!h.is_connected());
    assert_eq!(h.buffered_len(), None);
}

/// A half-closeable protocol gets `read_connection_lost` when the peer shuts down its write
/// side, and can still write back.
#[test]
fn half_closeable_gets_read_connection_lost_and_still_writes() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let addr = listen(
        &r,
        factory(move || {
            let l2 = l.clone();
            Rec::new(&l)
                .half_closeable()
                .on_read_lost(move |cx| {
                    let got = received(&l2);
                    cx.transport().write(b"got:");
                    cx.transport().write(&got);
                    cx.transport().lose_connection();
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let mut s = connect(addr);
        s.write_all(b"question").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let (data, err) = read_until_closed(&mut s);
        (data, err.map(|e| e.kind()))
    });
    run(&r);
    let (data, err) = join(client);
    assert_eq!(err, None);
    assert_eq!(data, b"got:question");
    let reason = check_lifecycle(&log);
    assert!(matches!(reason, Reason::ConnectionDone), "{reason:?}");
    let events = log.borrow();
    let read_lost = events.iter().filter(|e| matches!(e, Ev::ReadLost)).count();
    assert_eq!(read_lost, 1, "{events:?}");
    let last_data = events
        .iter()
        .rposition(|e| matches!(e, Ev::Data(_)))
        .unwrap();
    let rl = events
        .iter()
        .position(|e| matches!(e, Ev::ReadLost))
        .unwrap();
    assert!(
        last_data < rl,
        "read_connection_lost before the data: {events:?}"
    );
}

/// `lose_write_connection` sends what is buffered and then a FIN: the peer reads to the end
/// while the connection still reads what the peer sends afterwards.
#[test]
fn lose_write_connection_sends_fin_and_keeps_reading() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let addr = listen(
        &r,
        factory(move || {
            Rec::new(&l)
                .half_closeable()
                .on_made(|cx| {
                    cx.transport().write(b"all of it");
                    cx.transport().lose_write_connection();
                    // Writes after the half-close are dropped.
                    cx.transport().write(b"dropped");
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let mut s = connect(addr);
        let (data, err) = read_until_closed(&mut s);
        // The server's write side is shut; its read side is still open.
        s.write_all(b"reply after FIN").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.shutdown(Shutdown::Write).unwrap();
        let (rest, err2) = read_until_closed(&mut s);
        (data, err.map(|e| e.kind()), rest, err2.map(|e| e.kind()))
    });
    run(&r);
    let (data, err, rest, err2) = join(client);
    assert_eq!(err, None, "the peer must read an orderly end of stream");
    assert_eq!(data, b"all of it");
    assert!(rest.is_empty() && err2.is_none(), "{rest:?} {err2:?}");
    assert_eq!(received(&log), b"reply after FIN");
    let reason = check_lifecycle(&log);
    assert!(matches!(reason, Reason::ConnectionDone), "{reason:?}");
    let events = log.borrow();
    let wl = events.iter().position(|e| matches!(e, Ev::WriteLost));
    let first_data = events.iter().position(|e| matches!(e, Ev::Data(_)));
    let rl = events.iter().position(|e| matches!(e, Ev::ReadLost));
    assert!(wl.is_some(), "write_connection_lost must run: {events:?}");
    assert!(rl.is_some(), "read_connection_lost must run: {events:?}");
    assert!(wl < first_data && first_data < rl, "{events:?}");
}

/// Without half-close support, a peer's `shutdown(Write)` ends the connection with
/// `ConnectionDone` (no `read_connection_lost`).
#[test]
fn peer_half_close_without_half_close_support_ends_the_connection() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let addr = listen(&r, factory(move || Rec::new(&l).boxed()));
    let client = client_then_stop(&r, move || {
        let mut s = connect(addr);
        s.write_all(b"x").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut buf = [0u8; 8];
        s.read(&mut buf).map_err(|e| e.kind())
    });
    run(&r);
    assert_eq!(join(client), Ok(0));
    let reason = check_lifecycle(&log);
    assert!(matches!(reason, Reason::ConnectionDone), "{reason:?}");
    assert!(!log.borrow().iter().any(|e| matches!(e, Ev::ReadLost)));
}

/// Through a handle kept from another callback, `lose_connection` also flushes first.
#[test]
fn lose_connection_through_a_handle_from_a_timer_flushes_first() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let addr = listen(
        &r,
        factory(move || {
            Rec::new(&l)
                .on_made(|cx| {
                    let h = cx.handle();
                    cx.reactor()
                        .call_later(Duration::from_millis(10), move |_| {
                            h.write(&pattern(1024 * 1024));
                            h.lose_connection();
                        });
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
    assert_eq!(err, None);
    assert!(data == pattern(1024 * 1024), "got {} bytes", data.len());
    let reason = check_lifecycle(&log);
    assert!(matches!(reason, Reason::ConnectionDone), "{reason:?}");
}

/// Both directions shut one after the other: the peer's FIN gives `read_connection_lost`,
/// our `lose_write_connection` then gives `write_connection_lost`, and with both sides shut
/// the connection ends with `ConnectionDone`, once.
#[test]
fn half_close_both_ways_ends_with_connection_done() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let addr = listen(
        &r,
        factory(move || {
            Rec::new(&l)
                .half_closeable()
                .on_read_lost(|cx| {
                    cx.transport().write(b"last words");
                    cx.transport().lose_write_connection();
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&r, move || {
        let mut s = connect(addr);
        s.write_all(b"done talking").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let (data, err) = read_until_closed(&mut s);
        (data, err.map(|e| e.kind()))
    });
    run(&r);
    let (data, err) = join(client);
    assert_eq!(err, None);
    assert_eq!(data, b"last words");
    let reason = check_lifecycle(&log);
    assert!(matches!(reason, Reason::ConnectionDone), "{reason:?}");
    let events = log.borrow();
    let rl = events.iter().position(|e| matches!(e, Ev::ReadLost));
    let wl = events.iter().position(|e| matches!(e, Ev::WriteLost));
    assert!(rl.is_some() && wl.is_some() && rl < wl, "{events:?}");
}

/// `lose_connection` after `lose_write_connection` still closes the connection (after the
/// buffered bytes went out).
#[test]
fn lose_connection_after_lose_write_connection_closes() {
    let r = reactor();
    let log = new_log();
    let l = log.clone();
    let addr = listen(
        &r,
        factory(move || {
            Rec::new(&l)
                .on_made(|cx| {
                    cx.transport().write(b"half");
                    cx.transport().lose_write_connection();
                    cx.transport().lose_connection();
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
    assert_eq!(data, b"half");
    assert_eq!(err, None);
    let reason = check_lifecycle(&log);
    assert!(matches!(reason, Reason::ConnectionDone), "{reason:?}");
}

/// At shutdown, bytes the kernel can take at once still go out before the close.
#[test]
fn shutdown_sends_what_it_can_before_closing() {
    let r = reactor();
    let addr = listen(
        &r,
        factory(|| {
            let log = new_log();
            Rec::new(&log)
                .on_data(|cx, _| {
                    cx.transport().write(b"goodbye");
                    cx.reactor().stop().unwrap();
                })
                .boxed()
        }),
    );
    let client = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(b"x").unwrap();
        let (data, _) = read_until_closed(&mut s);
        data
    });
    run(&r);
    assert_eq!(join(client), b"goodbye");
}
