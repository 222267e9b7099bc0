//! The port forwarder over loopback: integrity both ways, half-close and reset passed on,
//! and flat memory between a fast source and a slow sink.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};
use torsion::protocols::portforward::ProxyFactory;
use torsion::{Cx, Protocol, Reason};

fn forwarder_to(reactor: &torsion::Reactor, dest: std::net::SocketAddr) -> std::net::SocketAddr {
    listen(
        reactor,
        Rc::new(ProxyFactory::new(&dest.ip().to_string(), dest.port())),
    )
}

#[test]
fn bytes_go_through_both_ways_intact() {
    let reactor = reactor();
    let echo = listen(&reactor, echo_factory());
    let fwd = forwarder_to(&reactor, echo);
    let client = client_then_stop(&reactor, move || {
        let mut s = connect(fwd);
        let data = pattern(8 << 20);
        let mut reader = s.try_clone().unwrap();
        let expected = data.clone();
        let r = std::thread::spawn(move || {
            let mut back = vec![0u8; expected.len()];
            reader.read_exact(&mut back).unwrap();
            back == expected
        });
        s.write_all(&data).unwrap();
        let ok = r.join().unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let (rest, err) = read_until_closed(&mut s);
        (ok, rest.len(), err.is_none())
    });
    run(&reactor);
    let (ok, rest, clean) = join(client);
    assert!(
        ok,
        "the echo through the forwarder differs from what was sent"
    );
    assert_eq!(rest, 0);
    assert!(clean, "a half-close passed through both ways ends cleanly");
}

/// Answers a half-close with a last word, then closes.
struct Farewell;

impl Protocol for Farewell {
    fn half_closeable(&self) -> bool {
        true
    }
    fn read_connection_lost(&mut self, cx: &mut Cx<'_>) {
        cx.transport().write(b"bye");
        cx.transport().lose_connection();
    }
}

#[test]
fn half_close_is_passed_on_and_the_other_side_can_still_write() {
    let reactor = reactor();
    let dest = listen(&reactor, factory(|| Box::new(Farewell)));
    let fwd = forwarder_to(&reactor, dest);
    let client = client_then_stop(&reactor, move || {
        let mut s = connect(fwd);
        s.shutdown(Shutdown::Write).unwrap();
        read_until_closed(&mut s)
    });
    run(&reactor);
    let (data, err) = join(client);
    assert_eq!(data, b"bye");
    assert!(err.is_none());
}

/// Resets its connection as soon as it is made.
struct Resetter;

impl Protocol for Resetter {
    fn data_received(&mut self, cx: &mut Cx<'_>, _: &[u8]) {
        cx.transport().abort_connection();
    }
}

#[test]
fn a_reset_on_one_side_closes_the_other() {
    let reactor = reactor();
    let dest = listen(&reactor, factory(|| Box::new(Resetter)));
    let fwd = forwarder_to(&reactor, dest);
    let client = client_then_stop(&reactor, move || {
        let mut s = connect(fwd);
        s.write_all(b"hello").unwrap();
        let started = Instant::now();
        let (_, err) = read_until_closed(&mut s);
        (err, started.elapsed())
    });
    run(&reactor);
    let (err, took) = join(client);
    assert!(
        err.as_ref().is_some_and(is_reset),
        "the client must see a reset, got {err:?}"
    );
    assert!(took < Duration::from_secs(5));
}

#[test]
fn refused_destination_closes_the_accepted_connection() {
    let reactor = reactor();
    let fwd = listen(
        &reactor,
        Rc::new(ProxyFactory::new("127.0.0.1", free_port())),
    );
    let client = client_then_stop(&reactor, move || {
        let mut s = connect(fwd);
        read_until_closed(&mut s)
    });
    run(&reactor);
    let (data, _) = join(client);
    assert!(data.is_empty());
}

/// Kills the child when dropped.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Reads everything from `s` at about `rate` bytes per second and hashes it.
fn slow_sink(mut s: TcpStream, rate: usize) -> (usize, Vec<u8>) {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut total, start) = (0usize, Instant::now());
    loop {
        let n = s.read(&mut buf).expect("sink read");
        if n == 0 {
            return (total, h.finalize().to_vec());
        }
        h.update(&buf[..n]);
        total += n;
        let due = Duration::from_secs_f64(total as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// Writes `len` bytes as fast as possible, returns their hash.
fn fast_source(mut s: TcpStream, len: usize) -> Vec<u8> {
    let mut h = Sha256::new();
    let chunk = pattern(1 << 20);
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        s.write_all(&chunk[..n]).expect("source write");
        h.update(&chunk[..n]);
        left -= n;
    }
    s.shutdown(Shutdown::Write).unwrap();
    h.finalize().to_vec()
}

fn start_forwarder(dest: std::net::SocketAddr) -> (Reaper, std::net::SocketAddr) {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_torsion"))
        .args([
            "portforward",
            "--port",
            &port.to_string(),
            "--interface",
            "127.0.0.1",
        ])
        .args(["--dest", &dest.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start torsion portforward");
    // Wait for the "listening" log line rather than probing with a connection, which the
    // forwarder would pass on to the destination.
    let stderr = child.stderr.take().unwrap();
    let reaper = Reaper(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the forwarder did not start");
    (reaper, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

const BIG: usize = 512 << 20;
const SLOW: usize = 400 << 20; // bytes per second
const RSS_LIMIT_KIB: u64 = 32 * 1024;

#[test]
fn fast_source_to_slow_sink_keeps_forwarder_memory_flat_client_to_server() {
    let sink = TcpListener::bind("127.0.0.1:0").unwrap();
    let (fwd, addr) = start_forwarder(sink.local_addr().unwrap());
    let sink_thread = std::thread::spawn(move || slow_sink(sink.accept().unwrap().0, SLOW));
    let sent = fast_source(TcpStream::connect(addr).unwrap(), BIG);
    let (got, hash) = sink_thread.join().unwrap();
    assert_eq!(got, BIG);
    assert_eq!(hash, sent, "SHA-256 of what arrived differs");
    let peak = peak_rss_kib(fwd.0.id());
    assert!(peak < RSS_LIMIT_KIB, "forwarder peak RSS {peak} KiB");
}

#[test]
fn fast_source_to_slow_sink_keeps_forwarder_memory_flat_server_to_client() {
    let source = TcpListener::bind("127.0.0.1:0").unwrap();
    let (fwd, addr) = start_forwarder(source.local_addr().unwrap());
    let client = TcpStream::connect(addr).unwrap();
    let (server_side, _) = source.accept().unwrap();
    let source_thread = std::thread::spawn(move || fast_source(server_side, BIG));
    let (got, hash) = slow_sink(client, SLOW);
    let sent = source_thread.join().unwrap();
    assert_eq!(got, BIG);
    assert_eq!(hash, sent, "SHA-256 of what arrived differs");
    let peak = peak_rss_kib(fwd.0.id());
    assert!(peak < RSS_LIMIT_KIB, "forwarder peak RSS {peak} KiB");
}

#[test]
fn lost_reason_is_clean_after_both_halves_close() {
    // Direct check of the reason seen by a destination when the client closes normally.
    let reactor = reactor();
    let log = new_log();
    let l = log.clone();
    let dest = listen(&reactor, factory(move || Box::new(Rec::new(&l))));
    let fwd = forwarder_to(&reactor, dest);
    let client = client_then_stop(&reactor, move || {
        let mut s = connect(fwd);
        s.write_all(b"x").unwrap();
        drop(s);
        std::thread::sleep(Duration::from_millis(200));
    });
    run(&reactor);
    join(client);
    let reason = check_lifecycle(&log);
    assert!(
        matches!(reason, Reason::ConnectionDone),
        "{reason:?}: {:?}",
        log.borrow()
    );
}
