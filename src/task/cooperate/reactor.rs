//! The reactor's own [`Cooperator`] and the functions that use it (Twisted's global
//! cooperator, `task.cooperate` and `task.coiterate`).

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use super::{Coop, CooperativeTask, Cooperator, Step};
use crate::defer::Deferred;
use crate::{Phase, Reactor};

/// Each reactor's own cooperator, kept weakly (it holds its reactor, which must stay free to
/// go): it lives while tasks or handles use it and is made again on the next use.
struct ReactorCoop {
    core: Weak<crate::reactor::Core>,
    coop: Weak<Coop<Reactor>>,
}

thread_local! {
    static REACTOR_COOPERATORS: RefCell<Vec<ReactorCoop>> = const { RefCell::new(Vec::new()) };
}

impl Reactor {
    /// This reactor's own [`Cooperator`] (Twisted's global one), made on first use, with a
    /// 10 ms slice and a tick on each loop pass that has work. It is stopped when the
    /// reactor shuts down.
    pub fn cooperator(&self) -> Cooperator<Reactor> {
        let core = self.weak();
        let (found, known) = REACTOR_COOPERATORS.with(|r| {
            let mut r = r.borrow_mut();
            r.retain(|e| e.core.strong_count() > 0);
            match r.iter().find(|e| e.core.ptr_eq(&core)) {
                Some(e) => (e.coop.upgrade(), true),
                None => (None, false),
            }
        });
        if let Some(coop) = found {
            return Cooperator { coop };
        }
        let c = Cooperator::new(self.clone());
        let coop = Rc::downgrade(&c.coop);
        REACTOR_COOPERATORS.with(|r| {
            let mut r = r.borrow_mut();
            match r.iter_mut().find(|e| e.core.ptr_eq(&core)) {
                Some(e) => e.coop = coop,
                None => r.push(ReactorCoop { core, coop }),
            }
        });
        if !known {
            // One trigger per reactor; it stops whichever cooperator is current then.
            self.add_system_event_trigger(Phase::After, "shutdown", |r| {
                let core = r.weak();
                let coop = REACTOR_COOPERATORS.with(|e| {
                    let e = e.borrow();
                    e.iter()
                        .find(|e| e.core.ptr_eq(&core))
                        .and_then(|e| e.coop.upgrade())
                });
                if let Some(coop) = coop {
                    coop.stop();
                }
            });
        }
        c
    }
}

/// Runs `iter` as a task of the reactor's own cooperator (Twisted's `task.cooperate`).
///
/// ```
/// use torsion::Reactor;
/// use torsion::task::cooperate;
///
/// let reactor = Reactor::builder().install_signal_handlers(false).build().unwrap();
/// let stop = reactor.clone();
/// let task = cooperate(&reactor, (0..100_000u32).map(|_| ()));
/// task.when_done().add_callback(move |()| stop.stop().unwrap());
/// reactor.run().unwrap();
/// assert!(task.completion().is_some());
/// ```
pub fn cooperate<I>(reactor: &Reactor, iter: I) -> CooperativeTask
where
    I: IntoIterator,
    I::Item: Into<Step> + 'static,
    I::IntoIter: 'static,
{
    reactor.cooperator().cooperate(iter)
}

/// Runs `iter` on the reactor's own cooperator and gives a Deferred of its end (Twisted's
/// `task.coiterate`).
pub fn coiterate<I>(reactor: &Reactor, iter: I) -> Deferred<()>
where
    I: IntoIterator,
    I::Item: Into<Step> + 'static,
    I::IntoIter: 'static,
{
    reactor.cooperator().coiterate(iter)
}
