//! Running out of file descriptors on accept (EMFILE) neither spins the loop nor stops the
//! listener for good. The `torsion serve echo` binary runs in a child process limited to 64
//! descriptors; more connections than that are opened and held.

#![cfg(feature = "cli")]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FD_LIMIT: u32 = 64;
const CLIENTS: usize = 100;
/// The most CPU the server may burn in one second while out of descriptors. A loop that
/// spins on a listener it cannot accept from uses a whole second of CPU.
const CPU_BUDGET: f64 = 0.3;

/// Kills the child by its PID when dropped, on success and on failure alike.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the server exited ({status}); its log:\n{}",
                self.log_tail()
            );
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn has_prlimit() -> bool {
    Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts `torsion serve echo` on `port` with at most `FD_LIMIT` descriptors.
fn start_server(port: u16) -> Server {
    let bin = env!("CARGO_BIN_EXE_torsion");
    let log =
        std::env::temp_dir().join(format!("torsion-emfile-{}-{port}.log", std::process::id()));
    let out = File::create(&log).unwrap();
    let args = [
        "serve".to_owned(),
        "echo".to_owned(),
        "--port".to_owned(),
        port.to_string(),
        "--interface".to_owned(),
        "127.0.0.1".to_owned(),
    ];
    // prlimit sets the limit on itself and then execs the server, so the PID is the server's.
    let mut cmd = if has_prlimit() {
        let mut c = Command::new("prlimit");
        c.arg(format!("--nofile={FD_LIMIT}:{FD_LIMIT}"))
            .arg("--")
            .arg(bin);
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" \"$@\""))
            .arg(bin);
        c
    };
    let child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start the torsion binary");
    Server { child, log }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line; 12 and 13 here (0-based from
    // field 3).
    let utime: u64 = fields[11].parse().unwrap();
    let stime: u64 = fields[12].parse().unwrap();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (utime + stime) as f64 / ticks
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(Path::new(&format!("/proc/{pid}/fd")))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// One echo round trip on a fresh connection; `None` if it did not work.
fn echo_once(addr: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(msg).ok()?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).ok()?;
    Some(back)
}

fn wait_for_echo(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if echo_once(addr, b"hello?").as_deref() == Some(b"hello?") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn out_of_descriptors_neither_spins_nor_stops_the_listener() {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut server = start_server(port);
    let pid = server.pid();
    assert!(
        wait_for_echo(addr, Duration::from_secs(20)),
        "the server did not start serving; its log:\n{}",
        server.log_tail()
    );

    // More connections than the server has descriptors for, all held open.
    let mut held = Vec::new();
    for _ in 0..CLIENTS {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            held.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    server.assert_alive();
    let fds = open_fds(pid);
    assert!(
        fds as u32 >= FD_LIMIT - 4,
        "precondition: the server should have run out of descriptors, but holds only {fds}"
    );

    // One second out of descriptors, with a few more connections knocking meanwhile.
    let before = cpu_seconds(pid);
    let start = Instant::now();
    for _ in 0..10 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            held.push(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let remaining = Duration::from_secs(1).saturating_sub(start.elapsed());
    std::thread::sleep(remaining);
    let used = cpu_seconds(pid) - before;
    let wall = start.elapsed().as_secs_f64();
    server.assert_alive();
    eprintln!("out of descriptors: {fds} open, {used:.3} s of CPU in {wall:.3} s");
    assert!(
        used < CPU_BUDGET * wall,
        "the server used {used:.2} s of CPU in {wall:.2} s while out of descriptors (budget \
         {CPU_BUDGET} s/s); its log:\n{}",
        server.log_tail()
    );

    // Free the descriptors: the listener serves again.
    drop(held);
    assert!(
        wait_for_echo(addr, Duration::from_secs(10)),
        "the server did not accept again once descriptors were free; its log:\n{}",
        server.log_tail()
    );
    // And it still takes many connections at once.
    let again: Vec<Vec<u8>> = (0..20)
        .filter_map(|i| echo_once(addr, format!("again {i}").as_bytes()))
        .collect();
    assert_eq!(again.len(), 20, "{}", server.log_tail());
    server.assert_alive();
}
