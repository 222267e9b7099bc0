//! UNIX stream sockets over real sockets in a private temporary directory: echo over a path
//! and an abstract name, addresses, the socket file's life (stale, live, not a socket, mode,
//! removal), connect failures, client callback order, a full backlog, peer credentials,
//! passing file descriptors, and `torsion serve echo --unix`.

mod common;

use std::cell::RefCell;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use torsion::{
    Address, CannotListen, ClientFactory, ConnectError, Connector, Credentials, Cx, Destination,
    Factory, Protocol, Reason, UnixConnectOptions, UnixListenOptions,
};

/// A directory of its own under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("torsion-unix-{}-{test}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the test's temporary directory");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// An abstract socket name no other test or process uses.
fn abstract_name(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("@torsion-test-{}-{test}-{n}", std::process::id())
}

/// A blocking client with timeouts.
fn unix_connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect to the test server");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn unix_connect_abstract(name: &str) -> UnixStream {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name.as_bytes()[1..]).unwrap();
    let s = UnixStream::connect_addr(&addr).expect("connect to the abstract name");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn round_trip(s: &mut UnixStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).unwrap();
    let mut back = vec![0; msg.len()];
    s.read_exact(&mut back).expect("the echo");
    back
}

fn server_factory(f: impl Fn() -> Box<dyn Protocol> + 'static) -> Rc<dyn Factory> {
    factory(f)
}

/// What a client factory and its protocol saw, in order.
#[derive(Debug, Clone)]
enum C {
    Started,
    Failed(ConnectError),
    Made(Address, Address),
    Fd,
    Data(Vec<u8>),
    Lost(Reason),
    ClientLost(Reason),
}

type CLog = Rc<RefCell<Vec<C>>>;

type MadeHook = Rc<dyn Fn(&mut Cx<'_>)>;
type FdHook = Rc<dyn Fn(&mut Cx<'_>, OwnedFd)>;

/// A client factory that records everything and stops the reactor when the attempt ends
/// (failed, or connected and then lost).
struct Client {
    log: CLog,
    made: Option<MadeHook>,
    fd: Option<FdHook>,
    stop_when_done: bool,
}

impl Client {
    fn new(log: &CLog) -> Client {
        Client {
            log: log.clone(),
            made: None,
            fd: None,
            stop_when_done: true,
        }
    }
}

struct ClientProto {
    log: CLog,
    made: Option<MadeHook>,
    fd: Option<FdHook>,
}

impl Protocol for ClientProto {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        let t = cx.transport();
        self.log.borrow_mut().push(C::Made(t.host(), t.peer()));
        if let Some(f) = &self.made {
            f(cx);
        }
    }
    fn data_received(&mut self, _cx: &mut Cx<'_>, data: &[u8]) {
        self.log.borrow_mut().push(C::Data(data.to_vec()));
    }
    fn file_descriptor_received(&mut self, cx: &mut Cx<'_>, fd: OwnedFd) {
        self.log.borrow_mut().push(C::Fd);
        if let Some(f) = &self.fd {
            f(cx, fd);
        }
    }
    fn connection_lost(&mut self, _cx: &mut Cx<'_>, reason: Reason) {
        self.log.borrow_mut().push(C::Lost(reason));
    }
}

impl Factory for Client {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(ClientProto {
            log: self.log.clone(),
            made: self.made.clone(),
            fd: self.fd.clone(),
        }))
    }
}

impl ClientFactory for Client {
    fn started_connecting(&self, _c: &Connector) {
        self.log.borrow_mut().push(C::Started);
    }
    fn client_connection_failed(&self, c: &Connector, reason: ConnectError) {
        self.log.borrow_mut().push(C::Failed(reason));
        if self.stop_when_done {
            let _ = c.reactor().unwrap().stop();
        }
    }
    fn client_connection_lost(&self, c: &Connector, reason: Reason) {
        self.log.borrow_mut().push(C::ClientLost(reason));
        if self.stop_when_done {
            let _ = c.reactor().unwrap().stop();
        }
    }
}

fn new_clog() -> CLog {
    Rc::new(RefCell::new(Vec::new()))
}

fn client_data(log: &CLog) -> Vec<u8> {
    log.borrow()
        .iter()
        .filter_map(|e| match e {
            C::Data(d) => Some(d.as_slice()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .concat()
}

/// Listening fails, and the error names the path.
fn expect_cannot_listen(
    res: Result<torsion::ListeningPort, CannotListen>,
    path: &str,
) -> CannotListen {
    let err = match res {
        Ok(p) => panic!("expected CannotListen, listening on {}", p.host()),
        Err(e) => e,
    };
    assert_eq!(err.address, format!("unix:{path}"));
    assert!(err.to_string().contains(path), "{err}");
    err
}

#[test]
fn echo_over_a_path_with_addresses() {
    let dir = TempDir::new("echo");
    let path = dir.path("echo.sock");
    let reactor = reactor();
    let log = new_log();
    let server_log = log.clone();
    let addrs: Rc<RefCell<Vec<(Address, Address)>>> = Rc::default();
    let seen = addrs.clone();
    let port = reactor
        .listen_unix(
            &path,
            server_factory(move || {
                let seen = seen.clone();
                Rec::new(&server_log)
                    .on_made(move |cx| {
                        let t = cx.transport();
                        seen.borrow_mut().push((t.host(), t.peer()));
                    })
                    .on_data(|cx, d| cx.transport().write(d))
                    .boxed()
            }),
        )
        .unwrap();
    assert_eq!(port.host(), Address::Unix(Some(path.clone())));
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    let p = path.clone();
    let client = client_then_stop(&reactor, move || {
        let mut s = unix_connect(&p);
        let msg = pattern(256 * 1024);
        s.write_all(&msg).unwrap();
        let mut back = vec![0; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert!(back == msg, "the echo differs");
    });
    run(&reactor);
    join(client);
    assert_eq!(
        addrs.borrow().as_slice(),
        &[(Address::Unix(Some(path.clone())), Address::Unix(None))]
    );
    check_lifecycle(&log);
    assert_eq!(received(&log).len(), 256 * 1024);
}

#[test]
fn echo_over_an_abstract_name() {
    let name = abstract_name("echo");
    let reactor = reactor();
    let port = reactor.listen_unix(&name, echo_factory()).unwrap();
    assert_eq!(port.host(), Address::Unix(Some(PathBuf::from(&name))));
    assert!(!Path::new(&name).exists(), "an abstract name makes no file");
    let n = name.clone();
    let client = client_then_stop(&reactor, move || {
        let mut s = unix_connect_abstract(&n);
        assert_eq!(round_trip(&mut s, b"abstract hello"), b"abstract hello");
    });
    run(&reactor);
    join(client);

    // The name is free again once the reactor is gone.
    drop(port);
    drop(reactor);
    let again = self::reactor();
    again.listen_unix(&name, echo_factory()).unwrap();
}

#[test]
fn a_live_abstract_name_cannot_be_listened_on_twice() {
    let name = abstract_name("twice");
    let reactor = reactor();
    let _port = reactor.listen_unix(&name, echo_factory()).unwrap();
    let err = expect_cannot_listen(reactor.listen_unix(&name, echo_factory()), &name);
    assert_eq!(err.source.kind(), io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains("in use"), "{err}");
}

#[test]
fn connect_unix_echoes_and_reports_addresses_and_order() {
    let dir = TempDir::new("client");
    let path = dir.path("srv.sock");
    let reactor = reactor();
    reactor
        .listen_unix(
            &path,
            server_factory(|| {
                Rec::new(&new_log())
                    .on_data(|cx, d| {
                        cx.transport().write(d);
                        cx.transport().lose_connection();
                    })
                    .boxed()
            }),
        )
        .unwrap();
    let log = new_clog();
    let mut client = Client::new(&log);
    client.made = Some(Rc::new(|cx: &mut Cx<'_>| cx.transport().write(b"ping")));
    let connector = reactor.connect_unix(&path, Rc::new(client));
    assert_eq!(
        connector.destination_address(),
        &Destination::Unix(path.clone())
    );
    assert_eq!(connector.destination(), (path.to_str().unwrap(), 0));
    run(&reactor);
    let events = log.borrow().clone();
    assert!(matches!(events[0], C::Started), "{events:?}");
    match &events[1] {
        C::Made(host, peer) => {
            assert_eq!(host, &Address::Unix(None));
            assert_eq!(peer, &Address::Unix(Some(path.clone())));
        }
        other => panic!("expected connection_made second, got {other:?}: {events:?}"),
    }
    assert_eq!(client_data(&log), b"ping");
    let n = events.len();
    assert!(
        matches!(&events[n - 2], C::Lost(r) if r.is_clean()),
        "{events:?}"
    );
    assert!(
        matches!(&events[n - 1], C::ClientLost(r) if r.is_clean()),
        "{events:?}"
    );
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = TempDir::new("stale");
    let path = dir.path("stale.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "precondition: the old server left its file");
    let reactor = reactor();
    reactor.listen_unix(&path, echo_factory()).unwrap();
    let p = path.clone();
    let client = client_then_stop(&reactor, move || {
        let mut s = unix_connect(&p);
        assert_eq!(round_trip(&mut s, b"fresh"), b"fresh");
    });
    run(&reactor);
    join(client);
}

#[test]
fn a_live_socket_file_gives_cannot_listen_and_stays() {
    let dir = TempDir::new("live");
    let path = dir.path("live.sock");
    let other = UnixListener::bind(&path).unwrap();
    let reactor = reactor();
    let err = expect_cannot_listen(
        reactor.listen_unix(&path, echo_factory()),
        path.to_str().unwrap(),
    );
    assert_eq!(err.source.kind(), io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains("in use"), "{err}");
    // The other server still has its file and still answers.
    let _c = UnixStream::connect(&path).expect("the other server still listens");
    other.accept().unwrap();
}

#[test]
fn a_file_that_is_not_a_socket_is_never_deleted() {
    let dir = TempDir::new("regular");
    let path = dir.path("precious.txt");
    fs::write(&path, b"precious").unwrap();
    let reactor = reactor();
    let err = expect_cannot_listen(
        reactor.listen_unix(&path, echo_factory()),
        path.to_str().unwrap(),
    );
    assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"precious");

    // Nor is a directory, nor what a symbolic link points to.
    let sub = dir.path("sub");
    fs::create_dir(&sub).unwrap();
    expect_cannot_listen(
        reactor.listen_unix(&sub, echo_factory()),
        sub.to_str().unwrap(),
    );
    assert!(sub.is_dir());
    let link = dir.path("link.sock");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    expect_cannot_listen(
        reactor.listen_unix(&link, echo_factory()),
        link.to_str().unwrap(),
    );
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&path).unwrap(), b"precious");
}

#[test]
fn bind_errors_name_the_path() {
    let reactor = reactor();
    let missing = "/nonexistent-torsion-dir/x.sock";
    let err = expect_cannot_listen(reactor.listen_unix(missing, echo_factory()), missing);
    assert_eq!(err.source.kind(), io::ErrorKind::NotFound, "{err}");
    let long = format!("/tmp/{}", "x".repeat(200));
    let err = expect_cannot_listen(reactor.listen_unix(&long, echo_factory()), &long);
    assert_eq!(err.source.kind(), io::ErrorKind::InvalidInput, "{err}");
}

#[test]
fn the_file_mode_is_applied() {
    let dir = TempDir::new("mode");
    let reactor = reactor();
    let default = dir.path("default.sock");
    reactor.listen_unix(&default, echo_factory()).unwrap();
    assert_eq!(
        fs::metadata(&default).unwrap().permissions().mode() & 0o777,
        0o666
    );
    for mode in [0o600, 0o640, 0o777] {
        let path = dir.path(&format!("m{mode:o}.sock"));
        reactor
            .listen_unix_with(
                &path,
                echo_factory(),
                UnixListenOptions {
                    mode,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            mode
        );
    }
}

#[test]
fn the_file_is_removed_on_stop_listening() {
    let dir = TempDir::new("stop");
    let path = dir.path("s.sock");
    let reactor = reactor();
    let port = reactor.listen_unix(&path, echo_factory()).unwrap();
    assert!(path.exists());
    port.stop_listening();
    assert!(!port.is_listening());
    assert!(!path.exists(), "stop_listening must remove the socket file");
    port.stop_listening();
    // And the path can be listened on again at once.
    let again = reactor.listen_unix(&path, echo_factory()).unwrap();
    again.stop_listening();
    assert!(!path.exists());
}

#[test]
fn the_file_is_removed_on_stop_listening_from_a_callback() {
    let dir = TempDir::new("stop-cb");
    let path = dir.path("s.sock");
    let reactor = reactor();
    let port = reactor.listen_unix(&path, echo_factory()).unwrap();
    reactor.call_later(Duration::ZERO, move |r| {
        port.stop_listening();
        r.stop().unwrap();
    });
    run(&reactor);
    assert!(!path.exists());
}

#[test]
fn the_file_is_removed_on_reactor_shutdown_and_drop() {
    let dir = TempDir::new("shutdown");
    let path = dir.path("s.sock");
    let reactor = reactor();
    let port = reactor.listen_unix(&path, echo_factory()).unwrap();
    reactor.call_later(Duration::from_millis(10), |r| r.stop().unwrap());
    run(&reactor);
    assert!(!port.is_listening());
    assert!(!path.exists(), "shutdown must remove the socket file");

    // A reactor that never ran removes its files when dropped.
    let never_run = self::reactor();
    let path = dir.path("never.sock");
    never_run.listen_unix(&path, echo_factory()).unwrap();
    assert!(path.exists());
    drop(never_run);
    assert!(
        !path.exists(),
        "dropping the reactor must remove the socket file"
    );
}

#[test]
fn a_file_replaced_by_another_server_is_left_alone() {
    let dir = TempDir::new("replaced");
    let path = dir.path("s.sock");
    let reactor = reactor();
    let port = reactor.listen_unix(&path, echo_factory()).unwrap();
    fs::remove_file(&path).unwrap();
    let other = UnixListener::bind(&path).unwrap();
    port.stop_listening();
    assert!(path.exists(), "the other server's file must stay");
    drop(other);
}

#[test]
fn connect_unix_to_a_missing_path_or_a_dead_file_fails_clearly() {
    let dir = TempDir::new("missing");
    let missing = dir.path("nobody.sock");
    let stale = dir.path("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let reactor = reactor();
    let missing_log = new_clog();
    reactor.connect_unix(&missing, Rc::new(Client::new(&missing_log)));
    let stale_log = new_clog();
    let mut stale_client = Client::new(&stale_log);
    stale_client.stop_when_done = false;
    reactor.connect_unix(&stale, Rc::new(stale_client));
    let abstract_log = new_clog();
    let mut abstract_client = Client::new(&abstract_log);
    abstract_client.stop_when_done = false;
    let name = abstract_name("nobody");
    reactor.connect_unix(&name, Rc::new(abstract_client));
    run(&reactor);

    let events = missing_log.borrow().clone();
    assert!(matches!(events[0], C::Started), "{events:?}");
    match &events[1..] {
        [C::Failed(e @ ConnectError::NoSuchFile(p))] => {
            assert_eq!(p, &missing);
            let msg = e.to_string();
            assert!(
                msg.contains(missing.to_str().unwrap()) && msg.contains("no such"),
                "{msg}"
            );
        }
        other => panic!("expected NoSuchFile, got {other:?}"),
    }
    match &stale_log.borrow()[1..] {
        [C::Failed(e @ ConnectError::RefusedUnix(p))] => {
            assert_eq!(p, &stale);
            assert!(e.to_string().contains("refused"), "{e}");
        }
        other => panic!("expected RefusedUnix, got {other:?}"),
    }
    match &abstract_log.borrow()[1..] {
        [C::Failed(ConnectError::RefusedUnix(p))] => assert_eq!(p, Path::new(&name)),
        other => panic!("expected RefusedUnix, got {other:?}"),
    }
}

/// A listener that never accepts, with its backlog full: a UNIX connect then says EAGAIN.
/// The connector keeps knocking until the timeout, and gets in once there is room.
#[test]
fn a_full_backlog_waits_until_room_or_timeout() {
    use socket2::{Domain, SockAddr, Socket, Type};
    let dir = TempDir::new("backlog");
    let path = dir.path("full.sock");
    let l = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    l.bind(&SockAddr::unix(&path).unwrap()).unwrap();
    l.listen(0).unwrap();
    let mut held = Vec::new();
    loop {
        let s = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        match s.connect(&SockAddr::unix(&path).unwrap()) {
            Ok(()) => held.push(s),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the backlog: {e}"),
        }
        assert!(held.len() < 64, "precondition: could not fill the backlog");
    }

    let reactor = reactor();
    let log = new_clog();
    let started = Instant::now();
    reactor.connect_unix_with(
        &path,
        Rc::new(Client::new(&log)),
        UnixConnectOptions {
            timeout: Some(Duration::from_millis(200)),
        },
    );
    run(&reactor);
    let waited = started.elapsed();
    assert!(
        matches!(log.borrow()[1..], [C::Failed(ConnectError::TimedOut)]),
        "{:?}",
        log.borrow()
    );
    assert!(waited >= Duration::from_millis(190), "{waited:?}");

    // Room appears 100 ms into the next attempt: it gets in.
    let reactor = self::reactor();
    let log = new_clog();
    let mut client = Client::new(&log);
    client.made = Some(Rc::new(|cx: &mut Cx<'_>| cx.transport().lose_connection()));
    reactor.connect_unix(&path, Rc::new(client));
    let acceptor = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        l.accept().map(|(s, _)| (l, s))
    });
    run(&reactor);
    let _keep = acceptor.join().unwrap().unwrap();
    let events = log.borrow().clone();
    assert!(matches!(events[1], C::Made(..)), "{events:?}");
    assert!(
        matches!(events.last(), Some(C::ClientLost(_))),
        "{events:?}"
    );
    drop(held);
}

fn this_process() -> Credentials {
    // SAFETY: these calls cannot fail.
    Credentials {
        pid: std::process::id() as i32,
        uid: unsafe { libc::geteuid() },
        gid: unsafe { libc::getegid() },
    }
}

#[test]
fn peer_credentials_are_this_process_on_both_ends() {
    let dir = TempDir::new("cred");
    let path = dir.path("cred.sock");
    let reactor = reactor();
    let server_creds: Rc<RefCell<Vec<io::Result<Credentials>>>> = Rc::default();
    let seen = server_creds.clone();
    reactor
        .listen_unix(
            &path,
            server_factory(move || {
                let seen = seen.clone();
                Rec::new(&new_log())
                    .on_made(move |cx| seen.borrow_mut().push(cx.transport().peer_credentials()))
                    .boxed()
            }),
        )
        .unwrap();
    let client_creds: Rc<RefCell<Vec<io::Result<Credentials>>>> = Rc::default();
    let seen = client_creds.clone();
    let log = new_clog();
    let mut client = Client::new(&log);
    client.made = Some(Rc::new(move |cx: &mut Cx<'_>| {
        seen.borrow_mut().push(cx.transport().peer_credentials());
        cx.transport().lose_connection();
    }));
    reactor.connect_unix(&path, Rc::new(client));
    run(&reactor);
    let me = this_process();
    assert_eq!(client_creds.borrow()[0].as_ref().unwrap(), &me);
    assert_eq!(server_creds.borrow()[0].as_ref().unwrap(), &me);
}

#[test]
fn tcp_transports_have_no_credentials_and_pass_no_descriptors() {
    let reactor = reactor();
    let results: Rc<RefCell<Vec<io::ErrorKind>>> = Rc::default();
    let seen = results.clone();
    let addr = listen(
        &reactor,
        factory(move || {
            let seen = seen.clone();
            Rec::new(&new_log())
                .on_made(move |cx| {
                    let t = cx.transport();
                    seen.borrow_mut()
                        .push(t.peer_credentials().unwrap_err().kind());
                    let stdin = io::stdin();
                    let e = t.send_file_descriptor(stdin.as_fd()).unwrap_err();
                    seen.borrow_mut().push(e.kind());
                    t.lose_connection();
                })
                .boxed()
        }),
    );
    let client = client_then_stop(&reactor, move || {
        let mut s = connect(addr);
        let (data, _) = read_until_closed(&mut s);
        assert!(data.is_empty(), "no marker byte goes out: {data:?}");
    });
    run(&reactor);
    join(client);
    assert_eq!(
        results.borrow().as_slice(),
        &[io::ErrorKind::Unsupported, io::ErrorKind::Unsupported]
    );
}

fn pipe() -> (fs::File, fs::File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are new and owned by nothing else.
    unsafe { (fs::File::from_raw_fd(fds[0]), fs::File::from_raw_fd(fds[1])) }
}

/// The server passes the read ends of three pipes, in order, then a byte of its own; the
/// client gets each descriptor before the bytes it came with, and reading through them gives
/// what is written into the matching write ends.
#[test]
fn file_descriptors_pass_in_order_and_work_on_the_other_side() {
    let dir = TempDir::new("fds");
    let path = dir.path("fds.sock");
    let reactor = reactor();
    let pipes: Vec<(fs::File, fs::File)> = (0..3).map(|_| pipe()).collect();
    let read_ends: Rc<Vec<OwnedFd>> = Rc::new(
        pipes
            .iter()
            .map(|(r, _)| r.as_fd().try_clone_to_owned().unwrap())
            .collect(),
    );
    let send_results: Rc<RefCell<Vec<io::Result<()>>>> = Rc::default();
    let results = send_results.clone();
    reactor
        .listen_unix(
            &path,
            server_factory(move || {
                let read_ends = read_ends.clone();
                let results = results.clone();
                Rec::new(&new_log())
                    .on_made(move |cx| {
                        for fd in read_ends.iter() {
                            results
                                .borrow_mut()
                                .push(cx.transport().send_file_descriptor(fd.as_fd()));
                        }
                        cx.transport().write(b"!");
                        cx.transport().lose_connection();
                    })
                    .boxed()
            }),
        )
        .unwrap();
    // The sender's copies are its own: closing them now does not affect what was sent.
    let received_fds: Rc<RefCell<Vec<OwnedFd>>> = Rc::default();
    let keep = received_fds.clone();
    let log = new_clog();
    let mut client = Client::new(&log);
    client.fd = Some(Rc::new(move |_cx: &mut Cx<'_>, fd: OwnedFd| {
        keep.borrow_mut().push(fd)
    }));
    reactor.connect_unix(&path, Rc::new(client));
    run(&reactor);

    for r in send_results.borrow().iter() {
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(client_data(&log), b"\0\0\0!", "one NUL byte per descriptor");
    // Every descriptor came before the data of the read that carried it.
    let events = log.borrow().clone();
    let mut fds_seen = 0;
    let mut bytes_seen = 0;
    for e in &events {
        match e {
            C::Fd => {
                assert!(fds_seen >= bytes_seen, "a descriptor came late: {events:?}");
                fds_seen += 1;
            }
            C::Data(d) => bytes_seen += d.len(),
            _ => {}
        }
    }
    assert_eq!(fds_seen, 3, "{events:?}");

    let mut got = received_fds.take();
    assert_eq!(got.len(), 3);
    for (i, ((_, mut w), fd)) in pipes.into_iter().zip(got.drain(..)).enumerate() {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert!(
            flags & libc::FD_CLOEXEC != 0,
            "received descriptors are close-on-exec"
        );
        let msg = format!("through pipe {i}");
        w.write_all(msg.as_bytes()).unwrap();
        drop(w);
        let mut back = String::new();
        fs::File::from(fd).read_to_string(&mut back).unwrap();
        assert_eq!(back, msg);
    }
}

/// Descriptors cannot queue behind unsent bytes: with bytes waiting, sending one says
/// WouldBlock and sends nothing; once they are out (a pull producer is told), it goes.
#[test]
fn a_descriptor_behind_pending_bytes_would_block_until_they_drain() {
    type Outcome = Rc<RefCell<Vec<String>>>;
    fn kind(r: io::Result<()>) -> String {
        format!("{:?}", r.map_err(|e| e.kind()))
    }
    /// Sends the descriptor as soon as the buffer is empty, then closes.
    struct SendWhenDrained(Rc<fs::File>, Outcome);
    impl torsion::Producer for SendWhenDrained {
        fn resume_producing(&mut self, cx: &mut Cx<'_>) {
            let r = cx.transport().send_file_descriptor(self.0.as_fd());
            let done = r.is_ok();
            self.1.borrow_mut().push(kind(r));
            if done {
                cx.transport().unregister_producer();
                cx.transport().lose_connection();
            }
        }
    }
    struct Sender(Rc<fs::File>, Outcome, Rc<Vec<u8>>);
    impl Protocol for Sender {
        fn connection_made(&mut self, cx: &mut Cx<'_>) {
            let t = cx.transport();
            t.write(&self.2);
            assert!(t.buffered_len() > 0, "precondition: bytes are waiting");
            self.1
                .borrow_mut()
                .push(kind(t.send_file_descriptor(self.0.as_fd())));
            let producer = SendWhenDrained(self.0.clone(), self.1.clone());
            assert!(t.register_producer(Box::new(producer), false).is_ok());
        }
    }

    let dir = TempDir::new("fd-block");
    let path = dir.path("b.sock");
    let reactor = reactor();
    let (pipe_r, _pipe_w) = pipe();
    let pipe_r = Rc::new(pipe_r);
    let outcome: Outcome = Rc::default();
    let out = outcome.clone();
    let big = Rc::new(pattern(8 * 1024 * 1024));
    reactor
        .listen_unix(
            &path,
            server_factory(move || Box::new(Sender(pipe_r.clone(), out.clone(), big.clone()))),
        )
        .unwrap();
    let log = new_clog();
    let mut client = Client::new(&log);
    let fds: Rc<RefCell<Vec<OwnedFd>>> = Rc::default();
    let keep = fds.clone();
    client.fd = Some(Rc::new(move |_cx: &mut Cx<'_>, fd: OwnedFd| {
        keep.borrow_mut().push(fd)
    }));
    reactor.connect_unix(&path, Rc::new(client));
    run(&reactor);
    let outcome = outcome.borrow().clone();
    assert_eq!(outcome[0], "Err(WouldBlock)", "{outcome:?}");
    assert_eq!(outcome.last().unwrap(), "Ok(())", "{outcome:?}");
    assert_eq!(fds.borrow().len(), 1);
    let data = client_data(&log);
    assert_eq!(data.len(), 8 * 1024 * 1024 + 1, "the bytes, then the NUL");
    assert!(data[..8 * 1024 * 1024] == *pattern(8 * 1024 * 1024));
    assert_eq!(data.last(), Some(&0));
}

#[cfg(feature = "cli")]
#[test]
fn the_binary_serves_echo_on_a_unix_socket_and_exits_zero_on_sigterm() {
    use std::process::{Command, Stdio};
    let dir = TempDir::new("bin");
    let path = dir.path("echo.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_torsion"))
        .args(["serve", "echo", "--unix"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the torsion binary");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Ok(None) = self.0.try_wait() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut s = loop {
        if let Ok(s) = UnixStream::connect(&path) {
            break s;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("torsion exited early ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "torsion did not listen in time");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut child = Kill(child);
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(round_trip(&mut s, b"over unix\n"), b"over unix\n");

    let pid = libc::pid_t::try_from(child.0.id()).unwrap();
    // SAFETY: signals the child we started, by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let mut buf = [0u8; 8];
    assert_eq!(s.read(&mut buf).expect("the close after SIGTERM"), 0);
    let deadline = Instant::now() + IO_TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "torsion did not exit in time");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    assert!(!path.exists(), "the socket file is removed on exit");
}
