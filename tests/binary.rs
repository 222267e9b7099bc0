//! The `torsion` binary as a user runs it: `serve echo` serves, SIGTERM closes its
//! connections and exits 0, a port in use is a clear error, `--help` shows examples.
#![cfg(feature = "cli")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_torsion");
const BOUND: Duration = Duration::from_secs(10);

/// A child process that is killed (by its PID) and reaped if the test ends early.
struct Proc(Child);

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the torsion binary");
        Proc(child)
    }

    fn serve_echo(port: u16) -> Proc {
        let port = port.to_string();
        Proc::spawn(&["serve", "echo", "--port", &port, "--interface", "127.0.0.1"])
    }

    /// Waits for the process to exit, at most `BOUND`.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "torsion did not exit within {BOUND:?}"
            );
            sleep(Duration::from_millis(10));
        }
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Connects to the server once it accepts, failing if it exits or takes too long.
    fn connect(&mut self, port: u16) -> TcpStream {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                s.set_read_timeout(Some(BOUND)).unwrap();
                return s;
            }
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                panic!("torsion exited early ({status}): {}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "torsion did not accept within {BOUND:?}"
            );
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A port that was free a moment ago: bind port 0, note the port, let it go.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn echo(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).unwrap();
    let mut back = vec![0; msg.len()];
    stream.read_exact(&mut back).expect("the echo");
    assert_eq!(back, msg);
}

#[test]
fn sigterm_closes_connections_and_exits_zero() {
    let port = free_port();
    let mut server = Proc::serve_echo(port);
    let mut idle = server.connect(port);
    let mut busy = server.connect(port);
    // A round trip also proves the loop (and its signal handling) is running.
    echo(&mut busy, b"hello, echo\r\n");
    echo(&mut idle, b"x");

    let pid = libc::pid_t::try_from(server.0.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);

    for client in [&mut idle, &mut busy] {
        let mut buf = [0u8; 16];
        match client.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("unexpected data after SIGTERM: {:?}", &buf[..n]),
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the client did not see the close within {BOUND:?}"
            ),
        }
    }
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "stderr: {}", server.stderr());
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut server = Proc::serve_echo(port);
    let status = server.wait();
    let stderr = server.stderr();
    assert!(!status.success(), "expected failure, got {status}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.to_lowercase().contains("in use"),
        "stderr should name the address and the OS error: {stderr}"
    );
    drop(taken);
}

#[test]
fn help_shows_examples() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Examples"), "{help}");
    assert!(help.contains("torsion serve echo --port"), "{help}");
}
