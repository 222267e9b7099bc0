//! Plumbing shared by the port-forwarder and TLS benchmarks (`forward.rs`, `tls.rs`): child
//! processes that announce their port, CPU and memory readings, and the sections they add to
//! the suite's report.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::report::Report;
use crate::suite::Config;
use crate::sys::{self, Guarded};

/// CPU of the processes under test; the generator threads pin themselves to the other one.
pub const SERVER_CORE: usize = 0;
pub const GEN_CORE: usize = 1;

/// Listens on 127.0.0.1 with a port the kernel picks.
pub fn bind_loopback() -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    sock.listen(crate::servers::BACKLOG)?;
    Ok(sock.into())
}

pub fn announce(port: u16) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "LISTENING {port}");
    let _ = out.flush();
}

/// Starts `cmd` (a `torsion-bench` server subcommand) and reads its `LISTENING <port>` line.
pub fn spawn_listening(mut cmd: Command, what: &str) -> io::Result<(Guarded, u16)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = Guarded::new(cmd.spawn()?);
    let out = child
        .stdout()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    let port = line
        .trim()
        .strip_prefix("LISTENING ")
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| io::Error::other(format!("{what} did not start: {line:?}")))?;
    Ok((child, port))
}

/// Pins the calling thread to `core` when the machine has two CPUs or more.
pub fn pin_thread(core: usize) {
    if sys::online_cpus() >= 2 {
        sys::pin_to_core(core);
    }
}

/// A `/proc/PID/status` field in bytes (`VmHWM`, `VmRSS`).
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// CPU time of a process and of its children it has reaped (utime + stime + cutime + cstime).
pub fn cpu_with_children(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = (11..=14)
        .map(|i| f.get(i).and_then(|x| x.parse::<u64>().ok()))
        .sum::<Option<u64>>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// The live children of `pid` (from /proc/PID/task/*/children).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|x| x.parse::<u32>().ok()));
        }
    }
    out
}

/// Waits, at most `max_s` seconds, until other jobs use under a quarter of a CPU.
pub fn settle(max_s: u64) {
    let end = Instant::now() + Duration::from_secs(max_s);
    while Instant::now() < end {
        let Ok(a) = sys::machine_busy() else { return };
        std::thread::sleep(Duration::from_millis(250));
        let Ok(b) = sys::machine_busy() else { return };
        if b.saturating_sub(a) < Duration::from_millis(250) / 4 {
            return;
        }
    }
}

/// CPU readings over one measured window: the generator (this process), the process under
/// test (with its reaped children) and everything else on the machine.
pub struct Window {
    t0: Instant,
    gen0: Duration,
    busy0: Duration,
    srv0: Duration,
    pid: u32,
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct CpuUse {
    pub secs: f64,
    /// % of one CPU.
    pub gen_pct: f64,
    pub server_pct: f64,
    pub other_pct: f64,
    /// CPU seconds the process under test used in the window.
    pub server_cpu_s: f64,
}

impl Window {
    pub fn start(pid: u32) -> Window {
        Window {
            t0: Instant::now(),
            gen0: sys::self_cpu(),
            busy0: sys::machine_busy().unwrap_or_default(),
            srv0: cpu_with_children(pid).unwrap_or_default(),
            pid,
        }
    }

    /// Ends the window; `secs` overrides its length for the percentages (the transfer's
    /// time when the readings are taken a little after it ended).
    pub fn finish(self, secs: Option<f64>) -> CpuUse {
        let wall = self.t0.elapsed().as_secs_f64();
        let secs = secs.unwrap_or(wall).max(1e-9);
        let g = sys::self_cpu().saturating_sub(self.gen0).as_secs_f64();
        let s = cpu_with_children(self.pid)
            .unwrap_or_default()
            .saturating_sub(self.srv0)
            .as_secs_f64();
        let busy = sys::machine_busy()
            .unwrap_or_default()
            .saturating_sub(self.busy0)
            .as_secs_f64();
        CpuUse {
            secs,
            gen_pct: g / secs * 100.0,
            server_pct: s / secs * 100.0,
            other_pct: ((busy - g - s) / wall.max(1e-9) * 100.0).max(0.0),
            server_cpu_s: s,
        }
    }
}

/// One target line of the report.
pub struct Target {
    pub what: String,
    pub measured: String,
    pub met: Option<bool>,
}

/// What one benchmark adds to the report.
pub struct Section {
    pub key: &'static str,
    pub markdown: String,
    pub json: Value,
    pub targets: Vec<Target>,
}

pub fn fmt_opt(x: Option<f64>, digits: usize) -> String {
    x.filter(|v| v.is_finite())
        .map_or("—".into(), |v| format!("{v:.digits$}"))
}

pub fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}×"))
}

pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// Runs the forwarder and TLS benchmarks that `only` selects (both when it is `None`);
/// failures go to `failures`.
pub fn run(
    cfg: &Config,
    only: Option<&[String]>,
    smoke: bool,
    failures: &mut Vec<String>,
) -> Vec<Section> {
    let wants = |g: &str| only.is_none_or(|o| o.iter().any(|x| x == g));
    let mut out = Vec::new();
    if wants("forward") {
        out.push(crate::forward::run(cfg, smoke, failures));
    }
    if wants("tls") {
        out.push(crate::tls::run(cfg, smoke, failures));
    }
    out
}

/// Adds the sections to the suite's report: markdown before its target table would be nicer,
/// but appending keeps the shared report code untouched.
pub fn append(rep: &mut Report, sections: Vec<Section>) {
    if sections.is_empty() {
        return;
    }
    let mut targets = Vec::new();
    for s in sections {
        rep.markdown.push_str(&s.markdown);
        rep.json[s.key] = s.json;
        targets.extend(s.targets);
    }
    rep.markdown.push_str(
        "### Targets (forwarder, TLS)\n\n| target | measured | met |\n|---|---:|:---:|\n",
    );
    for t in &targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        rep.markdown
            .push_str(&format!("| {} | {} | {met} |\n", t.what, t.measured));
    }
    rep.markdown.push('\n');
    let list = targets
        .iter()
        .map(|t| json!({"target": t.what, "measured": t.measured, "met": t.met}));
    if let Some(arr) = rep.json["targets"].as_array_mut() {
        arr.extend(list);
    } else {
        rep.json["targets"] = Value::Array(list.collect());
    }
}
