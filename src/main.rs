//! The `torsion` command: ready-made servers built on the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use torsion::factory::from_fn;
use torsion::protocols::portforward::ProxyFactory;
use torsion::protocols::{chat, wire};
use torsion::tls::ServerTlsConfig;
use torsion::{Cx, Factory, Protocol, Reactor, TcpListenOptions, UnixListenOptions};

/// Event-driven network servers on the torsion reactor.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "Examples:\n  torsion serve echo --port 8000\n  torsion serve echo --port 7 --interface ::1 -v\n  torsion serve echo --unix /tmp/echo.sock\n  torsion portforward --port 8080 --dest 127.0.0.1:80\n  torsion gen-cert --host localhost --out certs\n  torsion serve echo --port 8443 --tls-cert certs/cert.pem --tls-key certs/key.pem"
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
    /// Run a server until SIGINT or SIGTERM, on a TCP port or a UNIX socket.
    #[command(group = ArgGroup::new("listen").required(true).args(["port", "unix"]))]
    Serve {
        /// Which service.
        service: Service,
        /// TCP port to listen on (0 picks a free one).
        #[arg(long, short)]
        port: Option<u16>,
        /// UNIX socket to listen on instead of a TCP port (`@NAME` for a Linux abstract
        /// name); a stale socket file there is replaced, and the file is removed on exit.
        #[arg(long, value_name = "PATH", conflicts_with = "interface")]
        unix: Option<PathBuf>,
        /// Interface to bind (an IPv4 or IPv6 address); every IPv4 interface by default.
        #[arg(long, default_value = "")]
        interface: String,
        /// Listen backlog.
        #[arg(long, default_value_t = 50)]
        backlog: i32,
        /// Serve over TLS with this PEM certificate chain (with --tls-key).
        #[arg(
            long,
            value_name = "FILE",
            requires = "tls_key",
            conflicts_with = "unix"
        )]
        tls_cert: Option<PathBuf>,
        /// The PEM private key for --tls-cert.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// qotd: the quote to send (a CRLF is added if missing).
        #[arg(
            long,
            value_name = "TEXT",
            default_value = "An apple a day keeps the doctor away."
        )]
        quote: String,
        /// chat: close a client that completes no line for this long (0: never).
        #[arg(long, value_name = "SECONDS", default_value = "600", value_parser = parse_seconds)]
        idle_timeout: Duration,
        /// chat: close a client that sends a longer line.
        #[arg(long, value_name = "BYTES", default_value_t = chat::DEFAULT_MAX_LINE)]
        max_line: usize,
    },
    /// Write a self-signed certificate and key (cert.pem, key.pem) for development.
    GenCert {
        /// A host name (or IP address) the certificate is for; repeat for several.
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// The directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Forward every connection on a local port to a destination, both ways, with flat
    /// memory whatever the speeds.
    Portforward {
        /// TCP port to listen on.
        #[arg(long, short)]
        port: u16,
        /// Where to forward to, as HOST:PORT (an IPv6 host in brackets).
        #[arg(long, value_parser = parse_dest)]
        dest: (String, u16),
        /// Interface to bind (an IPv4 or IPv6 address); every IPv4 interface by default.
        #[arg(long, default_value = "")]
        interface: String,
    },
}

fn parse_dest(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("expected HOST:PORT, got {s:?}"))?;
    let port = port.parse().map_err(|_| format!("bad port in {s:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("missing host in {s:?}"));
    }
    Ok((host.to_owned(), port))
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("expected a number of seconds, got {s:?}"))
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Service {
    /// RFC 862: send back what arrives.
    Echo,
    /// RFC 863: read and drop everything.
    Discard,
    /// RFC 864: send lines of characters as fast as the client reads.
    Chargen,
    /// RFC 865: send a quote (--quote), then close.
    Qotd,
    /// RFC 867: send the date and time as a line, then close.
    Daytime,
    /// RFC 868: send the time as 32 bits of seconds since 1900, then close.
    Time,
    /// A chat room (--idle-timeout, --max-line).
    Chat,
}

struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

/// Where a server listens.
enum Listen {
    Tcp(u16, TcpListenOptions),
    Tls(u16, TcpListenOptions, ServerTlsConfig),
    Unix(PathBuf, UnixListenOptions),
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

fn gen_cert(hosts: &[String], out: &std::path::Path) -> ExitCode {
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    match torsion::tls::write_self_signed(out, &hosts) {
        Ok((cert, key)) => {
            println!("wrote {} and {}", cert.display(), key.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("torsion: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if let Command::GenCert { hosts, out } = &cli.command {
        return gen_cert(hosts, out);
    }
    let reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("torsion: cannot create the reactor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (listen, factory, what): (Listen, Rc<dyn Factory>, String) = match cli.command {
        Command::Serve {
            service,
            port,
            unix,
            interface,
            backlog,
            tls_cert,
            tls_key,
            quote,
            idle_timeout,
            max_line,
        } => {
            let factory: Rc<dyn Factory> = match service {
                Service::Echo => Rc::new(from_fn(|_| Some(Box::new(Echo) as Box<dyn Protocol>))),
                Service::Discard => wire::Discard::factory(),
                Service::Chargen => wire::Chargen::factory(),
                Service::Qotd if quote.ends_with("\r\n") => wire::Qotd::factory(&quote),
                Service::Qotd => wire::Qotd::factory(&format!("{quote}\r\n")),
                Service::Daytime => wire::Daytime::factory(),
                Service::Time => wire::Time::factory(),
                Service::Chat => {
                    let idle = (!idle_timeout.is_zero()).then_some(idle_timeout);
                    Rc::new(
                        chat::ChatFactory::new(reactor.clone())
                            .with_idle_timeout(idle)
                            .with_max_line(max_line),
                    )
                }
            };
            let listen = match (unix, port) {
                (Some(path), _) => Listen::Unix(
                    path,
                    UnixListenOptions {
                        backlog,
                        ..Default::default()
                    },
                ),
                (None, port) => {
                    let opts = TcpListenOptions {
                        backlog,
                        interface,
                        ..Default::default()
                    };
                    let port = port.unwrap_or_default();
                    match (tls_cert, tls_key) {
                        (Some(cert), Some(key)) => {
                            match ServerTlsConfig::from_pem_files(&cert, &key) {
                                Ok(cfg) => Listen::Tls(port, opts, cfg),
                                Err(e) => {
                                    eprintln!("torsion: {e}");
                                    return ExitCode::FAILURE;
                                }
                            }
                        }
                        _ => Listen::Tcp(port, opts),
                    }
                }
            };
            (listen, factory, format!("{service:?} server"))
        }
        Command::Portforward {
            port,
            dest: (host, dport),
            interface,
        } => {
            let opts = TcpListenOptions {
                interface,
                ..Default::default()
            };
            let what = format!("forwarder to {host}:{dport}");
            let factory = Rc::new(ProxyFactory::new(&host, dport));
            (Listen::Tcp(port, opts), factory, what)
        }
        Command::GenCert { .. } => return ExitCode::SUCCESS,
    };
    let listening = match listen {
        Listen::Tcp(port, opts) => reactor.listen_tcp_with(port, factory, opts),
        Listen::Tls(port, opts, cfg) => reactor.listen_tls_with(port, factory, &cfg, opts),
        Listen::Unix(path, opts) => reactor.listen_unix_with(path, factory, opts),
    };
    match listening {
        Ok(p) => tracing::info!("{what} listening on {}", p.host()),
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
