//! Port-forwarder throughput (issue 5): torsion's `ProxyFactory`, a tokio
//! `copy_bidirectional` forwarder and `socat`, on the same transfers in the same run.
//!
//! Each run starts a fresh forwarder pinned to CPU 0 (`torsion-bench forwarder KIND`, or
//! `socat TCP-LISTEN:P,fork,reuseaddr TCP:127.0.0.1:D`), and the generator threads of this
//! process, pinned to CPU 1, push bytes through it: sources `sendfile` from a memfd (no copy on
//! the sending side) and half-close when done; the sink discards with `recv(MSG_TRUNC)` (no
//! copy either) and counts. The forwarder therefore does both copies of every byte while the
//! generator does none, so that the generator is not the limit. Peak RSS is the forwarder's
//! VmHWM; for socat, the parent's VmHWM plus the largest sum of its live forked children's
//! VmHWM seen while sampling every 10 ms.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde::Serialize;
use serde_json::json;

use crate::netbench::{self, CpuUse, Section, Target, Window, fmt_opt, fmt_ratio, ratio};
use crate::report::median;
use crate::suite::Config;
use crate::sys::Guarded;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
pub enum Forwarder {
    /// torsion's `protocols::portforward::ProxyFactory` on a reactor.
    Torsion,
    /// tokio (multi-thread runtime, as `#[tokio::main]`): `copy_bidirectional` per connection.
    Tokio,
    /// `socat TCP-LISTEN:P,fork,reuseaddr TCP:127.0.0.1:D` (a process per connection).
    Socat,
}

impl Forwarder {
    pub fn name(self) -> &'static str {
        match self {
            Forwarder::Torsion => "torsion",
            Forwarder::Tokio => "tokio",
            Forwarder::Socat => "socat",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ForwarderArgs {
    /// torsion or tokio (socat is started directly).
    #[arg(value_enum)]
    kind: Forwarder,
    /// Where to forward to.
    #[arg(long)]
    dest: SocketAddr,
    /// Pin to this CPU (when the machine has two or more).
    #[arg(long)]
    core: Option<usize>,
}

/// `torsion-bench forwarder KIND --dest ADDR`: forwards until killed.
pub fn serve_main(args: &ForwarderArgs) -> ExitCode {
    if let Some(c) = args.core {
        netbench::pin_thread(c);
    }
    let r = match args.kind {
        Forwarder::Torsion => serve_torsion(args.dest),
        Forwarder::Tokio => serve_tokio(args.dest),
        Forwarder::Socat => Err(io::Error::other("socat runs as itself")),
    };
    eprintln!("torsion-bench forwarder {}: {r:?}", args.kind.name());
    ExitCode::FAILURE
}

fn serve_torsion(dest: SocketAddr) -> io::Result<()> {
    use torsion::protocols::portforward::ProxyFactory;
    use torsion::{Reactor, TcpListenOptions};
    let reactor = Reactor::new()?;
    let opts = TcpListenOptions {
        backlog: crate::servers::BACKLOG,
        interface: "127.0.0.1".into(),
        ..Default::default()
    };
    let factory = Rc::new(ProxyFactory::new(&dest.ip().to_string(), dest.port()));
    let port = reactor
        .listen_tcp_with(0, factory, opts)
        .map_err(io::Error::other)?;
    netbench::announce(port.host().port().unwrap_or(0));
    reactor.run().map_err(io::Error::other)
}

/// tokio's proxy example with `copy_bidirectional` (as in `tokio::io::copy_bidirectional`'s
/// documentation), on the runtime `#[tokio::main]` builds.
fn serve_tokio(dest: SocketAddr) -> io::Result<()> {
    let listener = netbench::bind_loopback()?;
    listener.set_nonblocking(true)?;
    netbench::announce(listener.local_addr()?.port());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut outbound = match tokio::net::TcpStream::connect(dest).await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("failed to connect: {e}");
                        return;
                    }
                };
                if let Err(e) = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await {
                    eprintln!("failed to transfer: {e}");
                }
            });
        }
        Ok(())
    })
}

/// A port that was free a moment ago (socat cannot report the one it got from port 0).
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether something listens on 127.0.0.1:`port` (/proc/net/tcp, state 0A), without
/// connecting to it.
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
        t.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
    })
}

pub fn socat_available() -> bool {
    Command::new("socat")
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn spawn_socat(dest: u16) -> io::Result<(Guarded, u16)> {
    use std::os::unix::process::CommandExt;
    let two = crate::sys::online_cpus() >= 2;
    for _ in 0..5 {
        let port = free_port()?;
        let mut cmd = Command::new("socat");
        cmd.args([
            format!("TCP-LISTEN:{port},fork,reuseaddr,bind=127.0.0.1,backlog=4096"),
            format!("TCP:127.0.0.1:{dest}"),
        ]);
        cmd.stdin(std::process::Stdio::null());
        // SAFETY: the closure makes only async-signal-safe system calls (sched_setaffinity,
        // prctl) on memory prepared before the fork.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: CPU_SET writes inside the zeroed set.
        unsafe { libc::CPU_SET(netbench::SERVER_CORE, &mut set) };
        unsafe {
            cmd.pre_exec(move || {
                if two {
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = Guarded::new(cmd.spawn()?);
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if listening(port) {
                return Ok((child, port));
            }
            if child.wait_for(Duration::from_millis(5)).is_some() {
                break;
            }
        }
    }
    Err(io::Error::other("socat did not start listening"))
}

fn start(kind: Forwarder, dest: u16) -> io::Result<(Guarded, u16)> {
    if kind == Forwarder::Socat {
        return spawn_socat(dest);
    }
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args([
        "forwarder",
        kind.name(),
        "--dest",
        &format!("127.0.0.1:{dest}"),
    ]);
    if crate::sys::online_cpus() >= 2 {
        cmd.args(["--core", &netbench::SERVER_CORE.to_string()]);
    }
    netbench::spawn_listening(cmd, &format!("{} forwarder", kind.name()))
}

/// A memfd of `len` bytes of a pattern, for `sendfile`.
fn memfd(len: usize) -> io::Result<std::fs::File> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create gets a NUL-terminated name; the descriptor is owned by the File.
    let fd = unsafe { libc::memfd_create(c"torsion-bench-src".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 + 3) as u8).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n])?;
        left -= n;
    }
    Ok(f)
}

const SRC_LEN: i64 = 4 << 20;

/// Sends `n` bytes from `src` with sendfile, then half-closes and reads to EOF.
fn source(port: u16, src: &std::fs::File, n: u64, stop: &AtomicBool) -> io::Result<()> {
    netbench::pin_thread(netbench::GEN_CORE);
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_write_timeout(Some(Duration::from_millis(200)))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut sent = 0u64;
    let mut off: libc::off_t = 0;
    while sent < n {
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("source stopped at the deadline"));
        }
        let want = ((n - sent) as i64).min(SRC_LEN - off) as usize;
        // SAFETY: both descriptors are open; `off` is a valid pointer.
        let r = unsafe { libc::sendfile(s.as_raw_fd(), src.as_raw_fd(), &mut off, want) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::TimedOut
            ) {
                continue;
            }
            return Err(e);
        }
        sent += r as u64;
        if off >= SRC_LEN {
            off = 0;
        }
    }
    s.shutdown(Shutdown::Write)?;
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(io::Error::other("the sink sent bytes back")),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    return Err(io::Error::other("no EOF back from the forwarder"));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads one connection to EOF, discarding with MSG_TRUNC; returns the count and when EOF came.
fn sink_conn(s: TcpStream, stop: &AtomicBool) -> (u64, Instant) {
    netbench::pin_thread(netbench::GEN_CORE);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        // SAFETY: `buf` is valid for its length; MSG_TRUNC makes TCP discard instead of copy.
        let r = unsafe {
            libc::recv(
                s.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if r > 0 {
            got += r as u64;
        } else if r == 0 {
            return (got, Instant::now());
        } else {
            let e = io::Error::last_os_error();
            let again = matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            );
            if !again || stop.load(Ordering::Relaxed) {
                return (got, Instant::now());
            }
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FwdResult {
    pub ok: bool,
    pub error: Option<String>,
    pub conns: usize,
    pub bytes: u64,
    pub mb_per_sec: f64,
    pub peak_rss: u64,
    pub cpu: CpuUse,
}

/// Pushes `conns` × `each` bytes through a fresh forwarder of `kind`.
fn run_one(kind: Forwarder, conns: usize, each: u64, limit: Duration) -> io::Result<FwdResult> {
    let sink = netbench::bind_loopback()?;
    sink.set_nonblocking(true)?;
    let sink_port = sink.local_addr()?.port();
    let (fwd, port) = start(kind, sink_port)?;
    let pid = fwd.pid();
    let src = Arc::new(memfd(SRC_LEN as usize)?);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    // Memory of socat's forked children, sampled while they live.
    let monitor = {
        let done = done.clone();
        std::thread::spawn(move || {
            netbench::pin_thread(netbench::GEN_CORE);
            let mut peak_children = 0u64;
            while !done.load(Ordering::Relaxed) {
                let hwm: HashMap<u32, u64> = netbench::children(pid)
                    .into_iter()
                    .filter_map(|c| Some((c, netbench::status_bytes(c, "VmHWM")?)))
                    .collect();
                peak_children = peak_children.max(hwm.values().sum());
                std::thread::sleep(Duration::from_millis(10));
            }
            peak_children
        })
    };
    let window = Window::start(pid);
    let t0 = Instant::now();
    let deadline = t0 + limit;
    let acceptor = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            netbench::pin_thread(netbench::GEN_CORE);
            let mut readers = Vec::new();
            while readers.len() < conns && !stop.load(Ordering::Relaxed) {
                match sink.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let stop = stop.clone();
                        readers.push(std::thread::spawn(move || sink_conn(s, &stop)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            readers
                .into_iter()
                .filter_map(|h| h.join().ok())
                .collect::<Vec<_>>()
        })
    };
    let sources: Vec<_> = (0..conns)
        .map(|_| {
            let (stop, src) = (stop.clone(), src.clone());
            std::thread::spawn(move || source(port, &src, each, &stop))
        })
        .collect();
    let watchdog = {
        let (stop, done) = (stop.clone(), done.clone());
        std::thread::spawn(move || {
            while Instant::now() < deadline && !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut error = None;
    for h in sources {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error = error.or(Some(format!("source: {e}"))),
            Err(_) => error = error.or(Some("source panicked".into())),
        }
    }
    let got = acceptor.join().unwrap_or_default();
    let end = got.iter().map(|g| g.1).max().unwrap_or_else(Instant::now);
    let secs = end.duration_since(t0).as_secs_f64();
    // Let socat reap its children, so their CPU shows in its cutime.
    std::thread::sleep(Duration::from_millis(100));
    let cpu = window.finish(Some(secs));
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    let peak_children = monitor.join().unwrap_or(0);
    let peak_rss = netbench::status_bytes(pid, "VmHWM").unwrap_or(0) + peak_children;
    drop(fwd);
    let bytes: u64 = got.iter().map(|g| g.0).sum();
    if got.len() != conns {
        error = error.or(Some(format!("sink accepted {} of {conns}", got.len())));
    }
    if let Some(g) = got.iter().find(|g| g.0 != each) {
        error = error.or(Some(format!("a sink got {} of {each} bytes", g.0)));
    }
    Ok(FwdResult {
        ok: error.is_none(),
        error,
        conns,
        bytes,
        mb_per_sec: bytes as f64 / 1e6 / secs.max(1e-9),
        peak_rss,
        cpu,
    })
}

/// The loads: (label, connections, bytes each).
fn loads(smoke: bool) -> Vec<(String, usize, u64)> {
    let (one, each) = if smoke {
        (64u64 << 20, 2u64 << 20)
    } else {
        (1u64 << 30, 64u64 << 20)
    };
    vec![
        (format!("1 × {} MiB", one >> 20), 1, one),
        (format!("50 × {} MiB", each >> 20), 50, each),
    ]
}

pub fn run(cfg: &Config, smoke: bool, failures: &mut Vec<String>) -> Section {
    let mut kinds = vec![Forwarder::Torsion, Forwarder::Tokio];
    let socat = socat_available();
    if socat {
        kinds.push(Forwarder::Socat);
    } else if smoke {
        eprintln!("torsion-bench: socat is not installed; the forwarder smoke run skips it");
    } else {
        failures.push(
            "forward: socat is not installed (apt-get install -y socat); it is a required \
             rival of the full run"
                .into(),
        );
    }
    let loads = loads(smoke);
    let limit = Duration::from_secs(if smoke { 30 } else { 120 });
    let mut samples: Vec<Vec<Vec<FwdResult>>> = vec![vec![Vec::new(); kinds.len()]; loads.len()];
    for rep in 0..cfg.reps {
        for (li, (label, conns, each)) in loads.iter().enumerate() {
            // Rotate the order each repetition so that no forwarder always goes first.
            for i in 0..kinds.len() {
                let ki = (i + rep) % kinds.len();
                let kind = kinds[ki];
                netbench::settle(cfg.quiet_wait_s);
                eprintln!("forward {label} {} (rep {})", kind.name(), rep + 1);
                let r = run_one(kind, *conns, *each, limit).unwrap_or_else(|e| FwdResult {
                    error: Some(e.to_string()),
                    ..Default::default()
                });
                if !r.ok {
                    failures.push(format!(
                        "forward {label} via {}: {}",
                        kind.name(),
                        r.error.as_deref().unwrap_or("?")
                    ));
                }
                samples[li][ki].push(r);
            }
        }
    }
    report(cfg, &kinds, &loads, &samples, socat)
}

fn report(
    cfg: &Config,
    kinds: &[Forwarder],
    loads: &[(String, usize, u64)],
    samples: &[Vec<Vec<FwdResult>>],
    socat: bool,
) -> Section {
    let mut md = String::from("### Port forwarder throughput (issue 5)\n\n");
    md.push_str(&format!(
        "Source → forwarder → sink on loopback; {} repetitions, forwarders interleaved (order \
         rotated), medians. Forwarder pinned to CPU 0 (a fresh process per run), generator \
         threads to CPU 1: sources `sendfile` from a memfd, the sink discards with \
         `recv(MSG_TRUNC)`, so the forwarder makes both copies of every byte and the \
         generator none. MB = 10⁶ bytes. Peak RSS: VmHWM (socat: parent + its forked \
         children). CPU in % of one CPU over the transfer; \"others\" is the rest of the \
         machine.\n\n",
        cfg.reps
    ));
    md.push_str(
        "| load | forwarder | MB/s | torsion ÷ this | peak RSS MiB | forwarder CPU % | \
         forwarder CPU s/GiB | generator CPU % | others CPU % | runs |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut json_rows = serde_json::Map::new();
    let mut targets = Vec::new();
    for (li, (label, conns, each)) in loads.iter().enumerate() {
        let stat = |ki: usize, f: fn(&FwdResult) -> f64| {
            median(samples[li][ki].iter().filter(|r| r.ok).map(f).collect())
        };
        let t_mb = stat(0, |r| r.mb_per_sec);
        let mut rows = serde_json::Map::new();
        for (ki, k) in kinds.iter().enumerate() {
            let mb = stat(ki, |r| r.mb_per_sec);
            let rss = stat(ki, |r| r.peak_rss as f64);
            let fcpu = stat(ki, |r| r.cpu.server_pct);
            let per_gib = stat(ki, |r| {
                r.cpu.server_cpu_s / (r.bytes as f64 / (1u64 << 30) as f64).max(1e-12)
            });
            let gcpu = stat(ki, |r| r.cpu.gen_pct);
            let other = stat(ki, |r| r.cpu.other_pct);
            let runs = samples[li][ki].iter().filter(|r| r.ok).count();
            let r = ratio(t_mb, mb);
            md.push_str(&format!(
                "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {runs} |\n",
                k.name(),
                fmt_opt(mb, 0),
                if *k == Forwarder::Torsion {
                    "—".into()
                } else {
                    fmt_ratio(r)
                },
                fmt_opt(rss.map(|b| b / 1048576.0), 1),
                fmt_opt(fcpu, 0),
                fmt_opt(per_gib, 2),
                fmt_opt(gcpu, 0),
                fmt_opt(other, 0),
            ));
            rows.insert(
                k.name().into(),
                json!({
                    "mb_per_sec": mb, "peak_rss_bytes": rss, "forwarder_cpu_pct": fcpu,
                    "forwarder_cpu_s_per_gib": per_gib, "generator_cpu_pct": gcpu,
                    "other_cpu_pct": other, "runs": runs, "torsion_ratio_mb": r,
                    "samples": samples[li][ki],
                }),
            );
            if *k != Forwarder::Torsion {
                targets.push(Target {
                    what: format!("Forwarder {label}: ≥ 1.0× {}", k.name()),
                    measured: fmt_ratio(r),
                    met: r.map(|x| x >= 1.0),
                });
            }
        }
        json_rows.insert(
            label.clone(),
            json!({"conns": conns, "bytes_each": each, "forwarders": rows}),
        );
    }
    if !socat {
        md.push_str("\nsocat is not installed: its rows are missing.\n");
        targets.push(Target {
            what: "Forwarder: ≥ 1.0× socat".into(),
            measured: "socat not installed".into(),
            met: None,
        });
    }
    md.push('\n');
    Section {
        key: "forward",
        markdown: md,
        json: json!({"loads": json_rows}),
        targets,
    }
}
