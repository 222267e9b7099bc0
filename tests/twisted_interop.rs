//! Interoperation with Python Twisted, for each framing (lines, netstrings, 32-bit length
//! prefixes): a Twisted client sends 10,000 messages of random sizes to a torsion echo
//! server and checks what comes back, and a torsion client does the same against a Twisted
//! echo server. The Twisted side is `tests/interop/peer.py`.
//!
//! Needs `python3` with Twisted (`python3 -m pip install twisted`; `.ci/run` installs it).
//! Without them the tests fail and say so. Every child process is killed by its PID when a
//! test ends, and every wait is bounded.

mod common;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use torsion::factory::from_fn;
use torsion::protocols::basic::{
    Int32StringReceiver, LineCx, LineHandler, LineReceiver, NetstringReceiver, StringCx,
    StringHandler,
};
use torsion::{ClientFactory, Factory, Protocol, Reason};

const COUNT: usize = 10_000;
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/peer.py");
/// How long one exchange may take, end to end.
const BOUND: Duration = Duration::from_secs(90);
const LIMIT: usize = 1 << 20;

/// Fails the test, saying what is missing, unless `python3` can import Twisted.
fn require_twisted() {
    let out = Command::new("python3")
        .args(["-c", "import twisted; print(twisted.__version__)"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "these tests need Python Twisted, which python3 cannot import \
             (install it with `python3 -m pip install twisted`; .ci/run does): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!(
            "these tests need python3 with Twisted, and python3 could not be run \
             (install python3, then `python3 -m pip install twisted`): {e}"
        ),
    }
}

/// A Python child, killed by its PID and reaped when dropped.
struct Py(Child);

impl Py {
    fn spawn(args: &[&str]) -> Py {
        let child = Command::new("python3")
            .arg(SCRIPT)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python3");
        Py(child)
    }

    /// Waits at most `BOUND` for the child to exit; kills it after that.
    fn wait(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + BOUND;
        let status = loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.0.kill();
                panic!("the Twisted peer did not finish within {BOUND:?}");
            }
            thread::sleep(Duration::from_millis(10));
        };
        let mut out = String::new();
        if let Some(mut o) = self.0.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_string(&mut out);
        }
        (status, out)
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Sends back every line.
struct LineEcho;
impl LineHandler for LineEcho {
    fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
        cx.send_line(line);
    }
}

/// Sends back every string.
struct StringEcho;
impl StringHandler for StringEcho {
    fn string_received(&mut self, cx: &mut StringCx<'_, '_>, string: &[u8]) {
        cx.send_string(string)
            .expect("an echo fits its own framing");
    }
}

fn echo_server(framing: &str) -> Rc<dyn Factory> {
    match framing {
        "line" => Rc::new(from_fn(|_| {
            Some(Box::new(LineReceiver::new(LineEcho).with_max_length(LIMIT)) as Box<dyn Protocol>)
        })),
        "netstring" => Rc::new(from_fn(|_| {
            Some(
                Box::new(NetstringReceiver::new(StringEcho).with_max_length(LIMIT))
                    as Box<dyn Protocol>,
            )
        })),
        _ => Rc::new(from_fn(|_| {
            Some(
                Box::new(Int32StringReceiver::new(StringEcho).with_max_length(LIMIT))
                    as Box<dyn Protocol>,
            )
        })),
    }
}

fn twisted_client_against_torsion(framing: &'static str) {
    require_twisted();
    let reactor = reactor();
    let addr = listen(&reactor, echo_server(framing));
    let port = addr.port().to_string();
    let mut py = Py::spawn(&["client", framing, &port, &COUNT.to_string(), "20261126"]);
    let (tx, rx) = mpsc::channel();
    let stop = reactor.handle();
    let watcher = thread::spawn(move || {
        let result = py.wait();
        let _ = stop.stop();
        tx.send(result).unwrap();
    });
    run_for(&reactor, BOUND + Duration::from_secs(5));
    watcher.join().unwrap();
    let (status, out) = rx.recv().unwrap();
    assert!(
        status.success() && out.contains(&format!("OK {COUNT}")),
        "the Twisted {framing} client failed ({status}): {out}"
    );
}

/// The messages a torsion client sends: sizes drawn like the Python side's.
fn messages(framing: &str, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed;
    let mut next = move || {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..COUNT)
        .map(|_| {
            let kind = next() % 100;
            let size = match kind {
                0..5 => 0,
                5..60 => 1 + next() % 63,
                60..95 => 64 + next() % 1984,
                _ => 2048 + next() % 13952,
            } as usize;
            let mut m: Vec<u8> = (0..size).map(|_| next() as u8).collect();
            if framing == "line" {
                for b in &mut m {
                    if *b == b'\r' {
                        *b = b'R';
                    }
                }
            }
            m
        })
        .collect()
}

/// The torsion client's state: what it still expects, and what went wrong.
#[derive(Default)]
struct Expect {
    sent: Vec<Vec<u8>>,
    pending: VecDeque<Vec<u8>>,
    received: usize,
    error: Option<String>,
    done: bool,
}

/// Sends every message at once, then checks the echoes in order.
struct Checker(Rc<RefCell<Expect>>);

impl Checker {
    /// Checks one echo; true once the last one came.
    fn check(&self, got: &[u8]) -> bool {
        let mut e = self.0.borrow_mut();
        let n = e.received;
        match e.pending.pop_front() {
            Some(want) if want == got => {}
            Some(want) => {
                e.error.get_or_insert(format!(
                    "echo {n} differs: got {} bytes, expected {}",
                    got.len(),
                    want.len()
                ));
                return true;
            }
            None => {
                e.error.get_or_insert(format!("an extra echo after {n}"));
                return true;
            }
        }
        e.received += 1;
        e.done = e.pending.is_empty();
        e.done
    }

    fn lost(&self) {
        let mut e = self.0.borrow_mut();
        if !e.done {
            let n = e.received;
            e.error
                .get_or_insert(format!("connection lost after {n} of {COUNT} echoes"));
        }
    }

    fn messages(&self) -> Vec<Vec<u8>> {
        let mut e = self.0.borrow_mut();
        e.pending = e.sent.iter().cloned().collect();
        e.sent.clone()
    }
}

impl LineHandler for Checker {
    fn connection_made(&mut self, cx: &mut LineCx<'_, '_>) {
        for m in self.messages() {
            cx.send_line(&m);
        }
    }
    fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
        if self.check(line) {
            cx.transport().lose_connection();
        }
    }
    fn connection_lost(&mut self, cx: &mut LineCx<'_, '_>, _: Reason) {
        self.lost();
        let _ = cx.reactor().stop();
    }
}

impl StringHandler for Checker {
    fn connection_made(&mut self, cx: &mut StringCx<'_, '_>) {
        for m in self.messages() {
            cx.send_string(&m).unwrap();
        }
    }
    fn string_received(&mut self, cx: &mut StringCx<'_, '_>, string: &[u8]) {
        if self.check(string) {
            cx.transport().lose_connection();
        }
    }
    fn connection_lost(&mut self, cx: &mut StringCx<'_, '_>, _: Reason) {
        self.lost();
        let _ = cx.reactor().stop();
    }
}

fn torsion_client_against_twisted(framing: &'static str) {
    require_twisted();
    let mut py = Py::spawn(&["server", framing]);
    let stdout = py.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the Twisted server to print its port");
    let port: u16 = line
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the Twisted server said {line:?}"));

    let expect = Rc::new(RefCell::new(Expect {
        sent: messages(framing, 0x7a11_5ea5),
        ..Default::default()
    }));
    let e = expect.clone();
    let factory: Rc<dyn ClientFactory> = Rc::new(from_fn(move |_| {
        let c = Checker(e.clone());
        Some(match framing {
            "line" => Box::new(LineReceiver::new(c).with_max_length(LIMIT)) as Box<dyn Protocol>,
            "netstring" => Box::new(NetstringReceiver::new(c).with_max_length(LIMIT)),
            _ => Box::new(Int32StringReceiver::new(c).with_max_length(LIMIT)),
        })
    }));
    let reactor = reactor();
    reactor.connect_tcp("127.0.0.1", port, factory);
    run_for(&reactor, BOUND);
    drop(py);
    let e = expect.borrow();
    assert!(
        e.error.is_none() && e.done && e.received == COUNT,
        "the torsion {framing} client against Twisted: {:?} ({} of {COUNT} echoes)",
        e.error,
        e.received
    );
}

#[test]
fn twisted_line_receiver_client_against_torsion() {
    twisted_client_against_torsion("line");
}

#[test]
fn twisted_netstring_client_against_torsion() {
    twisted_client_against_torsion("netstring");
}

#[test]
fn twisted_int32_client_against_torsion() {
    twisted_client_against_torsion("int32");
}

#[test]
fn torsion_line_receiver_client_against_twisted() {
    torsion_client_against_twisted("line");
}

#[test]
fn torsion_netstring_client_against_twisted() {
    torsion_client_against_twisted("netstring");
}

#[test]
fn torsion_int32_client_against_twisted() {
    torsion_client_against_twisted("int32");
}
