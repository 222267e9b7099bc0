//! TLS echo throughput and handshake rate (issue 6): torsion's `listen_tls` against tokio +
//! tokio-rustls echo servers, with the same rustls 0.23, the ring provider and the same
//! `rustls::ServerConfig` (from `torsion::tls::ServerTlsConfig`, an ECDSA P-256 self-signed
//! certificate from `generate_self_signed`).
//!
//! Servers run as their own process pinned to CPU 0 (`torsion-bench tls-server KIND`); the
//! load generator runs on threads of this process pinned to CPU 1: for the echo load one
//! mio loop driving all 50 rustls client connections (64 KiB recv per read, no allocation
//! per message), for handshakes blocking rustls clients on 16 threads. To keep the
//! generator cheaper than the server, its clients skip certificate verification (the
//! server's handshake work is unchanged) and never resume sessions (every handshake is a
//! full one).

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use clap::ValueEnum;
use serde::Serialize;
use serde_json::json;
use tokio_rustls::rustls;

use crate::netbench::{self, CpuUse, Section, Target, Window, fmt_opt, fmt_ratio, ratio};
use crate::report::median;
use crate::suite::Config;
use crate::sys::Guarded;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
pub enum TlsServer {
    /// torsion: `Reactor::listen_tls` with an echo protocol.
    Torsion,
    /// tokio current_thread + tokio-rustls `TlsAcceptor`, a task per connection.
    TokioCt,
    /// tokio multi_thread (as `#[tokio::main]`) + tokio-rustls, a task per connection.
    TokioMt,
}

impl TlsServer {
    pub fn name(self) -> &'static str {
        match self {
            TlsServer::Torsion => "torsion",
            TlsServer::TokioCt => "tokio-rustls-ct",
            TlsServer::TokioMt => "tokio-rustls-mt",
        }
    }
    fn arg(self) -> &'static str {
        match self {
            TlsServer::Torsion => "torsion",
            TlsServer::TokioCt => "tokio-ct",
            TlsServer::TokioMt => "tokio-mt",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct TlsServerArgs {
    #[arg(value_enum)]
    kind: TlsServer,
    /// PEM certificate chain.
    #[arg(long)]
    cert: PathBuf,
    /// PEM private key.
    #[arg(long)]
    key: PathBuf,
    /// Pin to this CPU (when the machine has two or more).
    #[arg(long)]
    core: Option<usize>,
}

/// `torsion-bench tls-server KIND --cert C --key K`: a TLS echo server until killed.
pub fn serve_main(args: &TlsServerArgs) -> ExitCode {
    if let Some(c) = args.core {
        netbench::pin_thread(c);
    }
    let r = serve(args);
    eprintln!("torsion-bench tls-server {}: {r:?}", args.kind.name());
    ExitCode::FAILURE
}

struct Echo;

impl torsion::Protocol for Echo {
    fn connection_made(&mut self, cx: &mut torsion::Cx<'_>) {
        let _ = cx.transport().set_tcp_nodelay(true);
    }

    fn data_received(&mut self, cx: &mut torsion::Cx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

fn serve(args: &TlsServerArgs) -> io::Result<()> {
    let config = torsion::tls::ServerTlsConfig::from_pem_files(&args.cert, &args.key)
        .map_err(io::Error::other)?;
    if args.kind == TlsServer::Torsion {
        use torsion::factory::from_fn;
        use torsion::{Protocol, Reactor, TcpListenOptions};
        let reactor = Reactor::new()?;
        let factory = Rc::new(from_fn(|_| Some(Box::new(Echo) as Box<dyn Protocol>)));
        let opts = TcpListenOptions {
            backlog: crate::servers::BACKLOG,
            interface: "127.0.0.1".into(),
            ..Default::default()
        };
        let port = reactor
            .listen_tls_with(0, factory, &config, opts)
            .map_err(io::Error::other)?;
        netbench::announce(port.host().port().unwrap_or(0));
        return reactor.run().map_err(io::Error::other);
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(config.rustls_config().clone());
    let listener = netbench::bind_loopback()?;
    listener.set_nonblocking(true)?;
    netbench::announce(listener.local_addr()?.port());
    let rt = if args.kind == TlsServer::TokioCt {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    rt.block_on(tokio_tls_echo(listener, acceptor))
}

/// tokio-rustls's server example, echoing instead of answering HTTP.
async fn tokio_tls_echo(
    listener: std::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (sock, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(sock).await else {
                return;
            };
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
            }
            let _ = tls.shutdown().await;
        });
    }
}

/// Accepts any server certificate and signature: the generator's clients only need to do
/// the handshake, not to check it (the server's side is unchanged).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config() -> io::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(port: u16, cfg: &Arc<rustls::ClientConfig>) -> io::Result<Tls> {
    let sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.set_write_timeout(Some(Duration::from_secs(5)))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(io::Error::other)?;
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(io::Error::other)?;
    Ok(rustls::StreamOwned::new(conn, sock))
}

fn close(mut tls: Tls) {
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// Bytes per echo message.
const ECHO_MSG: usize = 16 * 1024;
/// Echo connections, all driven by one generator thread.
const ECHO_CONNS: usize = 50;

/// One echo connection of the mio generator: a message is queued, its echo is read back and
/// checked against it, and only then is the next one queued (one message in flight).
struct EchoConn {
    sock: mio::net::TcpStream,
    tls: rustls::ClientConnection,
    msg: Vec<u8>,
    /// Bytes of the current message echoed so far.
    got: usize,
}

impl EchoConn {
    /// Reads what the socket has (64 KiB per recv into `buf`), decrypts and checks it, queues the next message when one is complete, then writes what rustls has
    /// to send until the socket would block.
    fn service(&mut self, buf: &mut [u8], bytes: &AtomicU64) -> io::Result<()> {
        loop {
            let n = match self.sock.read(buf) {
                Ok(0) => return Err(io::Error::other("server closed the connection")),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut data = &buf[..n];
            while !data.is_empty() {
                if self.tls.read_tls(&mut data)? == 0 {
                    return Err(io::Error::other("rustls took no bytes"));
                }
                self.tls.process_new_packets().map_err(io::Error::other)?;
                self.drain(bytes)?;
            }
        }
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Takes the decrypted bytes where rustls holds them (no copy) and compares them with
    /// the message at the same offset; queues the next message once one is complete.
    fn drain(&mut self, bytes: &AtomicU64) -> io::Result<()> {
        loop {
            let mut rd = self.tls.reader();
            let chunk = match rd.fill_buf() {
                Ok([]) => return Err(io::Error::other("server sent close_notify")),
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            let k = chunk.len();
            let end = self.got + k;
            if end > self.msg.len() || chunk != &self.msg[self.got..end] {
                return Err(io::Error::other("wrong bytes echoed"));
            }
            rd.consume(k);
            self.got = end;
            if self.got == self.msg.len() {
                self.got = 0;
                bytes.fetch_add(self.msg.len() as u64, Ordering::Relaxed);
                self.tls.writer().write_all(&self.msg)?;
            }
        }
    }
}

/// The echo load: `ECHO_CONNS` rustls client connections on non-blocking sockets, driven
/// by one mio loop on the generator's CPU, with one reused 64 KiB buffer for the ciphertext
/// read from the socket; plaintext is checked where rustls holds it, and `write_tls`
/// writes straight to the socket (a vectored write).
fn echo_gen(
    port: u16,
    cfg: &Arc<rustls::ClientConfig>,
    stop: &AtomicBool,
    bytes: &AtomicU64,
) -> io::Result<()> {
    netbench::pin_thread(netbench::GEN_CORE);
    let mut poll = mio::Poll::new()?;
    let mut events = mio::Events::with_capacity(ECHO_CONNS * 2);
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(io::Error::other)?;
    let mut conns = Vec::with_capacity(ECHO_CONNS);
    for id in 0..ECHO_CONNS {
        let std_sock = TcpStream::connect(("127.0.0.1", port))?;
        std_sock.set_nodelay(true)?;
        std_sock.set_nonblocking(true)?;
        let mut sock = mio::net::TcpStream::from_std(std_sock);
        poll.registry().register(
            &mut sock,
            mio::Token(id),
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )?;
        let mut tls =
            rustls::ClientConnection::new(cfg.clone(), name.clone()).map_err(io::Error::other)?;
        let msg: Vec<u8> = (0..ECHO_MSG).map(|i| (i + id * 31) as u8).collect();
        // Buffered by rustls until the handshake is done, then sent.
        tls.writer().write_all(&msg)?;
        conns.push(EchoConn {
            sock,
            tls,
            msg,
            got: 0,
        });
    }
    let mut buf = vec![0u8; 64 * 1024];
    for c in &mut conns {
        c.service(&mut buf, bytes)?;
    }
    while !stop.load(Ordering::Relaxed) {
        match poll.poll(&mut events, Some(Duration::from_millis(50))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in &events {
            conns[ev.token().0].service(&mut buf, bytes)?;
        }
    }
    for mut c in conns {
        c.tls.send_close_notify();
        let _ = c.tls.write_tls(&mut c.sock);
    }
    Ok(())
}

/// Handshakes in a loop: connect, full handshake, 64 bytes echoed, close_notify, close.
fn handshake_loop(
    port: u16,
    cfg: &Arc<rustls::ClientConfig>,
    stop: &AtomicBool,
    count: &AtomicU64,
) -> io::Result<()> {
    netbench::pin_thread(netbench::GEN_CORE);
    let msg = [0x5au8; 64];
    let mut back = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let mut tls = connect(port, cfg)?;
        tls.write_all(&msg)?;
        tls.read_exact(&mut back)?;
        if back != msg {
            return Err(io::Error::other("wrong bytes echoed"));
        }
        close(tls);
        count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
enum Load {
    Echo,
    Handshake,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TlsResult {
    pub ok: bool,
    pub error: Option<String>,
    /// MB/s echoed (echo) or handshakes per second.
    pub rate: f64,
    /// Server CPU per unit: µs per MB (echo) or per handshake.
    pub server_us_per_unit: f64,
    pub cpu: CpuUse,
}

struct Timing {
    warmup: Duration,
    measure: Duration,
}

fn run_one(
    kind: TlsServer,
    load: Load,
    certs: &(PathBuf, PathBuf),
    t: &Timing,
) -> io::Result<TlsResult> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["tls-server", kind.arg(), "--cert"])
        .arg(&certs.0)
        .arg("--key")
        .arg(&certs.1);
    if crate::sys::online_cpus() >= 2 {
        cmd.args(["--core", &netbench::SERVER_CORE.to_string()]);
    }
    let (server, port): (Guarded, u16) =
        netbench::spawn_listening(cmd, &format!("{} TLS server", kind.name()))?;
    let cfg = client_config()?;
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads = match load {
        Load::Echo => 1,
        Load::Handshake => 16,
    };
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (cfg, stop, count) = (cfg.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || match load {
                Load::Echo => echo_gen(port, &cfg, &stop, &count),
                Load::Handshake => handshake_loop(port, &cfg, &stop, &count),
            })
        })
        .collect();
    std::thread::sleep(t.warmup);
    let window = Window::start(server.pid());
    let c0 = count.load(Ordering::Relaxed);
    std::thread::sleep(t.measure);
    let c1 = count.load(Ordering::Relaxed);
    let cpu = window.finish(None);
    stop.store(true, Ordering::Relaxed);
    let mut error = None;
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error = error.or(Some(e.to_string())),
            Err(_) => error = error.or(Some("generator thread panicked".into())),
        }
    }
    drop(server);
    let units = match load {
        Load::Echo => (c1 - c0) as f64 / 1e6,
        Load::Handshake => (c1 - c0) as f64,
    };
    if units == 0.0 {
        error = error.or(Some("nothing completed in the window".into()));
    }
    Ok(TlsResult {
        ok: error.is_none(),
        error,
        rate: units / cpu.secs,
        server_us_per_unit: cpu.server_cpu_s * 1e6 / units.max(1e-12),
        cpu,
    })
}

pub fn run(cfg: &Config, smoke: bool, failures: &mut Vec<String>) -> Section {
    let kinds = [TlsServer::Torsion, TlsServer::TokioCt, TlsServer::TokioMt];
    let loads = [Load::Echo, Load::Handshake];
    let t = if smoke {
        Timing {
            warmup: Duration::from_millis(100),
            measure: Duration::from_millis(300),
        }
    } else {
        Timing {
            warmup: Duration::from_millis(300),
            measure: Duration::from_millis(2000),
        }
    };
    let dir = std::env::temp_dir().join(format!("torsion-bench-tls-{}", std::process::id()));
    let certs = match torsion::tls::write_self_signed(&dir, &["localhost", "127.0.0.1"]) {
        Ok(c) => c,
        Err(e) => {
            failures.push(format!("tls: cannot make a certificate: {e}"));
            return report(cfg, &kinds, &loads, &[]);
        }
    };
    let mut samples = vec![vec![Vec::new(); kinds.len()]; loads.len()];
    for rep in 0..cfg.reps {
        for (li, load) in loads.iter().enumerate() {
            for i in 0..kinds.len() {
                let ki = (i + rep) % kinds.len();
                netbench::settle(cfg.quiet_wait_s);
                eprintln!("tls {load:?} {} (rep {})", kinds[ki].name(), rep + 1);
                let r = run_one(kinds[ki], *load, &certs, &t).unwrap_or_else(|e| TlsResult {
                    error: Some(e.to_string()),
                    ..Default::default()
                });
                if !r.ok {
                    failures.push(format!(
                        "tls {load:?} on {}: {}",
                        kinds[ki].name(),
                        r.error.as_deref().unwrap_or("?")
                    ));
                }
                samples[li][ki].push(r);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    report(cfg, &kinds, &loads, &samples)
}

fn report(
    cfg: &Config,
    kinds: &[TlsServer],
    loads: &[Load],
    samples: &[Vec<Vec<TlsResult>>],
) -> Section {
    let mut md = String::from("### TLS (issue 6)\n\n");
    md.push_str(&format!(
        "rustls 0.23 with ring on both sides, TLS 1.3, one ECDSA P-256 self-signed \
         certificate, the same `rustls::ServerConfig` for every server. Echo: 50 connections, \
         each writing 16 KiB and reading it back (checked), MB/s of echoed bytes. Handshakes: \
         16 client threads, each connect → full handshake (no resumption) → 64 bytes echoed → \
         close_notify → close. {} repetitions, servers interleaved (order rotated), medians. \
         Server pinned to CPU 0, generator on CPU 1 (rustls clients that skip \
         certificate verification: for echo one mio thread driving all 50 connections with \
         64 KiB reads, for handshakes 16 blocking threads). \"server µs/unit\" is the server's CPU per MB or \
         per handshake: its own cost, valid even where the generator sets the pace.\n\n",
        cfg.reps
    ));
    md.push_str(
        "| load | server | rate | torsion ÷ this | server CPU % | server µs/unit | \
         torsion ÷ this (µs/unit) | generator CPU % | others CPU % | runs |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut json_rows = serde_json::Map::new();
    let mut targets = Vec::new();
    for (li, load) in loads.iter().enumerate() {
        let (label, unit) = match load {
            Load::Echo => ("echo 16 KiB × 50 conns", "MB/s"),
            Load::Handshake => ("handshakes", "handshakes/s"),
        };
        let stat = |ki: usize, f: fn(&TlsResult) -> f64| {
            samples
                .get(li)
                .and_then(|s| median(s[ki].iter().filter(|r| r.ok).map(f).collect()))
        };
        let t_rate = stat(0, |r| r.rate);
        let t_us = stat(0, |r| r.server_us_per_unit);
        let mut rows = serde_json::Map::new();
        let mut best_rival: Option<(f64, &str)> = None;
        for (ki, k) in kinds.iter().enumerate() {
            let rate = stat(ki, |r| r.rate);
            let us = stat(ki, |r| r.server_us_per_unit);
            let scpu = stat(ki, |r| r.cpu.server_pct);
            let gcpu = stat(ki, |r| r.cpu.gen_pct);
            let other = stat(ki, |r| r.cpu.other_pct);
            let runs = samples
                .get(li)
                .map_or(0, |s| s[ki].iter().filter(|r| r.ok).count());
            let r = ratio(t_rate, rate);
            // Cost ratio as "torsion is this much cheaper": rival µs ÷ torsion µs.
            let r_us = ratio(us, t_us);
            let torsion = *k == TlsServer::Torsion;
            md.push_str(&format!(
                "| {label} | {} | {} {unit} | {} | {} | {} | {} | {} | {} | {runs} |\n",
                k.name(),
                fmt_opt(rate, 0),
                if torsion { "—".into() } else { fmt_ratio(r) },
                fmt_opt(scpu, 0),
                fmt_opt(us, 1),
                if torsion {
                    "—".into()
                } else {
                    fmt_ratio(r_us)
                },
                fmt_opt(gcpu, 0),
                fmt_opt(other, 0),
            ));
            rows.insert(
                k.name().into(),
                json!({
                    "rate": rate, "unit": unit, "server_us_per_unit": us,
                    "server_cpu_pct": scpu, "generator_cpu_pct": gcpu, "other_cpu_pct": other,
                    "runs": runs, "torsion_ratio_rate": r,
                    "torsion_ratio_cost": r_us,
                    "samples": samples.get(li).map(|s| &s[ki]),
                }),
            );
            if !torsion {
                if let Some(v) = rate {
                    if best_rival.is_none_or(|b| v > b.0) {
                        best_rival = Some((v, k.name()));
                    }
                }
            }
        }
        let r = ratio(t_rate, best_rival.map(|b| b.0));
        targets.push(Target {
            what: format!(
                "TLS {label}: ≥ 0.95× the faster tokio-rustls server ({})",
                best_rival.map_or("—", |b| b.1)
            ),
            measured: fmt_ratio(r),
            met: r.map(|x| x >= 0.95),
        });
        json_rows.insert(label.into(), json!(rows));
    }
    md.push('\n');
    Section {
        key: "tls",
        markdown: md,
        json: json!({"loads": json_rows}),
        targets,
    }
}
