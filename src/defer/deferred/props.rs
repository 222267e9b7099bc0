//! Property tests: random sequences of operations on one Deferred, checked step by step
//! against a plain model of Twisted's rules (§2.12): which callbacks run, in what order, with
//! what result, and what each firing and `take_result` gives.
//!
//! The model knows nothing of how the chain is stored, recycled or run, so it checks the fast
//! paths (a first firing run straight from the value, a result stored without callbacks,
//! recycled cells) against the same rules as the slow ones.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use proptest::prelude::*;

use crate::defer::{Deferred, Failure, FailureKind, succeed};

/// An error as the model sees it.
#[derive(Clone, Debug, PartialEq)]
enum Err {
    Cancelled,
    Consumed,
    Msg(String),
}

type Res = Result<i64, Err>;

#[derive(Clone, Debug)]
enum Step {
    /// `x -> x + add`, failing with "over" when `x > limit`.
    Callback { add: i64, limit: i64 },
    /// Recovers with `value`, or fails again with "again".
    Errback { value: Option<i64> },
    /// Sees both: `Ok(x) -> x * 2`, `Err -> 7`.
    Both,
    /// Returns an already fired Deferred of `x + 1`.
    Nested,
}

#[derive(Clone, Debug)]
enum Op {
    Add(Step),
    Pause,
    Unpause,
    Fire(Res),
    Cancel,
    Take,
    /// Drops a clone of the handle (the cell must stay: another handle holds it).
    CloneAndDrop,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (-5i64..5, -20i64..20).prop_map(|(add, limit)| Step::Callback { add, limit }),
        proptest::option::of(-9i64..9).prop_map(|value| Step::Errback { value }),
        Just(Step::Both),
        Just(Step::Nested),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => step().prop_map(Op::Add),
        1 => Just(Op::Pause),
        2 => Just(Op::Unpause),
        2 => (-9i64..9).prop_map(|v| Op::Fire(Ok(v))),
        1 => Just(Op::Fire(Err(Err::Msg("fired".into())))),
        1 => Just(Op::Cancel),
        1 => Just(Op::Take),
        1 => Just(Op::CloneAndDrop),
    ]
}

fn apply(step: &Step, r: Res) -> Res {
    match (step, r) {
        (Step::Callback { add, limit }, Ok(x)) => {
            if x > *limit {
                Err(Err::Msg("over".into()))
            } else {
                Ok(x + add)
            }
        }
        (Step::Errback { value }, Err(_)) => value.ok_or(Err::Msg("again".into())),
        (Step::Both, Ok(x)) => Ok(x * 2),
        (Step::Both, Err(_)) => Ok(7),
        (Step::Nested, Ok(x)) => Ok(x + 1),
        (_, r) => r,
    }
}

/// Twisted's Deferred, as a list of rules.
#[derive(Default)]
struct Model {
    called: bool,
    paused: u32,
    suppress: bool,
    result: Option<Res>,
    queue: VecDeque<(usize, Step)>,
    log: Vec<usize>,
}

impl Model {
    fn run(&mut self) {
        if !self.called || self.paused > 0 {
            return;
        }
        while let Some((id, step)) = self.queue.pop_front() {
            let r = self.result.take().expect("a called model has a result");
            // A callback is passed by on the errback path and an errback on the callback path.
            let invoked = match step {
                Step::Callback { .. } | Step::Nested => r.is_ok(),
                Step::Errback { .. } => r.is_err(),
                Step::Both => true,
            };
            if invoked {
                self.log.push(id);
            }
            self.result = Some(apply(&step, r));
        }
    }

    /// What `callback` / `errback` returns: `false` for `AlreadyCalled`.
    fn fire(&mut self, r: Res) -> bool {
        if self.called {
            if self.suppress {
                self.suppress = false;
                return true;
            }
            return false;
        }
        self.called = true;
        self.result = Some(r);
        self.run();
        true
    }

    fn take(&mut self) -> Option<Res> {
        if !self.called || self.paused > 0 || !self.queue.is_empty() {
            return None;
        }
        self.result.replace(Err(Err::Consumed))
    }
}

fn seen(r: Result<i64, Failure>) -> Res {
    r.map_err(|f| match f.kind() {
        FailureKind::Cancelled => Err::Cancelled,
        FailureKind::Consumed => Err::Consumed,
        _ => Err::Msg(f.to_string()),
    })
}

fn failure(e: &Err) -> Failure {
    match e {
        Err::Cancelled => Failure::cancelled(),
        Err::Consumed => Failure::consumed(),
        Err::Msg(m) => Failure::msg(m.clone()),
    }
}

fn add(d: &Deferred<i64>, id: usize, step: Step, log: &Rc<RefCell<Vec<usize>>>) {
    let log = log.clone();
    let s = step.clone();
    match step {
        Step::Callback { .. } => {
            d.add_callback(move |x| {
                log.borrow_mut().push(id);
                match apply(&s, Ok(x)) {
                    Ok(v) => Ok(v),
                    Err(e) => Err(failure(&e)),
                }
            });
        }
        Step::Errback { .. } => {
            d.add_errback(move |f| {
                log.borrow_mut().push(id);
                match apply(&s, seen(Err(f))) {
                    Ok(v) => Ok(v),
                    Err(e) => Err(failure(&e)),
                }
            });
        }
        Step::Both => {
            d.add_both(move |r| {
                log.borrow_mut().push(id);
                apply(&s, seen(r)).map_err(|e| failure(&e))
            });
        }
        Step::Nested => {
            d.add_callback(move |x| {
                log.borrow_mut().push(id);
                succeed(x + 1)
            });
        }
    }
}

/// Errbacks in the model see the failure a Deferred gives them, so the model's errors must
/// read the same as torsion's: both go through `seen`.
fn normalise(r: Res) -> Res {
    r.map_err(|e| match e {
        Err::Msg(m) => seen(Err(Failure::msg(m))).unwrap_err(),
        other => other,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_deferred_follows_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let d = Deferred::<i64>::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut model = Model::default();
        for (id, op) in ops.into_iter().enumerate() {
            match op {
                Op::Add(step) => {
                    add(&d, id, step.clone(), &log);
                    model.queue.push_back((id, step));
                    model.run();
                }
                Op::Pause => {
                    d.pause();
                    model.paused += 1;
                }
                Op::Unpause => {
                    d.unpause();
                    if model.paused > 0 {
                        model.paused -= 1;
                    }
                    model.run();
                }
                Op::Fire(r) => {
                    let real = d.resolve(r.clone().map_err(|e| failure(&e))).is_ok();
                    prop_assert_eq!(real, model.fire(r), "firing {}", id);
                }
                Op::Cancel => {
                    d.cancel();
                    if !model.called {
                        model.suppress = true;
                        model.fire(Err(Err::Cancelled));
                    }
                }
                Op::Take => {
                    let real = d.take_result().map(seen);
                    prop_assert_eq!(real, model.take().map(normalise), "take at {}", id);
                }
                Op::CloneAndDrop => drop(d.clone()),
            }
            prop_assert_eq!(&*log.borrow(), &model.log, "callbacks run after op {}", id);
            prop_assert_eq!(d.called(), model.called);
            prop_assert_eq!(d.is_paused(), model.paused > 0);
        }
        let real = d.take_result().map(seen);
        prop_assert_eq!(real, model.take().map(normalise));
    }
}
