//! Flow control over loopback: push and pull producers, water marks, pause_writing /
//! resume_writing, and a paused transport that still notices the peer closing.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use torsion::{ConnectionHandle, Cx, Producer, Protocol, Reactor, Reason};

const CHUNK: usize = 16 * 1024;

/// A push producer that writes one chunk per loop pass through a handle until paused.
struct Firehose {
    handle: ConnectionHandle,
    left: Rc<Cell<usize>>,
    paused: Rc<Cell<bool>>,
    max_buffered: Rc<Cell<usize>>,
    pauses: Rc<Cell<u32>>,
}

impl Firehose {
    fn pump(
        r: &Reactor,
        h: ConnectionHandle,
        left: Rc<Cell<usize>>,
        paused: Rc<Cell<bool>>,
        max: Rc<Cell<usize>>,
    ) {
        if paused.get() || left.get() == 0 || !h.is_connected() {
            return;
        }
        h.write(&pattern(CHUNK));
        left.set(left.get() - 1);
        max.set(max.get().max(h.buffered_len().unwrap_or(0)));
        if left.get() == 0 {
            h.lose_connection();
            return;
        }
        r.call_later(Duration::ZERO, move |r| {
            Firehose::pump(r, h, left, paused, max)
        });
    }
}

impl Producer for Firehose {
    fn pause_producing(&mut self, _cx: &mut Cx<'_>) {
        self.paused.set(true);
        self.pauses.set(self.pauses.get() + 1);
    }

    fn resume_producing(&mut self, cx: &mut Cx<'_>) {
        self.paused.set(false);
        Firehose::pump(
            cx.reactor(),
            self.handle.clone(),
            self.left.clone(),
            self.paused.clone(),
            self.max_buffered.clone(),
        );
    }
}

#[test]
fn push_producer_is_paused_at_the_high_mark_and_memory_stays_bounded() {
    const CHUNKS: usize = 512; // 8 MiB
    let reactor = reactor();
    let max = Rc::new(Cell::new(0));
    let pauses = Rc::new(Cell::new(0));
    let (m, p) = (max.clone(), pauses.clone());
    let addr = listen(
        &reactor,
        factory(move || {
            let (m, p) = (m.clone(), p.clone());
            Box::new(Starter(Some(Box::new(move |cx: &mut Cx<'_>| {
                let (left, paused) = (Rc::new(Cell::new(CHUNKS)), Rc::new(Cell::new(false)));
                let producer = Firehose {
                    handle: cx.handle(),
                    left: left.clone(),
                    paused: paused.clone(),
                    max_buffered: m.clone(),
                    pauses: p,
                };
                cx.transport()
                    .register_producer(Box::new(producer), true)
                    .unwrap();
                // A push producer decides for itself when to write: start the pump.
                let h = cx.handle();
                cx.reactor().call_later(Duration::ZERO, move |r| {
                    Firehose::pump(r, h, left, paused, m)
                });
            }))))
        }),
    );
    let client = client_then_stop(&reactor, move || {
        let mut s = small_window_client(addr);
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        // A slow reader: small reads with pauses, so the server's buffer fills up.
        loop {
            match s.read(&mut buf[..8192]) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => panic!("read failed: {e}"),
            }
            // About 8 MB/s at most: far slower than the producer, so its buffer fills.
            std::thread::sleep(Duration::from_millis(1));
        }
        total
    });
    run_for(&reactor, Duration::from_secs(30));
    let total = join(client);
    assert_eq!(total, CHUNKS * CHUNK, "every byte arrives");
    assert!(pauses.get() > 0, "a slow reader must pause the producer");
    assert!(
        max.get() <= 64 * 1024 + CHUNK,
        "buffered {} > high mark + one write",
        max.get()
    );
}

/// A client whose small receive window keeps the kernel from absorbing a whole stream.
fn small_window_client(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(32 * 1024).unwrap();
    sock.connect(&addr.into()).unwrap();
    let s: std::net::TcpStream = sock.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Runs a closure in connection_made.
type StartFn = Box<dyn FnOnce(&mut Cx<'_>)>;

struct Starter(Option<StartFn>);

impl Protocol for Starter {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        if let Some(f) = self.0.take() {
            f(cx);
        }
    }
}

/// A pull producer writing `n` chunks, then unregistering.
struct Chunks {
    left: usize,
    calls: Rc<Cell<usize>>,
}

impl Producer for Chunks {
    fn resume_producing(&mut self, cx: &mut Cx<'_>) {
        self.calls.set(self.calls.get() + 1);
        if self.left == 0 {
            cx.transport().unregister_producer();
            return;
        }
        self.left -= 1;
        cx.transport().write(&[b'p'; CHUNK]);
    }
}

#[test]
fn lose_connection_waits_for_a_pull_producer_to_unregister() {
    const N: usize = 500;
    let reactor = reactor();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let addr = listen(
        &reactor,
        factory(move || {
            let c = c.clone();
            Box::new(Starter(Some(Box::new(move |cx: &mut Cx<'_>| {
                let t = cx.transport();
                t.register_producer(Box::new(Chunks { left: N, calls: c }), false)
                    .unwrap();
                // Must not close before the producer is done.
                t.lose_connection();
            }))))
        }),
    );
    let client = client_then_stop(&reactor, move || {
        let mut s = connect(addr);
        read_until_closed(&mut s)
    });
    run(&reactor);
    let (data, err) = join(client);
    assert!(err.is_none(), "clean close expected, got {err:?}");
    assert_eq!(data.len(), N * CHUNK);
    assert!(data.iter().all(|&b| b == b'p'));
    assert_eq!(calls.get(), N + 1, "one resume per chunk plus the last one");
}

#[test]
fn second_registration_is_refused_and_producer_stops_on_close() {
    struct Idle(Rc<Cell<bool>>);
    impl Producer for Idle {
        fn resume_producing(&mut self, _: &mut Cx<'_>) {}
        fn stop_producing(&mut self, _: &mut Cx<'_>) {
            self.0.set(true);
        }
    }
    let reactor = reactor();
    let stopped = Rc::new(Cell::new(false));
    let refused = Rc::new(Cell::new(false));
    let (s2, r2) = (stopped.clone(), refused.clone());
    let addr = listen(
        &reactor,
        factory(move || {
            let (s2, r2) = (s2.clone(), r2.clone());
            Box::new(Starter(Some(Box::new(move |cx: &mut Cx<'_>| {
                let t = cx.transport();
                t.register_producer(Box::new(Idle(s2.clone())), true)
                    .unwrap();
                r2.set(t.register_producer(Box::new(Idle(s2)), true).is_err());
            }))))
        }),
    );
    let client = client_then_stop(&reactor, move || {
        let s = connect(addr);
        std::thread::sleep(Duration::from_millis(50));
        drop(s);
        std::thread::sleep(Duration::from_millis(100));
    });
    run(&reactor);
    join(client);
    assert!(refused.get(), "a second registration is an error");
    assert!(
        stopped.get(),
        "a registered push producer is stopped when the connection ends"
    );
}

#[derive(Default)]
struct Marks {
    paused: Cell<u32>,
    resumed: Cell<u32>,
}

struct Writer(Rc<Marks>);

impl Protocol for Writer {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        // 16 MiB at once into a peer that does not read yet and has a small window: far
        // over the high mark whatever the kernel's buffers.
        cx.transport().write(&vec![b'w'; 16 << 20]);
        cx.transport().lose_connection();
    }
    fn pause_writing(&mut self, cx: &mut Cx<'_>) {
        assert!(cx.transport().buffered_len() > 64 * 1024);
        self.0.paused.set(self.0.paused.get() + 1);
    }
    fn resume_writing(&mut self, cx: &mut Cx<'_>) {
        assert!(cx.transport().buffered_len() <= 16 * 1024);
        self.0.resumed.set(self.0.resumed.get() + 1);
    }
}

#[test]
fn protocol_without_producer_gets_pause_and_resume_writing() {
    let reactor = reactor();
    let marks = Rc::new(Marks::default());
    let m = marks.clone();
    let addr = listen(&reactor, factory(move || Box::new(Writer(m.clone()))));
    let client = client_then_stop(&reactor, move || {
        let mut s = small_window_client(addr);
        std::thread::sleep(Duration::from_millis(100));
        read_until_closed(&mut s).0.len()
    });
    run(&reactor);
    assert_eq!(join(client), 16 << 20);
    assert_eq!(marks.paused.get(), 1);
    assert_eq!(marks.resumed.get(), 1);
}

/// Pauses reading at once and records how the connection ends.
struct PausedRecorder(Rc<RefCell<Option<Reason>>>);

impl Protocol for PausedRecorder {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        cx.transport().pause_producing();
    }
    fn connection_lost(&mut self, _: &mut Cx<'_>, reason: Reason) {
        *self.0.borrow_mut() = Some(reason);
    }
}

fn paused_peer_end(how: fn(std::net::TcpStream)) -> Option<Reason> {
    let reactor = reactor();
    let seen = Rc::new(RefCell::new(None));
    let s2 = seen.clone();
    let addr = listen(
        &reactor,
        factory(move || Box::new(PausedRecorder(s2.clone()))),
    );
    let seen2 = seen.clone();
    reactor.call_later(Duration::from_millis(10), move |r| {
        // Stop as soon as connection_lost has been seen.
        fn poll(r: &Reactor, seen: Rc<RefCell<Option<Reason>>>) {
            if seen.borrow().is_some() {
                let _ = r.stop();
            } else {
                r.call_later(Duration::from_millis(5), move |r| poll(r, seen));
            }
        }
        poll(r, seen2);
    });
    let client = std::thread::spawn(move || {
        let s = connect(addr);
        std::thread::sleep(Duration::from_millis(50));
        how(s);
    });
    run_for(&reactor, Duration::from_secs(5));
    join(client);
    seen.take()
}

#[test]
fn paused_transport_notices_peer_fin() {
    let r = paused_peer_end(|s| {
        s.shutdown(Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    assert!(matches!(r, Some(Reason::ConnectionDone)), "got {r:?}");
}

#[test]
fn paused_transport_notices_peer_reset() {
    let r = paused_peer_end(|s| {
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        let mut s = s;
        let _ = s.write_all(b"unread");
        drop(s);
    });
    assert!(matches!(r, Some(Reason::ConnectionLost(_))), "got {r:?}");
}

/// Each time it is resumed, writes until its own buffer is over the high mark (the kernel
/// may take megabytes first).
struct Burst {
    log: Rc<RefCell<Vec<&'static str>>>,
    left: usize,
    written: Rc<Cell<usize>>,
}

impl Producer for Burst {
    fn pause_producing(&mut self, _: &mut Cx<'_>) {
        self.log.borrow_mut().push("pause");
    }
    fn resume_producing(&mut self, cx: &mut Cx<'_>) {
        self.log.borrow_mut().push("resume");
        if self.left == 0 {
            cx.transport().unregister_producer();
            cx.transport().lose_connection();
            return;
        }
        self.left -= 1;
        let chunk = vec![b'b'; 1 << 20];
        for _ in 0..256 {
            cx.transport().write(&chunk);
            self.written.set(self.written.get() + chunk.len());
            if cx.transport().buffered_len() > 64 * 1024 {
                break;
            }
        }
        let log = self.log.clone();
        cx.reactor()
            .call_later(Duration::ZERO, move |_| log.borrow_mut().push("next pass"));
    }
}

#[test]
fn a_producer_that_overfills_from_resume_is_paused_in_the_same_cycle() {
    let reactor = reactor();
    let log = Rc::new(RefCell::new(Vec::new()));
    let written = Rc::new(Cell::new(0));
    let (l, w) = (log.clone(), written.clone());
    let addr = listen(
        &reactor,
        factory(move || {
            let (l, w) = (l.clone(), w.clone());
            Box::new(Starter(Some(Box::new(move |cx: &mut Cx<'_>| {
                let t = cx.transport();
                let burst = Burst {
                    log: l,
                    left: 4,
                    written: w.clone(),
                };
                t.register_producer(Box::new(burst), true).unwrap();
                // Start over the high mark (the kernel may take megabytes first), so the
                // first resume comes once it drains.
                let chunk = vec![b'a'; 1 << 20];
                for _ in 0..256 {
                    t.write(&chunk);
                    w.set(w.get() + chunk.len());
                    if t.buffered_len() > 64 * 1024 {
                        break;
                    }
                }
            }))))
        }),
    );
    let client = client_then_stop(&reactor, move || {
        let mut s = small_window_client(addr);
        read_until_closed(&mut s).0.len()
    });
    run(&reactor);
    assert_eq!(join(client), written.get());
    let log = log.borrow();
    let calls: Vec<&str> = log.iter().copied().filter(|e| *e != "next pass").collect();
    assert_eq!(
        calls,
        [
            "pause", "resume", "pause", "resume", "pause", "resume", "pause", "resume", "pause",
            "resume"
        ],
        "{log:?}"
    );
    // Each burst's pause comes before the loop's next pass.
    for (i, e) in log.iter().enumerate() {
        if *e == "resume" && i + 1 < log.len() {
            assert_ne!(log[i + 1], "next pass", "{log:?}");
        }
    }
}
