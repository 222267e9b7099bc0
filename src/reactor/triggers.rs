//! System event triggers: `before` / `during` / `after` callbacks for `startup`, `shutdown`
//! and user-defined events (Twisted's `addSystemEventTrigger`).

use crate::Reactor;

/// The phase of a system event a trigger runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Before the event happens (for shutdown: while connections are still open).
    Before,
    /// While it happens (for shutdown: after every connection was closed).
    During,
    /// After it happened.
    After,
}

/// Identifies a registered trigger, for
/// [`Reactor::remove_system_event_trigger`](crate::Reactor::remove_system_event_trigger).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TriggerId(u64);

pub(crate) type TriggerFn = Box<dyn FnOnce(&Reactor)>;

struct Trigger {
    id: TriggerId,
    phase: Phase,
    event: String,
    f: TriggerFn,
}

/// Registered triggers, in registration order. Each runs at most once.
#[derive(Default)]
pub(crate) struct Triggers {
    next: u64,
    list: Vec<Trigger>,
}

impl Triggers {
    pub(crate) fn add(&mut self, phase: Phase, event: &str, f: TriggerFn) -> TriggerId {
        self.next += 1;
        let id = TriggerId(self.next);
        self.list.push(Trigger {
            id,
            phase,
            event: event.to_owned(),
            f,
        });
        id
    }

    pub(crate) fn remove(&mut self, id: TriggerId) -> bool {
        let before = self.list.len();
        self.list.retain(|t| t.id != id);
        self.list.len() != before
    }

    /// Takes the oldest trigger for `(event, phase)`. Taking one at a time lets a trigger add
    /// another to the phase that is running, which then runs too, as in Twisted.
    pub(crate) fn take_next(&mut self, event: &str, phase: Phase) -> Option<TriggerFn> {
        let pos = self
            .list
            .iter()
            .position(|t| t.phase == phase && t.event == event)?;
        Some(self.list.remove(pos).f)
    }

    pub(crate) fn clear(&mut self) {
        self.list.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_in_registration_order_per_phase() {
        let mut t = Triggers::default();
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        for (i, phase) in [Phase::After, Phase::Before, Phase::Before]
            .into_iter()
            .enumerate()
        {
            let s = seen.clone();
            t.add(phase, "shutdown", Box::new(move |_| s.borrow_mut().push(i)));
        }
        assert!(t.take_next("startup", Phase::Before).is_none());
        assert!(t.take_next("shutdown", Phase::Before).is_some());
        assert!(t.take_next("shutdown", Phase::Before).is_some());
        assert!(t.take_next("shutdown", Phase::Before).is_none());
        assert!(t.take_next("shutdown", Phase::After).is_some());
    }

    #[test]
    fn remove_known_and_unknown() {
        let mut t = Triggers::default();
        let id = t.add(Phase::During, "x", Box::new(|_| {}));
        assert!(t.remove(id));
        assert!(!t.remove(id));
        assert!(t.take_next("x", Phase::During).is_none());
    }
}
