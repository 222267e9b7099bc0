//! `protocols::chat` over real loopback sockets, with three clients: broadcasts reach every
//! other member in order, a taken name is refused, `/quit` closes, an over-long line closes
//! only its sender, and the idle timeout closes a quiet client.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use torsion::protocols::chat::ChatFactory;
use torsion::{Reactor, ReactorHandle, TcpListenOptions};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a chat server on its own thread; stops it when dropped.
struct Server {
    port: u16,
    handle: ReactorHandle,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(max_line: usize, idle: Option<Duration>) -> Server {
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let reactor = Reactor::builder()
                .install_signal_handlers(false)
                .build()
                .unwrap();
            let factory = ChatFactory::new(reactor.clone())
                .with_max_line(max_line)
                .with_idle_timeout(idle);
            let opts = TcpListenOptions {
                interface: "127.0.0.1".into(),
                ..Default::default()
            };
            let port = reactor.listen_tcp_with(0, Rc::new(factory), opts).unwrap();
            reactor.call_later(Duration::from_secs(30), |r| {
                let _ = r.stop();
            });
            tx.send((port.host().port().unwrap(), reactor.handle()))
                .unwrap();
            reactor.run().unwrap();
        });
        let (port, handle) = rx.recv_timeout(TIMEOUT).unwrap();
        Server {
            port,
            handle,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.handle.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut c = Client { stream, reader };
        assert_eq!(c.line(), "What's your name?\r\n");
        c
    }

    /// Connects and takes `name`.
    fn join(port: u16, name: &str) -> Client {
        let mut c = Client::connect(port);
        c.say(name);
        assert_eq!(c.line(), format!("Welcome, {name}!\r\n"));
        c
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("a line within the timeout");
        line
    }

    fn say(&mut self, line: &str) {
        self.stream.write_all(line.as_bytes()).unwrap();
        self.stream.write_all(b"\r\n").unwrap();
    }

    /// True once the server has closed the connection (end of stream or a reset), whatever
    /// was still to read before that.
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
        }
    }

    /// Reads `n` lines and checks that each sender's lines come in order: `<name> {prefix}{i}`
    /// for i = 0, 1, … per sender. Returns how many came from each, by name.
    fn in_order(&mut self, n: usize) -> HashMap<String, usize> {
        let mut next: HashMap<String, usize> = HashMap::new();
        for _ in 0..n {
            let line = self.line();
            let (name, text) = line
                .trim_end()
                .strip_prefix('<')
                .and_then(|l| l.split_once("> "))
                .unwrap_or_else(|| panic!("not a chat line: {line:?}"));
            let i = next.entry(name.to_owned()).or_default();
            assert_eq!(text, format!("{name}{i}"), "out of order");
            *i += 1;
        }
        next
    }
}

#[test]
fn everyone_else_sees_each_broadcast_in_order() {
    let server = Server::start(16384, None);
    let mut a = Client::join(server.port, "alice");
    let mut b = Client::join(server.port, "bob");
    let mut c = Client::join(server.port, "carol");
    for i in 0..200 {
        a.say(&format!("alice{i}"));
        b.say(&format!("bob{i}"));
        if i % 2 == 0 {
            c.say(&format!("carol{}", i / 2));
        }
    }
    let counts = |pairs: &[(&str, usize)]| -> HashMap<String, usize> {
        pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    };
    assert_eq!(a.in_order(300), counts(&[("bob", 200), ("carol", 100)]));
    assert_eq!(b.in_order(300), counts(&[("alice", 200), ("carol", 100)]));
    assert_eq!(c.in_order(400), counts(&[("alice", 200), ("bob", 200)]));
}

#[test]
fn a_taken_name_is_refused_and_freed_by_quit() {
    let server = Server::start(16384, None);
    let mut a = Client::join(server.port, "zed");
    let mut b = Client::connect(server.port);
    b.say("zed");
    assert_eq!(b.line(), "Name taken, please choose another.\r\n");
    a.say("/quit");
    assert!(a.closed());
    // The name is free once the server has seen the connection go.
    let mut tries = 0;
    loop {
        b.say("zed");
        match b.line().as_str() {
            "Welcome, zed!\r\n" => break,
            "Name taken, please choose another.\r\n" if tries < 100 => {
                tries += 1;
                thread::sleep(Duration::from_millis(10));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn an_over_long_line_closes_only_its_sender() {
    let server = Server::start(64, None);
    let mut a = Client::join(server.port, "a");
    let mut b = Client::join(server.port, "b");
    let mut c = Client::join(server.port, "c");
    b.say(&"x".repeat(65));
    assert!(b.closed());
    a.say("still here");
    assert_eq!(c.line(), "<a> still here\r\n");
    c.say(&"y".repeat(64));
    assert_eq!(a.line(), format!("<c> {}\r\n", "y".repeat(64)));
}

#[test]
fn a_quiet_client_is_closed_by_the_idle_timeout() {
    let server = Server::start(16384, Some(Duration::from_millis(300)));
    let mut quiet = Client::join(server.port, "quiet");
    let mut busy = Client::join(server.port, "busy");
    for _ in 0..10 {
        thread::sleep(Duration::from_millis(50));
        busy.say("tick");
    }
    assert!(quiet.closed(), "idle for over 300 ms");
    busy.say("still talking");
    let mut other = Client::join(server.port, "other");
    busy.say("hello other");
    assert_eq!(other.line(), "<busy> hello other\r\n");
}
