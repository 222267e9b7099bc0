//! `torsion-bench`: torsion against tokio, a bare mio loop and a C epoll loop, on identical
//! load, in the same run.
//!
//! ```text
//! cargo run --release -p torsion-bench -- all     # the full suite (several minutes)
//! cargo run --release -p torsion-bench -- smoke   # every benchmark briefly; fails on a bad echo
//! ```
//!
//! Reports land in `target/bench-report/` (report.md, report.json, pingpong.svg); `--out`
//! moves them. The other subcommands are the processes the suite starts: `server` (an echo
//! server), `load` (the load generator) and `timers` (one timer benchmark).

mod forward;
mod load;
mod micro;
mod netbench;
mod report;
mod servers;
mod suite;
mod sys;
mod timers;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(about = "Benchmarks of torsion against tokio, a bare mio loop and a C epoll loop")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Debug, Clone)]
struct SuiteArgs {
    /// Where report.md, report.json and pingpong.svg go.
    #[arg(long, default_value = "target/bench-report")]
    out: PathBuf,
    /// Repetitions (default: 5 for `all`, 1 for `smoke`).
    #[arg(long)]
    reps: Option<usize>,
    /// Measured milliseconds per echo run.
    #[arg(long)]
    duration_ms: Option<u64>,
    /// Only these servers (comma-separated: torsion,tokio-ct,tokio-mt,mio,c).
    #[arg(long, value_delimiter = ',', value_enum)]
    servers: Option<Vec<servers::ServerKind>>,
    /// Leave TCP_NODELAY off on the servers' sockets.
    #[arg(long)]
    no_nodelay: bool,
    /// Only these benchmark groups (comma-separated: pingpong,stream,churn,idle,timers,micro,
    /// forward,tls).
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Wait up to this many seconds before each run for other jobs to leave the CPUs quiet
    /// (default: 5 for `all`, 0 for `smoke`).
    #[arg(long)]
    quiet_wait_s: Option<u64>,
    /// Ping-pong connection counts (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pingpong_conns: Option<Vec<usize>>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The full suite, with reports under --out.
    All(SuiteArgs),
    /// Every benchmark for a few seconds in all; exits non-zero if any server echoes wrongly.
    Smoke(SuiteArgs),
    /// Run one echo server until killed; prints `LISTENING <port>`.
    Server {
        #[arg(value_enum)]
        kind: servers::ServerKind,
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Pin to this CPU (when the machine has two or more).
        #[arg(long)]
        core: Option<usize>,
        /// Leave TCP_NODELAY off on accepted sockets.
        #[arg(long)]
        no_nodelay: bool,
    },
    /// The load generator; prints its result as one JSON line.
    Load(load::LoadArgs),
    /// One timer benchmark; prints its result as one JSON line.
    Timers(timers::TimerArgs),
    /// Framing parsers and Deferred chains, in process; prints one JSON line.
    Micro {
        /// Pin to this CPU (when the machine has two or more).
        #[arg(long)]
        core: Option<usize>,
    },
    /// A port forwarder under test (torsion or tokio); prints `LISTENING <port>`.
    Forwarder(forward::ForwarderArgs),
    /// A TLS echo server under test; prints `LISTENING <port>`.
    TlsServer(tls::TlsServerArgs),
}

fn run_suite(mut cfg: suite::Config, args: &SuiteArgs, smoke: bool) -> ExitCode {
    if let Some(r) = args.reps {
        cfg.reps = r.max(1);
    }
    if let Some(d) = args.duration_ms {
        cfg.duration_ms = d.max(1);
    }
    if let Some(s) = &args.servers {
        cfg.servers = s.clone();
    }
    cfg.nodelay = !args.no_nodelay;
    if let Some(only) = &args.only {
        cfg.only = only.clone();
    }
    if let Some(q) = args.quiet_wait_s {
        cfg.quiet_wait_s = q;
    }
    if let Some(p) = &args.pingpong_conns {
        cfg.pingpong_conns = p.clone();
    }
    let nofile = sys::raise_nofile();
    let needed = (cfg.idle_conns + cfg.idle_warm + 64) as u64;
    if nofile < needed {
        eprintln!(
            "torsion-bench: RLIMIT_NOFILE is {nofile}; the idle benchmark needs {needed}: \
             using {} connections",
            nofile.saturating_sub(cfg.idle_warm as u64 + 64)
        );
        cfg.idle_conns = nofile.saturating_sub(cfg.idle_warm as u64 + 64).max(1) as usize;
    }
    let suite = match suite::Suite::new(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("torsion-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut samples = suite.run();
    let extra = netbench::run(
        &suite.cfg,
        args.only.as_deref(),
        smoke,
        &mut samples.failures,
    );
    let mut command = String::from("cargo run --release -p torsion-bench -- ");
    command.push_str(if smoke { "smoke" } else { "all" });
    let mut rep = report::build(&suite, &samples, &command);
    netbench::append(&mut rep, extra);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&args.out)?;
        std::fs::write(args.out.join("report.md"), &rep.markdown)?;
        std::fs::write(
            args.out.join("report.json"),
            serde_json::to_string_pretty(&rep.json)?,
        )?;
        report::chart(&suite, &samples, &args.out.join("pingpong.svg"))
    };
    if let Err(e) = write() {
        eprintln!("torsion-bench: cannot write the report: {e}");
        return ExitCode::FAILURE;
    }
    println!("{}", rep.markdown);
    eprintln!("report written to {}", args.out.display());
    if samples.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("torsion-bench: {} failure(s):", samples.failures.len());
        for f in &samples.failures {
            eprintln!("  {f}");
        }
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Cmd::All(_) | Cmd::Smoke(_)) {
        sys::die_with_parent();
    }
    match cli.command {
        Cmd::All(args) => run_suite(suite::Config::full(), &args, false),
        Cmd::Smoke(args) => {
            let args = SuiteArgs {
                out: if args.out == std::path::Path::new("target/bench-report") {
                    args.out.join("smoke")
                } else {
                    args.out.clone()
                },
                ..args
            };
            run_suite(suite::Config::smoke(), &args, true)
        }
        Cmd::Server {
            kind,
            port,
            core,
            no_nodelay,
        } => {
            sys::raise_nofile();
            if let Some(c) = core {
                sys::pin_to_core(c);
            }
            match servers::serve(kind, port, !no_nodelay) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("torsion-bench server {}: {e}", kind.name());
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Load(args) => {
            let r = load::run(&args);
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            if r.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Micro { core } => {
            let r = micro::run(core);
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            if r.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Forwarder(args) => forward::serve_main(&args),
        Cmd::TlsServer(args) => tls::serve_main(&args),
        Cmd::Timers(args) => {
            let r = timers::run(&args);
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            if r.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
