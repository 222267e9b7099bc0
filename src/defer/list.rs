//! Waiting on several Deferreds: [`DeferredList`], [`gather_results`], [`race`].

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use super::deferred::{Chain, Deferred, Outcome};
use super::failure::{Failure, FailureGroup, FirstError};

/// What a [`DeferredList`] fires with.
#[derive(Debug)]
pub enum ListResult<T> {
    /// Every member's outcome, in member order (Twisted's `[(success, result), …]`).
    All(Vec<Result<T, Failure>>),
    /// With `fire_on_one_callback`: the first member to succeed (Twisted's
    /// `(result, index)`).
    One {
        /// The member's position in the list.
        index: usize,
        /// Its value.
        value: T,
    },
}

/// A Deferred for a group of Deferreds (Twisted's `DeferredList`).
///
/// By default it fires once every member has fired, with every outcome in member order
/// ([`ListResult::All`]); an empty list fires at once. `fire_on_one_callback` fires with the
/// first success instead ([`ListResult::One`]; an empty list then never fires), and
/// `fire_on_one_errback` fails with a [`FirstError`] at the first failure.
///
/// A member's value moves into the list. A member's failure is copied into the list and stays
/// in the member too, so that an unhandled one is still logged when the member is dropped,
/// unless `consume_errors` is set. Cancelling the list's Deferred cancels every member.
///
/// ```
/// use torsion::defer::{succeed, fail, DeferredList, Failure, ListResult};
///
/// let list = DeferredList::new(vec![succeed(1), fail(Failure::msg("no")), succeed(3)])
///     .consume_errors(true)
///     .into_deferred();
/// let Ok(ListResult::All(results)) = list.take_result().unwrap() else { panic!() };
/// assert_eq!(results.len(), 3);
/// assert!(results[1].is_err());
/// ```
#[must_use = "a DeferredList does nothing until into_deferred"]
pub struct DeferredList<T: 'static> {
    members: Vec<Deferred<T>>,
    fire_on_one_callback: bool,
    fire_on_one_errback: bool,
    consume_errors: bool,
}

impl<T: 'static> DeferredList<T> {
    /// A list of `members`, with every option off.
    pub fn new(members: impl IntoIterator<Item = Deferred<T>>) -> Self {
        DeferredList {
            members: members.into_iter().collect(),
            fire_on_one_callback: false,
            fire_on_one_errback: false,
            consume_errors: false,
        }
    }

    /// Fire with the first member that succeeds.
    pub fn fire_on_one_callback(mut self, yes: bool) -> Self {
        self.fire_on_one_callback = yes;
        self
    }

    /// Fail with a [`FirstError`] as soon as a member fails.
    pub fn fire_on_one_errback(mut self, yes: bool) -> Self {
        self.fire_on_one_errback = yes;
        self
    }

    /// Take members' failures out of the members, so they are not logged as unhandled there.
    pub fn consume_errors(mut self, yes: bool) -> Self {
        self.consume_errors = yes;
        self
    }

    /// Starts listening to the members and returns the list's Deferred.
    pub fn into_deferred(self) -> Deferred<ListResult<T>> {
        let weak: Vec<Weak<Chain<T>>> = self
            .members
            .iter()
            .map(|d| Rc::downgrade(d.chain()))
            .collect();
        let out = Deferred::with_canceller(move |_| cancel_all(&weak, None));
        let n = self.members.len();
        if n == 0 {
            if !self.fire_on_one_callback {
                let _ = out.callback(ListResult::All(Vec::new()));
            }
            return out;
        }
        let state = Rc::new(RefCell::new(ListState {
            results: (0..n).map(|_| None).collect(),
            remaining: n,
            done: false,
        }));
        for (index, member) in self.members.into_iter().enumerate() {
            let state = state.clone();
            let target = out.clone();
            let opts = (
                self.fire_on_one_callback,
                self.fire_on_one_errback,
                self.consume_errors,
            );
            member.push_call(move |r| {
                let (keep, fire) = state.borrow_mut().record(index, r, opts);
                if let Some(fire) = fire {
                    let _ = target.resolve(fire);
                }
                keep
            });
        }
        out
    }
}

struct ListState<T> {
    results: Vec<Option<Result<T, Failure>>>,
    remaining: usize,
    done: bool,
}

type Fired<T> = Option<Result<ListResult<T>, Failure>>;

impl<T: 'static> ListState<T> {
    /// Records member `index`'s outcome: what the member keeps, and what the list fires with
    /// now, if anything.
    fn record(
        &mut self,
        index: usize,
        r: Result<T, Failure>,
        (on_callback, on_errback, consume): (bool, bool, bool),
    ) -> (Outcome<T>, Fired<T>) {
        let mut fire = None;
        let keep = match r {
            Ok(value) => {
                if on_callback && !self.done {
                    self.done = true;
                    fire = Some(Ok(ListResult::One { index, value }));
                } else if !self.done {
                    self.results[index] = Some(Ok(value));
                }
                Outcome::Taken
            }
            Err(failure) => {
                if on_errback && !self.done {
                    self.done = true;
                    fire = Some(Err(Failure::new(FirstError {
                        index,
                        failure: failure.clone(),
                    })));
                }
                if consume {
                    self.results[index] = Some(Err(failure));
                    Outcome::Taken
                } else {
                    self.results[index] = Some(Err(failure.clone()));
                    Outcome::Value(Err(failure))
                }
            }
        };
        self.remaining -= 1;
        if self.remaining == 0 && !self.done {
            self.done = true;
            let all = self
                .results
                .drain(..)
                .map(|r| r.unwrap_or_else(|| Err(Failure::consumed())))
                .collect();
            fire = Some(Ok(ListResult::All(all)));
        }
        if self.done {
            self.results.clear();
        }
        (keep, fire)
    }
}

fn cancel_all<T: 'static>(members: &[Weak<Chain<T>>], except: Option<usize>) {
    for (i, w) in members.iter().enumerate() {
        if Some(i) == except {
            continue;
        }
        if let Some(inner) = w.upgrade() {
            Deferred::from_chain(inner).cancel();
        }
    }
}

/// A Deferred of every member's value, in member order; it fails with a [`FirstError`] as soon
/// as one member fails (Twisted's `gatherResults`). `consume_errors` is as in
/// [`DeferredList::consume_errors`]. Cancelling it cancels every member.
///
/// ```
/// use torsion::defer::{gather_results, succeed, Deferred};
///
/// let later = Deferred::new();
/// let all = gather_results(vec![succeed(1), later.clone()], false);
/// assert!(!all.called());
/// later.callback(2).unwrap();
/// assert_eq!(all.take_result().unwrap().unwrap(), vec![1, 2]);
/// ```
pub fn gather_results<T: 'static>(
    members: impl IntoIterator<Item = Deferred<T>>,
    consume_errors: bool,
) -> Deferred<Vec<T>> {
    DeferredList::new(members)
        .fire_on_one_errback(true)
        .consume_errors(consume_errors)
        .into_deferred()
        .and_then(|list| match list {
            ListResult::All(results) => results.into_iter().collect::<Result<Vec<T>, Failure>>(),
            // Not reached: fire_on_one_callback is off.
            ListResult::One { value, .. } => Ok(vec![value]),
        })
}

/// The first member to succeed, as `(index, value)`; the others are cancelled then. If every
/// member fails, a [`FailureGroup`] of their failures (an empty list fails so at once).
/// Every member's outcome is consumed. Cancelling the race cancels every member.
///
/// ```
/// use torsion::defer::{race, Deferred};
///
/// let (a, b) = (Deferred::<&str>::new(), Deferred::new());
/// let winner = race(vec![a.clone(), b.clone()]);
/// b.callback("b").unwrap();
/// assert_eq!(winner.take_result().unwrap().unwrap(), (1, "b"));
/// assert!(a.called()); // cancelled
/// ```
pub fn race<T: 'static>(members: impl IntoIterator<Item = Deferred<T>>) -> Deferred<(usize, T)> {
    let members: Vec<Deferred<T>> = members.into_iter().collect();
    let weak: Rc<Vec<Weak<Chain<T>>>> =
        Rc::new(members.iter().map(|d| Rc::downgrade(d.chain())).collect());
    let all = weak.clone();
    let out = Deferred::with_canceller(move |_| cancel_all(&all, None));
    if members.is_empty() {
        let _ = out.errback(Failure::new(FailureGroup {
            failures: Vec::new(),
        }));
        return out;
    }
    let state = Rc::new(RefCell::new(RaceState {
        failures: members.iter().map(|_| None).collect(),
        remaining: members.len(),
        done: false,
    }));
    for (index, member) in members.into_iter().enumerate() {
        let state = state.clone();
        let target = out.clone();
        let weak = weak.clone();
        member.push_call(move |r| {
            let fire = {
                let mut st = state.borrow_mut();
                st.remaining -= 1;
                match r {
                    Ok(value) if !st.done => {
                        st.done = true;
                        Some(Ok((index, value)))
                    }
                    Ok(_) => None,
                    Err(f) => {
                        st.failures[index] = Some(f);
                        if st.remaining == 0 && !st.done {
                            st.done = true;
                            let failures = st.failures.drain(..).flatten().collect();
                            Some(Err(Failure::new(FailureGroup { failures })))
                        } else {
                            None
                        }
                    }
                }
            };
            if let Some(fire) = fire {
                if fire.is_ok() {
                    cancel_all(&weak, Some(index));
                }
                let _ = target.resolve(fire);
            }
            Outcome::Taken
        });
    }
    out
}

struct RaceState {
    failures: Vec<Option<Failure>>,
    remaining: usize,
    done: bool,
}

#[cfg(test)]
mod tests;
