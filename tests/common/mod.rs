//! Helpers shared by the integration tests: a reactor run bounded in time, a protocol that
//! records its callbacks, factories from closures, and blocking `std::net` clients run on
//! threads.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use torsion::factory::from_fn;
use torsion::{
    Address, ClientFactory, Cx, Factory, Protocol, Reactor, ReactorHandle, Reason, TcpListenOptions,
};

/// How long a test's reactor may run before the test fails.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Read and write timeouts for blocking test clients, so that no client thread hangs.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A reactor that leaves the process's signal handlers alone.
pub fn reactor() -> Reactor {
    Reactor::builder()
        .install_signal_handlers(false)
        .build()
        .expect("create a reactor")
}

/// Runs `reactor` until something stops it, and fails the test if that takes longer than
/// `limit`. Two guards: a delayed call on the reactor itself and, in case timers are what is
/// broken, a watchdog thread that stops the reactor through its handle a little later.
pub fn run_for(reactor: &Reactor, limit: Duration) {
    let timed_out = Rc::new(Cell::new(false));
    let flag = timed_out.clone();
    reactor.call_later(limit, move |r| {
        flag.set(true);
        let _ = r.stop();
    });
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let handle = reactor.handle();
    let watchdog =
        thread::spawn(
            move || match done_rx.recv_timeout(limit + Duration::from_secs(5)) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = handle.stop();
                    true
                }
                _ => false,
            },
        );
    let res = reactor.run();
    let _ = done_tx.send(());
    let watchdog_fired = watchdog.join().unwrap_or(true);
    res.expect("reactor.run() failed");
    assert!(
        !timed_out.get(),
        "the test did not finish within {limit:?} (safety timer fired)"
    );
    assert!(
        !watchdog_fired,
        "the test did not finish within {limit:?} (the watchdog thread had to stop the reactor)"
    );
}

/// [`run_for`] with the default limit.
pub fn run(reactor: &Reactor) {
    run_for(reactor, LIMIT);
}

/// One recorded protocol callback.
#[derive(Debug, Clone)]
pub enum Ev {
    Made,
    Data(Vec<u8>),
    ReadLost,
    WriteLost,
    Lost(Reason),
    /// Something the test itself wrote into the log.
    Note(&'static str),
}

pub type Log = Rc<RefCell<Vec<Ev>>>;

pub fn new_log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

type CxFn = Box<dyn FnMut(&mut Cx<'_>)>;
type DataFn = Box<dyn FnMut(&mut Cx<'_>, &[u8])>;
type LostFn = Box<dyn FnMut(&mut Cx<'_>, &Reason)>;

/// A protocol that records every callback into a shared [`Log`] and then runs an optional
/// hook for it. The log is never borrowed while a hook runs, so hooks may log too.
pub struct Rec {
    log: Log,
    made: Option<CxFn>,
    data: Option<DataFn>,
    lost: Option<LostFn>,
    read_lost: Option<CxFn>,
    write_lost: Option<CxFn>,
    half: bool,
}

impl Rec {
    pub fn new(log: &Log) -> Rec {
        Rec {
            log: log.clone(),
            made: None,
            data: None,
            lost: None,
            read_lost: None,
            write_lost: None,
            half: false,
        }
    }

    pub fn on_made(mut self, f: impl FnMut(&mut Cx<'_>) + 'static) -> Rec {
        self.made = Some(Box::new(f));
        self
    }

    pub fn on_data(mut self, f: impl FnMut(&mut Cx<'_>, &[u8]) + 'static) -> Rec {
        self.data = Some(Box::new(f));
        self
    }

    pub fn on_lost(mut self, f: impl FnMut(&mut Cx<'_>, &Reason) + 'static) -> Rec {
        self.lost = Some(Box::new(f));
        self
    }

    pub fn on_read_lost(mut self, f: impl FnMut(&mut Cx<'_>) + 'static) -> Rec {
        self.read_lost = Some(Box::new(f));
        self
    }

    pub fn on_write_lost(mut self, f: impl FnMut(&mut Cx<'_>) + 'static) -> Rec {
        self.write_lost = Some(Box::new(f));
        self
    }

    pub fn half_closeable(mut self) -> Rec {
        self.half = true;
        self
    }

    pub fn boxed(self) -> Box<dyn Protocol> {
        Box::new(self)
    }
}

impl Protocol for Rec {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        self.log.borrow_mut().push(Ev::Made);
        if let Some(f) = self.made.as_mut() {
            f(cx);
        }
    }

    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        self.log.borrow_mut().push(Ev::Data(data.to_vec()));
        if let Some(f) = self.data.as_mut() {
            f(cx, data);
        }
    }

    fn connection_lost(&mut self, cx: &mut Cx<'_>, reason: Reason) {
        self.log.borrow_mut().push(Ev::Lost(reason.clone()));
        if let Some(f) = self.lost.as_mut() {
            f(cx, &reason);
        }
    }

    fn half_closeable(&self) -> bool {
        self.half
    }

    fn read_connection_lost(&mut self, cx: &mut Cx<'_>) {
        self.log.borrow_mut().push(Ev::ReadLost);
        if let Some(f) = self.read_lost.as_mut() {
            f(cx);
        }
    }

    fn write_connection_lost(&mut self, cx: &mut Cx<'_>) {
        self.log.borrow_mut().push(Ev::WriteLost);
        if let Some(f) = self.write_lost.as_mut() {
            f(cx);
        }
    }
}

/// Every byte `data_received` got, in order.
pub fn received(log: &Log) -> Vec<u8> {
    log.borrow()
        .iter()
        .filter_map(|e| match e {
            Ev::Data(d) => Some(d.as_slice()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .concat()
}

/// Every reason `connection_lost` got.
pub fn lost_reasons(log: &Log) -> Vec<Reason> {
    log.borrow()
        .iter()
        .filter_map(|e| match e {
            Ev::Lost(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Checks the life-cycle invariants on one connection's log: `connection_made` exactly once
/// and first, `connection_lost` exactly once and last. Returns the reason.
pub fn check_lifecycle(log: &Log) -> Reason {
    let events = log.borrow();
    let protocol_events: Vec<&Ev> = events
        .iter()
        .filter(|e| !matches!(e, Ev::Note(_)))
        .collect();
    let made = protocol_events
        .iter()
        .filter(|e| matches!(e, Ev::Made))
        .count();
    assert_eq!(
        made, 1,
        "connection_made must come exactly once: {events:?}"
    );
    assert!(
        matches!(protocol_events.first(), Some(Ev::Made)),
        "connection_made must come first: {events:?}"
    );
    let lost = protocol_events
        .iter()
        .filter(|e| matches!(e, Ev::Lost(_)))
        .count();
    assert_eq!(
        lost, 1,
        "connection_lost must come exactly once: {events:?}"
    );
    match protocol_events.last() {
        Some(Ev::Lost(r)) => r.clone(),
        _ => panic!("connection_lost must come last: {events:?}"),
    }
}

/// A server or client factory from a closure that builds a protocol per connection.
pub fn factory<F>(build: F) -> Rc<impl ClientFactory>
where
    F: Fn() -> Box<dyn Protocol> + 'static,
{
    Rc::new(from_fn(move |_: &Address| Some(build())))
}

/// Sends back what arrives (RFC 862).
pub struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

/// Reads and drops everything.
pub struct Discard;

impl Protocol for Discard {}

pub fn echo_factory() -> Rc<impl ClientFactory> {
    factory(|| Box::new(Echo))
}

/// Listens on 127.0.0.1 on a free port and returns the address.
pub fn listen(reactor: &Reactor, factory: Rc<dyn Factory>) -> SocketAddr {
    let port = reactor
        .listen_tcp_with(
            0,
            factory,
            TcpListenOptions {
                interface: "127.0.0.1".into(),
                ..Default::default()
            },
        )
        .expect("listen on 127.0.0.1:0");
    port.host().socket_addr().expect("a TCP address")
}

/// A port on 127.0.0.1 that nothing listens on (bound once, then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// A blocking connection with read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to the test server");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Connects, or `None` if the server reset the connection before `connect` returned: a
/// server that aborts a connection as soon as it accepts it can do that.
pub fn connect_or_reset(addr: SocketAddr) -> Option<TcpStream> {
    match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
        Ok(s) => {
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            Some(s)
        }
        Err(e) if is_reset(&e) => None,
        Err(e) => panic!("connect to the test server: {e}"),
    }
}

/// Reads until end of stream or an error; returns the bytes and the error, if any.
pub fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, Option<io::Error>) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (out, Some(e)),
        }
    }
}

/// Writes `msg` and reads back exactly as many bytes.
pub fn echo_round_trip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).expect("write to the echo server");
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).expect("read the echo back");
    back
}

/// True if the error is what a reset connection gives.
pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Stops the reactor when dropped, so a client thread stops it even when it panics.
pub struct StopOnDrop(pub ReactorHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

/// Runs `f` on a new thread and stops the reactor when it returns (or panics).
pub fn client_then_stop<R, F>(reactor: &Reactor, f: F) -> JoinHandle<R>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let stop = StopOnDrop(reactor.handle());
    thread::spawn(move || {
        let _stop = stop;
        f()
    })
}

/// Joins a client thread, passing its panic on with its message.
pub fn join<R>(h: JoinHandle<R>) -> R {
    match h.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// `n` bytes of a pattern that does not repeat with any short period, so a reordered or
/// shifted byte is caught.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i >> 8) as u8)
        .collect()
}

/// Stops the reactor once `d` has fired, even if it fires before the reactor runs.
pub fn stop_when_done<T: 'static>(reactor: &Reactor, d: &torsion::Deferred<T>) {
    let r = reactor.clone();
    d.add_both(move |res| {
        r.call_when_running(|r| {
            let _ = r.stop();
        });
        res
    });
}

/// [`run_for`] with the 5-second limit the Deferred tests use.
pub fn run_bounded(reactor: &Reactor) {
    run_for(reactor, Duration::from_secs(5));
}

/// A listening socket whose accept queue is full and never drained: a new connection attempt
/// to it gets no answer to its SYN, so it stays in progress until a timeout ends it. The
/// returned streams hold the queue full.
pub fn unanswering_listener() -> (socket2::Socket, SocketAddr, Vec<TcpStream>) {
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut held = Vec::new();
    for _ in 0..64 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return (l, addr, held),
            Err(e) => panic!("unexpected error while filling the backlog: {e}"),
        }
    }
    panic!("precondition: could not fill the listen backlog of {addr}");
}
