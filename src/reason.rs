//! Why a connection ended: the argument of `connection_lost`.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::layer::LayerError;

/// Why a connection ended (Twisted's `ConnectionDone` / `ConnectionLost` / `ConnectionAborted`
/// hierarchy, plus a caught panic).
///
/// `Reason::is_clean` tells a clean close from a lost one, as `failure.check(ConnectionDone)`
/// does in Twisted.
///
/// ```
/// use torsion::Reason;
/// assert!(Reason::ConnectionDone.is_clean());
/// assert!(!Reason::ConnectionAborted.is_clean());
/// assert!(Reason::ConnectionAborted.is_lost());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Reason {
    /// The connection was closed cleanly: the peer sent FIN, or our own `lose_connection`
    /// finished flushing.
    ConnectionDone,
    /// The connection was lost in a non-clean fashion: a reset, a socket error, or the reactor
    /// shutting down. Carries the OS error when there was one.
    ConnectionLost(Option<Arc<io::Error>>),
    /// Our own `abort_connection` closed it (a subclass of `ConnectionLost` in Twisted).
    ConnectionAborted,
    /// A callback of this connection's protocol panicked; the connection was aborted.
    Panicked(Arc<str>),
    /// The TLS layer failed: a handshake failure, a bad certificate, a protocol error, or
    /// a stream cut without `close_notify`. The text names what failed.
    Tls(LayerError),
}

impl Reason {
    /// True for [`Reason::ConnectionDone`], the one clean ending.
    pub fn is_clean(&self) -> bool {
        matches!(self, Reason::ConnectionDone)
    }

    /// True for every ending that is not clean (Twisted's `ConnectionLost` and subclasses).
    pub fn is_lost(&self) -> bool {
        !self.is_clean()
    }

    /// The OS error behind the ending, if there was one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Reason::ConnectionLost(Some(e)) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn lost(err: io::Error) -> Reason {
        Reason::ConnectionLost(Some(Arc::new(err)))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ConnectionDone => f.write_str("Connection was closed cleanly."),
            Reason::ConnectionLost(None) => {
                f.write_str("Connection to the other side was lost in a non-clean fashion.")
            }
            Reason::ConnectionLost(Some(e)) => write!(
                f,
                "Connection to the other side was lost in a non-clean fashion: {e}."
            ),
            Reason::ConnectionAborted => f.write_str("Connection was aborted locally."),
            Reason::Panicked(msg) => write!(f, "A callback panicked: {msg}"),
            Reason::Tls(e) => write!(f, "TLS failure: {e}"),
        }
    }
}

impl std::error::Error for Reason {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Reason::ConnectionLost(Some(e)) => Some(&**e),
            _ => None,
        }
    }
}
