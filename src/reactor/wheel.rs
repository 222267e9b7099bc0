//! Hierarchical timing wheel for the reactor's delayed calls (sans-IO: no clock inside).
//!
//! Time is a plain `u64` of nanoseconds supplied by the owner; the wheel starts at 0 ns.
//!
//! # Why a wheel
//!
//! Most timers a reactor schedules are timeouts that get cancelled (or pushed back) long
//! before they fire. A binary heap makes every schedule and cancel `O(log n)`; a wheel makes
//! both `O(1)`: entries live in a [`Slab`] and are threaded on intrusive doubly-linked lists
//! (prev/next indices), one list per slot. There are [`LEVELS`] levels of 64 slots; a level-0
//! slot spans one tick (2^20 ns, about 1 ms) and each level spans 64 times the one below it.
//! An entry goes on the level given by the highest bit in which its tick differs from the
//! wheel's current tick, so it is re-filed ("cascaded") at most once per level on its way down.
//! A per-level `u64` occupancy bitmap makes finding the next non-empty slot a bit scan, which
//! is what keeps [`Wheel::next_wake`] cheap. Deadlines beyond the wheel's range (64^6 ticks
//! from the current epoch) are clamped into an overflow list above the top level and
//! re-filed when the wheel enters the next 64^6-tick epoch; they keep their true deadline.
//!
//! # Exact deadlines and FIFO order
//!
//! Ticks only decide *when an entry becomes a candidate*. Once the wheel's current tick
//! reaches an entry's tick, the entry moves into a small "due" binary heap ordered by
//! `(deadline, seq)`, so entries fire at their exact nanosecond deadline, in deadline order,
//! and equal deadlines fire in scheduling (sequence) order. Every entry still in the wheel has
//! a tick beyond the current one, hence a deadline later than anything the heap can release.
//! The heap uses lazy deletion: cancelling or rescheduling a due entry just makes its heap
//! item stale (each push carries a unique stamp); stale items are skipped, and the heap is
//! rebuilt when they outnumber the live ones, keeping the cost amortized.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use slab::Slab;

/// log2 of the level-0 tick in nanoseconds (2^20 ns = 1.048576 ms).
const TICK_SHIFT: u32 = 20;
/// log2 of the number of slots per level.
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// Number of wheel levels; together they cover 64^6 ticks (about 2.3 years).
const LEVELS: usize = 6;
/// Sentinel "no entry" index for the intrusive lists.
const NIL: u32 = u32::MAX;

/// Identifies one scheduled entry; stale keys (removed, fired, slot reused) are ignored by
/// every method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TimerKey {
    /// Index of the entry in the slab.
    index: u32,
    /// Generation of that slab index when the key was issued.
    generation: u32,
}

/// Where an entry currently lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    /// On the list of slot `.1` (`0..SLOTS`) at level `.0` (`0..LEVELS`).
    Slot(u8, u8),
    /// On the overflow list (tick outside the current 64^6-tick epoch).
    Overflow,
    /// In the due heap (its current heap item carries `Entry::stamp`).
    Due,
    /// Temporarily on no list (being moved).
    Detached,
}

/// One scheduled value with its bookkeeping.
struct Entry<T> {
    /// The user's value.
    value: T,
    /// Exact deadline in nanoseconds.
    deadline: u64,
    /// How late past its deadline the entry may fire, so that wake-ups can be shared.
    slack: u64,
    /// Sequence number: FIFO tie-breaker for equal deadlines.
    seq: u64,
    /// Stamp of this entry's live due-heap item (meaningful only while `loc == Due`).
    stamp: u64,
    /// Which list or structure holds the entry.
    loc: Loc,
    /// Previous entry on the same list, or `NIL`.
    prev: u32,
    /// Next entry on the same list, or `NIL`.
    next: u32,
}

/// An item of the due heap: the entry's `deadline` and `seq` when pushed (the heap order),
/// its slab `index`, and a unique push `stamp`; the item is live only while the entry is
/// `Due` with that same stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct DueItem {
    deadline: u64,
    seq: u64,
    index: u32,
    stamp: u64,
}

/// An item of the latest-time heap: when a due entry must have fired at the latest, its slab
/// `index` and the `stamp` of its due push; live under the same rule as a [`DueItem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct LatestItem {
    latest: u64,
    index: u32,
    stamp: u64,
}

/// A hierarchical timing wheel holding values of type `T` keyed by [`TimerKey`].
pub(crate) struct Wheel<T> {
    /// Entry storage.
    entries: Slab<Entry<T>>,
    /// Current generation of each slab index (bumped whenever the index is freed).
    generations: Vec<u32>,
    /// List heads per level and slot.
    heads: [[u32; SLOTS]; LEVELS],
    /// Per-level bitmap of non-empty slots.
    occupied: [u64; LEVELS],
    /// Head of the overflow list.
    overflow: u32,
    /// Entries whose tick has been reached, ordered by `(deadline, seq)`; may hold stale items.
    due: BinaryHeap<Reverse<DueItem>>,
    /// Number of live items in `due`.
    due_live: usize,
    /// The same due entries ordered by the latest time each may fire (`deadline + slack`),
    /// with the same stamps and the same lazy deletion: its top is when the owner must wake.
    due_latest: BinaryHeap<Reverse<LatestItem>>,
    /// Current tick: every entry with a tick `<= elapsed` is in `due`.
    elapsed: u64,
    /// Sequence number of the next insert.
    next_seq: u64,
    /// Stamp of the next due-heap push.
    next_stamp: u64,
}

impl<T> Wheel<T> {
    /// Creates an empty wheel; the time origin is 0 ns and the current tick is 0.
    pub(crate) fn new() -> Self {
        Wheel {
            entries: Slab::new(),
            generations: Vec::new(),
            heads: [[NIL; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            overflow: NIL,
            due: BinaryHeap::new(),
            due_live: 0,
            due_latest: BinaryHeap::new(),
            elapsed: 0,
            next_seq: 0,
            next_stamp: 0,
        }
    }

    /// Schedules `value` at `deadline_ns`. Assigns the next sequence number (strictly
    /// increasing, starts at 0). A deadline already in the past is fine (it is due at the
    /// next pop).
    ///
    /// Only panics if more than `u32::MAX - 1` entries are live at once (memory would be
    /// exhausted long before).
    #[cfg(test)]
    pub(crate) fn insert(&mut self, deadline_ns: u64, value: T) -> TimerKey {
        self.insert_with_slack(deadline_ns, 0, value)
    }

    /// [`Wheel::insert`] for an entry that may fire up to `slack_ns` after its deadline (never
    /// before it), so that [`Wheel::next_wake`] can let it share a wake-up with later ones.
    pub(crate) fn insert_with_slack(
        &mut self,
        deadline_ns: u64,
        slack_ns: u64,
        value: T,
    ) -> TimerKey {
        let seq = self.take_seq();
        let vacant = self.entries.vacant_key();
        let index = u32::try_from(vacant)
            .ok()
            .filter(|&i| i != NIL)
            .expect("timing wheel: too many live timers");
        if vacant >= self.generations.len() {
            self.generations.resize(vacant + 1, 0);
        }
        let generation = self.generations[vacant];
        self.entries.insert(Entry {
            value,
            deadline: deadline_ns,
            slack: slack_ns,
            seq,
            stamp: 0,
            loc: Loc::Detached,
            prev: NIL,
            next: NIL,
        });
        self.place(index);
        TimerKey { index, generation }
    }

    /// Cancels an entry in O(1). Returns the value if the key was live.
    pub(crate) fn remove(&mut self, key: TimerKey) -> Option<T> {
        let index = self.live(key)?;
        self.detach(index);
        let entry = self.entries.remove(index as usize);
        self.retire(index);
        self.tidy_due();
        Some(entry.value)
    }

    /// The deadline of a live entry.
    pub(crate) fn deadline(&self, key: TimerKey) -> Option<u64> {
        let index = self.live(key)?;
        Some(self.entries[index as usize].deadline)
    }

    /// The value of a live entry.
    #[cfg(test)]
    pub(crate) fn get(&self, key: TimerKey) -> Option<&T> {
        let index = self.live(key)?;
        Some(&self.entries[index as usize].value)
    }

    /// Moves a live entry to a new deadline. If `new_seq` is true it also gets a fresh
    /// sequence number (it then orders after everything already scheduled at the same
    /// deadline), otherwise it keeps its own. Returns false for a stale key. Key stays valid.
    pub(crate) fn reschedule(&mut self, key: TimerKey, deadline_ns: u64, new_seq: bool) -> bool {
        let Some(index) = self.live(key) else {
            return false;
        };
        self.detach(index);
        if new_seq {
            self.entries[index as usize].seq = self.take_seq();
        }
        self.entries[index as usize].deadline = deadline_ns;
        self.place(index);
        self.tidy_due();
        true
    }

    /// Changes how late a live entry may fire; it takes effect when the entry is next filed
    /// (call it before [`Wheel::reschedule`]).
    pub(crate) fn set_slack(&mut self, key: TimerKey, slack_ns: u64) {
        if let Some(index) = self.live(key) {
            self.entries[index as usize].slack = slack_ns;
        }
    }

    /// The sequence number the next insert will get.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The time at which the owner must call [`Wheel::pop_expired`] again: never later than
    /// any live entry's deadline plus its slack, so that none fires later than its slack
    /// allows (it may be earlier, e.g. the start of a slot that needs cascading). Entries whose
    /// deadlines fall before that time then fire in the same pass, in deadline order. `None`
    /// when empty.
    pub(crate) fn next_wake(&self) -> Option<u64> {
        // Invariant: the heap tops, if any, are live items (see `tidy_due`). Entries not yet
        // due have deadlines past the next slot's start, which the wheel part covers.
        let due = self.due_latest.peek().map(|Reverse(item)| item.latest);
        due.into_iter().chain(self.next_slot_start()).min()
    }

    /// The earliest time at which [`Wheel::pop_expired`] can release an entry (or a slot needs
    /// cascading): waking before it finds nothing to do. `None` when empty.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        let due = self.due.peek().map(|Reverse(item)| item.deadline);
        due.into_iter().chain(self.next_slot_start()).min()
    }

    fn next_slot_start(&self) -> Option<u64> {
        self.next_slot()
            .map(|(tick, _)| tick.saturating_mul(1 << TICK_SHIFT))
    }

    /// Pops the live entry with the smallest `(deadline, seq)` among those with
    /// `deadline <= now_ns` and `seq < max_seq`. Returns `None` when there is none. Calling it
    /// repeatedly drains everything due, in `(deadline, seq)` order.
    pub(crate) fn pop_expired(&mut self, now_ns: u64, max_seq: u64) -> Option<(TimerKey, T)> {
        self.advance(now_ns >> TICK_SHIFT);
        let (mut aside, mut found) = (Vec::new(), None);
        // Peek before popping: the common "nothing due yet" answer then costs no heap
        // operation and no allocation.
        while let Some(&Reverse(item)) = self.due.peek() {
            if !Self::is_current(&self.entries, &item) {
                self.due.pop(); // stale: drop it
                continue;
            }
            if item.deadline > now_ns {
                break; // not due yet, and then neither is anything behind it
            }
            self.due.pop();
            if item.seq < max_seq {
                found = Some(item.index);
                break;
            }
            // Too new for this pass; it must not hide older entries behind it.
            aside.push(Reverse(item));
        }
        self.due.extend(aside);
        let result = found.map(|index| {
            let generation = self.generations[index as usize];
            self.due_live -= 1;
            let entry = self.entries.remove(index as usize);
            self.retire(index);
            (TimerKey { index, generation }, entry.value)
        });
        self.tidy_due();
        result
    }

    /// Number of live entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no entry is live.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes and returns every live entry (used at reactor shutdown), in any order.
    /// All outstanding keys become stale.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        for (index, _) in self.entries.iter() {
            self.generations[index] = self.generations[index].wrapping_add(1);
        }
        self.heads = [[NIL; SLOTS]; LEVELS];
        self.occupied = [0; LEVELS];
        self.overflow = NIL;
        self.due.clear();
        self.due_latest.clear();
        self.due_live = 0;
        self.entries.drain().map(|entry| entry.value).collect()
    }

    /// Returns the next sequence number and advances the counter.
    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        seq
    }

    /// The slab index of `key` if it is live.
    fn live(&self, key: TimerKey) -> Option<u32> {
        let index = key.index as usize;
        let current = self.generations.get(index).copied();
        (current == Some(key.generation) && self.entries.contains(index)).then_some(key.index)
    }

    /// Bumps the generation of a freed slab index so that old keys turn stale.
    fn retire(&mut self, index: u32) {
        let generation = &mut self.generations[index as usize];
        *generation = generation.wrapping_add(1);
    }

    /// Whether a heap item still represents its entry.
    fn is_current(entries: &Slab<Entry<T>>, item: &DueItem) -> bool {
        Self::is_current_at(entries, item.index, item.stamp)
    }

    /// True if the heap item pushed for entry `index` with `stamp` is still that entry's.
    fn is_current_at(entries: &Slab<Entry<T>>, index: u32, stamp: u64) -> bool {
        entries
            .get(index as usize)
            .is_some_and(|entry| entry.loc == Loc::Due && entry.stamp == stamp)
    }

    /// Files a detached entry: into the due heap if its tick has been reached, else into the
    /// wheel level of the highest bit in which its tick differs from the current tick.
    fn place(&mut self, index: u32) {
        let tick = self.entries[index as usize].deadline >> TICK_SHIFT;
        if tick <= self.elapsed {
            let stamp = self.next_stamp;
            self.next_stamp = stamp.wrapping_add(1);
            let entry = &mut self.entries[index as usize];
            entry.loc = Loc::Due;
            entry.stamp = stamp;
            let item = DueItem {
                deadline: entry.deadline,
                seq: entry.seq,
                index,
                stamp,
            };
            self.due_latest.push(Reverse(LatestItem {
                latest: entry.deadline.saturating_add(entry.slack),
                index,
                stamp,
            }));
            self.due.push(Reverse(item));
            self.due_live += 1;
            return;
        }
        let level = ((63 - (tick ^ self.elapsed).leading_zeros()) / SLOT_BITS) as usize;
        let loc = if level < LEVELS {
            let slot = (tick >> (level as u32 * SLOT_BITS)) as usize % SLOTS;
            Loc::Slot(level as u8, slot as u8)
        } else {
            Loc::Overflow
        };
        self.link(index, loc);
    }

    /// The list head for a list location.
    fn head_mut(&mut self, loc: Loc) -> Option<&mut u32> {
        match loc {
            Loc::Slot(level, slot) => Some(&mut self.heads[level as usize][slot as usize]),
            Loc::Overflow => Some(&mut self.overflow),
            Loc::Due | Loc::Detached => None,
        }
    }

    /// Pushes a detached entry onto the front of the list at `loc`.
    fn link(&mut self, index: u32, loc: Loc) {
        let Some(head) = self.head_mut(loc) else {
            return;
        };
        let old = std::mem::replace(head, index);
        if old != NIL {
            self.entries[old as usize].prev = index;
        }
        let entry = &mut self.entries[index as usize];
        entry.loc = loc;
        entry.prev = NIL;
        entry.next = old;
        if let Loc::Slot(level, slot) = loc {
            self.occupied[level as usize] |= 1 << slot;
        }
    }

    /// Takes an entry off whatever list or heap it is on, leaving it `Detached`.
    fn detach(&mut self, index: u32) {
        let entry = &mut self.entries[index as usize];
        let (loc, prev, next) = (entry.loc, entry.prev, entry.next);
        entry.loc = Loc::Detached;
        entry.prev = NIL;
        entry.next = NIL;
        match loc {
            Loc::Detached => {}
            // The heap item turns stale; `tidy_due` deals with it.
            Loc::Due => self.due_live -= 1,
            Loc::Slot(..) | Loc::Overflow => {
                if next != NIL {
                    self.entries[next as usize].prev = prev;
                }
                if prev != NIL {
                    self.entries[prev as usize].next = next;
                } else if let Some(head) = self.head_mut(loc) {
                    *head = next;
                    if let (NIL, Loc::Slot(level, slot)) = (next, loc) {
                        self.occupied[level as usize] &= !(1 << slot);
                    }
                }
            }
        }
    }

    /// Keeps the heap top live and rebuilds the heap once stale items dominate.
    fn tidy_due(&mut self) {
        let entries = &self.entries;
        if self.due.len() > 2 * self.due_live + 64 {
            self.due
                .retain(|Reverse(item)| Self::is_current(entries, item));
        }
        if self.due_latest.len() > 2 * self.due_live + 64 {
            self.due_latest
                .retain(|Reverse(item)| Self::is_current_at(entries, item.index, item.stamp));
        }
        while let Some(Reverse(item)) = self.due.peek() {
            if Self::is_current(entries, item) {
                break;
            }
            self.due.pop();
        }
        while let Some(Reverse(item)) = self.due_latest.peek() {
            if Self::is_current_at(entries, item.index, item.stamp) {
                break;
            }
            self.due_latest.pop();
        }
    }

    /// The earliest tick at which some wheel list must be re-filed, with that list.
    ///
    /// An entry on level `L` shares the current tick's digits above `L` and has a greater
    /// digit at `L`, so its slot starts after the current tick but inside the current
    /// level-`L + 1` span, i.e. before any slot of a higher level. Hence the lowest occupied
    /// level holds the earliest slot, and the overflow list (due at the start of the next
    /// 64^6-tick epoch) comes after every wheel slot.
    fn next_slot(&self) -> Option<(u64, Loc)> {
        for (level, &bits) in self.occupied.iter().enumerate() {
            let shift = level as u32 * SLOT_BITS;
            let ahead = bits & (u64::MAX << ((self.elapsed >> shift) % SLOTS as u64));
            if ahead != 0 {
                let slot = u64::from(ahead.trailing_zeros());
                let span = (1u64 << (shift + SLOT_BITS)) - 1;
                let start = (self.elapsed & !span) | (slot << shift);
                return Some((start, Loc::Slot(level as u8, slot as u8)));
            }
        }
        let epoch = LEVELS as u32 * SLOT_BITS;
        (self.overflow != NIL).then(|| (((self.elapsed >> epoch) + 1) << epoch, Loc::Overflow))
    }

    /// Advances the current tick to `target`, cascading every list whose start is reached;
    /// entries whose tick is reached land in the due heap.
    fn advance(&mut self, target: u64) {
        while let Some((start, loc)) = self.next_slot() {
            if start > target {
                break;
            }
            self.elapsed = start;
            if let Loc::Slot(level, slot) = loc {
                self.occupied[level as usize] &= !(1 << slot);
            }
            let mut index = match self.head_mut(loc) {
                Some(head) => std::mem::replace(head, NIL),
                None => NIL,
            };
            while index != NIL {
                let next = self.entries[index as usize].next;
                self.entries[index as usize].loc = Loc::Detached;
                self.place(index);
                index = next;
            }
        }
        self.elapsed = self.elapsed.max(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const MS: u64 = 1_000_000;
    const TICK: u64 = 1 << TICK_SHIFT;

    /// Pops everything due at `now` with `max_seq = next_seq()`; popped keys must be stale.
    fn pop_all<T>(wheel: &mut Wheel<T>, now: u64) -> Vec<T> {
        let mut out = Vec::new();
        while let Some((key, value)) = wheel.pop_expired(now, wheel.next_seq()) {
            assert!(wheel.get(key).is_none() && wheel.deadline(key).is_none());
            out.push(value);
        }
        out
    }

    /// Inserts each deadline with itself as the value.
    fn fill(wheel: &mut Wheel<u64>, deadlines: &[u64]) {
        for &deadline in deadlines {
            wheel.insert(deadline, deadline);
        }
    }

    #[test]
    fn fifo_for_equal_deadlines() {
        let mut wheel = Wheel::new();
        assert!(wheel.is_empty() && wheel.next_wake().is_none());
        for i in 0..10 {
            wheel.insert(5 * MS, i);
        }
        assert!(pop_all(&mut wheel, 5 * MS - 1).is_empty());
        wheel.insert(5 * MS, 10); // tick reached: straight into the due heap, still FIFO
        assert_eq!(pop_all(&mut wheel, 5 * MS), (0..11).collect::<Vec<_>>());
        assert!(wheel.is_empty() && wheel.next_wake().is_none());
    }

    #[test]
    fn deadline_order_across_levels() {
        let mut wheel = Wheel::new();
        fill(&mut wheel, &[7_200_000 * MS, 3, 70 * MS, 5_000 * MS]);
        fill(&mut wheel, &[MS, 300_000 * MS, 999_999]);
        assert_eq!(wheel.len(), 7);
        let sorted = [
            3,
            999_999,
            MS,
            70 * MS,
            5_000 * MS,
            300_000 * MS,
            7_200_000 * MS,
        ];
        assert_eq!(pop_all(&mut wheel, u64::MAX), sorted);
    }

    #[test]
    fn remove_before_and_after_cascade_and_in_due_heap() {
        let mut wheel = Wheel::new();
        let a = wheel.insert(10_000 * MS, 'a');
        let b = wheel.insert(10_000 * MS, 'b');
        assert_eq!(wheel.remove(a), Some('a'));
        assert!(pop_all(&mut wheel, 9_999 * MS).is_empty()); // cascades `b` down
        assert_eq!(wheel.deadline(b), Some(10_000 * MS));
        assert_eq!(wheel.remove(b), Some('b'));
        assert!(wheel.is_empty() && wheel.next_wake().is_none());
        let base = 19_075 * TICK; // 20.0016 s
        let (c, d) = (wheel.insert(base + 500, 'c'), wheel.insert(base + 600, 'd'));
        // Their tick is reached, so both sit in the due heap without being expired.
        assert!(pop_all(&mut wheel, base + 400).is_empty());
        assert_eq!(wheel.next_wake(), Some(base + 500));
        assert_eq!(wheel.remove(c), Some('c'));
        assert_eq!(wheel.next_wake(), Some(base + 600));
        assert_eq!(pop_all(&mut wheel, base + TICK), vec!['d']);
        assert_eq!((wheel.remove(c), wheel.remove(d)), (None, None));
    }

    #[test]
    fn reschedule_earlier_later_with_and_without_new_seq() {
        let mut wheel = Wheel::new();
        let a = wheel.insert(10 * MS, 'a'); // seq 0
        let b = wheel.insert(10 * MS, 'b'); // seq 1
        let c = wheel.insert(20 * MS, 'c'); // seq 2
        let d = wheel.insert(5 * MS, 'd'); // seq 3
        assert!(wheel.reschedule(c, 10 * MS, false)); // earlier, keeps seq 2
        assert!(wheel.reschedule(a, 10 * MS, true)); // seq 4: now after b and c
        assert!(wheel.reschedule(d, 30 * MS, false)); // later
        assert_eq!((wheel.next_seq(), wheel.get(b)), (5, Some(&'b')));
        assert_eq!(pop_all(&mut wheel, 10 * MS), vec!['b', 'c', 'a']);
        assert_eq!(pop_all(&mut wheel, 30 * MS), vec!['d']);
        // Entries already in the due heap.
        let base = 30 * TICK; // 31.46 ms
        let (e, f) = (wheel.insert(base + 500, 'e'), wheel.insert(base + 700, 'f'));
        assert!(pop_all(&mut wheel, base + 400).is_empty()); // both now in the due heap
        assert!(wheel.reschedule(e, 50 * MS, false)); // later: leaves the heap
        assert!(wheel.reschedule(f, base + 450, true)); // earlier: stays in the heap
        assert_eq!(wheel.next_wake(), Some(base + 450));
        assert_eq!(pop_all(&mut wheel, 32 * MS), vec!['f']);
        assert!(pop_all(&mut wheel, 50 * MS - 1).is_empty());
        assert_eq!(pop_all(&mut wheel, 50 * MS), vec!['e']);
    }

    #[test]
    fn stale_keys_after_pop_remove_and_reuse() {
        let mut wheel = Wheel::new();
        let a = wheel.insert(MS, 1);
        assert_eq!(wheel.pop_expired(MS, 1), Some((a, 1)));
        let b = wheel.insert(MS, 2); // reuses the slab slot
        assert!(wheel.get(a).is_none() && wheel.deadline(a).is_none());
        assert!(wheel.remove(a).is_none() && !wheel.reschedule(a, 0, true));
        assert_eq!(wheel.remove(b), Some(2));
        let c = wheel.insert(MS, 3);
        assert!(wheel.get(b).is_none() && wheel.remove(b).is_none());
        assert!(!wheel.reschedule(b, 0, false) && b != c && wheel.get(c) == Some(&3));
    }

    #[test]
    fn max_seq_excludes_newer_but_not_older_behind_them() {
        let mut wheel = Wheel::new();
        let old = wheel.insert(5 * MS, "old"); // seq 0
        let new = wheel.insert(2 * MS, "new"); // seq 1, earlier deadline
        assert_eq!(wheel.pop_expired(10 * MS, 1), Some((old, "old")));
        assert_eq!(wheel.pop_expired(10 * MS, 1), None);
        assert_eq!(wheel.get(new), Some(&"new"));
        assert_eq!(wheel.next_wake(), Some(2 * MS));
        assert_eq!(pop_all(&mut wheel, 10 * MS), vec!["new"]);
    }

    #[test]
    fn far_future_deadlines() {
        let far = 64u64.pow(6) * MS * 3 + 123; // beyond the wheel's range
        let mut wheel = Wheel::new();
        let key = wheel.insert(far, "far");
        wheel.insert(u64::MAX, "max");
        let mut wakes = 0;
        while let Some(wake) = wheel.next_wake().filter(|&w| w != far) {
            assert!(wake < far && wakes < 1_000, "woke at {wake}");
            assert!(pop_all(&mut wheel, wake).is_empty());
            wakes += 1;
        }
        assert!(pop_all(&mut wheel, far - 1).is_empty());
        assert_eq!(wheel.pop_expired(far, 2), Some((key, "far")));
        assert!(pop_all(&mut wheel, u64::MAX - 1).is_empty());
        assert_eq!(pop_all(&mut wheel, u64::MAX), vec!["max"]);
    }

    #[test]
    fn sub_millisecond_deadlines_are_exact() {
        let mut wheel = Wheel::new();
        fill(&mut wheel, &[1_500_000, 200, 100]);
        assert!(pop_all(&mut wheel, 99).is_empty());
        assert_eq!(pop_all(&mut wheel, 150), vec![100]);
        assert_eq!(pop_all(&mut wheel, 200), vec![200]);
        assert!(pop_all(&mut wheel, 1_400_000).is_empty());
        assert!(pop_all(&mut wheel, 1_499_999).is_empty());
        assert_eq!(pop_all(&mut wheel, 1_500_000), vec![1_500_000]);
        wheel.insert(7, 7); // already in the past: due at the next pop
        assert_eq!(pop_all(&mut wheel, 1_500_000), vec![7]);
    }

    #[test]
    fn many_inserts_mostly_removed_then_drained_in_order() {
        let (mut wheel, mut rng, mut keys) = (Wheel::new(), 0x2545_f491_4f6c_dd1du64, Vec::new());
        for i in 0..100_000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let deadline = rng % (600_000 * MS);
            keys.push((wheel.insert(deadline, i), deadline));
        }
        for (_, &(key, _)) in keys.iter().enumerate().filter(|(i, _)| i % 10 != 0) {
            assert!(wheel.remove(key).is_some());
        }
        assert_eq!(wheel.len(), 10_000);
        let mut popped = Vec::new();
        while let Some((key, value)) = wheel.pop_expired(u64::MAX, wheel.next_seq()) {
            assert_eq!((key, value % 10), (keys[value as usize].0, 0));
            popped.push((keys[value as usize].1, value)); // seq == insertion index here
        }
        assert_eq!(popped.len(), 10_000);
        assert!(popped.windows(2).all(|w| w[0] < w[1]) && wheel.is_empty());
    }

    #[test]
    fn due_heap_stays_bounded_under_lazy_deletion() {
        let mut wheel = Wheel::new();
        wheel.insert(0, 0); // keeps the stale items below off the heap top
        for i in 1..10_000 {
            let key = wheel.insert(5, i);
            assert!(wheel.reschedule(key, 9, false) && wheel.remove(key) == Some(i));
        }
        assert!(wheel.due.len() <= 2 * wheel.due_live + 64 && wheel.len() == 1);
    }

    #[test]
    fn drain_returns_everything_and_invalidates_keys() {
        let mut wheel = Wheel::new();
        let a = wheel.insert(0, 0);
        fill(&mut wheel, &[MS, 10_000 * MS, u64::MAX]);
        assert!(wheel.pop_expired(0, 0).is_none());
        let mut all = wheel.drain();
        all.sort_unstable();
        assert_eq!(all, vec![0, MS, 10_000 * MS, u64::MAX]);
        assert!(wheel.is_empty() && wheel.next_wake().is_none() && wheel.get(a).is_none());
        let b = wheel.insert(MS, 4);
        assert_eq!(pop_all(&mut wheel, MS), vec![4]);
        assert!(wheel.get(a).is_none() && wheel.remove(b).is_none());
    }

    /// One step of the model-based test.
    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64),
        Remove(usize),
        Reschedule(usize, u64, bool),
        /// Advance `now` by `.0`, then pop everything due with `max_seq` = `next_seq()` when
        /// `.1` is `None`, else `.1 % (next_seq() + 1)`.
        Advance(u64, Option<u64>),
    }

    fn ops(deadline: BoxedStrategy<u64>, step: BoxedStrategy<u64>) -> BoxedStrategy<Vec<Op>> {
        let reschedule = (any::<usize>(), deadline.clone(), any::<bool>());
        let advance = (step, prop::option::weighted(0.3, any::<u64>()));
        let op = prop_oneof![
            4 => deadline.prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Remove),
            2 => reschedule.prop_map(|(i, d, n)| Op::Reschedule(i, d, n)),
            3 => advance.prop_map(|(s, m)| Op::Advance(s, m)),
        ];
        prop::collection::vec(op, 1..300).boxed()
    }

    /// Runs `ops` against the wheel and a `BTreeMap` model keyed by `(deadline, seq)`.
    fn check_against_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut wheel = Wheel::new();
        let mut model: BTreeMap<(u64, u64), u64> = BTreeMap::new();
        let mut info: BTreeMap<u64, (TimerKey, u64, u64)> = BTreeMap::new(); // (key, deadline, seq)
        let (mut now, mut next_id) = (0u64, 0u64);
        for op in ops {
            match op {
                Op::Insert(deadline) => {
                    let seq = wheel.next_seq();
                    let key = wheel.insert(deadline, next_id);
                    prop_assert_eq!(wheel.next_seq(), seq + 1);
                    model.insert((deadline, seq), next_id);
                    info.insert(next_id, (key, deadline, seq));
                    next_id += 1;
                }
                Op::Remove(i) if !info.is_empty() => {
                    let id = *info.keys().nth(i % info.len()).unwrap();
                    let (key, deadline, seq) = info.remove(&id).unwrap();
                    prop_assert_eq!((wheel.remove(key), wheel.remove(key)), (Some(id), None));
                    model.remove(&(deadline, seq));
                }
                Op::Reschedule(i, new_deadline, new_seq) if !info.is_empty() => {
                    let (&id, &(key, deadline, mut seq)) = info.iter().nth(i % info.len()).unwrap();
                    let fresh = wheel.next_seq();
                    prop_assert!(wheel.reschedule(key, new_deadline, new_seq));
                    model.remove(&(deadline, seq));
                    seq = if new_seq { fresh } else { seq };
                    model.insert((new_deadline, seq), id);
                    info.insert(id, (key, new_deadline, seq));
                }
                Op::Remove(_) | Op::Reschedule(..) => {}
                Op::Advance(step, limit) => {
                    now = now.saturating_add(step);
                    let max_seq = limit.map_or(wheel.next_seq(), |m| m % (wheel.next_seq() + 1));
                    let due: Vec<_> = model
                        .keys()
                        .filter(|&&(d, s)| d <= now && s < max_seq)
                        .copied()
                        .collect();
                    for key in due {
                        let id = model.remove(&key).unwrap();
                        prop_assert_eq!(wheel.pop_expired(now, max_seq), Some((info[&id].0, id)));
                        info.remove(&id);
                    }
                    prop_assert_eq!(wheel.pop_expired(now, max_seq), None);
                    if limit.is_none() {
                        // Nothing due is left, so the wake-up must lie in the future.
                        let wake = wheel.next_wake();
                        prop_assert!(wake.is_none_or(|w| w > now), "{:?} <= {}", wake, now);
                    }
                }
            }
            prop_assert_eq!(wheel.len(), model.len());
            prop_assert_eq!(wheel.is_empty(), model.is_empty());
            let (wake, earliest) = (wheel.next_wake(), model.keys().next().map(|k| k.0));
            prop_assert!(wake.is_some() == earliest.is_some() && wake <= earliest);
            for (id, &(key, deadline, _)) in &info {
                prop_assert_eq!(wheel.deadline(key), Some(deadline));
                prop_assert_eq!(wheel.get(key), Some(id));
            }
        }
        let (mut rest, mut expected) = (wheel.drain(), model.into_values().collect::<Vec<_>>());
        rest.sort_unstable();
        expected.sort_unstable();
        prop_assert_eq!(rest, expected);
        Ok(())
    }

    proptest! {
        #[test]
        fn matches_model(ops in ops(
            (0..1_000_000_000_000u64).boxed(),
            prop_oneof![0..3 * MS, 0..20_000_000_000u64].boxed(),
        )) {
            check_against_model(ops)?;
        }

        #[test]
        fn matches_model_wide_range(ops in ops(
            prop_oneof![
                3 => 0..1_000_000_000_000u64,
                1 => any::<u64>(),
                1 => (u64::MAX - 1_000_000_000_000)..=u64::MAX,
            ].boxed(),
            prop_oneof![3 => 0..20_000_000_000u64, 1 => any::<u64>().prop_map(|x| x >> 3)]
                .boxed(),
        )) {
            check_against_model(ops)?;
        }
    }

    proptest! {
        /// An owner that sleeps until `next_wake` and then pops everything due fires each entry
        /// no earlier than its deadline and no later than its slack allows, in deadline order,
        /// and shares wake-ups between entries whose windows overlap.
        #[test]
        fn slack_shares_wake_ups_without_firing_early_or_too_late(
            timers in proptest::collection::vec((0..50 * MS, 0..2 * MS), 1..200),
        ) {
            let mut wheel = Wheel::new();
            for (i, &(deadline, slack)) in timers.iter().enumerate() {
                wheel.insert_with_slack(deadline, slack, i);
            }
            let mut now = 0;
            let (mut fired, mut wakes) = (Vec::new(), 0);
            while let Some(wake) = wheel.next_wake() {
                prop_assert!(wake >= now, "time never goes back");
                now = wake;
                wakes += 1;
                while let Some((_, i)) = wheel.pop_expired(now, u64::MAX) {
                    let (deadline, slack) = timers[i];
                    prop_assert!(deadline <= now, "fired early");
                    prop_assert!(now <= deadline + slack, "fired later than its slack");
                    fired.push((deadline, i));
                }
            }
            prop_assert_eq!(fired.len(), timers.len());
            let mut sorted = fired.clone();
            sorted.sort();
            prop_assert_eq!(&fired, &sorted, "deadline order, then scheduling order");
            // Every entry with 1 ms of slack: no more wake-ups than 1 ms windows (plus the
            // wheel's own tick boundaries).
            if timers.iter().all(|&(_, slack)| slack >= MS) {
                prop_assert!(wakes <= 2 * 50 + 2, "{} wake-ups", wakes);
            }
        }
    }

    /// A dense stream of timers with 1 ms of slack keeps sharing wake-ups when timers with no
    /// slack are mixed in: each of those adds its own wake-up, and only that.
    #[test]
    fn entries_without_slack_do_not_stop_the_others_sharing() {
        let mut wheel = Wheel::new();
        for i in 0..2000u64 {
            wheel.insert_with_slack(MS + i * 10_000, MS, i);
        }
        for k in 0..5u64 {
            wheel.insert_with_slack(2 * MS + k * 3 * MS + 1234, 0, 10_000 + k);
        }
        let (mut wakes, mut fired) = (0, 0);
        while let Some(now) = wheel.next_wake() {
            wakes += 1;
            while wheel.pop_expired(now, u64::MAX).is_some() {
                fired += 1;
            }
        }
        assert_eq!(fired, 2005);
        // 20 ms of stream: about one wake-up per millisecond (slot starts and slack
        // windows), plus one per slack-free timer.
        assert!(wakes <= 2 * 21 + 5 + 2, "{wakes} wake-ups");
    }
}
