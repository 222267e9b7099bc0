//! [`Failure`]: the error of every [`Deferred`](crate::Deferred), and the error types the
//! `defer` module itself produces.

use std::error::Error;
use std::fmt;
use std::io;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use crate::{ConnectError, ReactorGone, Reason};

/// What kind of failure a [`Failure`] is, for `match`ing without downcasting.
///
/// The kind is worked out from the error when the failure is made (see [`Failure::new`]), or
/// given explicitly with [`Failure::with_kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The Deferred was cancelled ([`Cancelled`]).
    Cancelled,
    /// A timeout expired ([`TimedOut`], or a connect / I/O timeout).
    TimedOut,
    /// A Deferred was fired twice ([`AlreadyCalled`]).
    AlreadyCalled,
    /// The result was already handed to another Deferred ([`Consumed`]).
    Consumed,
    /// A member of a `DeferredList` or `gather_results` failed first ([`FirstError`]).
    FirstError,
    /// Every member of a `race` failed ([`FailureGroup`]).
    FailureGroup,
    /// A callback or a spawned future panicked ([`Panicked`]).
    Panicked,
    /// The peer refused the connection.
    ConnectionRefused,
    /// A connection attempt failed for another reason.
    ConnectFailed,
    /// An established connection was lost in a non-clean fashion.
    ConnectionLost,
    /// An established connection was closed cleanly.
    ConnectionDone,
    /// The reactor is gone or shut down before the work could run.
    ReactorGone,
    /// Any other I/O error.
    Io,
    /// Anything else.
    Other,
}

struct Inner {
    kind: FailureKind,
    error: Box<dyn Error + Send + Sync>,
    location: &'static Location<'static>,
}

/// The error of a [`Deferred`](crate::Deferred) chain (Twisted's `Failure`): a source error, a
/// [`FailureKind`] to match on, and the place in the code where the failure was made.
///
/// Cloning is cheap (one reference count). `Failure` is `Send + Sync`, so it can travel back
/// from a thread. It does not implement [`std::error::Error`] itself, so that any error converts
/// into it with `?`; reach the source with [`Failure::error`] or [`Failure::downcast_ref`].
///
/// ```
/// use torsion::defer::{Failure, FailureKind};
///
/// fn parse(s: &str) -> Result<u16, Failure> {
///     Ok(s.parse::<u16>()?)
/// }
/// let f = parse("x").unwrap_err();
/// assert_eq!(f.kind(), FailureKind::Other);
/// assert!(f.downcast_ref::<std::num::ParseIntError>().is_some());
/// assert!(f.location().file().ends_with(".rs"));
/// ```
#[derive(Clone)]
pub struct Failure {
    inner: Arc<Inner>,
}

impl Failure {
    /// Wraps `error`, working out its kind from its type (I/O errors, [`ConnectError`],
    /// [`Reason`], [`ReactorGone`] and this module's own errors are recognised), and records
    /// the caller's location.
    #[track_caller]
    pub fn new<E: Error + Send + Sync + 'static>(error: E) -> Failure {
        let kind = classify(&error);
        Failure::make(kind, Box::new(error), Location::caller())
    }

    /// Wraps `error` with an explicit kind.
    #[track_caller]
    pub fn with_kind<E: Error + Send + Sync + 'static>(kind: FailureKind, error: E) -> Failure {
        Failure::make(kind, Box::new(error), Location::caller())
    }

    /// Wraps an already boxed error, working out its kind as [`Failure::new`] does.
    #[track_caller]
    pub fn from_boxed(error: Box<dyn Error + Send + Sync>) -> Failure {
        let kind = classify(&*error);
        Failure::make(kind, error, Location::caller())
    }

    /// A failure of kind [`FailureKind::Other`] that carries only a message.
    ///
    /// ```
    /// let f = torsion::defer::Failure::msg("no such user");
    /// assert_eq!(f.to_string(), "no such user");
    /// ```
    #[track_caller]
    pub fn msg(message: impl fmt::Display) -> Failure {
        Failure::make(
            FailureKind::Other,
            Box::new(Message(message.to_string())),
            Location::caller(),
        )
    }

    /// A [`Cancelled`] failure.
    #[track_caller]
    pub fn cancelled() -> Failure {
        Failure::make(
            FailureKind::Cancelled,
            Box::new(Cancelled),
            Location::caller(),
        )
    }

    /// A [`TimedOut`] failure for a timeout of `after`.
    #[track_caller]
    pub fn timed_out(after: Duration) -> Failure {
        Failure::make(
            FailureKind::TimedOut,
            Box::new(TimedOut { after }),
            Location::caller(),
        )
    }

    pub(crate) fn timed_out_at(after: Duration, location: &'static Location<'static>) -> Failure {
        Failure::make(
            FailureKind::TimedOut,
            Box::new(TimedOut { after }),
            location,
        )
    }

    #[track_caller]
    pub(crate) fn consumed() -> Failure {
        Failure::make(
            FailureKind::Consumed,
            Box::new(Consumed),
            Location::caller(),
        )
    }

    #[track_caller]
    pub(crate) fn panicked(payload: &(dyn std::any::Any + Send)) -> Failure {
        let message = crate::reactor::panic_message(payload);
        Failure::make(
            FailureKind::Panicked,
            Box::new(Panicked { message }),
            Location::caller(),
        )
    }

    fn make(
        kind: FailureKind,
        error: Box<dyn Error + Send + Sync>,
        location: &'static Location<'static>,
    ) -> Failure {
        Failure {
            inner: Arc::new(Inner {
                kind,
                error,
                location,
            }),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        self.inner.kind
    }

    /// True if this failure is of `kind` (Twisted's `failure.check`).
    pub fn is(&self, kind: FailureKind) -> bool {
        self.inner.kind == kind
    }

    /// Where in the code the failure was made.
    pub fn location(&self) -> &'static Location<'static> {
        self.inner.location
    }

    /// The source error.
    pub fn error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.inner.error
    }

    /// The source error as an `E`, if it is one.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.inner.error.downcast_ref::<E>()
    }

    /// For a [`FailureKind::FirstError`] failure: the index of the member that failed first
    /// and its failure.
    pub fn first_error(&self) -> Option<(usize, &Failure)> {
        self.downcast_ref::<FirstError>()
            .map(|e| (e.index, &e.failure))
    }

    /// True if both handles are the same failure (not merely equal errors).
    pub fn ptr_eq(&self, other: &Failure) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner.error, f)
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Failure({:?} at {}: {}",
            self.inner.kind, self.inner.location, self.inner.error
        )?;
        let mut source = self.inner.error.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        f.write_str(")")
    }
}

impl<E: Error + Send + Sync + 'static> From<E> for Failure {
    #[track_caller]
    fn from(error: E) -> Failure {
        Failure::new(error)
    }
}

impl From<Failure> for Box<dyn Error + Send + Sync> {
    fn from(f: Failure) -> Self {
        Box::new(Wrapped(f))
    }
}

/// A [`Failure`] seen as a [`std::error::Error`], for code that wants a boxed error.
#[derive(Debug)]
struct Wrapped(Failure);

impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for Wrapped {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.inner.error.source()
    }
}

fn classify(e: &(dyn Error + 'static)) -> FailureKind {
    if e.is::<Cancelled>() {
        FailureKind::Cancelled
    } else if e.is::<TimedOut>() {
        FailureKind::TimedOut
    } else if e.is::<AlreadyCalled>() {
        FailureKind::AlreadyCalled
    } else if e.is::<Consumed>() {
        FailureKind::Consumed
    } else if e.is::<FirstError>() {
        FailureKind::FirstError
    } else if e.is::<FailureGroup>() {
        FailureKind::FailureGroup
    } else if e.is::<Panicked>() {
        FailureKind::Panicked
    } else if e.is::<ReactorGone>() {
        FailureKind::ReactorGone
    } else if let Some(c) = e.downcast_ref::<ConnectError>() {
        match c {
            ConnectError::Refused(_) | ConnectError::RefusedUnix(_) => {
                FailureKind::ConnectionRefused
            }
            ConnectError::TimedOut | ConnectError::TcpTimedOut(_) => FailureKind::TimedOut,
            ConnectError::Cancelled => FailureKind::Cancelled,
            ConnectError::ReactorShutdown => FailureKind::ReactorGone,
            _ => FailureKind::ConnectFailed,
        }
    } else if let Some(r) = e.downcast_ref::<Reason>() {
        if r.is_clean() {
            FailureKind::ConnectionDone
        } else {
            FailureKind::ConnectionLost
        }
    } else if let Some(io) = e.downcast_ref::<io::Error>() {
        match io.kind() {
            io::ErrorKind::ConnectionRefused => FailureKind::ConnectionRefused,
            io::ErrorKind::TimedOut => FailureKind::TimedOut,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => FailureKind::ConnectionLost,
            _ => FailureKind::Io,
        }
    } else {
        FailureKind::Other
    }
}

#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Message {}

/// The Deferred was cancelled (Twisted's `CancelledError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Deferred was cancelled")]
pub struct Cancelled;

/// A timeout expired before the Deferred fired (Twisted's `defer.TimeoutError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Deferred timed out after {after:?}")]
pub struct TimedOut {
    /// The timeout that expired.
    pub after: Duration,
}

/// `callback` or `errback` on a Deferred that already has a result (Twisted's
/// `AlreadyCalledError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Deferred has already been called")]
pub struct AlreadyCalled;

/// The Deferred's result was already handed on: to a Deferred that waited on it, to an
/// `await`, or to a consuming transform such as `map`. Twisted gives `None` here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Deferred's result was already consumed")]
pub struct Consumed;

/// A callback, canceller or spawned future panicked; the message is the panic's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("panicked: {message}")]
pub struct Panicked {
    /// The panic message.
    pub message: String,
}

/// The first failure among the members of a `DeferredList` with `fire_on_one_errback`, or of
/// `gather_results` (Twisted's `FirstError`).
#[derive(Debug, Clone)]
pub struct FirstError {
    /// The member's position in the list.
    pub index: usize,
    /// The member's failure.
    pub failure: Failure,
}

impl fmt::Display for FirstError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FirstError[#{}, {}]", self.index, self.failure)
    }
}

impl Error for FirstError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.failure.error())
    }
}

/// Every member of a `race` failed; their failures in member order (Twisted's
/// `FailureGroup`).
#[derive(Debug, Clone)]
pub struct FailureGroup {
    /// One failure per member.
    pub failures: Vec<Failure>,
}

impl fmt::Display for FailureGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "all {} Deferreds failed", self.failures.len())?;
        for (i, failure) in self.failures.iter().enumerate() {
            write!(f, "; #{i}: {failure}")?;
        }
        Ok(())
    }
}

impl Error for FailureGroup {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_worked_out_from_the_error() {
        assert_eq!(Failure::new(Cancelled).kind(), FailureKind::Cancelled);
        assert_eq!(Failure::cancelled().kind(), FailureKind::Cancelled);
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(Failure::new(refused).kind(), FailureKind::ConnectionRefused);
        let addr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            Failure::new(ConnectError::Refused(addr)).kind(),
            FailureKind::ConnectionRefused
        );
        let path = std::path::PathBuf::from("/run/x.sock");
        assert_eq!(
            Failure::new(ConnectError::RefusedUnix(path.clone())).kind(),
            FailureKind::ConnectionRefused
        );
        assert_eq!(
            Failure::new(ConnectError::NoSuchFile(path)).kind(),
            FailureKind::ConnectFailed
        );
        assert_eq!(
            Failure::new(Reason::ConnectionDone).kind(),
            FailureKind::ConnectionDone
        );
        assert_eq!(Failure::new(ReactorGone).kind(), FailureKind::ReactorGone);
        assert_eq!(
            Failure::timed_out(Duration::from_secs(1)).kind(),
            FailureKind::TimedOut
        );
        assert_eq!(Failure::msg("x").kind(), FailureKind::Other);
        let boxed: Box<dyn Error + Send + Sync> = Box::new(Cancelled);
        assert_eq!(Failure::from_boxed(boxed).kind(), FailureKind::Cancelled);
    }

    #[test]
    fn location_is_the_callers() {
        let line = line!() + 1;
        let f = Failure::msg("here");
        assert_eq!(f.location().line(), line);
        assert!(f.location().file().ends_with("failure.rs"));
        fn q() -> Result<(), Failure> {
            Err(io::Error::other("boom"))?;
            Ok(())
        }
        let f = q().unwrap_err();
        assert!(f.location().file().ends_with("failure.rs"));
        assert_eq!(f.kind(), FailureKind::Io);
    }

    #[test]
    fn first_error_and_clone_share() {
        let inner = Failure::msg("inner");
        let outer = Failure::new(FirstError {
            index: 2,
            failure: inner.clone(),
        });
        assert_eq!(outer.kind(), FailureKind::FirstError);
        let (i, f) = outer.first_error().unwrap();
        assert_eq!(i, 2);
        assert!(f.ptr_eq(&inner));
        assert!(outer.clone().ptr_eq(&outer));
        assert!(format!("{outer:?}").contains("FirstError"));
        let boxed: Box<dyn Error + Send + Sync> = outer.into();
        assert!(boxed.to_string().contains("inner"));
    }
}
