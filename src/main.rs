//! The `torsion` command: ready-made servers built on the library.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::rc::Rc;

use clap::{Parser, Subcommand, ValueEnum};
use torsion::factory::from_fn;
use torsion::{Cx, Protocol, Reactor, TcpListenOptions};

/// Event-driven network servers on the torsion reactor.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "Examples:\n  torsion serve echo --port 8000\n  torsion serve echo --port 7 --interface ::1 -v"
)]
struct Cli {
    /// More logging (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a server until SIGINT or SIGTERM.
    Serve {
        /// Which service.
        service: Service,
        /// TCP port to listen on (0 picks a free one).
        #[arg(long, short)]
        port: u16,
        /// Interface to bind (an IPv4 or IPv6 address); every IPv4 interface by default.
        #[arg(long, default_value = "")]
        interface: String,
        /// Listen backlog.
        #[arg(long, default_value_t = 50)]
        backlog: i32,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Service {
    /// RFC 862: send back what arrives.
    Echo,
}

struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let Command::Serve {
        service,
        port,
        interface,
        backlog,
    } = cli.command;
    let reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("torsion: cannot create the reactor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let factory = match service {
        Service::Echo => Rc::new(from_fn(|_| Some(Box::new(Echo) as Box<dyn Protocol>))),
    };
    let opts = TcpListenOptions {
        backlog,
        interface,
        ..Default::default()
    };
    match reactor.listen_tcp_with(port, factory, opts) {
        Ok(p) => tracing::info!("{service:?} server listening on {}", p.host()),
        Err(e) => {
            eprintln!("torsion: {e}");
            return ExitCode::FAILURE;
        }
    }
    match reactor.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("torsion: {e}");
            ExitCode::FAILURE
        }
    }
}
