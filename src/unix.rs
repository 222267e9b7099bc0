//! UNIX stream sockets (Twisted's `IReactorUNIX`): [`Reactor::listen_unix`] and
//! [`Reactor::connect_unix`], with peer credentials and descriptor passing on the transport
//! ([`Transport::peer_credentials`](crate::Transport::peer_credentials),
//! [`Transport::send_file_descriptor`](crate::Transport::send_file_descriptor),
//! [`Protocol::file_descriptor_received`](crate::Protocol::file_descriptor_received)).
//!
//! Connections, listening ports and connectors are the TCP ones
//! ([`ListeningPort`], [`Connector`]); only binding and connecting differ.
//!
//! A path that starts with `@` is a Linux abstract name: it has no file, it goes away with
//! the last socket bound to it, and file modes do not apply.
//!
//! # The socket file
//!
//! - A socket file left behind at the path by a server that is gone is replaced: the listener
//!   first tries to connect to it, and removes it only when the kernel says that nothing
//!   listens there (ECONNREFUSED). If something answers, listening fails with
//!   [`io::ErrorKind::AddrInUse`] (and the server there sees a connection that closes at
//!   once). Twisted leaves a stale file in place unless `wantPID` is
//!   given (then it relies on a lock file instead); torsion always probes, and has no lock
//!   file.
//! - A file that is not a socket (or a symbolic link) at the path is never removed: listening
//!   fails with [`io::ErrorKind::AlreadyExists`].
//! - The file's mode is set (0o666 by default, as in Twisted) before the socket accepts
//!   anything.
//! - The file is removed when the port stops listening, when the reactor shuts down, and when
//!   a reactor that never ran is dropped, provided it is still the file this port created (a
//!   file another server has put there since is left alone).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::tcp::connector::Destination;
use crate::tcp::port::{ListenSocket, start_listening};
use crate::{Address, CannotListen, ClientFactory, Connector, Factory, ListeningPort, Reactor};

/// Options for [`Reactor::listen_unix_with`].
#[derive(Debug, Clone)]
pub struct UnixListenOptions {
    /// Listen backlog (default 50, as Twisted).
    pub backlog: i32,
    /// Permission bits of the socket file (default `0o666`, as Twisted). Connecting needs
    /// write permission. Ignored for abstract names.
    pub mode: u32,
}

impl Default for UnixListenOptions {
    fn default() -> Self {
        UnixListenOptions {
            backlog: 50,
            mode: 0o666,
        }
    }
}

/// Options for [`Reactor::connect_unix_with`].
#[derive(Debug, Clone)]
pub struct UnixConnectOptions {
    /// Give up after this long (default 30 s, as Twisted); `None` waits as long as it takes
    /// (a UNIX connect only waits while the listener's backlog is full).
    pub timeout: Option<Duration>,
}

impl Default for UnixConnectOptions {
    fn default() -> Self {
        UnixConnectOptions {
            timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// Who is at the other end of a UNIX connection (`SO_PEERCRED`): the process that connected
/// (or, on the client side, the one that called `listen`), as it was at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// Process id.
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// The socket address of a path, or of an abstract name written `@name`.
pub(crate) fn sock_addr(path: &Path) -> io::Result<SockAddr> {
    match path.as_os_str().as_bytes() {
        [b'@', name @ ..] => {
            let mut raw = Vec::with_capacity(name.len() + 1);
            raw.push(0);
            raw.extend_from_slice(name);
            SockAddr::unix(OsStr::from_bytes(&raw))
        }
        _ => SockAddr::unix(path),
    }
}

fn is_abstract(path: &Path) -> bool {
    path.as_os_str().as_bytes().first() == Some(&b'@')
}

/// The socket file a listener created; removed when dropped, if it is still that file.
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    fn new(path: &Path) -> io::Result<SocketFile> {
        let meta = fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = fs::remove_file(&self.path) {
                    tracing::warn!("could not remove {}: {e}", self.path.display());
                }
            }
            _ => {}
        }
    }
}

/// Clears the way for binding `path`: nothing there, or a socket file nobody listens on
/// (removed). Anything else is an error, and the file stays.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a file that is not a socket is in the way (left untouched)",
        ));
    }
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&sock_addr(path)?) {
        Ok(()) => Err(in_use()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(in_use()),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            tracing::info!("removing stale socket file {}", path.display());
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot tell whether a server listens on the existing socket file: {e}"),
        )),
    }
}

fn in_use() -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        "address in use: a server is listening on this socket",
    )
}

/// Binds and listens; the socket file gets its mode before `listen`, so no peer connects
/// through wider permissions.
fn bind(
    path: &Path,
    opts: &UnixListenOptions,
) -> io::Result<(mio::net::UnixListener, Option<SocketFile>)> {
    let addr = sock_addr(path)?;
    let abstract_name = is_abstract(path);
    if !abstract_name {
        clear_stale(path)?;
    }
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    sock.set_cloexec(true)?;
    sock.bind(&addr).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(e.kind(), format!("address in use: {e}"))
        } else {
            e
        }
    })?;
    let file = if abstract_name {
        None
    } else {
        let file = SocketFile::new(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(opts.mode))?;
        Some(file)
    };
    sock.listen(opts.backlog)?;
    Ok((mio::net::UnixListener::from_std(sock.into()), file))
}

impl Reactor {
    /// Listens on the UNIX socket at `path` (a Linux abstract name if it starts with `@`)
    /// with a backlog of 50 and mode 0o666, and serves each connection with a protocol from
    /// `factory` (Twisted's `listenUNIX`). A stale socket file is replaced; see the
    /// [module documentation](crate::unix) for the rules. The file is removed when the port
    /// stops listening.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use torsion::{Address, Cx, Protocol, Reactor};
    /// use torsion::factory::from_fn;
    ///
    /// struct Echo;
    /// impl Protocol for Echo {
    ///     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
    ///         cx.transport().write(data);
    ///     }
    /// }
    ///
    /// let path = std::env::temp_dir().join(format!("torsion-doc-{}.sock", std::process::id()));
    /// let reactor = Reactor::new()?;
    /// let factory = Rc::new(from_fn(|_| Some(Box::new(Echo) as Box<dyn Protocol>)));
    /// let port = reactor.listen_unix(&path, factory)?;
    /// assert_eq!(port.host(), Address::Unix(Some(path.clone())));
    /// assert!(path.exists());
    /// port.stop_listening();
    /// assert!(!path.exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn listen_unix(
        &self,
        path: impl AsRef<Path>,
        factory: Rc<dyn Factory>,
    ) -> Result<ListeningPort, CannotListen> {
        self.listen_unix_with(path, factory, UnixListenOptions::default())
    }

    /// [`Reactor::listen_unix`] with a backlog and a file mode.
    ///
    /// ```
    /// use std::os::unix::fs::PermissionsExt;
    /// use std::rc::Rc;
    /// use torsion::{Reactor, UnixListenOptions};
    /// use torsion::factory::from_fn;
    ///
    /// let path = std::env::temp_dir().join(format!("torsion-doc-mode-{}.sock", std::process::id()));
    /// let reactor = Reactor::new()?;
    /// let opts = UnixListenOptions { mode: 0o600, ..Default::default() };
    /// let port = reactor.listen_unix_with(&path, Rc::new(from_fn(|_| None)), opts)?;
    /// assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
    /// port.stop_listening();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn listen_unix_with(
        &self,
        path: impl AsRef<Path>,
        factory: Rc<dyn Factory>,
        opts: UnixListenOptions,
    ) -> Result<ListeningPort, CannotListen> {
        let path = path.as_ref();
        let fail = |source| CannotListen {
            address: format!("unix:{}", path.display()),
            source,
        };
        let (listener, file) = bind(path, &opts).map_err(fail)?;
        let addr = listener.local_addr().map_err(fail)?;
        let sock = ListenSocket::Unix {
            listener,
            _file: file,
        };
        start_listening(self, sock, Address::from_unix(&addr), factory).map_err(fail)
    }

    /// Connects to the UNIX socket at `path` (a Linux abstract name if it starts with `@`)
    /// with a 30 s timeout, reporting to `factory` as [`Reactor::connect_tcp`] does (Twisted's
    /// `connectUNIX`). The attempt starts on the next loop pass. A missing file fails with
    /// [`ConnectError::NoSuchFile`](crate::ConnectError::NoSuchFile), a file nobody listens on
    /// with [`ConnectError::RefusedUnix`](crate::ConnectError::RefusedUnix).
    ///
    /// ```
    /// use std::rc::Rc;
    /// use torsion::{ClientFactory, Cx, Factory, Protocol, Reactor};
    /// use torsion::factory::from_fn;
    ///
    /// struct Echo;
    /// impl Protocol for Echo {
    ///     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
    ///         cx.transport().write(data);
    ///     }
    /// }
    ///
    /// /// Says hello, stops the reactor when the echo comes back.
    /// struct Hello;
    /// impl Protocol for Hello {
    ///     fn connection_made(&mut self, cx: &mut Cx<'_>) {
    ///         cx.transport().write(b"hello");
    ///     }
    ///     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
    ///         assert_eq!(data, b"hello");
    ///         cx.reactor().stop().unwrap();
    ///     }
    /// }
    ///
    /// let reactor = Reactor::builder().install_signal_handlers(false).build()?;
    /// let name = format!("@torsion-doc-{}", std::process::id());
    /// let server: Rc<dyn Factory> = Rc::new(from_fn(|_| Some(Box::new(Echo) as Box<dyn Protocol>)));
    /// reactor.listen_unix(&name, server)?;
    /// let client: Rc<dyn ClientFactory> =
    ///     Rc::new(from_fn(|_| Some(Box::new(Hello) as Box<dyn Protocol>)));
    /// let connector = reactor.connect_unix(&name, client);
    /// assert_eq!(connector.destination_address().to_string(), format!("unix:{name}"));
    /// reactor.run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_unix(
        &self,
        path: impl AsRef<Path>,
        factory: Rc<dyn ClientFactory>,
    ) -> Connector {
        self.connect_unix_with(path, factory, UnixConnectOptions::default())
    }

    /// [`Reactor::connect_unix`] with a timeout.
    pub fn connect_unix_with(
        &self,
        path: impl AsRef<Path>,
        factory: Rc<dyn ClientFactory>,
        opts: UnixConnectOptions,
    ) -> Connector {
        let dest = Destination::Unix(path.as_ref().to_path_buf());
        Connector::start(self, dest, opts.timeout, None, factory)
    }
}
