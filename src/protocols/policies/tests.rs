//! Twisted's `ThrottlingTests` and `WrapperTests` on a `testing::Clock` and a shared
//! `StringTransport`, and the flow-control cases torsion adds.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use super::reach::testing::Conn;
use super::*;
use crate::factory::from_fn;
use crate::testing::{Clock, ProducerState};
use crate::{Address, Cx, Factory, Producer, Protocol, Transport};

/// What the echo server's producer and protocol were told, shared with the test.
#[derive(Default)]
struct Flags {
    producer_paused: Cell<bool>,
    writing_paused: Cell<bool>,
    pulls: Cell<u32>,
}

struct FlagProducer(Rc<Flags>);
impl Producer for FlagProducer {
    fn pause_producing(&mut self, _: &mut Cx<'_>) {
        self.0.producer_paused.set(true);
    }
    fn resume_producing(&mut self, _: &mut Cx<'_>) {
        self.0.producer_paused.set(false);
    }
}

/// A pull producer that counts its turns and writes one byte each.
struct Puller(Rc<Flags>);
impl Producer for Puller {
    fn resume_producing(&mut self, cx: &mut Cx<'_>) {
        self.0.pulls.set(self.0.pulls.get() + 1);
        cx.write(b"p");
    }
}

/// Twisted's `EchoProtocol`, registered as its own push producer; `seq` writes with
/// `write_vectored`, `pause` pauses its own transport, `pull` registers a pull producer,
/// `close` closes.
struct Echo {
    flags: Rc<Flags>,
    push: bool,
}

impl Protocol for Echo {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        if self.push {
            let p = Box::new(FlagProducer(self.flags.clone()));
            cx.transport().register_producer(p, true).unwrap();
        }
    }
    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        match data {
            b"seq" => cx.transport().write_vectored(&[b"bytes".as_slice(); 4]),
            b"pause" => cx.transport().pause_producing(),
            b"resume" => cx.transport().resume_producing(),
            b"pull" => {
                let p = Box::new(Puller(self.flags.clone()));
                cx.transport().register_producer(p, false).unwrap();
            }
            b"unregister" => cx.transport().unregister_producer(),
            b"close" => cx.transport().lose_connection(),
            _ => cx.write(data),
        }
    }
    fn pause_writing(&mut self, _: &mut Cx<'_>) {
        self.flags.writing_paused.set(true);
    }
    fn resume_writing(&mut self, _: &mut Cx<'_>) {
        self.flags.writing_paused.set(false);
    }
}

struct Setup {
    clock: Clock,
    factory: ThrottlingFactory<Clock>,
    conn: Conn,
    flags: Rc<Flags>,
}

fn throttled(
    push: bool,
    limits: impl FnOnce(ThrottlingFactory<Clock>) -> ThrottlingFactory<Clock>,
) -> Setup {
    let clock = Clock::new();
    let flags = Rc::new(Flags::default());
    let f = flags.clone();
    let server: Rc<dyn Factory> = Rc::new(from_fn(move |_| {
        Some(Box::new(Echo {
            flags: f.clone(),
            push,
        }) as Box<dyn Protocol>)
    }));
    let (t, reactor, reach) = Conn::transport();
    let factory = limits(ThrottlingFactory::new(server, clock.clone())).reach_with(reach);
    let p = factory
        .build_protocol(&Address::Tcp("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let conn = Conn::connect(reactor, t, p);
    Setup {
        clock,
        factory,
        conn,
        flags,
    }
}

fn advance(clock: &Clock, secs: f64) {
    clock.advance(Duration::from_secs_f64(secs));
}

#[test]
fn write_sequence_is_counted() {
    let mut s = throttled(false, |f| f);
    s.conn.feed(b"seq");
    assert_eq!(s.conn.t.borrow().value(), b"bytesbytesbytesbytes");
    assert_eq!(s.factory.written_this_second(), 20);
}

#[test]
fn write_limit_pauses_the_producer_for_the_excess() {
    let mut s = throttled(true, |f| f.write_limit(10));
    s.conn.feed(b"0123456789");
    s.conn.feed(b"abcdefghij");
    assert_eq!(s.conn.t.borrow().value(), b"0123456789abcdefghij");
    assert_eq!(s.factory.written_this_second(), 20);
    assert!(!s.flags.producer_paused.get());
    // 20 bytes against 10/s: paused at the check at t=1 for (20/10 - 1) = 1 s.
    advance(&s.clock, 1.05);
    assert_eq!(s.factory.written_this_second(), 0);
    assert!(s.flags.producer_paused.get());
    assert!(s.flags.writing_paused.get());
    advance(&s.clock, 1.05);
    assert_eq!(s.factory.written_this_second(), 0);
    assert!(!s.flags.producer_paused.get());
    assert!(!s.flags.writing_paused.get());
}

#[test]
fn read_limit_pauses_the_transport() {
    let mut s = throttled(false, |f| f.read_limit(10));
    for _ in 0..2 {
        s.conn.t.borrow_mut().clear();
        s.conn.feed(b"0123456789");
        s.conn.feed(b"abcdefghij");
        assert_eq!(s.conn.t.borrow().value(), b"0123456789abcdefghij");
        assert_eq!(s.factory.read_this_second(), 20);
        advance(&s.clock, 1.05);
        assert_eq!(s.factory.read_this_second(), 0);
        assert_eq!(s.conn.t.borrow().producer_state(), ProducerState::Paused);
        advance(&s.clock, 1.05);
        assert_eq!(s.factory.read_this_second(), 0);
        assert_eq!(s.conn.t.borrow().producer_state(), ProducerState::Producing);
    }
}

#[test]
fn a_throttle_ends_later_for_more_excess() {
    let mut s = throttled(false, |f| f.read_limit(10));
    s.conn.feed(&[b'x'; 45]);
    advance(&s.clock, 1.0);
    assert_eq!(s.conn.t.borrow().producer_state(), ProducerState::Paused);
    // 45/10 - 1 = 3.5 s.
    advance(&s.clock, 3.4);
    assert_eq!(s.conn.t.borrow().producer_state(), ProducerState::Paused);
    advance(&s.clock, 0.1);
    assert_eq!(s.conn.t.borrow().producer_state(), ProducerState::Producing);
}

#[test]
fn unthrottling_reads_keeps_the_protocols_own_pause() {
    let mut s = throttled(false, |f| f.read_limit(10));
    s.conn.feed(&[b'x'; 15]);
    s.conn.feed(b"pause"); // 20 bytes in all: throttled for 1 s
    advance(&s.clock, 1.05);
    assert_eq!(s.factory.read_this_second(), 0);
    advance(&s.clock, 1.05);
    assert_eq!(s.conn.t.borrow().producer_state(), ProducerState::Paused);
    s.conn.feed(b"resume");
    assert_eq!(s.conn.t.borrow().producer_state(), ProducerState::Producing);
}

#[test]
fn resuming_from_the_protocol_waits_for_the_throttle() {
    let mut s = throttled(false, |f| f.read_limit(10));
    s.conn.feed(&[b'x'; 30]);
    advance(&s.clock, 1.0); // throttled for 2 s
    s.conn.feed(b"pause");
    s.conn.feed(b"resume");
    assert_eq!(s.conn.t.borrow().producer_state(), ProducerState::Paused);
    // (One second at a time: a check run late by a long `advance` sees the later time.)
    advance(&s.clock, 1.0);
    assert_eq!(s.conn.t.borrow().producer_state(), ProducerState::Paused);
    advance(&s.clock, 1.0);
    assert_eq!(s.conn.t.borrow().producer_state(), ProducerState::Producing);
}

#[test]
fn unthrottling_writes_keeps_the_water_mark_pause() {
    let mut s = throttled(true, |f| f.write_limit(10));
    s.conn.feed(&[b'x'; 20]);
    advance(&s.clock, 1.05);
    assert!(s.flags.producer_paused.get() && s.flags.writing_paused.get());
    // The transport's buffer crosses its high mark while throttled (it would pause the
    // producer too, through the wrapper, which absorbs that).
    s.conn.with(|p, cx| p.pause_writing(cx));
    advance(&s.clock, 1.05);
    assert!(
        s.flags.producer_paused.get() && s.flags.writing_paused.get(),
        "still above the high water mark: nothing resumed"
    );
    // The buffer drains: the transport resumes the protocol (and the producer).
    s.conn.with(|p, cx| p.resume_writing(cx));
    assert!(!s.flags.writing_paused.get());
}

#[test]
fn a_pull_producer_waits_out_the_throttle() {
    let mut s = throttled(false, |f| f.write_limit(10));
    s.conn.feed(&[b'x'; 30]);
    s.conn.feed(b"pull");
    assert!(s.conn.t.borrow_mut().producer_mut().is_some());
    advance(&s.clock, 1.0); // throttled for 2 s: the pull producer is parked
    assert!(s.conn.t.borrow_mut().producer_mut().is_none());
    assert!(s.flags.writing_paused.get());
    s.conn.feed(b"close");
    assert!(
        !s.conn.t.borrow().disconnecting(),
        "the close waits for the producer"
    );
    advance(&s.clock, 2.0);
    let mut t = s.conn.t.borrow_mut();
    assert!(t.producer_mut().is_some() && !t.streaming());
    assert!(t.disconnecting());
}

#[test]
fn connection_limit_and_counting() {
    let s = throttled(false, |f| f.max_connections(2).read_limit(100));
    let addr = Address::Unknown;
    let second = s.factory.build_protocol(&addr).unwrap();
    assert_eq!(s.factory.connection_count(), 2);
    assert!(s.factory.build_protocol(&addr).is_none());
    drop(second);
    assert_eq!(s.factory.connection_count(), 1);
    let mut conn = s.conn;
    conn.lose();
    assert_eq!(s.factory.connection_count(), 0);
    assert!(
        s.clock.calls().is_empty(),
        "the checks stop with the last connection"
    );
}

#[test]
fn wrapper_passes_host_peer_and_producers_through() {
    #[derive(Default)]
    struct Seen {
        peer: Option<Address>,
        host: Option<Address>,
    }
    struct Looker(Rc<RefCell<Seen>>);
    impl Protocol for Looker {
        fn connection_made(&mut self, cx: &mut Cx<'_>) {
            let mut seen = self.0.borrow_mut();
            seen.peer = Some(cx.transport().peer());
            seen.host = Some(cx.transport().host());
        }
        fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
            struct P;
            impl Producer for P {
                fn resume_producing(&mut self, _: &mut Cx<'_>) {}
            }
            if data == b"register" {
                cx.transport().register_producer(Box::new(P), true).unwrap();
            } else {
                cx.transport().unregister_producer();
            }
        }
    }
    let seen = Rc::new(RefCell::new(Seen::default()));
    let s2 = seen.clone();
    let inner: Rc<dyn Factory> = Rc::new(from_fn(move |_| {
        Some(Box::new(Looker(s2.clone())) as Box<dyn Protocol>)
    }));
    let (t, reactor, reach) = Conn::transport();
    let factory = ThrottlingFactory::new(inner.clone(), Clock::new()).reach_with(reach);
    let mut c = Conn::connect(
        reactor,
        t,
        factory.build_protocol(&Address::Unknown).unwrap(),
    );
    assert_eq!(seen.borrow().peer, Some(c.t.borrow().peer()));
    assert_eq!(seen.borrow().host, Some(c.t.borrow().host()));
    c.feed(b"register");
    assert!(c.t.borrow_mut().producer_mut().is_some() && c.t.borrow().streaming());
    c.feed(b"unregister");
    assert!(c.t.borrow_mut().producer_mut().is_none());

    // The plain wrapper hands the wrapped protocol the real transport.
    let wrapping = WrappingFactory::new(inner);
    let mut p = wrapping.build_protocol(&Address::Unknown).unwrap();
    let reactor = crate::Reactor::new().unwrap();
    let mut t = crate::testing::StringTransport::with_addresses(
        Address::Tcp("10.9.9.9:1".parse().unwrap()),
        Address::Tcp("10.8.8.8:2".parse().unwrap()),
    );
    p.connection_made(&mut Cx::new(&mut t, &reactor));
    assert_eq!(seen.borrow().peer, Some(t.peer()));
    assert_eq!(seen.borrow().host, Some(t.host()));
    p.data_received(&mut Cx::new(&mut t, &reactor), b"register");
    assert!(t.producer_mut().is_some() && t.streaming());
    assert_eq!(wrapping.len(), 1);
}
