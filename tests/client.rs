//! Outgoing connections: `ClientFactory` callbacks and `Connector` over loopback (refused,
//! retry from inside the failure callback, timeout, cancel, the order of
//! `connection_lost` and `client_connection_lost`, a client `build_protocol` returning None).

mod common;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use torsion::{
    Address, ClientFactory, ConnectError, Connector, ConnectorError, ConnectorState, Factory,
    Protocol, Reason, TcpConnectOptions,
};

/// What a client factory saw, in order, together with what its protocols saw.
#[derive(Debug, Clone)]
enum C {
    Started,
    Failed(ConnectError),
    ClientLost(Reason),
    Made,
    Data(Vec<u8>),
    Lost(Reason),
}

type CLog = Rc<RefCell<Vec<C>>>;

type BuildFn = Box<dyn Fn(&CLog) -> Option<Box<dyn Protocol>>>;
type HookFn<A> = Box<dyn Fn(&Connector, &A)>;
type StartedFn = Box<dyn Fn(&Connector)>;

/// A client factory that records its callbacks and runs optional hooks after each.
struct CF {
    log: CLog,
    build: BuildFn,
    failed: Option<HookFn<ConnectError>>,
    lost: Option<HookFn<Reason>>,
    started: Option<StartedFn>,
}

impl CF {
    /// Builds recording protocols that write into the same log.
    fn new(log: &CLog) -> CF {
        CF {
            log: log.clone(),
            build: Box::new(|log| Some(recording_protocol(log))),
            failed: None,
            lost: None,
            started: None,
        }
    }

    fn build(mut self, f: impl Fn(&CLog) -> Option<Box<dyn Protocol>> + 'static) -> CF {
        self.build = Box::new(f);
        self
    }

    fn on_failed(mut self, f: impl Fn(&Connector, &ConnectError) + 'static) -> CF {
        self.failed = Some(Box::new(f));
        self
    }

    fn on_lost(mut self, f: impl Fn(&Connector, &Reason) + 'static) -> CF {
        self.lost = Some(Box::new(f));
        self
    }

    fn on_started(mut self, f: impl Fn(&Connector) + 'static) -> CF {
        self.started = Some(Box::new(f));
        self
    }
}

impl Factory for CF {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        (self.build)(&self.log)
    }
}

impl ClientFactory for CF {
    fn started_connecting(&self, connector: &Connector) {
        self.log.borrow_mut().push(C::Started);
        if let Some(f) = &self.started {
            f(connector);
        }
    }

    fn client_connection_failed(&self, connector: &Connector, reason: ConnectError) {
        self.log.borrow_mut().push(C::Failed(reason.clone()));
        if let Some(f) = &self.failed {
            f(connector, &reason);
        }
    }

    fn client_connection_lost(&self, connector: &Connector, reason: Reason) {
        self.log.borrow_mut().push(C::ClientLost(reason.clone()));
        if let Some(f) = &self.lost {
            f(connector, &reason);
        }
    }
}

/// A client protocol that records into the factory's log.
fn recording_protocol(log: &CLog) -> Box<dyn Protocol> {
    struct P(CLog);
    impl Protocol for P {
        fn connection_made(&mut self, _cx: &mut torsion::Cx<'_>) {
            self.0.borrow_mut().push(C::Made);
        }
        fn data_received(&mut self, _cx: &mut torsion::Cx<'_>, data: &[u8]) {
            self.0.borrow_mut().push(C::Data(data.to_vec()));
        }
        fn connection_lost(&mut self, _cx: &mut torsion::Cx<'_>, reason: Reason) {
            self.0.borrow_mut().push(C::Lost(reason));
        }
    }
    Box::new(P(log.clone()))
}

fn new_clog() -> CLog {
    Rc::new(RefCell::new(Vec::new()))
}

fn count(log: &CLog, f: impl Fn(&C) -> bool) -> usize {
    log.borrow().iter().filter(|e| f(e)).count()
}

/// Connecting to a port nobody listens on: `started_connecting`, then
/// `client_connection_failed(Refused)`.
#[test]
fn refused_gives_client_connection_failed_refused() {
    let r = reactor();
    let port = free_port();
    let log = new_clog();
    let f = CF::new(&log).on_failed(|c, _| {
        assert_eq!(c.state(), ConnectorState::Disconnected);
    });
    let connector = r.connect_tcp("127.0.0.1", port, Rc::new(f));
    assert_eq!(connector.destination(), ("127.0.0.1", port));
    assert_eq!(connector.state(), ConnectorState::Connecting);
    let l = log.clone();
    // Stop once the failure is in (or at the safety limit).
    fn wait(r: &torsion::Reactor, l: CLog) {
        if l.borrow().iter().any(|e| matches!(e, C::Failed(_))) {
            let _ = r.stop();
        } else {
            r.call_later(Duration::from_millis(2), move |r| wait(r, l));
        }
    }
    wait(&r, l);
    run(&r);
    let events = log.borrow().clone();
    assert!(matches!(events[0], C::Started), "{events:?}");
    assert_eq!(events.len(), 2, "{events:?}");
    match &events[1] {
        C::Failed(ConnectError::Refused(a)) => {
            assert_eq!(*a, SocketAddr::from(([127, 0, 0, 1], port)));
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(connector.state(), ConnectorState::Disconnected);
}

/// `connector.connect()` from inside `client_connection_failed` tries again; after two
/// refusals a listener appears on the port and the third attempt connects.
#[test]
fn connect_from_client_connection_failed_retries() {
    let r = reactor();
    let port = free_port();
    let log = new_clog();
    let failures = Rc::new(Cell::new(0u32));
    let fl = failures.clone();
    let rr = r.clone();
    let f = CF::new(&log)
        .on_failed(move |c, reason| {
            assert!(matches!(reason, ConnectError::Refused(_)), "{reason:?}");
            fl.set(fl.get() + 1);
            if fl.get() == 2 {
                rr.listen_tcp_with(
                    port,
                    echo_factory(),
                    torsion::TcpListenOptions {
                        interface: "127.0.0.1".into(),
                        ..Default::default()
                    },
                )
                .expect("listen on the port that refused");
            }
            c.connect()
                .expect("connect again from client_connection_failed");
            assert_eq!(c.state(), ConnectorState::Connecting);
        })
        .build(|log| {
            let l = log.clone();
            struct Stopper(CLog);
            impl Protocol for Stopper {
                fn connection_made(&mut self, cx: &mut torsion::Cx<'_>) {
                    self.0.borrow_mut().push(C::Made);
                    cx.reactor().stop().unwrap();
                }
            }
            Some(Box::new(Stopper(l)))
        });
    r.connect_tcp("127.0.0.1", port, Rc::new(f));
    run(&r);
    let kinds: Vec<&str> = log
        .borrow()
        .iter()
        .map(|e| match e {
            C::Started => "started",
            C::Failed(_) => "failed",
            C::Made => "made",
            C::ClientLost(_) => "client_lost",
            _ => "other",
        })
        .collect();
    // The reactor's shutdown then closes the connection: client_connection_lost.
    assert_eq!(
        kinds[..6],
        ["started", "failed", "started", "failed", "started", "made"]
    );
    assert_eq!(failures.get(), 2);
}

/// Retrying forever from `client_connection_failed` is not re-entrant: many attempts in a row
/// neither recurse nor stall.
#[test]
fn many_retries_from_client_connection_failed() {
    const ATTEMPTS: u32 = 200;
    let r = reactor();
    let port = free_port();
    let log = new_clog();
    let failures = Rc::new(Cell::new(0u32));
    let fl = failures.clone();
    let rr = r.clone();
    let f = CF::new(&log).on_failed(move |c, _| {
        fl.set(fl.get() + 1);
        if fl.get() < ATTEMPTS {
            c.connect().unwrap();
        } else {
            rr.stop().unwrap();
        }
    });
    r.connect_tcp("127.0.0.1", port, Rc::new(f));
    run(&r);
    assert_eq!(failures.get(), ATTEMPTS);
    assert_eq!(count(&log, |e| matches!(e, C::Started)), ATTEMPTS as usize);
}

/// A connect timeout ends the attempt with `ConnectError::TimedOut`, no sooner than asked.
#[test]
fn connect_timeout_gives_timed_out() {
    let (_listener, addr, _held) = unanswering_listener();
    let r = reactor();
    let log = new_clog();
    let start = Rc::new(Cell::new(None::<Instant>));
    let failed_at = Rc::new(Cell::new(None::<Instant>));
    let fa = failed_at.clone();
    let f = CF::new(&log).on_failed(move |c, _| {
        fa.set(Some(Instant::now()));
        assert_eq!(c.state(), ConnectorState::Disconnected);
    });
    start.set(Some(Instant::now()));
    r.connect_tcp_with(
        "127.0.0.1",
        addr.port(),
        Rc::new(f),
        TcpConnectOptions {
            timeout: Some(Duration::from_millis(200)),
            bind_address: None,
        },
    );
    // Leave time for a late second report before stopping.
    let fa = failed_at.clone();
    fn wait(r: &torsion::Reactor, fa: Rc<Cell<Option<Instant>>>) {
        if fa.get().is_some() {
            r.call_later(Duration::from_millis(300), |r| {
                let _ = r.stop();
            });
        } else {
            r.call_later(Duration::from_millis(5), move |r| wait(r, fa));
        }
    }
    wait(&r, fa);
    run(&r);
    let events = log.borrow().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(events[0], C::Started), "{events:?}");
    assert!(
        matches!(events[1], C::Failed(ConnectError::TimedOut)),
        "expected TimedOut, got {events:?}"
    );
    let took = failed_at.get().unwrap() - start.get().unwrap();
    assert!(
        took >= Duration::from_millis(200),
        "timed out early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "timed out late: {took:?}");
}

/// `client_connection_lost` comes after the protocol's own `connection_lost`, with the same
/// reason; `started_connecting` comes first.
#[test]
fn client_connection_lost_comes_after_connection_lost() {
    let r = reactor();
    let addr = listen(
        &r,
        factory(|| {
            let log = new_log();
            Rec::new(&log)
                .on_made(|cx| {
                    cx.transport().write(b"bye");
                    cx.transport().lose_connection();
                })
                .boxed()
        }),
    );
    let log = new_clog();
    let during: Rc<RefCell<Vec<ConnectorState>>> = Rc::default();
    let d = during.clone();
    let h = r.handle();
    let kept: Rc<RefCell<Option<Connector>>> = Rc::default();
    let k = kept.clone();
    let seen_connected = Rc::new(Cell::new(false));
    let sc = seen_connected.clone();
    let f = CF::new(&log)
        .on_started(move |c| *k.borrow_mut() = Some(c.clone()))
        .on_lost(move |c, _| {
            d.borrow_mut().push(c.state());
            assert!(c.connection().is_none());
            let _ = h.stop();
        });
    let k = kept.clone();
    let f = f.build(move |log| {
        // The connector, seen from the protocol's connection_made, is connected.
        struct Check(
            Box<dyn Protocol>,
            Rc<RefCell<Option<Connector>>>,
            Rc<Cell<bool>>,
        );
        impl Protocol for Check {
            fn connection_made(&mut self, cx: &mut torsion::Cx<'_>) {
                if let Some(c) = self.1.borrow().as_ref() {
                    self.2.set(
                        c.state() == ConnectorState::Connected
                            && c.connection() == Some(cx.handle()),
                    );
                }
                self.0.connection_made(cx);
            }
            fn data_received(&mut self, cx: &mut torsion::Cx<'_>, data: &[u8]) {
                self.0.data_received(cx, data);
            }
            fn connection_lost(&mut self, cx: &mut torsion::Cx<'_>, reason: Reason) {
                self.0.connection_lost(cx, reason);
            }
        }
        Some(Box::new(Check(
            recording_protocol(log),
            k.clone(),
            sc.clone(),
        )))
    });
    let connector = r.connect_tcp("127.0.0.1", addr.port(), Rc::new(f));
    run(&r);
    let events = log.borrow().clone();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            C::Started => "started",
            C::Made => "made",
            C::Data(_) => "data",
            C::Lost(_) => "lost",
            C::ClientLost(_) => "client_lost",
            C::Failed(_) => "failed",
        })
        .collect();
    let kinds: Vec<&str> = kinds.into_iter().filter(|k| *k != "data").collect();
    assert_eq!(
        kinds,
        ["started", "made", "lost", "client_lost"],
        "{events:?}"
    );
    let data: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            C::Data(d) => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(data, b"bye");
    for e in &events {
        if let C::Lost(r) | C::ClientLost(r) = e {
            assert!(matches!(r, Reason::ConnectionDone), "{events:?}");
        }
    }
    assert!(
        seen_connected.get(),
        "in connection_made the connector must be Connected, with this connection"
    );
    assert_eq!(*during.borrow(), [ConnectorState::Disconnected]);
    assert_eq!(connector.state(), ConnectorState::Disconnected);
}

/// A client `build_protocol` returning `None`: the connection is closed cleanly and the
/// factory gets `client_connection_lost(ConnectionDone)`, not `client_connection_failed`
/// (as Twisted).
#[test]
fn client_build_protocol_none_gives_client_connection_lost_done() {
    let r = reactor();
    let server_log = new_log();
    let sl = server_log.clone();
    let addr = listen(
        &r,
        factory(move || {
            Rec::new(&sl)
                .on_lost(|cx, _| {
                    let _ = cx.reactor().stop();
                })
                .boxed()
        }),
    );
    let log = new_clog();
    let f = CF::new(&log).build(|_| None);
    r.connect_tcp("127.0.0.1", addr.port(), Rc::new(f));
    run(&r);
    let events = log.borrow().clone();
    assert!(
        !events.iter().any(|e| matches!(e, C::Failed(_))),
        "client_connection_failed must not run: {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, C::ClientLost(Reason::ConnectionDone))),
        "client_connection_lost(ConnectionDone) must run: {events:?}"
    );
    assert_eq!(count(&log, |e| matches!(e, C::ClientLost(_))), 1);
    let reason = check_lifecycle(&server_log);
    assert!(
        matches!(reason, Reason::ConnectionDone),
        "the server must see an orderly close, got {reason:?}"
    );
}

/// `stop_connecting` right after `connect_tcp`: `client_connection_failed(Cancelled)` before it
/// returns, and no connection follows even though the server is there.
#[test]
fn stop_connecting_before_the_attempt_starts_gives_cancelled() {
    let r = reactor();
    let server_log = new_log();
    let sl = server_log.clone();
    let addr = listen(&r, factory(move || Rec::new(&sl).boxed()));
    let log = new_clog();
    let c = r.connect_tcp("127.0.0.1", addr.port(), Rc::new(CF::new(&log)));
    assert_eq!(c.stop_connecting(), Ok(()));
    {
        let events = log.borrow();
        assert!(
            matches!(events.last(), Some(C::Failed(ConnectError::Cancelled))),
            "client_connection_failed(Cancelled) must run inside stop_connecting: {events:?}"
        );
    }
    assert_eq!(c.state(), ConnectorState::Disconnected);
    assert_eq!(c.stop_connecting(), Err(ConnectorError::NotConnecting));
    r.call_later(Duration::from_millis(200), |r| r.stop().unwrap());
    run(&r);
    let events = log.borrow().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        server_log.borrow().is_empty(),
        "a cancelled attempt still connected"
    );
}

/// `stop_connecting` while the socket is connecting: `Cancelled`, and the timeout that was
/// armed for the attempt never reports later.
#[test]
fn stop_connecting_while_connecting_gives_cancelled_once() {
    let (_listener, addr, _held) = unanswering_listener();
    let r = reactor();
    let log = new_clog();
    let c = r.connect_tcp_with(
        "127.0.0.1",
        addr.port(),
        Rc::new(CF::new(&log)),
        TcpConnectOptions {
            timeout: Some(Duration::from_millis(150)),
            bind_address: None,
        },
    );
    let c2 = c.clone();
    r.call_later(Duration::from_millis(50), move |_| {
        assert_eq!(c2.state(), ConnectorState::Connecting);
        c2.stop_connecting().unwrap();
        assert_eq!(c2.state(), ConnectorState::Disconnected);
    });
    r.call_later(Duration::from_millis(400), |r| r.stop().unwrap());
    run(&r);
    let events = log.borrow().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        matches!(events[1], C::Failed(ConnectError::Cancelled)),
        "{events:?}"
    );
}

/// `connect()` while connecting or connected is an error; once disconnected it works again.
#[test]
fn connect_while_connecting_or_connected_errors() {
    let r = reactor();
    let addr = listen(&r, echo_factory());
    let log = new_clog();
    let conns = Rc::new(Cell::new(0u32));
    let cs = conns.clone();
    let h = r.handle();
    let f = CF::new(&log)
        .on_started(|c| {
            assert_eq!(c.connect(), Err(ConnectorError::AlreadyConnecting));
        })
        .on_lost(move |c, _| {
            cs.set(cs.get() + 1);
            if cs.get() == 1 {
                c.connect().expect("connect again once disconnected");
            } else {
                let _ = h.stop();
            }
        });
    let c = r.connect_tcp("127.0.0.1", addr.port(), Rc::new(f));
    assert_eq!(c.connect(), Err(ConnectorError::AlreadyConnecting));
    // While connected: connect() errors; disconnect() closes cleanly.
    fn poll(r: &torsion::Reactor, c: Connector) {
        if c.state() == ConnectorState::Connected {
            assert_eq!(c.connect(), Err(ConnectorError::AlreadyConnecting));
            c.disconnect();
        }
        r.call_later(Duration::from_millis(1), move |r| poll(r, c));
    }
    poll(&r, c.clone());
    run(&r);
    assert_eq!(conns.get(), 2);
    assert_eq!(count(&log, |e| matches!(e, C::Made)), 2);
    assert_eq!(count(&log, |e| matches!(e, C::Started)), 2);
    assert_eq!(
        count(&log, |e| matches!(e, C::ClientLost(Reason::ConnectionDone))),
        2,
        "{:?}",
        log.borrow()
    );
}

/// The bind address option binds the local end before connecting.
#[test]
fn connect_with_bind_address() {
    let r = reactor();
    let peers = Rc::new(RefCell::new(Vec::new()));
    let p = peers.clone();
    let addr = listen(
        &r,
        factory(move || {
            let p = p.clone();
            let log = new_log();
            Rec::new(&log)
                .on_made(move |cx| {
                    p.borrow_mut().push(cx.transport().peer());
                    cx.reactor().stop().unwrap();
                })
                .boxed()
        }),
    );
    let local_port = free_port();
    let local: SocketAddr = ([127, 0, 0, 1], local_port).into();
    let log = new_clog();
    r.connect_tcp_with(
        "127.0.0.1",
        addr.port(),
        Rc::new(CF::new(&log)),
        TcpConnectOptions {
            timeout: Some(Duration::from_secs(5)),
            bind_address: Some(local),
        },
    );
    run(&r);
    assert_eq!(*peers.borrow(), [Address::Tcp(local)]);
}

/// A client protocol gets `connection_made` before data, and can talk to an echo server.
#[test]
fn client_protocol_round_trip() {
    let r = reactor();
    let addr = listen(&r, echo_factory());
    let log = new_log();
    let l = log.clone();
    let client = factory(move || {
        Rec::new(&l)
            .on_made(|cx| cx.transport().write(b"ping"))
            .on_data(|cx, _| cx.transport().lose_connection())
            .on_lost(|cx, _| cx.reactor().stop().unwrap())
            .boxed()
    });
    r.connect_tcp("127.0.0.1", addr.port(), client);
    run(&r);
    let reason = check_lifecycle(&log);
    assert!(matches!(reason, Reason::ConnectionDone), "{reason:?}");
    assert_eq!(received(&log), b"ping");
}

/// A host name is resolved (off the reactor thread) and connected to.
#[test]
fn connects_to_a_host_name() {
    use std::net::ToSocketAddrs;
    let ip = ("localhost", 0)
        .to_socket_addrs()
        .expect("resolve localhost")
        .next()
        .expect("localhost has an address")
        .ip();
    let r = reactor();
    let port = r
        .listen_tcp_with(
            0,
            echo_factory(),
            torsion::TcpListenOptions {
                interface: ip.to_string(),
                ..Default::default()
            },
        )
        .expect("listen on localhost's address");
    let log = new_log();
    let l = log.clone();
    let client = factory(move || {
        Rec::new(&l)
            .on_made(|cx| cx.transport().write(b"by name"))
            .on_data(|cx, _| cx.reactor().stop().unwrap())
            .boxed()
    });
    let c = r.connect_tcp("localhost", port.host().port().unwrap(), client);
    assert_eq!(c.destination().0, "localhost");
    run(&r);
    assert_eq!(received(&log), b"by name");
}

/// A name that cannot resolve gives `ConnectError::UnknownHost` (`.invalid` never resolves,
/// RFC 6761).
#[test]
fn unknown_host_gives_unknown_host() {
    let r = reactor();
    let log = new_clog();
    let h = r.handle();
    let f = CF::new(&log).on_failed(move |_, _| {
        let _ = h.stop();
    });
    r.connect_tcp("no-such-host.invalid", 80, Rc::new(f));
    run_for(&r, Duration::from_secs(30));
    let events = log.borrow().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    match &events[1] {
        C::Failed(ConnectError::UnknownHost { host, .. }) => {
            assert_eq!(host, "no-such-host.invalid")
        }
        other => panic!("expected UnknownHost, got {other:?}"),
    }
}

/// `stop_connecting` from inside `started_connecting` cancels that attempt: one
/// `client_connection_failed(Cancelled)` and no connection.
#[test]
fn stop_connecting_from_started_connecting() {
    let r = reactor();
    let server_log = new_log();
    let sl = server_log.clone();
    let addr = listen(&r, factory(move || Rec::new(&sl).boxed()));
    let log = new_clog();
    let f = CF::new(&log).on_started(|c| c.stop_connecting().unwrap());
    let c = r.connect_tcp("127.0.0.1", addr.port(), Rc::new(f));
    assert_eq!(c.state(), ConnectorState::Disconnected);
    r.call_later(Duration::from_millis(150), |r| r.stop().unwrap());
    run(&r);
    let events = log.borrow().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        matches!(events[1], C::Failed(ConnectError::Cancelled)),
        "{events:?}"
    );
    assert!(
        server_log.borrow().is_empty(),
        "a cancelled attempt connected"
    );
}

/// `disconnect` while connecting cancels; while connected it closes cleanly.
#[test]
fn disconnect_cancels_or_closes() {
    let r = reactor();
    let addr = listen(&r, echo_factory());
    let log = new_clog();
    let c = r.connect_tcp("127.0.0.1", addr.port(), Rc::new(CF::new(&log)));
    c.disconnect();
    assert_eq!(c.state(), ConnectorState::Disconnected);
    assert!(matches!(
        log.borrow().last(),
        Some(C::Failed(ConnectError::Cancelled))
    ));
    c.connect().unwrap();
    fn poll(r: &torsion::Reactor, c: Connector, log: CLog) {
        if c.state() == ConnectorState::Connected {
            c.disconnect();
        }
        if log.borrow().iter().any(|e| matches!(e, C::ClientLost(_))) {
            r.stop().unwrap();
        } else {
            r.call_later(Duration::from_millis(1), move |r| poll(r, c, log));
        }
    }
    poll(&r, c.clone(), log.clone());
    run(&r);
    let events = log.borrow().clone();
    assert!(
        matches!(events.last(), Some(C::ClientLost(Reason::ConnectionDone))),
        "{events:?}"
    );
    assert_eq!(count(&log, |e| matches!(e, C::Made)), 1);
}
