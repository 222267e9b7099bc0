//! Runs the benchmarks: starts each server as a child process pinned to core 0, drives it
//! with the load generator pinned to core 1, interleaves the servers within each repetition,
//! and keeps every sample for the report.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::load::{LoadResult, Mode};
use crate::micro::MicroResult;
use crate::servers::ServerKind;
use crate::sys::{self, Guarded};
use crate::timers::{TimerImpl, TimerResult};

#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub name: &'static str,
    pub reps: usize,
    pub warmup_ms: u64,
    pub duration_ms: u64,
    /// Connection counts of the ping-pong runs (64-byte messages, one in flight).
    pub pingpong_conns: Vec<usize>,
    pub stream_conns: usize,
    pub stream_size: usize,
    pub stream_inflight: usize,
    pub idle_conns: usize,
    pub idle_warm: usize,
    /// Connect-echo-close cycles in parallel.
    pub churn_parallel: usize,
    pub timers_n: usize,
    pub timers_max_delay_ms: u64,
    pub precision_samples: usize,
    pub nodelay: bool,
    pub servers: Vec<ServerKind>,
    /// Benchmark groups to run: pingpong, stream, churn, idle, timers, micro.
    pub only: Vec<String>,
    /// Before each run, wait up to this long for the machine to be quiet (other jobs using
    /// under a quarter of a CPU).
    pub quiet_wait_s: u64,
}

impl Config {
    pub fn full() -> Config {
        Config {
            name: "all",
            reps: 5,
            warmup_ms: 300,
            duration_ms: 1500,
            pingpong_conns: vec![1, 10, 50, 100],
            stream_conns: 50,
            stream_size: 4096,
            stream_inflight: 16,
            idle_conns: 10_000,
            idle_warm: 100,
            churn_parallel: 32,
            timers_n: 1_000_000,
            timers_max_delay_ms: 10_000,
            precision_samples: 200,
            nodelay: true,
            servers: ServerKind::ALL.to_vec(),
            only: ["pingpong", "stream", "churn", "idle", "timers", "micro"]
                .map(String::from)
                .to_vec(),
            quiet_wait_s: 5,
        }
    }

    /// Every benchmark, briefly: a few seconds in all.
    pub fn smoke() -> Config {
        Config {
            name: "smoke",
            reps: 1,
            warmup_ms: 20,
            duration_ms: 80,
            pingpong_conns: vec![1, 50],
            idle_conns: 500,
            idle_warm: 20,
            timers_n: 20_000,
            timers_max_delay_ms: 50,
            precision_samples: 20,
            quiet_wait_s: 0,
            ..Config::full()
        }
    }
}

/// What one echo benchmark is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Bench {
    PingPong(usize),
    Stream,
    Churn,
    Idle,
}

impl Bench {
    /// The group `--only` selects it by.
    pub fn group(self) -> &'static str {
        match self {
            Bench::PingPong(_) => "pingpong",
            Bench::Stream => "stream",
            Bench::Churn => "churn",
            Bench::Idle => "idle",
        }
    }

    pub fn id(self) -> String {
        match self {
            Bench::PingPong(n) => format!("pingpong-{n}"),
            Bench::Stream => "stream".into(),
            Bench::Churn => "churn".into(),
            Bench::Idle => "idle".into(),
        }
    }
}

/// One idle-connection measurement.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IdleResult {
    pub ok: bool,
    pub error: Option<String>,
    pub conns: usize,
    pub rss_before: u64,
    pub rss_after: u64,
    pub bytes_per_conn: f64,
}

#[derive(Default, Serialize)]
pub struct Samples {
    pub echo: BTreeMap<String, BTreeMap<ServerKind, Vec<LoadResult>>>,
    pub idle: BTreeMap<ServerKind, Vec<IdleResult>>,
    pub timers: BTreeMap<TimerImpl, Vec<TimerResult>>,
    pub micro: Vec<MicroResult>,
    /// Every failure (wrong echo, server that would not start, …).
    pub failures: Vec<String>,
}

pub struct Suite {
    exe: PathBuf,
    pub cfg: Config,
    /// Cores for the server and the generator (none on a one-core machine).
    server_core: Option<usize>,
    gen_core: Option<usize>,
}

impl Suite {
    pub fn new(cfg: Config) -> io::Result<Suite> {
        let two = sys::online_cpus() >= 2;
        Ok(Suite {
            exe: std::env::current_exe()?,
            cfg,
            server_core: two.then_some(0),
            gen_core: two.then_some(1),
        })
    }

    /// Waits (bounded by `quiet_wait_s`) until the machine is nearly idle, so that other
    /// jobs on a shared machine disturb the measurements less.
    fn settle(&self) {
        let end = std::time::Instant::now() + Duration::from_secs(self.cfg.quiet_wait_s);
        while std::time::Instant::now() < end {
            let Ok(a) = sys::machine_busy() else { return };
            std::thread::sleep(Duration::from_millis(250));
            let Ok(b) = sys::machine_busy() else { return };
            if b.saturating_sub(a) < Duration::from_millis(250) / 4 {
                return;
            }
        }
    }

    fn start_server(&self, kind: ServerKind) -> io::Result<(Guarded, u16)> {
        self.settle();
        let mut cmd = Command::new(&self.exe);
        cmd.args(["server", kind.name(), "--port", "0"]);
        if let Some(core) = self.server_core {
            cmd.args(["--core", &core.to_string()]);
        }
        if !self.cfg.nodelay {
            cmd.arg("--no-nodelay");
        }
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
            .ok_or_else(|| {
                io::Error::other(format!("{} server did not start: {line:?}", kind.name()))
            })?;
        Ok((child, port))
    }

    fn load_cmd(&self, port: u16, server_pid: u32, mode: Mode) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args([
            "load",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--mode",
            match mode {
                Mode::Echo => "echo",
                Mode::Churn => "churn",
                Mode::Idle => "idle",
            },
            "--server-pid",
            &server_pid.to_string(),
        ]);
        if let Some(core) = self.gen_core {
            cmd.args(["--core", &core.to_string()]);
        }
        cmd
    }

    /// One echo-style run (ping-pong, streaming or churn) against a fresh server.
    fn run_echo(&self, kind: ServerKind, bench: Bench) -> io::Result<LoadResult> {
        let (server, port) = self.start_server(kind)?;
        let c = &self.cfg;
        let (mode, conns, size, inflight) = match bench {
            Bench::PingPong(n) => (Mode::Echo, n, 64, 1),
            Bench::Stream => (Mode::Echo, c.stream_conns, c.stream_size, c.stream_inflight),
            Bench::Churn => (Mode::Churn, c.churn_parallel, 64, 1),
            Bench::Idle => unreachable!("idle has its own runner"),
        };
        let mut cmd = self.load_cmd(port, server.pid(), mode);
        cmd.args([
            "--conns",
            &conns.to_string(),
            "--size",
            &size.to_string(),
            "--inflight",
            &inflight.to_string(),
            "--warmup-ms",
            &c.warmup_ms.to_string(),
            "--duration-ms",
            &c.duration_ms.to_string(),
        ]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut gen_proc = Guarded::new(cmd.spawn()?);
        let limit = Duration::from_millis(c.warmup_ms + c.duration_ms) + Duration::from_secs(30);
        let out = gen_proc.stdout();
        let status = gen_proc.wait_for(limit);
        drop(server);
        let mut text = String::new();
        if let Some(mut out) = out {
            let _ = io::Read::read_to_string(&mut out, &mut text);
        }
        if status.is_none() {
            return Err(io::Error::other("load generator did not finish in time"));
        }
        serde_json::from_str(text.trim())
            .map_err(|e| io::Error::other(format!("bad generator output {text:?}: {e}")))
    }

    /// Server RSS growth per connection with `idle_conns` idle connections.
    fn run_idle(&self, kind: ServerKind) -> io::Result<IdleResult> {
        let c = &self.cfg;
        let (server, port) = self.start_server(kind)?;
        let mut cmd = self.load_cmd(port, server.pid(), Mode::Idle);
        cmd.args([
            "--conns",
            &c.idle_conns.to_string(),
            "--warm",
            &c.idle_warm.to_string(),
            "--size",
            "64",
        ]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut gen_proc = Guarded::new(cmd.spawn()?);
        let mut out = BufReader::new(
            gen_proc
                .stdout()
                .ok_or_else(|| io::Error::other("no stdout"))?,
        );
        let mut stdin = gen_proc
            .stdin()
            .ok_or_else(|| io::Error::other("no stdin"))?;
        let mut line = String::new();
        out.read_line(&mut line)?;
        if !line.starts_with("WARM") {
            return Err(io::Error::other(format!("idle generator: {line:?}")));
        }
        std::thread::sleep(Duration::from_millis(100));
        let rss_before = sys::rss_bytes(server.pid())?;
        writeln!(stdin, "GO")?;
        line.clear();
        out.read_line(&mut line)?;
        if !line.starts_with("READY") {
            let mut rest = String::new();
            let _ = io::Read::read_to_string(&mut out, &mut rest);
            return Err(io::Error::other(format!("idle generator: {line:?} {rest}")));
        }
        std::thread::sleep(Duration::from_millis(300));
        let rss_after = sys::rss_bytes(server.pid())?;
        drop(stdin);
        let _ = gen_proc.wait_for(Duration::from_secs(10));
        Ok(IdleResult {
            ok: true,
            error: None,
            conns: c.idle_conns,
            rss_before,
            rss_after,
            bytes_per_conn: (rss_after as f64 - rss_before as f64) / c.idle_conns as f64,
        })
    }

    fn run_timers(&self, imp: TimerImpl) -> io::Result<TimerResult> {
        self.settle();
        let c = &self.cfg;
        let mut cmd = Command::new(&self.exe);
        cmd.args([
            "timers",
            "--impl",
            match imp {
                TimerImpl::Torsion => "torsion",
                TimerImpl::TokioSleep => "tokio-sleep",
                TimerImpl::TokioDelayQueue => "tokio-delay-queue",
            },
            "--n",
            &c.timers_n.to_string(),
            "--max-delay-ms",
            &c.timers_max_delay_ms.to_string(),
            "--precision-samples",
            &c.precision_samples.to_string(),
        ]);
        if let Some(core) = self.server_core {
            cmd.args(["--core", &core.to_string()]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = Guarded::new(cmd.spawn()?);
        let out = child.stdout();
        let limit = Duration::from_millis(c.timers_max_delay_ms) + Duration::from_secs(60);
        let status = child.wait_for(limit);
        let mut text = String::new();
        if let Some(mut out) = out {
            let _ = io::Read::read_to_string(&mut out, &mut text);
        }
        if status.is_none() {
            return Err(io::Error::other("timer benchmark did not finish in time"));
        }
        serde_json::from_str(text.trim())
            .map_err(|e| io::Error::other(format!("bad timer output {text:?}: {e}")))
    }

    fn run_micro(&self) -> io::Result<MicroResult> {
        self.settle();
        let mut cmd = Command::new(&self.exe);
        cmd.arg("micro");
        if let Some(core) = self.server_core {
            cmd.args(["--core", &core.to_string()]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = Guarded::new(cmd.spawn()?);
        let out = child.stdout();
        let status = child.wait_for(Duration::from_secs(120));
        let mut text = String::new();
        if let Some(mut out) = out {
            let _ = io::Read::read_to_string(&mut out, &mut text);
        }
        if status.is_none() {
            return Err(io::Error::other("micro benchmarks did not finish in time"));
        }
        serde_json::from_str(text.trim())
            .map_err(|e| io::Error::other(format!("bad micro output {text:?}: {e}")))
    }

    pub fn benches(&self) -> Vec<Bench> {
        let mut v: Vec<Bench> = self
            .cfg
            .pingpong_conns
            .iter()
            .map(|&n| Bench::PingPong(n))
            .collect();
        v.extend([Bench::Stream, Bench::Churn, Bench::Idle]);
        v.retain(|b| self.wants(b.group()));
        v
    }

    pub fn wants(&self, group: &str) -> bool {
        self.cfg.only.iter().any(|g| g == group)
    }

    /// Runs everything, `reps` times, servers interleaved within each repetition.
    pub fn run(&self) -> Samples {
        let mut s = Samples::default();
        let reps = self.cfg.reps;
        for rep in 1..=reps {
            for bench in self.benches() {
                for &kind in &self.cfg.servers {
                    let label = format!("[{rep}/{reps}] {:<13} {:<9}", bench.id(), kind.name());
                    if bench == Bench::Idle {
                        match self.run_idle(kind) {
                            Ok(r) => {
                                eprintln!("{label} {:>10.1} B/conn", r.bytes_per_conn);
                                s.idle.entry(kind).or_default().push(r);
                            }
                            Err(e) => {
                                eprintln!("{label} FAILED: {e}");
                                s.failures
                                    .push(format!("{} {}: {e}", bench.id(), kind.name()));
                                s.idle.entry(kind).or_default().push(IdleResult {
                                    error: Some(e.to_string()),
                                    ..Default::default()
                                });
                            }
                        }
                        continue;
                    }
                    let r = self.run_echo(kind, bench).unwrap_or_else(|e| LoadResult {
                        error: Some(e.to_string()),
                        ..Default::default()
                    });
                    if r.ok {
                        eprintln!(
                            "{label} {:>10.0} msg/s {:>9.1} MB/s p50 {:>7.1} µs p99 {:>7.1} µs  cpu: server {:>3.0}% gen {:>3.0}% others {:>3.0}%",
                            r.msgs_per_sec,
                            r.mb_per_sec,
                            r.p50_us,
                            r.p99_us,
                            r.server_cpu_pct.unwrap_or(f64::NAN),
                            r.gen_cpu_pct,
                            r.other_cpu_pct.unwrap_or(f64::NAN),
                        );
                    } else {
                        let e = r.error.clone().unwrap_or_default();
                        eprintln!("{label} FAILED: {e}");
                        s.failures
                            .push(format!("{} {}: {e}", bench.id(), kind.name()));
                    }
                    s.echo
                        .entry(bench.id())
                        .or_default()
                        .entry(kind)
                        .or_default()
                        .push(r);
                }
            }
            let timers = if self.wants("timers") {
                &TimerImpl::ALL[..]
            } else {
                &[]
            };
            for &imp in timers {
                let label = format!("[{rep}/{reps}] {:<13} {:<9}", "timers", imp.name());
                let r = self.run_timers(imp).unwrap_or_else(|e| TimerResult {
                    error: Some(e.to_string()),
                    ..Default::default()
                });
                if r.ok {
                    eprintln!(
                        "{label} schedule {:.1} ns, cancel {:.1} ns, fire {:.1} ns; 200 µs timer late by p50 {:.1} µs, max {:.1} µs",
                        r.schedule_ns, r.cancel_ns, r.fire_ns, r.late_p50_us, r.late_max_us
                    );
                } else {
                    let e = r.error.clone().unwrap_or_default();
                    eprintln!("{label} FAILED: {e}");
                    s.failures.push(format!("timers {}: {e}", imp.name()));
                }
                s.timers.entry(imp).or_default().push(r);
            }
            if self.wants("micro") {
                let label = format!("[{rep}/{reps}] {:<13}", "micro");
                let r = self.run_micro().unwrap_or_else(|e| MicroResult {
                    error: Some(e.to_string()),
                    ..Default::default()
                });
                if r.ok {
                    for p in &r.parse {
                        eprintln!(
                            "{label} {:<22} torsion {:>7.0} MB/s, plain parser {:>7.0} MB/s",
                            p.format, p.torsion_mb_per_sec, p.plain_mb_per_sec
                        );
                    }
                    if let Some(d) = &r.defer {
                        eprintln!(
                            "{label} Deferred chain {:.0} ns, plain closures {:.0} ns",
                            d.deferred_ns, d.closures_ns
                        );
                    }
                } else {
                    let e = r.error.clone().unwrap_or_default();
                    eprintln!("{label} FAILED: {e}");
                    s.failures.push(format!("micro: {e}"));
                }
                s.micro.push(r);
            }
        }
        s
    }
}
