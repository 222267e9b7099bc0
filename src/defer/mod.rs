//! Deferreds: results that are not there yet, with chains of callbacks (Twisted's
//! `twisted.internet.defer`).
//!
//! | Twisted | torsion |
//! | --- | --- |
//! | `Deferred`, `callback`, `errback`, `addCallbacks`, … | [`Deferred`] |
//! | `Failure`, `CancelledError`, `TimeoutError`, `AlreadyCalledError` | [`Failure`], [`FailureKind`], [`Cancelled`], [`TimedOut`], [`AlreadyCalled`] |
//! | `succeed`, `fail`, `maybeDeferred` | [`succeed`], [`fail`], [`maybe_deferred`] |
//! | `DeferredList`, `gatherResults`, `race` | [`DeferredList`], [`gather_results`], [`race`] |
//! | `DeferredLock`, `DeferredSemaphore`, `DeferredQueue` | [`DeferredLock`], [`DeferredSemaphore`], [`DeferredQueue`] |
//! | `addTimeout`, `deferLater` | [`Deferred::add_timeout`], [`defer_later`](crate::task::defer_later) |
//! | `ensureDeferred`, `await d` | [`Reactor::spawn`](crate::Reactor::spawn), `d.await` |
//!
//! # Differences from Twisted, on purpose
//!
//! - `Deferred<T>` is typed: the type-preserving `add_callback` family follows Twisted, and
//!   [`map`](Deferred::map), [`and_then`](Deferred::and_then), [`or_else`](Deferred::or_else)
//!   and [`then`](Deferred::then) change the type by handing the result to a new Deferred.
//! - A result handed on (to a waiting Deferred, an `await`, a consuming transform) leaves the
//!   source [consumed](Deferred::is_consumed); callbacks added after that get a
//!   [`Consumed`] failure where Twisted passes `None`.
//! - An unhandled failure is logged when the last handle to its Deferred is dropped, not at
//!   some later garbage collection.
//! - A panic in a callback becomes a [`FailureKind::Panicked`] failure, as an exception does in
//!   Twisted.

mod callback;
mod deferred;
mod failure;
mod future;
mod list;
mod steps;
mod sync;
#[cfg(test)]
pub(crate) mod test_log;
mod transform;

pub use deferred::Deferred;
pub use failure::{
    AlreadyCalled, Cancelled, Consumed, Failure, FailureGroup, FailureKind, FirstError, Panicked,
    TimedOut,
};
pub use list::{DeferredList, ListResult, gather_results, race};
pub use sync::{
    DeferredLock, DeferredQueue, DeferredSemaphore, NoTokens, NotAcquired, QueueOverflow,
    QueueUnderflow,
};
pub use transform::{IntoDeferred, TryDeferred, fail, maybe_deferred, succeed};

pub(crate) use deferred::Outcome;
pub(crate) use future::{Awaited, clear_awaited, take_awaited};
