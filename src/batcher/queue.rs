//! The priority queue of one model lane: pure data structure, no threads, no clocks of its own.
//!
//! Kept free of synchronisation so that batch formation (size cap, priority order, shape keys,
//! deadline and disconnect purging) is unit-tested directly.

use std::collections::VecDeque;
use std::time::Instant;

use tokio::sync::oneshot;

use super::{BatchError, Completed};

/// One queued work item and the way back to its caller.
pub(crate) struct Entry<I, O> {
    pub input: I,
    /// Items with different keys never share a batch (e.g. different tensor shapes).
    pub key: u64,
    pub enqueued: Instant,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<Completed<O>, BatchError>>,
}

/// What one formation step took out of the queue.
pub(crate) struct Formed<I, O> {
    /// Items for the model, at most `max` of them, in priority-then-FIFO order.
    pub batch: Vec<Entry<I, O>>,
    /// Items whose deadline passed while queued: they must not reach the model.
    pub expired: Vec<Entry<I, O>>,
    /// Items whose caller went away: dropped without inference.
    pub dropped: Vec<Entry<I, O>>,
}

/// Bounded multi-level FIFO queue. Level 0 is served first.
pub(crate) struct Queue<I, O> {
    levels: Vec<VecDeque<Entry<I, O>>>,
    len: usize,
    capacity: usize,
}

impl<I, O> Queue<I, O> {
    pub fn new(levels: u8, capacity: usize) -> Self {
        Self {
            levels: (0..levels.max(1)).map(|_| VecDeque::new()).collect(),
            len: 0,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room for `n` more items? Admission is all-or-nothing per request.
    pub fn has_room(&self, n: usize) -> bool {
        self.len + n <= self.capacity
    }

    /// Appends an entry at `priority` (clamped to the lowest level).
    pub fn push(&mut self, priority: u8, entry: Entry<I, O>) {
        let level = usize::from(priority).min(self.levels.len() - 1);
        self.levels[level].push_back(entry);
        self.len += 1;
    }

    /// Removes the items whose caller went away and returns how many there were.
    pub fn remove_abandoned(&mut self) -> usize {
        let before = self.len;
        for level in &mut self.levels {
            level.retain(|e| !e.reply.is_closed());
        }
        self.len = self.levels.iter().map(VecDeque::len).sum();
        before - self.len
    }

    /// Enqueue time of the oldest waiting item: the batch-delay clock starts there (Triton).
    pub fn oldest(&self) -> Option<Instant> {
        self.levels
            .iter()
            .filter_map(|l| l.front().map(|e| e.enqueued))
            .min()
    }

    /// Key of the item that will lead the next batch.
    fn head_key(&self) -> Option<u64> {
        self.levels.iter().find_map(|l| l.front()).map(|e| e.key)
    }

    /// How many items could join the next batch, up to `max`.
    pub fn ready_count(&self, max: usize) -> usize {
        let Some(key) = self.head_key() else {
            return 0;
        };
        self.levels
            .iter()
            .flat_map(|l| l.iter())
            .filter(|e| e.key == key)
            .take(max)
            .count()
    }

    /// Takes the next batch: the head item's key decides which items may join; higher levels
    /// first, FIFO within a level. Expired and abandoned items met on the way are taken out too.
    pub fn take_batch(&mut self, max: usize, now: Instant) -> Formed<I, O> {
        let mut formed = Formed {
            batch: Vec::with_capacity(max.min(self.len)),
            expired: Vec::new(),
            dropped: Vec::new(),
        };
        let mut key = None;
        for level in &mut self.levels {
            let mut i = 0;
            while i < level.len() && formed.batch.len() < max {
                let entry = &level[i];
                let stale = entry.deadline <= now;
                let gone = entry.reply.is_closed();
                let joins = key.is_none_or(|k| k == entry.key);
                if !(stale || gone || joins) {
                    i += 1;
                    continue;
                }
                let Some(entry) = level.remove(i) else { break };
                if stale {
                    formed.expired.push(entry);
                } else if gone {
                    formed.dropped.push(entry);
                } else {
                    key = Some(entry.key);
                    formed.batch.push(entry);
                }
            }
        }
        self.len -= formed.batch.len() + formed.expired.len() + formed.dropped.len();
        formed
    }

    /// Removes everything (shutdown).
    pub fn drain(&mut self) -> Vec<Entry<I, O>> {
        self.len = 0;
        self.levels.iter_mut().flat_map(|l| l.drain(..)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    type Rx = oneshot::Receiver<Result<Completed<u32>, BatchError>>;

    fn entry(input: u32, key: u64, deadline_ms: u64, t0: Instant) -> (Entry<u32, u32>, Rx) {
        let (reply, rx) = oneshot::channel();
        let e = Entry {
            input,
            key,
            enqueued: t0,
            deadline: t0 + Duration::from_millis(deadline_ms),
            reply,
        };
        (e, rx)
    }

    fn inputs(batch: &[Entry<u32, u32>]) -> Vec<u32> {
        batch.iter().map(|e| e.input).collect()
    }

    #[test]
    fn size_cap_and_fifo() {
        let t0 = Instant::now();
        let mut q = Queue::new(1, 100);
        let mut keep = Vec::new();
        for i in 0..5 {
            let (e, rx) = entry(i, 0, 1000, t0);
            keep.push(rx);
            q.push(0, e);
        }
        let f = q.take_batch(3, t0);
        assert_eq!(inputs(&f.batch), vec![0, 1, 2]);
        assert_eq!(q.len(), 2);
        let f = q.take_batch(3, t0);
        assert_eq!(inputs(&f.batch), vec![3, 4]);
        assert!(q.is_empty());
    }

    #[test]
    fn priority_levels_served_first_fifo_within() {
        let t0 = Instant::now();
        let mut q = Queue::new(3, 100);
        let mut keep = Vec::new();
        for (input, prio) in [(10, 2), (11, 1), (12, 0), (13, 1), (14, 0)] {
            let (e, rx) = entry(input, 0, 1000, t0);
            keep.push(rx);
            q.push(prio, e);
        }
        let f = q.take_batch(10, t0);
        assert_eq!(inputs(&f.batch), vec![12, 14, 11, 13, 10]);
    }

    #[test]
    fn different_keys_never_mix() {
        let t0 = Instant::now();
        let mut q = Queue::new(1, 100);
        let mut keep = Vec::new();
        for (input, key) in [(0, 7), (1, 8), (2, 7), (3, 8)] {
            let (e, rx) = entry(input, key, 1000, t0);
            keep.push(rx);
            q.push(0, e);
        }
        assert_eq!(q.ready_count(10), 2);
        assert_eq!(inputs(&q.take_batch(10, t0).batch), vec![0, 2]);
        assert_eq!(inputs(&q.take_batch(10, t0).batch), vec![1, 3]);
    }

    #[test]
    fn expired_and_abandoned_items_are_purged_not_batched() {
        let t0 = Instant::now();
        let mut q = Queue::new(1, 100);
        let (a, _ra) = entry(0, 0, 5, t0);
        let (b, rb) = entry(1, 0, 1000, t0);
        let (c, _rc) = entry(2, 0, 1000, t0);
        q.push(0, a);
        q.push(0, b);
        q.push(0, c);
        drop(rb);
        let f = q.take_batch(10, t0 + Duration::from_millis(10));
        assert_eq!(inputs(&f.batch), vec![2]);
        assert_eq!(inputs(&f.expired), vec![0]);
        assert_eq!(inputs(&f.dropped), vec![1]);
        assert!(q.is_empty());
    }

    #[test]
    fn capacity_is_all_or_nothing() {
        let t0 = Instant::now();
        let mut q = Queue::new(1, 3);
        let (e, _r) = entry(0, 0, 1000, t0);
        q.push(0, e);
        assert!(q.has_room(2));
        assert!(!q.has_room(3));
    }

    #[test]
    fn oldest_spans_levels() {
        let t0 = Instant::now();
        let mut q = Queue::new(2, 10);
        let (mut late, _r1) = entry(0, 0, 1000, t0);
        late.enqueued = t0 + Duration::from_millis(5);
        let (early, _r2) = entry(1, 0, 1000, t0);
        q.push(0, late);
        q.push(1, early);
        assert_eq!(q.oldest(), Some(t0));
    }
}
