//! Error types, named after Twisted's `twisted.internet.error` where one exists.

use std::io;
use std::net::SocketAddr;
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
#[derive(Debug, thiserror::Error)]
#[error("couldn't listen on {interface}:{port}: {source}")]
pub struct CannotListen {
    /// The interface that was asked for (`""` means every interface).
    pub interface: String,
    /// The port that was asked for.
    pub port: u16,
    /// What the operating system said.
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
