//! Running chains: the loop that carries results from Deferred to Deferred without recursion,
//! the steps of one chain, and dropping chains without recursion either.

use std::any::Any;
use std::cell::RefCell;
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use super::{Chain, Deferred, Erased, Next, Outcome, Slot};
use crate::defer::Failure;
use crate::rc_pool as pool;

/// The result as a run carries it from one step to the next (kept small, so that it stays in
/// registers).
pub(super) enum Cur<T> {
    Value(Result<T, Failure>),
    Consumed,
}

impl<T> Cur<T> {
    /// What the next step gets: the result, or a `Consumed` failure if a step took it.
    #[inline(always)]
    fn into_result(self) -> Result<T, Failure> {
        match self {
            Cur::Value(r) => r,
            Cur::Consumed => Err(Failure::consumed()),
        }
    }

    /// What the cell keeps when the chain stops with this result.
    #[inline(always)]
    fn into_slot(self) -> Slot<T> {
        match self {
            Cur::Value(r) => Slot::Ready(r),
            Cur::Consumed => Slot::Consumed,
        }
    }
}

/// Goes on from what a chain's run stopped at, until every Deferred reached from there has
/// done what it can.
#[inline]
pub(super) fn carry_on(next: Next) {
    if let Next::Then(next, resume) = next {
        carry_on_slow(next, resume);
    }
}

fn carry_on_slow(first: Rc<dyn Erased>, resume: Option<Rc<dyn Erased>>) {
    let mut stack: Vec<Rc<dyn Erased>> = resume.into_iter().collect();
    let mut cur = first;
    loop {
        match cur.run() {
            Next::Done => match stack.pop() {
                Some(c) => cur = c,
                None => return,
            },
            Next::Then(next, resume) => {
                if let Some(r) = resume {
                    stack.push(r);
                }
                cur = next;
            }
        }
    }
}

impl<T: 'static> Chain<T> {
    /// Runs steps, starting with the result `cur`, until the chain ends, pauses, waits or hands
    /// its result on. A callback that panics unwinds out of here with the result gone;
    /// [`Chain::run_from`] then goes on with a [`Panicked`](crate::defer::Panicked) failure.
    #[inline(always)]
    fn run_steps(self: &Rc<Self>, mut cur: Cur<T>) -> Next {
        loop {
            let step = {
                let mut st = self.st.borrow_mut();
                let next = if st.paused > 0 {
                    None
                } else {
                    st.steps.pop_front()
                };
                match next {
                    Some(step) => step,
                    None => {
                        st.result = cur.into_slot();
                        st.running = false;
                        return Next::Done;
                    }
                }
            };
            cur = match step.call(cur.into_result()) {
                Outcome::Value(r) => Cur::Value(r),
                other => match self.after_step(other) {
                    Ok(cur) => cur,
                    Err(next) => return next,
                },
            };
        }
    }

    /// What the run does after a step that did not simply give a value: go on (`Ok`), or stop
    /// there (`Err`). Out of line, so that the loop stays small for the common step.
    #[cold]
    #[inline(never)]
    fn after_step(self: &Rc<Self>, out: Outcome<T>) -> Result<Cur<T>, Next> {
        match out {
            Outcome::Value(r) => Ok(Cur::Value(r)),
            Outcome::Taken => Ok(Cur::Consumed),
            Outcome::Wait(d) => match self.wait_on(d) {
                Some(r) => Ok(Cur::Value(r)),
                None => {
                    // `wait_on` left the cell empty and waiting.
                    self.st.borrow_mut().running = false;
                    Err(Next::Done)
                }
            },
            Outcome::Handoff(next) => {
                let resume = self.after_handoff();
                Err(Next::Then(next, resume))
            }
        }
    }

    /// Runs a chain marked running, from `cur`. One `catch_unwind` covers the whole run
    /// rather than one per callback.
    #[inline(always)]
    pub(super) fn run_from(self: &Rc<Self>, mut cur: Cur<T>) -> Next {
        loop {
            match catch_unwind(AssertUnwindSafe(move || self.run_steps(cur))) {
                Ok(next) => return next,
                Err(p) => cur = Cur::Value(Err(Failure::panicked(&*p))),
            }
        }
    }
}

impl<T: 'static> Erased for Chain<T> {
    fn run(self: Rc<Self>) -> Next {
        self.run_typed()
    }

    fn cancel(self: Rc<Self>) {
        Deferred::from_chain(self).cancel();
    }
}

impl<T: 'static> Chain<T> {
    /// [`Erased::run`] without the reference count and the virtual call.
    #[inline]
    pub(super) fn run_typed(self: &Rc<Self>) -> Next {
        // The result stays out of the cell (`Busy`) for the whole run and goes from step to
        // step in a local; the cell is borrowed once per step, to take the next one.
        let cur = {
            let mut st = self.st.borrow_mut();
            if st.paused > 0 || st.waiting.is_some() || st.steps.is_empty() {
                st.running = false;
                return Next::Done;
            }
            let cur = match mem::replace(&mut st.result, Slot::Busy) {
                Slot::Ready(r) => Cur::Value(r),
                Slot::Consumed => Cur::Consumed,
                other => {
                    st.result = other;
                    st.running = false;
                    return Next::Done;
                }
            };
            st.running = true;
            cur
        };
        self.run_from(cur)
    }
}

impl<T: 'static> pool::Recycle for Chain<T> {
    /// Most chains end consumed, with no steps and nothing else attached: then there is
    /// nothing to drop and the checks here are all the cell costs to put back.
    #[inline(always)]
    fn needs_drop(&mut self) -> bool {
        let st = self.st.get_mut();
        let result_is_inert = match &st.result {
            Slot::Empty | Slot::Busy | Slot::Consumed => true,
            Slot::Ready(Ok(_)) => !mem::needs_drop::<T>(),
            Slot::Ready(Err(_)) => false,
        };
        !(result_is_inert
            && st.steps.is_bare()
            && st.waiting.is_none()
            && st.canceller.is_none()
            && st.awaiting.is_none())
    }
}

impl<T: 'static> Drop for Chain<T> {
    #[inline]
    fn drop(&mut self) {
        let st = self.st.get_mut();
        if matches!(st.result, Slot::Ready(Err(_))) {
            unhandled(&st.result);
        }
        if st.steps.is_empty() && st.canceller.is_none() {
            return;
        }
        let rest: Box<dyn Any> = Box::new((mem::take(&mut st.steps), st.canceller.take()));
        drop_later(rest);
    }
}

#[cold]
#[inline(never)]
fn unhandled<T>(result: &Slot<T>) {
    if let Slot::Ready(Err(f)) = result {
        tracing::error!(
            kind = ?f.kind(),
            location = %f.location(),
            "Unhandled error in Deferred: {f}"
        );
    }
}

thread_local! {
    static DROPPING: RefCell<Option<Vec<Box<dyn Any>>>> = const { RefCell::new(None) };
}

/// Drops chains one after another instead of one inside another, so that dropping a long
/// chain of unfired Deferreds cannot overflow the stack.
#[cold]
#[inline(never)]
fn drop_later(b: Box<dyn Any>) {
    let first = DROPPING.try_with(|d| {
        let mut d = d.borrow_mut();
        match d.as_mut() {
            Some(list) => {
                list.push(b);
                None
            }
            None => {
                *d = Some(Vec::new());
                Some(b)
            }
        }
    });
    let Ok(Some(b)) = first else { return };
    // A `Drop` that panics must not leave the list in place (every later chain would be
    // queued on it and never dropped) nor stop the others from being dropped: each drop is
    // caught, the list is emptied and reset, and the first panic then goes on unwinding.
    let mut panic = catch_unwind(AssertUnwindSafe(|| drop(b))).err();
    while let Some(next) = DROPPING.with(|d| d.borrow_mut().as_mut().and_then(Vec::pop)) {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| drop(next))) {
            panic.get_or_insert(p);
        }
    }
    DROPPING.with(|d| *d.borrow_mut() = None);
    if let Some(p) = panic {
        std::panic::resume_unwind(p);
    }
}
