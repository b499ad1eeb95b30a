//! A generic discrete-event core: a clock, an event queue, and a run loop.
//!
//! Events are ordered by `(time, sequence number)`: integer picoseconds, then first-in-first-out
//! among events at the same time. Cancellation is lazy: an event may be scheduled under a *key*
//! (say, a task id); [`Sim::cancel`] bumps that key's generation, and events carrying an older
//! generation are dropped when they reach the head of the queue, never searched for.
//!
//! Costs: `schedule` and `pop` are O(log n) in the queue length (a binary heap); `cancel` is O(1);
//! stale events cost one extra `pop` each. The core knows nothing about GPUs and does no I/O.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Key for events that can never be cancelled.
pub const NO_KEY: u32 = u32::MAX;

/// The latest time the engine simulates faithfully: 2^63 ps, about 107 days. Times past it
/// saturate instead of wrapping ([`Sim::later`]), and the simulator remembers that one was
/// reached ([`Sim::beyond_horizon`]) so that its caller can refuse the result. `u64::MAX`
/// stays free as "never".
pub const HORIZON: u64 = 1 << 63;

struct Entry<P> {
    time: u64,
    seq: u64,
    key: u32,
    gen: u32,
    payload: P,
}

impl<P> PartialEq for Entry<P> {
    fn eq(&self, o: &Self) -> bool {
        (self.time, self.seq) == (o.time, o.seq)
    }
}
impl<P> Eq for Entry<P> {}
impl<P> PartialOrd for Entry<P> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<P> Ord for Entry<P> {
    /// Reversed, so that the max-heap pops the earliest (time, seq) first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.time, o.seq).cmp(&(self.time, self.seq))
    }
}

/// The event queue and clock.
pub struct Sim<P> {
    now: u64,
    seq: u64,
    heap: BinaryHeap<Entry<P>>,
    gens: Vec<u32>,
    processed: u64,
    stale: u64,
    beyond: bool,
}

impl<P> Sim<P> {
    /// A simulator whose cancellable keys are `0..keys`.
    pub fn new(keys: usize) -> Self {
        Sim {
            now: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            gens: vec![0; keys],
            beyond: false,
            processed: 0,
            stale: 0,
        }
    }

    /// Makes keys `0..keys` cancellable (never shrinks).
    pub fn grow(&mut self, keys: usize) {
        if keys > self.gens.len() {
            self.gens.resize(keys, 0);
        }
    }

    /// Current time, picoseconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Events handled so far (stale ones excluded).
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Cancelled events dropped so far.
    pub fn stale(&self) -> u64 {
        self.stale
    }

    /// Events waiting, stale ones included.
    pub fn pending(&self) -> usize {
        self.heap.len()
    }

    /// `delay` picoseconds from now, saturating below `u64::MAX` (never) instead of wrapping.
    pub fn later(&self, delay: u64) -> u64 {
        self.now.saturating_add(delay).min(u64::MAX - 1)
    }

    /// [`Sim::later`] for a delay in (fractional) picoseconds, rounded up; a delay that is not
    /// finite, or beyond any time, saturates.
    pub fn later_f(&self, delay_ps: f64) -> u64 {
        let d = delay_ps.ceil();
        if d.is_finite() && d >= 0.0 && d < u64::MAX as f64 {
            self.later(d as u64)
        } else {
            u64::MAX - 1
        }
    }

    /// Whether any event was scheduled past [`HORIZON`] (and not at "never").
    pub fn beyond_horizon(&self) -> bool {
        self.beyond
    }

    /// Schedules `payload` at absolute time `at` (not before now) under `key` (or [`NO_KEY`]).
    pub fn schedule(&mut self, at: u64, key: u32, payload: P) {
        if at > HORIZON && at != u64::MAX {
            self.beyond = true;
        }
        assert!(
            at >= self.now,
            "event scheduled in the past: {at} < {}",
            self.now
        );
        let gen = if key == NO_KEY {
            0
        } else {
            self.gens[key as usize]
        };
        self.heap.push(Entry {
            time: at,
            seq: self.seq,
            key,
            gen,
            payload,
        });
        self.seq += 1;
    }

    /// Invalidates every pending event scheduled under `key`.
    pub fn cancel(&mut self, key: u32) {
        self.gens[key as usize] = self.gens[key as usize].wrapping_add(1);
    }

    /// Time of the next live event, dropping stale ones on the way.
    pub fn peek_time(&mut self) -> Option<u64> {
        while let Some(e) = self.heap.peek() {
            if e.key != NO_KEY && e.gen != self.gens[e.key as usize] {
                self.heap.pop();
                self.stale += 1;
                continue;
            }
            return Some(e.time);
        }
        None
    }

    /// Removes the next live event, advancing the clock to it.
    pub fn pop(&mut self) -> Option<(u64, P)> {
        self.peek_time()?;
        let e = self.heap.pop().expect("peeked");
        self.now = e.time;
        self.processed += 1;
        Some((e.time, e.payload))
    }

    /// Runs until the queue is empty.
    pub fn run(&mut self, mut handle: impl FnMut(&mut Self, u64, P)) {
        while let Some((t, p)) = self.pop() {
            handle(self, t, p);
        }
    }

    /// Moves the clock forward to `to` without running anything: no live event may be due
    /// before it (events at `to` stay queued).
    pub fn advance_clock(&mut self, to: u64) {
        assert!(
            self.peek_time().is_none_or(|t| t >= to),
            "an event is due before {to}"
        );
        self.now = self.now.max(to);
    }

    /// Runs every event at or before `until`, then sets the clock to `until` if it is later.
    pub fn step_until(&mut self, until: u64, mut handle: impl FnMut(&mut Self, u64, P)) {
        while let Some(t) = self.peek_time() {
            if t > until {
                break;
            }
            let (t, p) = self.pop().expect("peeked");
            handle(self, t, p);
        }
        self.now = self.now.max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_order_then_fifo_among_ties() {
        let mut s = Sim::new(0);
        s.schedule(5, NO_KEY, "c");
        s.schedule(1, NO_KEY, "a");
        s.schedule(5, NO_KEY, "d");
        s.schedule(1, NO_KEY, "b");
        let mut seen = vec![];
        s.run(|_, t, p| seen.push((t, p)));
        assert_eq!(seen, vec![(1, "a"), (1, "b"), (5, "c"), (5, "d")]);
    }

    #[test]
    fn cancellation_is_lazy_and_by_generation() {
        let mut s = Sim::new(2);
        s.schedule(10, 0, "old");
        s.cancel(0);
        s.schedule(20, 0, "new");
        s.schedule(15, 1, "other");
        let mut seen = vec![];
        s.run(|_, t, p| seen.push((t, p)));
        assert_eq!(seen, vec![(15, "other"), (20, "new")]);
        assert_eq!(s.stale(), 1);
        assert_eq!(s.processed(), 2);
    }

    #[test]
    fn handlers_schedule_more_and_step_until_stops() {
        let mut s = Sim::new(0);
        s.schedule(0, NO_KEY, 0u32);
        let mut count = 0;
        s.step_until(35, |s, t, n| {
            count += 1;
            s.schedule(t + 10, NO_KEY, n + 1);
        });
        assert_eq!(count, 4); // 0, 10, 20, 30
        assert_eq!(s.now(), 35);
        assert_eq!(s.peek_time(), Some(40));
    }

    #[test]
    #[should_panic(expected = "in the past")]
    fn no_time_travel() {
        let mut s = Sim::new(0);
        s.schedule(10, NO_KEY, ());
        s.pop();
        s.schedule(5, NO_KEY, ());
    }
}
