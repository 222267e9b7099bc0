//! TEMPORARY heap-based stand-in with the wheel's API (replaced by the timing wheel).
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TimerKey {
    index: u32,
    generation: u32,
}

struct E<T> {
    generation: u32,
    deadline: u64,
    seq: u64,
    hgen: u32,
    value: T,
}

pub(crate) struct Wheel<T> {
    slab: slab::Slab<E<T>>,
    heap: BinaryHeap<Reverse<(u64, u64, usize, u32)>>,
    seq: u64,
    generation: u32,
}

impl<T> Wheel<T> {
    pub(crate) fn new() -> Self {
        Wheel {
            slab: slab::Slab::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            generation: 0,
        }
    }
    pub(crate) fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        self.generation += 1;
        let seq = self.seq;
        self.seq += 1;
        let i = self.slab.insert(E {
            generation: self.generation,
            deadline,
            seq,
            hgen: 0,
            value,
        });
        self.heap.push(Reverse((deadline, seq, i, 0)));
        TimerKey {
            index: i as u32,
            generation: self.generation,
        }
    }
    fn live(&self, k: TimerKey) -> bool {
        self.slab
            .get(k.index as usize)
            .is_some_and(|e| e.generation == k.generation)
    }
    pub(crate) fn remove(&mut self, k: TimerKey) -> Option<T> {
        if !self.live(k) {
            return None;
        }
        Some(self.slab.remove(k.index as usize).value)
    }
    pub(crate) fn deadline(&self, k: TimerKey) -> Option<u64> {
        if !self.live(k) {
            return None;
        }
        Some(self.slab[k.index as usize].deadline)
    }
    pub(crate) fn reschedule(&mut self, k: TimerKey, deadline: u64, new_seq: bool) -> bool {
        if !self.live(k) {
            return false;
        }
        let seq = if new_seq {
            let s = self.seq;
            self.seq += 1;
            Some(s)
        } else {
            None
        };
        let e = &mut self.slab[k.index as usize];
        e.deadline = deadline;
        if let Some(s) = seq {
            e.seq = s;
        }
        e.hgen += 1;
        self.heap
            .push(Reverse((deadline, e.seq, k.index as usize, e.hgen)));
        true
    }
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq
    }
    pub(crate) fn next_wake(&self) -> Option<u64> {
        self.heap
            .iter()
            .filter(|Reverse((_, _, i, h))| self.slab.get(*i).is_some_and(|e| e.hgen == *h))
            .map(|Reverse((d, ..))| *d)
            .min()
    }
    pub(crate) fn pop_expired(&mut self, now: u64, max_seq: u64) -> Option<(TimerKey, T)> {
        let mut aside = Vec::new();
        let mut out = None;
        while let Some(Reverse((d, s, i, h))) = self.heap.pop() {
            let ok = self
                .slab
                .get(i)
                .is_some_and(|e| e.hgen == h && e.seq == s && e.deadline == d);
            if !ok {
                continue;
            }
            if d > now {
                self.heap.push(Reverse((d, s, i, h)));
                break;
            }
            if s >= max_seq {
                aside.push(Reverse((d, s, i, h)));
                continue;
            }
            let e = self.slab.remove(i);
            out = Some((
                TimerKey {
                    index: i as u32,
                    generation: e.generation,
                },
                e.value,
            ));
            break;
        }
        for a in aside {
            self.heap.push(a);
        }
        out
    }
    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.heap.clear();
        self.slab.drain().map(|e| e.value).collect()
    }
}
