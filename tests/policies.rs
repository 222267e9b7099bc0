//! `protocols::policies` on real loopback connections: the timers run on a `testing::Clock`
//! that the test moves from reactor callbacks, and reach the connections through their
//! handles. Twisted's `ThrottlingTests.test_limit` is ported here.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use torsion::factory::from_fn;
use torsion::protocols::policies::{
    LimitConnectionsByPeer, LimitTotalConnectionsFactory, ThrottlingFactory, TimeoutFactory,
    WrappingFactory,
};
use torsion::protocols::wire::Chargen;
use torsion::testing::Clock;
use torsion::{
    Address, ClientFactory, ConnectError, Connector, Cx, Factory, Producer, Protocol, Reactor,
    Reason,
};

/// One step of a script: run every 5 ms until it returns true.
type Step = Box<dyn FnMut(&Reactor) -> bool>;

/// Runs `steps` in order on the reactor, each polled until it is done, then stops it.
fn script(reactor: &Reactor, steps: Vec<Step>) {
    fn tick(reactor: &Reactor, mut steps: std::collections::VecDeque<Step>) {
        while let Some(step) = steps.front_mut() {
            if !step(reactor) {
                reactor.call_later(Duration::from_millis(5), move |r| tick(r, steps));
                return;
            }
            steps.pop_front();
        }
        let _ = reactor.stop();
    }
    let steps = steps.into_iter().collect();
    reactor.call_later(Duration::ZERO, move |r| tick(r, steps));
    run(reactor);
}

fn step(f: impl FnMut(&Reactor) -> bool + 'static) -> Step {
    Box::new(f)
}

/// An action that is done at once.
fn act(mut f: impl FnMut() + 'static) -> Step {
    Box::new(move |_| {
        f();
        true
    })
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn an_idle_connection_times_out_and_a_busy_one_does_not() {
    let reactor = reactor();
    let clock = Clock::new();
    let log = new_log();
    let l = log.clone();
    let inner = factory(move || Rec::new(&l).boxed());
    let factory = TimeoutFactory::new(inner, clock.clone()).with_period(Some(secs(3.0)));
    let addr = listen(&reactor, Rc::new(factory));
    let (tx, rx) = mpsc::channel::<&'static [u8]>();
    let client = thread::spawn(move || {
        let mut s = connect(addr);
        while let Ok(msg) = rx.recv() {
            s.write_all(msg).unwrap();
        }
        read_until_closed(&mut s).0
    });
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    let (c1, c2, c3, c4) = (clock.clone(), clock.clone(), clock.clone(), clock.clone());
    script(
        &reactor,
        vec![
            step(move |_| !l1.borrow().is_empty()),
            act(move || c1.pump(&[secs(0.5), secs(1.0), secs(1.0), secs(0.4)])),
            act(move || tx.send(b"ping").unwrap()),
            step(move |_| !received(&l2).is_empty()),
            // 2.9 s in, the read reset the countdown: 3 more seconds from here.
            act(move || c2.pump(&[secs(1.0), secs(1.0), secs(0.9)])),
            step(move |_| lost_reasons(&l3).is_empty()),
            act(move || c3.advance(secs(0.2))),
            step({
                let l = log.clone();
                move |_| !lost_reasons(&l).is_empty()
            }),
            act(move || assert!(c4.calls().is_empty())),
        ],
    );
    assert!(check_lifecycle(&log).is_clean());
    assert!(join(client).is_empty());
}

/// Twisted's `EchoProtocol` registered as its own push producer, with flags to look at.
#[derive(Default)]
struct Flags {
    paused: Cell<bool>,
    pauses: Cell<u32>,
    got: RefCell<Vec<u8>>,
}

struct FlagProducer(Rc<Flags>);
impl Producer for FlagProducer {
    fn pause_producing(&mut self, _: &mut Cx<'_>) {
        self.0.paused.set(true);
        self.0.pauses.set(self.0.pauses.get() + 1);
    }
    fn resume_producing(&mut self, _: &mut Cx<'_>) {
        self.0.paused.set(false);
    }
}

struct EchoProducing(Rc<Flags>);
impl Protocol for EchoProducing {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        let p = Box::new(FlagProducer(self.0.clone()));
        cx.transport().register_producer(p, true).unwrap();
    }
    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        self.0.got.borrow_mut().extend_from_slice(data);
        cx.write(data);
    }
}

fn throttled_echo(
    reactor: &Reactor,
    clock: &Clock,
    limits: impl FnOnce(ThrottlingFactory<Clock>) -> ThrottlingFactory<Clock>,
) -> (
    std::net::SocketAddr,
    Rc<Flags>,
    Rc<ThrottlingFactory<Clock>>,
) {
    let flags = Rc::new(Flags::default());
    let f = flags.clone();
    let inner: Rc<dyn Factory> = Rc::new(from_fn(move |_| {
        Some(Box::new(EchoProducing(f.clone())) as Box<dyn Protocol>)
    }));
    let factory = Rc::new(limits(ThrottlingFactory::new(inner, clock.clone())));
    let addr = listen(reactor, factory.clone());
    (addr, flags, factory)
}

#[test]
fn the_write_limit_pauses_a_real_connections_producer() {
    let reactor = reactor();
    let clock = Clock::new();
    let (addr, flags, factory) = throttled_echo(&reactor, &clock, |f| f.write_limit(10));
    let client = client_then_stop(&reactor, move || {
        let mut s = connect(addr);
        assert_eq!(
            echo_round_trip(&mut s, b"0123456789abcdefghij"),
            b"0123456789abcdefghij"
        );
        thread::sleep(Duration::from_secs(5));
    });
    let (f1, f2, f3) = (flags.clone(), flags.clone(), flags.clone());
    let (c1, c2) = (clock.clone(), clock.clone());
    let fac = factory.clone();
    script(
        &reactor,
        vec![
            step(move |_| fac.written_this_second() == 20),
            act(move || assert!(!f1.paused.get())),
            act(move || c1.advance(secs(1.05))),
            act(move || assert!(f2.paused.get(), "paused through the connection's handle")),
            act(move || c2.advance(secs(1.05))),
            act(move || assert!(!f3.paused.get())),
        ],
    );
    assert_eq!(flags.pauses.get(), 1);
    drop(client);
}

#[test]
fn the_read_limit_stops_reading_until_the_throttle_ends() {
    let reactor = reactor();
    let clock = Clock::new();
    let (addr, flags, _factory) = throttled_echo(&reactor, &clock, |f| f.read_limit(10));
    let (tx, rx) = mpsc::channel::<&'static [u8]>();
    let client = thread::spawn(move || {
        let mut s = connect(addr);
        while let Ok(msg) = rx.recv() {
            s.write_all(msg).unwrap();
        }
        // Stay connected until the reactor stops.
        read_until_closed(&mut s);
    });
    let (f1, f2, f3) = (flags.clone(), flags.clone(), flags.clone());
    let (c1, c2) = (clock.clone(), clock.clone());
    let tx2 = tx.clone();
    let waited = Rc::new(Cell::new(0));
    let w = waited.clone();
    script(
        &reactor,
        vec![
            act(move || tx.send(b"0123456789abcdefghij").unwrap()),
            step(move |_| f1.got.borrow().len() == 20),
            act(move || c1.advance(secs(1.05))),
            act(move || tx2.send(b"more").unwrap()),
            // Paused: "more" waits in the socket (give it 100 ms to show up wrongly).
            step(move |_| {
                assert_eq!(f2.got.borrow().len(), 20, "read while throttled");
                w.set(w.get() + 1);
                w.get() >= 20
            }),
            act(move || c2.advance(secs(1.05))),
            step(move |_| f3.got.borrow().len() == 24),
        ],
    );
    drop(client);
}

#[test]
fn a_throttled_pull_producer_stops_and_resumes() {
    let reactor = reactor();
    let clock = Clock::new();
    let factory =
        Rc::new(ThrottlingFactory::new(Chargen::factory(), clock.clone()).write_limit(1000));
    let addr = listen(&reactor, factory.clone());
    let (tx, rx) = mpsc::channel::<usize>();
    let client = thread::spawn(move || {
        let mut s = connect(addr);
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
            if tx.send(total).is_err() {
                break;
            }
        }
    });
    let read = Rc::new(Cell::new(0usize));
    let rx = Rc::new(rx);
    let poll = {
        let read = read.clone();
        move || {
            while let Ok(n) = rx.try_recv() {
                read.set(n);
            }
            read.get()
        }
    };
    let (p1, p2, p3, p4) = (poll.clone(), poll.clone(), poll.clone(), poll);
    let (c1, c2) = (clock.clone(), clock.clone());
    let mark = Rc::new(Cell::new(0usize));
    let (m1, m2, m3) = (mark.clone(), mark.clone(), mark.clone());
    let quiet = Rc::new(Cell::new(0));
    let q = quiet.clone();
    let fac = factory.clone();
    script(
        &reactor,
        vec![
            step(move |_| p1() > 1 << 20),
            // Over the limit by far: throttled for a long time from the check at t = 1.
            act(move || c1.advance(secs(1.0))),
            // Let what was in flight arrive, then nothing more may come.
            step(move |_| {
                let before = m1.replace(p2());
                q.set(if before == m1.get() { q.get() + 1 } else { 0 });
                q.get() >= 20
            }),
            act(move || assert_eq!(fac.written_this_second(), 0)),
            act(move || c2.advance(secs(1e7))),
            step(move |_| p3() > m2.get() + (1 << 20)),
            act(move || assert!(p4() > m3.get())),
        ],
    );
    drop(client);
}

#[test]
fn over_the_connection_limit_a_client_is_refused_until_one_leaves() {
    // Twisted's ThrottlingTests.test_limit: at most 2.
    let reactor = reactor();
    let clock = Clock::new();
    let (addr, _flags, factory) = throttled_echo(&reactor, &clock, |f| f.max_connections(2));
    let (tx, rx) = mpsc::channel::<()>();
    let client = client_then_stop(&reactor, move || {
        let mut c1 = connect(addr);
        let mut c2 = connect(addr);
        assert_eq!(echo_round_trip(&mut c1, b"1"), b"1");
        assert_eq!(echo_round_trip(&mut c2, b"2"), b"2");
        if let Some(mut c3) = connect_or_reset(addr) {
            let (data, _) = read_until_closed(&mut c3);
            assert!(data.is_empty(), "the third connection is closed at once");
        }
        tx.send(()).unwrap();
        drop(c1);
        // The server notices c1 is gone; then a fourth gets in.
        let mut c4 = loop {
            thread::sleep(Duration::from_millis(20));
            if let Some(mut c) = connect_or_reset(addr) {
                c.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut b = [0u8; 1];
                if c.write_all(b"4").is_ok() && c.read_exact(&mut b).is_ok() {
                    break c;
                }
            }
        };
        c4.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        assert_eq!(echo_round_trip(&mut c4, b"4"), b"4");
        assert_eq!(echo_round_trip(&mut c2, b"2"), b"2");
    });
    let counts = Rc::new(RefCell::new(Vec::new()));
    let c = counts.clone();
    let f = factory.clone();
    reactor.call_later(Duration::ZERO, move |r| {
        fn watch(r: &Reactor, f: Rc<ThrottlingFactory<Clock>>, c: Rc<RefCell<Vec<usize>>>) {
            c.borrow_mut().push(f.connection_count());
            r.call_later(Duration::from_millis(5), move |r| watch(r, f, c));
        }
        watch(r, f, c);
    });
    run(&reactor);
    join(client);
    assert!(rx.try_recv().is_ok());
    assert!(counts.borrow().iter().all(|&n| n <= 2));
}

#[test]
fn the_total_limit_serves_the_overflow_protocol() {
    struct Busy;
    impl Protocol for Busy {
        fn connection_made(&mut self, cx: &mut Cx<'_>) {
            cx.write(b"busy\r\n");
            cx.transport().lose_connection();
        }
    }
    let reactor = reactor();
    let busy: Rc<dyn Factory> = Rc::new(from_fn(|_| Some(Box::new(Busy) as Box<dyn Protocol>)));
    let factory = LimitTotalConnectionsFactory::new(echo_factory(), Some(1)).with_overflow(busy);
    let addr = listen(&reactor, Rc::new(factory));
    let client = client_then_stop(&reactor, move || {
        let mut first = connect(addr);
        assert_eq!(echo_round_trip(&mut first, b"hi"), b"hi");
        let mut second = connect(addr);
        assert_eq!(read_until_closed(&mut second).0, b"busy\r\n");
        assert_eq!(echo_round_trip(&mut first, b"still"), b"still");
    });
    run(&reactor);
    join(client);
}

#[test]
fn the_per_peer_limit_refuses_the_third_from_one_host() {
    let reactor = reactor();
    let factory = LimitConnectionsByPeer::new(echo_factory()).with_max_per_peer(2);
    let addr = listen(&reactor, Rc::new(factory));
    let client = client_then_stop(&reactor, move || {
        let mut a = connect(addr);
        let mut b = connect(addr);
        assert_eq!(echo_round_trip(&mut a, b"a"), b"a");
        assert_eq!(echo_round_trip(&mut b, b"b"), b"b");
        if let Some(mut c) = connect_or_reset(addr) {
            assert!(read_until_closed(&mut c).0.is_empty());
        }
    });
    run(&reactor);
    join(client);
}

/// Records what a client factory is told (Twisted's `WrapperTests` on the client side).
#[derive(Default)]
struct Told {
    events: RefCell<Vec<&'static str>>,
}

impl Factory for Told {
    fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> {
        struct Bye;
        impl Protocol for Bye {
            fn connection_made(&mut self, cx: &mut Cx<'_>) {
                cx.transport().lose_connection();
            }
        }
        Some(Box::new(Bye))
    }
}

impl Told {
    /// Records `what`; stops the reactor once one attempt failed and the other was lost.
    fn note(&self, what: &'static str, c: &Connector) {
        let mut events = self.events.borrow_mut();
        events.push(what);
        if events.contains(&"failed") && events.contains(&"lost") {
            let _ = c.reactor().map(|r| r.stop());
        }
    }
}

impl ClientFactory for Told {
    fn started_connecting(&self, _: &Connector) {
        self.events.borrow_mut().push("started");
    }
    fn client_connection_failed(&self, c: &Connector, _: ConnectError) {
        self.note("failed", c);
    }
    fn client_connection_lost(&self, c: &Connector, _: Reason) {
        self.note("lost", c);
    }
}

/// Connects once to `addr` and once to a closed port through `wrap(told)`.
fn client_callbacks(wrap: impl FnOnce(Rc<dyn ClientFactory>) -> Rc<dyn ClientFactory>) {
    let reactor = reactor();
    let addr = listen(&reactor, echo_factory());
    let told = Rc::new(Told::default());
    let wrapping = wrap(told.clone());
    reactor.connect_tcp("127.0.0.1", addr.port(), wrapping.clone());
    reactor.connect_tcp("127.0.0.1", free_port(), wrapping);
    run(&reactor);
    let events = told.events.borrow().clone();
    assert_eq!(events.iter().filter(|e| **e == "started").count(), 2);
    assert!(
        events.contains(&"failed") && events.contains(&"lost"),
        "{events:?}"
    );
}

type Kept = Rc<RefCell<Option<Rc<WrappingFactory<dyn ClientFactory>>>>>;

#[test]
fn the_wrapping_factory_passes_on_the_client_callbacks() {
    let kept: Kept = Rc::default();
    let k = kept.clone();
    client_callbacks(move |told| {
        let w = Rc::new(WrappingFactory::new(told));
        *k.borrow_mut() = Some(w.clone());
        w
    });
    assert!(kept.borrow().as_ref().unwrap().is_empty());
}

#[test]
fn the_other_wrappers_pass_on_the_client_callbacks_too() {
    client_callbacks(|told| Rc::new(TimeoutFactory::new(told, Clock::new())));
    client_callbacks(|told| Rc::new(ThrottlingFactory::new(told, Clock::new())));
    client_callbacks(|told| Rc::new(LimitConnectionsByPeer::new(told)));
}
