//! `ClientCreator` over loopback: the Deferred fires right after `connection_made` with the
//! handle and the protocol; refused, timed out, unknown host and cancelled attempts fail it
//! with the right kind; cancelling stops a hanging attempt at once; UNIX and TLS too.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use torsion::defer::{Deferred, Failure, FailureKind};
use torsion::{
    ClientConnection, ClientCreator, ConnectError, Cx, Protocol, Reactor, Reason, TcpConnectOptions,
};

type Events = Rc<RefCell<Vec<String>>>;

/// A client that says hello on connecting and keeps what comes back.
struct Hello {
    events: Events,
    got: Vec<u8>,
}

impl Protocol for Hello {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        self.events.borrow_mut().push("made".into());
        cx.transport().write(b"hello ");
    }

    fn data_received(&mut self, _cx: &mut Cx<'_>, data: &[u8]) {
        self.got.extend_from_slice(data);
    }

    fn connection_lost(&mut self, _cx: &mut Cx<'_>, reason: Reason) {
        self.events.borrow_mut().push(format!("lost {reason}"));
    }
}

fn hello_creator(r: &Reactor, events: &Events) -> ClientCreator<Hello> {
    let events = events.clone();
    ClientCreator::new(r, move || Hello {
        events: events.clone(),
        got: Vec::new(),
    })
}

/// Runs the reactor (once: reactors do not restart) until `d` has fired, and gives its
/// result. The reactor's shutdown then closes whatever connections are left.
fn outcome<T: 'static>(r: &Reactor, d: Deferred<T>) -> Result<T, Failure> {
    let out = Rc::new(RefCell::new(None));
    let o = out.clone();
    let stop = r.clone();
    d.on_result(move |res| {
        *o.borrow_mut() = Some(res);
        let _ = stop.stop();
    });
    if out.borrow().is_none() {
        run(r);
    }
    out.borrow_mut().take().expect("the Deferred fired")
}

/// [`outcome`] of a task spawned on `r`.
fn run_task<T: 'static>(
    r: &Reactor,
    task: impl std::future::Future<Output = Result<T, Failure>> + 'static,
) -> Result<T, Failure> {
    outcome(r, r.spawn(task))
}

#[test]
fn fires_right_after_connection_made_with_the_handle_and_the_protocol() {
    let r = reactor();
    let addr = listen(&r, echo_factory());
    let events: Events = Rc::default();
    let d = hello_creator(&r, &events).connect_tcp("127.0.0.1", addr.port());
    let ev = events.clone();
    d.add_callback(move |conn: ClientConnection<Hello>| {
        // connection_made has run, and nothing else has yet.
        assert_eq!(*ev.borrow(), ["made"]);
        ev.borrow_mut().push("fired".into());
        assert!(conn.protocol.borrow().got.is_empty());
        conn.handle.write(b"world");
        conn
    });
    let (r2, ev, d2) = (r.clone(), events.clone(), d.clone());
    let got = run_task(&r, async move {
        let conn = d2.await?;
        assert_eq!(*ev.borrow(), ["made", "fired"]);
        assert_eq!(conn.handle.peer(), Some(torsion::Address::Tcp(addr)));
        // The echo comes back into the protocol the caller holds.
        while conn.protocol.borrow().got.len() < 11 {
            torsion::sleep(&r2, Duration::from_millis(1)).await?;
        }
        // Cancelling a fired Deferred does nothing: the connection stays up.
        d.cancel();
        assert!(conn.handle.is_connected());
        conn.handle.lose_connection();
        while ev.borrow().len() < 3 {
            torsion::sleep(&r2, Duration::from_millis(1)).await?;
        }
        let got = conn.protocol.borrow().got.clone();
        Ok(got)
    })
    .unwrap_or_else(|f| panic!("{f:?}"));
    assert_eq!(got, b"hello world");
    assert_eq!(events.borrow()[2], "lost Connection was closed cleanly.");
}

#[test]
fn awaits_in_a_spawned_task() {
    let r = reactor();
    let addr = listen(&r, echo_factory());
    let events: Events = Rc::default();
    let creator = hello_creator(&r, &events);
    let r2 = r.clone();
    let d = r.spawn(async move {
        let conn = creator.connect_tcp("127.0.0.1", addr.port()).await?;
        while conn.protocol.borrow().got.len() < 6 {
            torsion::sleep(&r2, Duration::from_millis(1)).await?;
        }
        conn.handle.lose_connection();
        let got = conn.protocol.borrow().got.clone();
        Ok(got)
    });
    assert_eq!(outcome(&r, d).unwrap(), b"hello ");
}

#[test]
fn refused_fails_with_connection_refused() {
    let r = reactor();
    let port = free_port();
    let events: Events = Rc::default();
    let d = hello_creator(&r, &events).connect_tcp("127.0.0.1", port);
    let f = outcome(&r, d).unwrap_err();
    assert_eq!(f.kind(), FailureKind::ConnectionRefused);
    match f.downcast_ref::<ConnectError>() {
        Some(ConnectError::Refused(a)) => assert_eq!(a.port(), port),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(events.borrow().is_empty(), "no protocol saw anything");
}

#[test]
fn a_connect_timeout_fails_with_timed_out() {
    let (_l, addr, _held) = unanswering_listener();
    let r = reactor();
    let events: Events = Rc::default();
    let opts = TcpConnectOptions {
        timeout: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let started = Instant::now();
    let d = hello_creator(&r, &events).connect_tcp_with("127.0.0.1", addr.port(), opts);
    let f = outcome(&r, d).unwrap_err();
    assert_eq!(f.kind(), FailureKind::TimedOut);
    assert!(matches!(
        f.downcast_ref::<ConnectError>(),
        Some(ConnectError::TimedOut)
    ));
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[test]
fn an_unknown_host_fails_with_connect_failed() {
    let r = reactor();
    let events: Events = Rc::default();
    let d = hello_creator(&r, &events).connect_tcp("no-such-host.invalid", 80);
    let f = outcome(&r, d).unwrap_err();
    assert_eq!(f.kind(), FailureKind::ConnectFailed);
    assert!(matches!(
        f.downcast_ref::<ConnectError>(),
        Some(ConnectError::UnknownHost { .. })
    ));
}

#[test]
fn cancelling_stops_a_hanging_attempt_at_once() {
    let (_l, addr, _held) = unanswering_listener();
    let r = reactor();
    let events: Events = Rc::default();
    let opts = TcpConnectOptions {
        timeout: Some(Duration::from_millis(400)),
        ..Default::default()
    };
    let d = hello_creator(&r, &events).connect_tcp_with("127.0.0.1", addr.port(), opts);
    let r2 = r.clone();
    let f = run_task(&r, async move {
        torsion::sleep(&r2, Duration::from_millis(50)).await?;
        assert!(!d.called(), "still connecting");
        let started = Instant::now();
        d.cancel();
        assert!(started.elapsed() < Duration::from_millis(50), "at once");
        let f = d.take_result().expect("failed at once").unwrap_err();
        // Past the timeout: nothing fires it again (the timer went with the attempt).
        torsion::sleep(&r2, Duration::from_millis(500)).await?;
        Ok(f)
    })
    .unwrap();
    assert_eq!(f.kind(), FailureKind::Cancelled);
    assert!(matches!(
        f.downcast_ref::<ConnectError>(),
        Some(ConnectError::Cancelled)
    ));
    assert!(events.borrow().is_empty());
}

#[test]
fn cancelling_before_the_attempt_starts() {
    let r = reactor();
    let events: Events = Rc::default();
    let d = hello_creator(&r, &events).connect_tcp("127.0.0.1", free_port());
    d.cancel();
    let f = d.take_result().unwrap().unwrap_err();
    assert_eq!(f.kind(), FailureKind::Cancelled);
    let r2 = r.clone();
    run_task(&r, async move {
        torsion::sleep(&r2, Duration::from_millis(30)).await
    })
    .unwrap();
    assert!(events.borrow().is_empty());
}

#[test]
fn connects_over_unix_sockets() {
    let r = reactor();
    let name = format!("@torsion-client-creator-{}", std::process::id());
    r.listen_unix(&name, echo_factory()).unwrap();
    let events: Events = Rc::default();
    let creator = hello_creator(&r, &events);
    let r2 = r.clone();
    run_task(&r, async move {
        let conn = creator.connect_unix(&name).await?;
        while conn.protocol.borrow().got.len() < 6 {
            torsion::sleep(&r2, Duration::from_millis(1)).await?;
        }
        assert!(matches!(
            conn.handle.peer(),
            Some(torsion::Address::Unix(_))
        ));
        conn.handle.lose_connection();

        let missing = std::env::temp_dir().join(format!("torsion-cc-{}", std::process::id()));
        let f = creator.connect_unix(&missing).await.unwrap_err();
        assert_eq!(f.kind(), FailureKind::ConnectFailed);
        assert!(matches!(
            f.downcast_ref::<ConnectError>(),
            Some(ConnectError::NoSuchFile(_))
        ));

        let unbound = format!("@torsion-client-creator-nobody-{}", std::process::id());
        let f = creator.connect_unix(&unbound).await.unwrap_err();
        assert_eq!(f.kind(), FailureKind::ConnectionRefused);
        Ok(())
    })
    .unwrap_or_else(|f| panic!("{f:?}"));
}

#[cfg(feature = "tls")]
#[test]
fn connects_over_tls() {
    use torsion::tls::{ClientTlsConfig, DevCa, ServerTlsConfig};

    let ca = DevCa::new("client creator test CA").unwrap();
    let (cert, key) = ca.issue_server(&["localhost"]).unwrap();
    let server = ServerTlsConfig::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let client = ClientTlsConfig::new("localhost")
        .unwrap()
        .ca_pem(ca.cert_pem().as_bytes())
        .unwrap();
    let r = reactor();
    let port = r
        .listen_tls_with(
            0,
            echo_factory(),
            &server,
            torsion::TcpListenOptions {
                interface: "127.0.0.1".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .host()
        .port()
        .unwrap();
    let events: Events = Rc::default();
    let creator = hello_creator(&r, &events);
    let r2 = r.clone();
    let d = r.spawn(async move {
        let conn = creator.connect_tls("127.0.0.1", port, &client).await?;
        while conn.protocol.borrow().got.len() < 6 {
            torsion::sleep(&r2, Duration::from_millis(1)).await?;
        }
        conn.handle.lose_connection();
        let got = conn.protocol.borrow().got.clone();
        Ok(got)
    });
    assert_eq!(outcome(&r, d).unwrap(), b"hello ");
}

#[test]
fn a_panic_in_connection_made_fails_the_deferred() {
    struct Boom;
    impl Protocol for Boom {
        fn connection_made(&mut self, _cx: &mut Cx<'_>) {
            panic!("boom");
        }
    }
    let r = reactor();
    let addr = listen(&r, echo_factory());
    let d = ClientCreator::new(&r, || Boom).connect_tcp("127.0.0.1", addr.port());
    let f = outcome(&r, d).unwrap_err();
    assert_eq!(f.kind(), FailureKind::ConnectionLost, "{f:?}");
    assert!(f.downcast_ref::<Reason>().is_some());
}
