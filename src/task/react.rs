//! [`react`]: run a reactor until a main future ends (Twisted's `task.react`).

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use crate::defer::Failure;
use crate::{Reactor, ReactorBuilder};

/// Runs a reactor (with default settings, signal handlers included) until the future that
/// `main` returns ends, and gives the process exit code: 0 on success, 1 on failure, with the
/// failure printed to standard error (Twisted's `task.react`). If the reactor stops before
/// `main` is done, the code is 0.
///
/// ```no_run
/// use std::time::Duration;
///
/// fn main() {
///     let code = torsion::react(|reactor| async move {
///         torsion::sleep(&reactor, Duration::from_millis(10)).await?;
///         println!("done");
///         Ok(())
///     });
///     std::process::exit(code);
/// }
/// ```
pub fn react<F, Fut, T>(main: F) -> i32
where
    F: FnOnce(Reactor) -> Fut + 'static,
    Fut: Future<Output = Result<T, Failure>> + 'static,
    T: 'static,
{
    react_with(Reactor::builder(), main)
}

/// [`react`] on a reactor made by `builder`.
///
/// ```
/// let builder = torsion::Reactor::builder().install_signal_handlers(false);
/// let code = torsion::task::react_with(builder, |_| async { Ok(()) });
/// assert_eq!(code, 0);
/// ```
pub fn react_with<F, Fut, T>(builder: ReactorBuilder, main: F) -> i32
where
    F: FnOnce(Reactor) -> Fut + 'static,
    Fut: Future<Output = Result<T, Failure>> + 'static,
    T: 'static,
{
    let reactor = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("could not start the reactor: {e}");
            return 1;
        }
    };
    let code = Rc::new(Cell::new(0));
    let set = code.clone();
    reactor.call_when_running(move |r| {
        let stopper = r.clone();
        r.spawn(main(r.clone())).on_result(move |result| {
            if let Err(failure) = result {
                eprintln!("main function encountered error: {failure:?}");
                set.set(1);
            }
            let _ = stopper.stop();
        });
    });
    if let Err(e) = reactor.run() {
        eprintln!("could not run the reactor: {e}");
        return 1;
    }
    code.get()
}
