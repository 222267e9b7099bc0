//! The echo servers under test, each run as its own process (`torsion-bench server KIND`).
//!
//! Every server listens on 127.0.0.1 with the same backlog, sets TCP_NODELAY on accepted
//! sockets (so that Nagle's algorithm and delayed ACKs cannot stall one server and not
//! another), and prints `LISTENING <port>` once it accepts connections.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;
use std::rc::Rc;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Listen backlog of every server: 10,000 idle connections arrive in bursts.
pub const BACKLOG: i32 = 4096;
/// Shared read buffer of the bare loops (the same size torsion reads with).
const READ_BUF: usize = 64 * 1024;

#[derive(
    ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash,
)]
pub enum ServerKind {
    /// torsion's reactor with a `Protocol` that writes back what it receives.
    Torsion,
    /// tokio, current_thread runtime, a task per connection (tokio's echo example).
    TokioCt,
    /// tokio, multi_thread runtime, a task per connection (tokio's echo example).
    TokioMt,
    /// A bare single-thread mio loop, edge-triggered.
    Mio,
    /// A C epoll edge-triggered loop (bench/c/echo.c).
    C,
}

impl ServerKind {
    pub const ALL: [ServerKind; 5] = [
        ServerKind::Torsion,
        ServerKind::TokioCt,
        ServerKind::TokioMt,
        ServerKind::Mio,
        ServerKind::C,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Torsion => "torsion",
            ServerKind::TokioCt => "tokio-ct",
            ServerKind::TokioMt => "tokio-mt",
            ServerKind::Mio => "mio",
            ServerKind::C => "c",
        }
    }
}

unsafe extern "C" {
    fn torsion_bench_c_echo(listen_fd: libc::c_int, nodelay: libc::c_int) -> libc::c_int;
}

fn bind(port: u16) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

fn announce(port: u16) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "LISTENING {port}");
    let _ = out.flush();
}

/// Runs a server until the process is killed. Returns only on a setup error.
pub fn serve(kind: ServerKind, port: u16, nodelay: bool) -> io::Result<()> {
    match kind {
        ServerKind::Torsion => serve_torsion(port, nodelay),
        ServerKind::TokioCt | ServerKind::TokioMt => {
            let listener = bind(port)?;
            announce(listener.local_addr()?.port());
            let rt = if kind == ServerKind::TokioCt {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?
            };
            rt.block_on(tokio_echo(listener, nodelay))
        }
        ServerKind::Mio => {
            let listener = bind(port)?;
            announce(listener.local_addr()?.port());
            mio_echo(listener, nodelay)
        }
        ServerKind::C => {
            let listener = bind(port)?;
            announce(listener.local_addr()?.port());
            let fd = listener.into_raw_fd();
            // SAFETY: the C loop gets a listening, non-blocking descriptor that it now owns.
            let rc = unsafe { torsion_bench_c_echo(fd, nodelay as libc::c_int) };
            Err(io::Error::other(format!("C echo loop failed ({rc})")))
        }
    }
}

/// The echo protocol of `torsion serve echo`; `NODELAY` sets TCP_NODELAY on connect.
struct Echo<const NODELAY: bool>;

impl<const NODELAY: bool> torsion::Protocol for Echo<NODELAY> {
    fn connection_made(&mut self, cx: &mut torsion::Cx<'_>) {
        if NODELAY {
            let _ = cx.transport().set_tcp_nodelay(true);
        }
    }

    fn data_received(&mut self, cx: &mut torsion::Cx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

fn serve_torsion(port: u16, nodelay: bool) -> io::Result<()> {
    use torsion::factory::from_fn;
    use torsion::{Protocol, Reactor, TcpListenOptions};
    let reactor = Reactor::new()?;
    let factory = if nodelay {
        Rc::new(from_fn(|_| {
            Some(Box::new(Echo::<true>) as Box<dyn Protocol>)
        })) as Rc<dyn torsion::Factory>
    } else {
        Rc::new(from_fn(|_| {
            Some(Box::new(Echo::<false>) as Box<dyn Protocol>)
        }))
    };
    let opts = TcpListenOptions {
        backlog: BACKLOG,
        interface: "127.0.0.1".into(),
        ..Default::default()
    };
    let listening = reactor
        .listen_tcp_with(port, factory, opts)
        .map_err(io::Error::other)?;
    announce(listening.host().port().unwrap_or(0));
    reactor.run().map_err(io::Error::other)
}

/// tokio's echo example (examples/echo.rs in tokio's repository), accept errors aside.
async fn tokio_echo(listener: TcpListener, nodelay: bool) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (mut socket, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                // Out of descriptors and the like: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if nodelay {
            let _ = socket.set_nodelay(true);
        }
        tokio::spawn(async move {
            let mut buf = vec![0; 1024];
            loop {
                let n = match socket.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(_) => return,
                };
                if socket.write_all(&buf[0..n]).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// One connection of the bare mio loop: the socket, and bytes the kernel refused (only while
/// there are some).
struct MioConn {
    sock: mio::net::TcpStream,
    #[allow(clippy::box_collection)]
    pending: Option<Box<(Vec<u8>, usize)>>,
}

enum Flow {
    Done,
    Blocked,
    Close,
}

/// Writes `data`, returning how much the kernel took, or `None` on error.
fn write_some(sock: &mut mio::net::TcpStream, data: &[u8]) -> Option<usize> {
    let mut off = 0;
    while off < data.len() {
        match sock.write(&data[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(off)
}

/// Reads and echoes until drained (a short read, or EAGAIN) or the peer stops taking bytes.
fn mio_serve_read(c: &mut MioConn, buf: &mut [u8], to_eof: bool) -> Flow {
    loop {
        match c.sock.read(buf) {
            Ok(0) => return Flow::Close,
            Ok(n) => {
                let Some(w) = write_some(&mut c.sock, &buf[..n]) else {
                    return Flow::Close;
                };
                if w < n {
                    c.pending = Some(Box::new((buf[w..n].to_vec(), 0)));
                    return Flow::Blocked;
                }
                if n < buf.len() && !to_eof {
                    return Flow::Done;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Flow::Done,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Flow::Close,
        }
    }
}

fn mio_flush(c: &mut MioConn) -> Flow {
    let Some(p) = c.pending.as_mut() else {
        return Flow::Done;
    };
    let Some(w) = write_some(&mut c.sock, &p.0[p.1..]) else {
        return Flow::Close;
    };
    p.1 += w;
    if p.1 == p.0.len() {
        c.pending = None;
        Flow::Done
    } else {
        Flow::Blocked
    }
}

fn mio_echo(listener: TcpListener, nodelay: bool) -> io::Result<()> {
    use mio::{Events, Interest, Poll, Token};
    const LISTENER: Token = Token(usize::MAX);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut listener = mio::net::TcpListener::from_std(listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Vec<Option<MioConn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut sock, _)) => {
                            if nodelay {
                                let _ = sock.set_nodelay(true);
                            }
                            let key = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            let interest = Interest::READABLE | Interest::WRITABLE;
                            if poll
                                .registry()
                                .register(&mut sock, Token(key), interest)
                                .is_ok()
                            {
                                conns[key] = Some(MioConn {
                                    sock,
                                    pending: None,
                                });
                            } else {
                                free.push(key);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                        Err(_) => break,
                    }
                }
                continue;
            }
            let key = ev.token().0;
            let Some(c) = conns.get_mut(key).and_then(Option::as_mut) else {
                continue;
            };
            let flow = if ev.is_error() {
                Flow::Close
            } else if c.pending.is_some() {
                if !ev.is_writable() {
                    continue;
                }
                match mio_flush(c) {
                    // Drained: read to EAGAIN what arrived while reading was held back.
                    Flow::Done => mio_serve_read(c, &mut buf, true),
                    other => other,
                }
            } else if ev.is_readable() || ev.is_read_closed() {
                mio_serve_read(c, &mut buf, ev.is_read_closed())
            } else {
                Flow::Done
            };
            if let Flow::Close = flow {
                conns[key] = None;
                free.push(key);
            }
        }
    }
}
