//! Error types, named after Twisted's `twisted.internet.error` where one exists.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors from the reactor's own life cycle (Twisted's `ReactorNotRunning` family).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReactorError {
    /// `run` was called while the reactor was already running.
    #[error("the reactor is already running")]
    AlreadyRunning,
    /// `run` was called on a reactor that has already run and stopped.
    #[error("the reactor cannot be restarted")]
    NotRestartable,
    /// `stop` was called on a reactor that is not running or is already stopping.
    #[error("can't stop reactor that isn't running")]
    NotRunning,
    /// `remove_system_event_trigger` was given an id that is not (or no longer) registered.
    #[error("no such system event trigger")]
    UnknownTrigger,
}

/// Errors from [`DelayedCall`](crate::DelayedCall) operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    /// The call has already run (or is running now).
    #[error("the delayed call has already been called")]
    AlreadyCalled,
    /// The call was cancelled before.
    #[error("the delayed call has already been cancelled")]
    AlreadyCancelled,
}

/// A listening socket could not be created (Twisted's `CannotListenError`).
///
/// ```
/// use torsion::Reactor;
/// use torsion::factory::from_fn;
/// use std::rc::Rc;
///
/// let reactor = Reactor::new().unwrap();
/// let factory = Rc::new(from_fn(|_| None));
/// let err = reactor.listen_unix("/nonexistent-dir/x.sock", factory).unwrap_err();
/// assert_eq!(err.address, "unix:/nonexistent-dir/x.sock");
/// assert!(err.to_string().starts_with("couldn't listen on unix:/nonexistent-dir/x.sock: "));
/// ```
#[derive(Debug, thiserror::Error)]
#[error("couldn't listen on {address}: {source}")]
pub struct CannotListen {
    /// What was asked for: `INTERFACE:PORT` for TCP (`:PORT` for every interface, an IPv6
    /// interface in brackets), `unix:PATH` for a UNIX socket (`unix:@NAME` for an abstract
    /// name).
    pub address: String,
    /// What the operating system said, or why an existing file was left in place.
    #[source]
    pub source: io::Error,
}

/// Why an outgoing connection attempt failed (Twisted's `ConnectError` family).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The peer refused the connection (ECONNREFUSED).
    #[error("connection was refused by other side: {0}")]
    Refused(SocketAddr),
    /// Nothing listens on the UNIX socket (ECONNREFUSED): a socket file left behind by a
    /// server that is gone, or an abstract name nobody has bound.
    #[error("connection was refused by other side: nothing listens on unix:{}", .0.display())]
    RefusedUnix(PathBuf),
    /// There is no UNIX socket file at the path (ENOENT).
    #[error("no such socket file: unix:{}", .0.display())]
    NoSuchFile(PathBuf),
    /// The attempt did not complete within the connector's timeout.
    #[error("user timeout caused connection failure")]
    TimedOut,
    /// The kernel gave up on the connection (ETIMEDOUT).
    #[error("TCP connection timed out: {0}")]
    TcpTimedOut(Arc<io::Error>),
    /// The host name could not be resolved.
    #[error("DNS lookup failed for {host}: {reason}")]
    UnknownHost {
        /// The name that was looked up.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// No route to the host (ENETUNREACH / EHOSTUNREACH).
    #[error("no route to host: {0}")]
    NoRoute(Arc<io::Error>),
    /// The bind address could not be bound.
    #[error("couldn't bind: {0}")]
    Bind(Arc<io::Error>),
    /// `Connector::stop_connecting` was called (Twisted's `UserError`).
    #[error("user aborted connection")]
    Cancelled,
    /// The reactor shut down while the attempt was in progress.
    #[error("the reactor shut down while connecting")]
    ReactorShutdown,
    /// Any other error while connecting.
    #[error("an error occurred while connecting: {0}")]
    Other(Arc<io::Error>),
}

impl ConnectError {
    /// Maps an OS error from `connect(2)` to Twisted's reasons.
    pub(crate) fn from_io(err: io::Error, addr: SocketAddr) -> Self {
        match err.raw_os_error() {
            Some(libc::ECONNREFUSED) => ConnectError::Refused(addr),
            Some(libc::ETIMEDOUT) => ConnectError::TcpTimedOut(Arc::new(err)),
            Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => {
                ConnectError::NoRoute(Arc::new(err))
            }
            _ => ConnectError::Other(Arc::new(err)),
        }
    }
}

impl ConnectError {
    /// Maps an OS error from `connect(2)` on a UNIX socket; the path is kept in the reason.
    pub(crate) fn from_unix_io(err: io::Error, path: &Path) -> Self {
        match err.raw_os_error() {
            Some(libc::ECONNREFUSED) => ConnectError::RefusedUnix(path.to_path_buf()),
            Some(libc::ENOENT) => ConnectError::NoSuchFile(path.to_path_buf()),
            _ => ConnectError::Other(Arc::new(io::Error::new(
                err.kind(),
                format!("unix:{}: {err}", path.display()),
            ))),
        }
    }
}

/// Errors from [`Connector`](crate::Connector) state changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// `connect` was called while connecting or connected.
    #[error("can't connect in this state")]
    AlreadyConnecting,
    /// `stop_connecting` was called while not connecting (Twisted's `NotConnectingError`).
    #[error("the connector is not connecting")]
    NotConnecting,
    /// The reactor the connector belongs to is gone.
    #[error("the reactor is gone")]
    ReactorGone,
}

/// The reactor behind a [`ReactorHandle`](crate::ReactorHandle) has stopped and been dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the reactor has shut down")]
pub struct ReactorGone;
