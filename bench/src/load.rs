//! The load generator: one event-driven mio loop in its own process (pinned to its own core),
//! checking every echoed byte against the pattern it sent.
//!
//! Each connection's byte stream is a fixed pseudo-random pattern shifted by a per-connection
//! seed, so every received byte is compared with the byte that must be at that offset.

use std::collections::VecDeque;
use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};

use crate::sys;

/// Period of the pattern (a prime, so that shifted streams do not line up).
const PERIOD: usize = 65_521;
/// Largest single write or read.
const CHUNK: usize = 64 * 1024;

fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut v: Vec<u8> = (0..PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        // The tail repeats the head so that any window of CHUNK bytes is contiguous.
        for i in 0..CHUNK {
            v.push(v[i % PERIOD]);
        }
        v
    })
}

/// The bytes at stream offset `off` of a connection with `seed`, `len` ≤ CHUNK of them.
fn expected(seed: u64, off: u64, len: usize) -> &'static [u8] {
    let start = ((off + seed) % PERIOD as u64) as usize;
    &pattern()[start..start + len]
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// `inflight` messages of `size` bytes outstanding per connection, refilled as echoes
    /// complete (1 in flight: ping-pong; more: streaming).
    Echo,
    /// Connect, one echo of `size` bytes, close; `conns` such cycles in parallel.
    Churn,
    /// Open `warm` connections (one echo each), print WARM, wait for a line on stdin, open
    /// `conns` more, print READY, and hold them until stdin closes.
    Idle,
}

#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// Server address.
    #[arg(long)]
    pub addr: SocketAddr,
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Connections (echo, idle) or parallel connect-echo-close cycles (churn).
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub inflight: usize,
    /// Warm-up before measuring, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub warmup_ms: u64,
    /// Measured time, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub duration_ms: u64,
    /// PID of the server, to report its CPU use over the measured window.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Idle mode: connections opened before the baseline reading.
    #[arg(long, default_value_t = 100)]
    pub warm: usize,
    /// Pin to this CPU (when the machine has two or more).
    #[arg(long)]
    pub core: Option<usize>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct LoadResult {
    /// Every echoed byte matched and no connection failed.
    pub ok: bool,
    pub error: Option<String>,
    /// Messages echoed in the measured window (churn: completed connect-echo-close cycles).
    pub messages: u64,
    /// Echoed bytes received in the measured window.
    pub bytes: u64,
    pub secs: f64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// The generator's own CPU use over the window, % of one core (getrusage).
    pub gen_cpu_pct: f64,
    /// The server's CPU use over the window, % of one core (/proc/PID/stat).
    pub server_cpu_pct: Option<f64>,
    /// CPU used by everything else on the machine over the window, % of one core: other
    /// jobs competing with the benchmark (high values mean a noisy figure).
    pub other_cpu_pct: Option<f64>,
    /// Connections that failed to connect (churn, idle), retried.
    pub connect_errors: u64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

struct Window {
    start: Instant,
    cpu: Duration,
    server_cpu: Option<Duration>,
    machine: Option<Duration>,
}

impl Window {
    fn open(server_pid: Option<u32>) -> Window {
        Window {
            start: Instant::now(),
            cpu: sys::self_cpu(),
            server_cpu: server_pid.and_then(|p| sys::proc_cpu(p).ok()),
            machine: sys::machine_busy().ok(),
        }
    }

    fn close(&self, server_pid: Option<u32>, r: &mut LoadResult) {
        let secs = self.start.elapsed().as_secs_f64();
        r.secs = secs;
        let gen_cpu = sys::self_cpu() - self.cpu;
        r.gen_cpu_pct = gen_cpu.as_secs_f64() / secs * 100.0;
        r.server_cpu_pct = match (
            server_pid.and_then(|p| sys::proc_cpu(p).ok()),
            self.server_cpu,
        ) {
            (Some(b), Some(a)) => Some((b.saturating_sub(a)).as_secs_f64() / secs * 100.0),
            _ => None,
        };
        if let (Some(m), Some(a), Some(s)) =
            (sys::machine_busy().ok(), self.machine, r.server_cpu_pct)
        {
            let others = m.saturating_sub(a).as_secs_f64() / secs * 100.0 - r.gen_cpu_pct - s;
            r.other_cpu_pct = Some(others.max(0.0));
        }
        r.msgs_per_sec = r.messages as f64 / secs;
        r.mb_per_sec = r.bytes as f64 / secs / 1e6;
    }
}

pub fn run(args: &LoadArgs) -> LoadResult {
    sys::raise_nofile();
    if let Some(core) = args.core {
        sys::pin_to_core(core);
    }
    let res = match args.mode {
        Mode::Echo => run_echo(args),
        Mode::Churn => run_churn(args),
        Mode::Idle => run_idle(args),
    };
    res.unwrap_or_else(|e| LoadResult {
        ok: false,
        error: Some(e.to_string()),
        ..Default::default()
    })
}

fn mismatch(what: &str, seed: u64, off: u64, got: &[u8]) -> io::Error {
    let want = expected(seed, off, got.len());
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
    io::Error::other(format!(
        "{what}: echoed byte at stream offset {} is {:#04x}, expected {:#04x}",
        off + at as u64,
        got[at],
        want[at]
    ))
}

struct EchoConn {
    sock: TcpStream,
    seed: u64,
    sent: u64,
    recvd: u64,
    /// When the first byte of each message in flight was written.
    stamps: VecDeque<Instant>,
}

fn connect_blocking(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(TcpStream::from_std(s))
}

/// Writes as many whole messages as the window allows.
fn fill(c: &mut EchoConn, size: usize, inflight: usize) -> io::Result<()> {
    loop {
        let done = c.recvd / size as u64;
        let limit = (done + inflight as u64) * size as u64;
        if c.sent >= limit {
            return Ok(());
        }
        let len = ((limit - c.sent) as usize).min(CHUNK);
        match c.sock.write(expected(c.seed, c.sent, len)) {
            Ok(n) => {
                let now = Instant::now();
                let first = c.sent.div_ceil(size as u64);
                c.sent += n as u64;
                let last = c.sent.div_ceil(size as u64);
                for _ in first..last {
                    c.stamps.push_back(now);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn run_echo(args: &LoadArgs) -> io::Result<LoadResult> {
    let (size, inflight) = (args.size.max(1), args.inflight.max(1));
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let mut sock = connect_blocking(args.addr)?;
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        conns.push(EchoConn {
            sock,
            seed: i as u64 * 7919,
            sent: 0,
            recvd: 0,
            stamps: VecDeque::with_capacity(inflight + 1),
        });
    }
    for c in &mut conns {
        fill(c, size, inflight)?;
    }
    let mut buf = vec![0u8; CHUNK];
    let mut lat: Vec<u32> = Vec::with_capacity(1 << 20);
    let t0 = Instant::now();
    let warm_end = t0 + Duration::from_millis(args.warmup_ms);
    let end = warm_end + Duration::from_millis(args.duration_ms);
    let mut window: Option<Window> = None;
    let mut r = LoadResult::default();
    loop {
        let now = Instant::now();
        if window.is_none() && now >= warm_end {
            window = Some(Window::open(args.server_pid));
        }
        if now >= end {
            break;
        }
        let wake = if window.is_none() { warm_end } else { end };
        if let Err(e) = poll.poll(&mut events, Some(wake - now)) {
            if e.kind() != ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let measuring = window.is_some();
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if ev.is_error() {
                return Err(c
                    .sock
                    .take_error()?
                    .unwrap_or_else(|| io::Error::other("error")));
            }
            if ev.is_readable() || ev.is_read_closed() {
                loop {
                    match c.sock.read(&mut buf) {
                        Ok(0) => return Err(io::Error::other("server closed a connection")),
                        Ok(n) => {
                            if n as u64 + c.recvd > c.sent {
                                return Err(io::Error::other("echoed more bytes than were sent"));
                            }
                            if buf[..n] != *expected(c.seed, c.recvd, n) {
                                return Err(mismatch("echo", c.seed, c.recvd, &buf[..n]));
                            }
                            let before = c.recvd / size as u64;
                            c.recvd += n as u64;
                            let after = c.recvd / size as u64;
                            if after > before {
                                let now = Instant::now();
                                for _ in before..after {
                                    let sent_at = c.stamps.pop_front().unwrap_or(now);
                                    if measuring {
                                        let ns = (now - sent_at).as_nanos().min(u32::MAX as u128);
                                        lat.push(ns as u32);
                                    }
                                }
                                if measuring {
                                    r.messages += after - before;
                                }
                            }
                            if measuring {
                                r.bytes += n as u64;
                            }
                            // A short read drained the socket; the next edge brings more.
                            if n < buf.len() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            fill(c, size, inflight)?;
        }
    }
    let w = window.unwrap_or_else(|| Window::open(args.server_pid));
    w.close(args.server_pid, &mut r);
    lat.sort_unstable();
    r.p50_us = percentile(&lat, 0.50);
    r.p99_us = percentile(&lat, 0.99);
    r.ok = r.messages > 0;
    if !r.ok {
        r.error = Some("no message was echoed in the measured window".into());
    }
    Ok(r)
}

enum Phase {
    Connecting,
    Echoing,
}

struct Cycle {
    sock: TcpStream,
    phase: Phase,
    seed: u64,
    sent: usize,
    recvd: usize,
    generation: u64,
}

fn token(slot: usize, generation: u64) -> Token {
    Token(slot | ((generation as usize) << 32))
}

/// Starts a non-blocking connect for a slot.
fn start_cycle(poll: &Poll, addr: SocketAddr, slot: usize, generation: u64) -> io::Result<Cycle> {
    let mut sock = TcpStream::connect(addr)?;
    poll.registry().register(
        &mut sock,
        token(slot, generation),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    Ok(Cycle {
        sock,
        phase: Phase::Connecting,
        seed: (slot as u64) * 7919 + generation * 104_729,
        sent: 0,
        recvd: 0,
        generation,
    })
}

/// Advances one connect-echo cycle; returns true once the echo is complete and checked.
fn step_cycle(c: &mut Cycle, size: usize, buf: &mut [u8]) -> io::Result<bool> {
    if let Phase::Connecting = c.phase {
        if let Some(e) = c.sock.take_error()? {
            return Err(e);
        }
        match c.sock.peer_addr() {
            Ok(_) => {
                let _ = c.sock.set_nodelay(true);
                c.phase = Phase::Echoing;
            }
            Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    while c.sent < size {
        match c.sock.write(expected(c.seed, c.sent as u64, size - c.sent)) {
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    while c.recvd < size {
        match c.sock.read(&mut buf[..size - c.recvd]) {
            Ok(0) => return Err(io::Error::other("server closed before echoing")),
            Ok(n) => {
                if buf[..n] != *expected(c.seed, c.recvd as u64, n) {
                    return Err(mismatch("churn echo", c.seed, c.recvd as u64, &buf[..n]));
                }
                c.recvd += n;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn is_echo_error(e: &io::Error) -> bool {
    e.kind() == ErrorKind::Other
}

fn run_churn(args: &LoadArgs) -> io::Result<LoadResult> {
    let size = args.size.clamp(1, CHUNK);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Option<Cycle>> = Vec::with_capacity(args.conns);
    let mut r = LoadResult::default();
    for i in 0..args.conns {
        slots.push(Some(start_cycle(&poll, args.addr, i, 0)?));
    }
    let mut buf = vec![0u8; CHUNK];
    let t0 = Instant::now();
    let warm_end = t0 + Duration::from_millis(args.warmup_ms);
    let end = warm_end + Duration::from_millis(args.duration_ms);
    let mut window: Option<Window> = None;
    loop {
        let now = Instant::now();
        if window.is_none() && now >= warm_end {
            window = Some(Window::open(args.server_pid));
        }
        if now >= end {
            break;
        }
        let wake = if window.is_none() { warm_end } else { end };
        if let Err(e) = poll.poll(&mut events, Some(wake - now)) {
            if e.kind() != ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for ev in events.iter() {
            let slot = ev.token().0 & 0xffff_ffff;
            let generation = (ev.token().0 >> 32) as u64;
            let Some(c) = slots[slot].as_mut() else {
                continue;
            };
            if c.generation != generation {
                continue;
            }
            let step = step_cycle(c, size, &mut buf);
            let next = match step {
                Ok(false) => continue,
                Ok(true) => {
                    if window.is_some() {
                        r.messages += 1;
                        r.bytes += size as u64;
                    }
                    generation + 1
                }
                Err(e) if is_echo_error(&e) => return Err(e),
                Err(_) => {
                    r.connect_errors += 1;
                    generation + 1
                }
            };
            // Close (dropping the socket) and start the next cycle in this slot.
            slots[slot] = None;
            slots[slot] = Some(start_cycle(&poll, args.addr, slot, next)?);
        }
    }
    let w = window.unwrap_or_else(|| Window::open(args.server_pid));
    w.close(args.server_pid, &mut r);
    r.ok = r.messages > 0;
    if !r.ok {
        r.error = Some("no connection completed an echo in the measured window".into());
    }
    Ok(r)
}

/// Opens `n` connections, each doing one echo, at most `parallel` connecting at once; keeps
/// them open in `keep`.
fn open_idle(
    poll: &mut Poll,
    addr: SocketAddr,
    n: usize,
    size: usize,
    keep: &mut Vec<TcpStream>,
    r: &mut LoadResult,
    deadline: Instant,
) -> io::Result<()> {
    const PARALLEL: usize = 256;
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Option<Cycle>> = (0..PARALLEL.min(n)).map(|_| None).collect();
    let mut generation = keep.len() as u64 * 16 + 1;
    let mut started = 0;
    let mut finished = 0;
    let mut buf = vec![0u8; CHUNK];
    for (i, s) in slots.iter_mut().enumerate() {
        *s = Some(start_cycle(poll, addr, i, generation)?);
        generation += 1;
        started += 1;
    }
    while finished < n {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                format!("only {finished} of {n} idle connections echoed in time"),
            ));
        }
        poll.poll(
            &mut events,
            Some((deadline - now).min(Duration::from_millis(100))),
        )?;
        for ev in events.iter() {
            let slot = ev.token().0 & 0xffff_ffff;
            let g = (ev.token().0 >> 32) as u64;
            let Some(c) = slots[slot].as_mut() else {
                continue;
            };
            if c.generation != g {
                continue;
            }
            match step_cycle(c, size, &mut buf) {
                Ok(false) => continue,
                Ok(true) => {
                    let mut done = slots[slot].take().expect("slot in use");
                    poll.registry().deregister(&mut done.sock)?;
                    keep.push(done.sock);
                    finished += 1;
                }
                Err(e) if is_echo_error(&e) => return Err(e),
                Err(_) => {
                    r.connect_errors += 1;
                    started -= 1;
                    slots[slot] = None;
                }
            }
            if started < n {
                slots[slot] = Some(start_cycle(poll, addr, slot, generation)?);
                generation += 1;
                started += 1;
            }
        }
    }
    Ok(())
}

fn run_idle(args: &LoadArgs) -> io::Result<LoadResult> {
    let mut poll = Poll::new()?;
    let mut keep = Vec::with_capacity(args.warm + args.conns);
    let mut r = LoadResult::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let size = args.size.clamp(1, CHUNK);
    open_idle(
        &mut poll, args.addr, args.warm, size, &mut keep, &mut r, deadline,
    )?;
    let mut stdin = io::stdin().lock();
    let mut line = String::new();
    println!("WARM {}", keep.len());
    io::stdout().flush()?;
    stdin.read_line(&mut line)?;
    open_idle(
        &mut poll, args.addr, args.conns, size, &mut keep, &mut r, deadline,
    )?;
    println!("READY {}", keep.len());
    io::stdout().flush()?;
    line.clear();
    stdin.read_line(&mut line)?;
    r.ok = keep.len() == args.warm + args.conns;
    r.messages = keep.len() as u64;
    Ok(r)
}
