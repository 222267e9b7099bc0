//! Adding callbacks to a [`Deferred`], the typed transforms (`map`, `and_then`, …), and the
//! conversions that let a callback return a value, a `Result` or another Deferred.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use super::deferred::{Deferred, Outcome, Resolution};
use super::failure::Failure;

mod sealed {
    use super::Resolution;

    pub trait Sealed<T: 'static> {
        fn into_resolution(self) -> Resolution<T>;
    }

    pub trait SealedTry<T: 'static> {}
}

/// What a callback may return to a `Deferred<T>`'s chain: a plain `T`, a `Result<T, Failure>` (an `Err` switches to the
/// errback path), or a `Deferred<T>` (the chain waits for it).
///
/// The trait is sealed; those three are all there is.
///
/// ```
/// use torsion::defer::{Deferred, IntoDeferred, Failure};
///
/// let d: Deferred<i32> = 5.into_deferred();
/// let e: Deferred<i32> = Err(Failure::msg("no")).into_deferred();
/// assert_eq!(d.take_result().unwrap().unwrap(), 5);
/// assert!(e.take_result().unwrap().is_err());
/// ```
pub trait IntoDeferred<T: 'static>: sealed::Sealed<T> {
    /// This value as a Deferred (already fired unless it was a pending Deferred).
    fn into_deferred(self) -> Deferred<T>
    where
        Self: Sized,
    {
        match self.into_resolution() {
            Resolution::Value(r) => Deferred::from_result(r),
            Resolution::Wait(d) => d,
        }
    }
}

impl<T: 'static, X: sealed::Sealed<T>> IntoDeferred<T> for X {}

impl<T: 'static> sealed::Sealed<T> for T {
    fn into_resolution(self) -> Resolution<T> {
        Resolution::Value(Ok(self))
    }
}

impl<T: 'static> sealed::Sealed<T> for Result<T, Failure> {
    fn into_resolution(self) -> Resolution<T> {
        Resolution::Value(self)
    }
}

impl<T: 'static> sealed::Sealed<T> for Deferred<T> {
    fn into_resolution(self) -> Resolution<T> {
        Resolution::Wait(self)
    }
}

/// What [`Deferred::and_then`], [`Deferred::then`], [`maybe_deferred`] and the other functions
/// that make a new Deferred from a function's outcome accept: a `Result<U, Failure>` or a
/// `Deferred<U>`. Leaving out the plain value (that is
/// [`Deferred::map`]) lets the compiler infer `U` from an `Ok(…)`.
pub trait TryDeferred<T: 'static>: IntoDeferred<T> + sealed::SealedTry<T> {}

impl<T: 'static> sealed::SealedTry<T> for Result<T, Failure> {}
impl<T: 'static> sealed::SealedTry<T> for Deferred<T> {}
impl<T: 'static, X: IntoDeferred<T> + sealed::SealedTry<T>> TryDeferred<T> for X {}

fn resolution<T: 'static, R: IntoDeferred<T>>(r: R) -> Outcome<T> {
    r.into_resolution().into()
}

/// Runs `f`, turning a panic into a failure.
fn guarded<T: 'static>(f: impl FnOnce() -> Resolution<T>) -> Resolution<T> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|p| Resolution::Value(Err(Failure::panicked(&*p))))
}

/// A Deferred that has already succeeded with `value`.
///
/// ```
/// let d = torsion::defer::succeed("hi");
/// assert_eq!(d.take_result().unwrap().unwrap(), "hi");
/// ```
pub fn succeed<T: 'static>(value: T) -> Deferred<T> {
    Deferred::from_result(Ok(value))
}

/// A Deferred that has already failed with `failure`.
///
/// ```
/// use torsion::defer::{fail, Failure};
/// let d = fail::<u8>(Failure::msg("no"));
/// d.add_errback(|_| Ok(1));
/// assert_eq!(d.take_result().unwrap().unwrap(), 1);
/// ```
pub fn fail<T: 'static>(failure: Failure) -> Deferred<T> {
    Deferred::from_result(Err(failure))
}

/// Calls `f` and gives its outcome as a Deferred: a value succeeds, an `Err` fails, a Deferred
/// is passed through, and a panic becomes a failure (Twisted's `maybeDeferred`). Futures become
/// Deferreds with [`Reactor::spawn`](crate::Reactor::spawn).
///
/// ```
/// use torsion::defer::{maybe_deferred, Deferred, Failure, FailureKind};
///
/// let a: Deferred<u8> = maybe_deferred(|| 1);
/// let b: Deferred<u8> = maybe_deferred(|| Err(Failure::msg("no")));
/// let c: Deferred<u8> = maybe_deferred(|| -> u8 { panic!("boom") });
/// assert_eq!(a.take_result().unwrap().unwrap(), 1);
/// assert!(b.take_result().unwrap().is_err());
/// assert_eq!(c.take_result().unwrap().unwrap_err().kind(), FailureKind::Panicked);
/// ```
pub fn maybe_deferred<T: 'static, R: IntoDeferred<T>>(f: impl FnOnce() -> R) -> Deferred<T> {
    match guarded(|| f().into_resolution()) {
        Resolution::Value(r) => Deferred::from_result(r),
        Resolution::Wait(d) => d,
    }
}

impl<T: 'static> Deferred<T> {
    /// Adds a callback for the success path. It may return a `T`, a `Result<T, Failure>` or a
    /// `Deferred<T>` (see [`IntoDeferred`]). A failure passes it by.
    ///
    /// ```
    /// use torsion::defer::Deferred;
    ///
    /// let d = Deferred::new();
    /// d.add_callback(|s: String| s + "!");
    /// d.callback("hi".to_string()).unwrap();
    /// assert_eq!(d.take_result().unwrap().unwrap(), "hi!");
    /// ```
    pub fn add_callback<R, F>(&self, f: F) -> &Self
    where
        R: IntoDeferred<T>,
        F: FnOnce(T) -> R + 'static,
    {
        self.push_call(move |r| match r {
            Ok(v) => resolution(f(v)),
            Err(e) => Outcome::Value(Err(e)),
        });
        self
    }

    /// Adds an errback: it gets a failure and may recover (return a value or `Ok`), fail again
    /// (`Err`), or return a Deferred. A success passes it by.
    pub fn add_errback<R, F>(&self, f: F) -> &Self
    where
        R: IntoDeferred<T>,
        F: FnOnce(Failure) -> R + 'static,
    {
        self.push_call(move |r| match r {
            Ok(v) => Outcome::Value(Ok(v)),
            Err(e) => resolution(f(e)),
        });
        self
    }

    /// Adds one function for both paths; it gets the result as a `Result`.
    pub fn add_both<R, F>(&self, f: F) -> &Self
    where
        R: IntoDeferred<T>,
        F: FnOnce(Result<T, Failure>) -> R + 'static,
    {
        self.push_call(move |r| resolution(f(r)));
        self
    }

    /// Adds a callback and an errback at the same level of the chain: exactly one of them
    /// runs, and the errback does not see a failure of the callback.
    pub fn add_callbacks<R1, R2, F1, F2>(&self, callback: F1, errback: F2) -> &Self
    where
        R1: IntoDeferred<T>,
        R2: IntoDeferred<T>,
        F1: FnOnce(T) -> R1 + 'static,
        F2: FnOnce(Failure) -> R2 + 'static,
    {
        self.push_call(move |r| match r {
            Ok(v) => resolution(callback(v)),
            Err(e) => resolution(errback(e)),
        });
        self
    }

    /// Fires `other` with this chain's result at this point (Twisted's `chainDeferred`); this
    /// Deferred's result is then consumed. If `other` was already fired, this chain goes on
    /// with an [`AlreadyCalled`](crate::defer::AlreadyCalled) failure.
    ///
    /// ```
    /// use torsion::defer::{succeed, Deferred};
    /// let other = Deferred::new();
    /// succeed(3).chain_deferred(&other);
    /// assert_eq!(other.take_result().unwrap().unwrap(), 3);
    /// ```
    pub fn chain_deferred(&self, other: &Deferred<T>) -> &Self {
        let target = Rc::clone(other.chain());
        self.push_call(move |r| target.settle(Resolution::Value(r)));
        self
    }

    /// Consumes the result with `f`, which ends the chain (a failure given to `f` counts as
    /// handled).
    ///
    /// ```
    /// use torsion::defer::fail;
    /// use torsion::defer::Failure;
    /// fail::<()>(Failure::msg("x")).on_result(|r| assert!(r.is_err()));
    /// ```
    pub fn on_result(&self, f: impl FnOnce(Result<T, Failure>) + 'static) {
        self.push_call(move |r| {
            f(r);
            Outcome::Taken
        });
    }

    /// Hands this chain's result, through `f`, to a new Deferred, and returns that one.
    /// Cancelling the new Deferred cancels this one while it has not fired.
    fn forward<U: 'static>(
        &self,
        f: impl FnOnce(Result<T, Failure>) -> Resolution<U> + 'static,
    ) -> Deferred<U> {
        let source = Rc::downgrade(self.chain());
        let out = Deferred::<U>::with_canceller(move |_| {
            if let Some(inner) = source.upgrade() {
                Deferred::from_chain(inner).cancel();
            }
        });
        let target = Rc::clone(out.chain());
        self.push_call(move |r| target.settle(guarded(move || f(r))));
        out
    }

    /// A Deferred of `f` applied to the value; a failure passes through.
    ///
    /// ```
    /// use torsion::defer::succeed;
    /// let d = succeed(2).map(|n| n.to_string());
    /// assert_eq!(d.take_result().unwrap().unwrap(), "2");
    /// ```
    pub fn map<U: 'static>(self, f: impl FnOnce(T) -> U + 'static) -> Deferred<U> {
        self.forward(move |r| Resolution::Value(r.map(f)))
    }

    /// A Deferred of what `f` returns for the value: a `Result<U, Failure>` or a
    /// `Deferred<U>` (whose result it then waits for; see [`TryDeferred`]). A failure passes
    /// through.
    ///
    /// ```
    /// use torsion::defer::{succeed, Deferred, Failure};
    ///
    /// let d = succeed("7").and_then(|s| s.parse::<u8>().map_err(Failure::new));
    /// assert_eq!(d.take_result().unwrap().unwrap(), 7);
    ///
    /// let later = Deferred::new();
    /// let l = later.clone();
    /// let d = succeed(1).and_then(move |_| l);
    /// later.callback("done").unwrap();
    /// assert_eq!(d.take_result().unwrap().unwrap(), "done");
    /// ```
    pub fn and_then<U, R, F>(self, f: F) -> Deferred<U>
    where
        U: 'static,
        R: TryDeferred<U>,
        F: FnOnce(T) -> R + 'static,
    {
        self.forward(move |r| match r {
            Ok(v) => f(v).into_resolution(),
            Err(e) => Resolution::Value(Err(e)),
        })
    }

    /// A Deferred that recovers from a failure with what `f` returns; a value passes through.
    ///
    /// ```
    /// use torsion::defer::{fail, Failure};
    /// let d = fail::<u8>(Failure::msg("x")).or_else(|_| Ok(0));
    /// assert_eq!(d.take_result().unwrap().unwrap(), 0);
    /// ```
    pub fn or_else<R, F>(self, f: F) -> Deferred<T>
    where
        R: IntoDeferred<T>,
        F: FnOnce(Failure) -> R + 'static,
    {
        self.forward(move |r| match r {
            Ok(v) => Resolution::Value(Ok(v)),
            Err(e) => f(e).into_resolution(),
        })
    }

    /// A Deferred whose failure, if any, is replaced by `f`'s.
    pub fn map_err(self, f: impl FnOnce(Failure) -> Failure + 'static) -> Deferred<T> {
        self.forward(move |r| Resolution::Value(r.map_err(f)))
    }

    /// A Deferred of what `f` returns for either outcome: a `Result<U, Failure>` or a
    /// `Deferred<U>` (see [`TryDeferred`]).
    ///
    /// ```
    /// use torsion::defer::{fail, Failure};
    /// let d = fail::<u8>(Failure::msg("x")).then(|r| Ok(r.is_err()));
    /// assert!(d.take_result().unwrap().unwrap());
    /// ```
    pub fn then<U, R, F>(self, f: F) -> Deferred<U>
    where
        U: 'static,
        R: TryDeferred<U>,
        F: FnOnce(Result<T, Failure>) -> R + 'static,
    {
        self.forward(move |r| f(r).into_resolution())
    }
}
