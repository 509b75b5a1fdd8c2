//! Batch formation on a fake model: size cap, delay, priorities, shape keys, deadlines,
//! disconnects, admission control and panic isolation.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// Counts every event a lane reports, for assertions on the observer interface.
#[derive(Default)]
struct Counts {
    batches_started: AtomicUsize,
    batches_finished: AtomicUsize,
    items: AtomicUsize,
    failed: [AtomicUsize; 4],
    restarts: AtomicUsize,
    depth: AtomicUsize,
    ready: AtomicBool,
    cap: AtomicUsize,
}

impl Counts {
    fn failed(&self, reason: FailureReason) -> usize {
        self.failed[reason as usize].load(Ordering::SeqCst)
    }
}

impl LaneObserver for Counts {
    fn queue_depth(&self, depth: usize) {
        self.depth.store(depth, Ordering::SeqCst);
    }
    fn batch_started(&self, queue_waits: &[Duration]) {
        self.batches_started.fetch_add(1, Ordering::SeqCst);
        self.items.fetch_add(queue_waits.len(), Ordering::SeqCst);
    }
    fn batch_finished(&self, _inference: Duration) {
        self.batches_finished.fetch_add(1, Ordering::SeqCst);
    }
    fn items_failed(&self, reason: FailureReason, n: usize) {
        self.failed[reason as usize].fetch_add(n, Ordering::SeqCst);
    }
    fn worker_restarted(&self) {
        self.restarts.fetch_add(1, Ordering::SeqCst);
    }
    fn lane_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
    fn batch_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::SeqCst);
    }
}

/// A test item: a value and a batch key.
#[derive(Debug, Clone, Copy)]
struct Item(u32, u64);

impl Batchable for Item {
    fn batch_key(&self) -> u64 {
        self.1
    }
}

const GATE: u32 = 1000;
const PANIC: u32 = 666;

/// Records every batch it runs; blocks on `GATE` items until released; panics on `PANIC`.
struct Fake {
    log: Arc<Mutex<Vec<Vec<u32>>>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl BatchModel for Fake {
    type Input = Item;
    type Output = u32;

    fn run(&mut self, batch: &[Item]) -> Result<Vec<u32>, BackendError> {
        let values: Vec<u32> = batch.iter().map(|i| i.0).collect();
        self.log.lock().unwrap().push(values.clone());
        if values.contains(&GATE) {
            let (lock, cv) = &*self.gate;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
        }
        if values.contains(&PANIC) {
            panic!("injected fault");
        }
        Ok(values.iter().map(|v| v * 2).collect())
    }
}

struct Harness {
    batcher: Batcher<Item, u32>,
    log: Arc<Mutex<Vec<Vec<u32>>>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    counts: Arc<Counts>,
}

impl Harness {
    fn new(max_batch_size: usize, delay_ms: u64, capacity: usize) -> Self {
        Self::with_instances(max_batch_size, delay_ms, capacity, 1)
    }

    fn with_instances(
        max_batch_size: usize,
        delay_ms: u64,
        capacity: usize,
        instances: usize,
    ) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let counts = Arc::new(Counts::default());
        let (l, g) = (log.clone(), gate.clone());
        let factory: ModelFactory<Item, u32> = Arc::new(move |_| {
            Ok(Box::new(Fake {
                log: l.clone(),
                gate: g.clone(),
            }) as _)
        });
        let config = LaneConfig {
            max_batch_size,
            max_queue_delay: Duration::from_millis(delay_ms),
            queue_capacity: capacity,
            priority_levels: 3,
            instances,
        };
        let batcher = Batcher::start("fake", config, factory, counts.clone()).unwrap();
        Self {
            batcher,
            log,
            gate,
            counts,
        }
    }

    fn submit(&self, values: &[u32], priority: u8) -> Vec<Ticket<u32>> {
        self.submit_with(values, priority, Duration::from_secs(30))
    }

    fn submit_with(&self, values: &[u32], priority: u8, timeout: Duration) -> Vec<Ticket<u32>> {
        let items = values.iter().map(|&v| Item(v, 0)).collect();
        self.batcher
            .submit(
                items,
                SubmitOptions {
                    priority,
                    deadline: Instant::now() + timeout,
                },
            )
            .unwrap()
    }

    fn open_gate(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }

    /// Waits until the model has started `n` batches.
    fn wait_batches(&self, n: usize) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.log.lock().unwrap().len() < n {
            assert!(Instant::now() < until, "model never ran {n} batches");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn batches(&self) -> Vec<Vec<u32>> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self, counter: impl Fn(&Counts) -> &AtomicUsize) -> usize {
        counter(&self.counts).load(Ordering::SeqCst)
    }
}

fn wait<O>(t: Ticket<O>) -> Result<Completed<O>, BatchError> {
    t.blocking_recv().expect("ticket dropped")
}

#[test]
fn size_cap_splits_a_large_submission_in_order() {
    let h = Harness::new(4, 0, 100);
    // Hold the worker so that all ten items are queued before formation.
    let gate = h.submit(&[GATE], 0);
    h.wait_batches(1);
    let tickets = h.submit(&(0..10).collect::<Vec<_>>(), 1);
    h.open_gate();
    let outs: Vec<u32> = tickets
        .into_iter()
        .map(|t| wait(t).unwrap().output)
        .collect();
    assert_eq!(outs, (0..10).map(|v| v * 2).collect::<Vec<_>>());
    wait(gate.into_iter().next().unwrap()).unwrap();
    assert_eq!(
        h.batches(),
        vec![vec![GATE], vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
    );
    assert_eq!(h.count(|c| &c.batches_started), 4);
    assert_eq!(h.count(|c| &c.items), 11);
    assert_eq!(h.count(|c| &c.depth), 0);
}

#[test]
fn queue_delay_waits_for_a_fuller_batch() {
    // 300 ms of delay: items submitted 20 ms apart leave together.
    let h = Harness::new(8, 300, 100);
    let a = h.submit(&[1], 1);
    std::thread::sleep(Duration::from_millis(20));
    let b = h.submit(&[2, 3], 1);
    let done = wait(a.into_iter().next().unwrap()).unwrap();
    assert_eq!(done.batch_size, 3);
    for t in b {
        assert_eq!(wait(t).unwrap().batch_size, 3);
    }
    assert_eq!(h.batches(), vec![vec![1, 2, 3]]);
}

#[test]
fn full_batch_leaves_without_waiting_for_the_delay() {
    let h = Harness::new(2, 60_000, 100);
    let started = Instant::now();
    let tickets = h.submit(&[1, 2], 1);
    for t in tickets {
        assert_eq!(wait(t).unwrap().batch_size, 2);
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn higher_priority_is_served_first_fifo_within_level() {
    let h = Harness::new(1, 0, 100);
    let gate = h.submit(&[GATE], 0);
    h.wait_batches(1);
    let low = h.submit(&[30, 31], 2);
    let normal = h.submit(&[20], 1);
    let high = h.submit(&[10, 11], 0);
    h.open_gate();
    for t in gate.into_iter().chain(low).chain(normal).chain(high) {
        wait(t).unwrap();
    }
    assert_eq!(
        h.batches(),
        vec![vec![GATE], vec![10], vec![11], vec![20], vec![30], vec![31]]
    );
}

#[test]
fn different_keys_form_separate_batches() {
    let h = Harness::new(8, 0, 100);
    let gate = h.submit(&[GATE], 0);
    h.wait_batches(1);
    let opts = SubmitOptions {
        priority: 1,
        deadline: Instant::now() + Duration::from_secs(30),
    };
    let tickets = h
        .batcher
        .submit(vec![Item(1, 7), Item(2, 9), Item(3, 7), Item(4, 9)], opts)
        .unwrap();
    h.open_gate();
    let outs: Vec<u32> = tickets
        .into_iter()
        .map(|t| wait(t).unwrap().output)
        .collect();
    assert_eq!(outs, vec![2, 4, 6, 8]);
    wait(gate.into_iter().next().unwrap()).unwrap();
    assert_eq!(h.batches(), vec![vec![GATE], vec![1, 3], vec![2, 4]]);
}

#[test]
fn expired_items_never_reach_the_model() {
    let h = Harness::new(8, 0, 100);
    let gate = h.submit(&[GATE], 0);
    h.wait_batches(1);
    let late = h.submit_with(&[5], 1, Duration::from_millis(1));
    let fine = h.submit(&[6], 1);
    std::thread::sleep(Duration::from_millis(20));
    h.open_gate();
    assert!(matches!(
        wait(late.into_iter().next().unwrap()),
        Err(BatchError::Timeout { .. })
    ));
    assert_eq!(wait(fine.into_iter().next().unwrap()).unwrap().output, 12);
    wait(gate.into_iter().next().unwrap()).unwrap();
    assert_eq!(h.batches(), vec![vec![GATE], vec![6]]);
    assert_eq!(h.counts.failed(FailureReason::Timeout), 1);
    assert_eq!(
        h.count(|c| &c.items),
        2,
        "the expired item never counts as run"
    );
}

#[test]
fn abandoned_items_are_dropped_and_counted() {
    let h = Harness::new(8, 0, 100);
    let gate = h.submit(&[GATE], 0);
    h.wait_batches(1);
    drop(h.submit(&[7], 1));
    let kept = h.submit(&[8], 1);
    h.open_gate();
    assert_eq!(wait(kept.into_iter().next().unwrap()).unwrap().output, 16);
    wait(gate.into_iter().next().unwrap()).unwrap();
    assert_eq!(h.batches(), vec![vec![GATE], vec![8]]);
    assert_eq!(h.counts.failed(FailureReason::Dropped), 1);
}

#[test]
fn full_queue_rejects_whole_submission_and_keeps_accepted_work() {
    let h = Harness::new(8, 0, 3);
    let gate = h.submit(&[GATE], 0);
    h.wait_batches(1);
    let accepted = h.submit(&[1, 2], 1);
    let refused = h.batcher.submit(
        vec![Item(3, 0), Item(4, 0)],
        SubmitOptions {
            priority: 1,
            deadline: Instant::now() + Duration::from_secs(30),
        },
    );
    assert!(matches!(
        refused,
        Err(BatchError::Overloaded { capacity: 3, .. })
    ));
    h.open_gate();
    let outs: Vec<u32> = accepted
        .into_iter()
        .map(|t| wait(t).unwrap().output)
        .collect();
    assert_eq!(outs, vec![2, 4]);
    wait(gate.into_iter().next().unwrap()).unwrap();
    assert_eq!(h.counts.failed(FailureReason::Overloaded), 2);
    assert_eq!(h.counts.failed(FailureReason::Backend), 0);
}

#[test]
fn panic_fails_only_its_batch_and_the_worker_is_rebuilt() {
    let h = Harness::new(8, 0, 100);
    let bad = h.submit(&[PANIC, 1], 1);
    for t in bad {
        assert!(matches!(wait(t), Err(BatchError::Backend { .. })));
    }
    let good = h.submit(&[2], 1);
    assert_eq!(wait(good.into_iter().next().unwrap()).unwrap().output, 4);
    assert_eq!(h.count(|c| &c.restarts), 1);
    assert_eq!(h.counts.failed(FailureReason::Backend), 2);
    assert!(
        h.counts.ready.load(Ordering::SeqCst),
        "the rebuilt lane is ready again"
    );
    assert_eq!(h.count(|c| &c.batches_finished), 2);
}

#[test]
fn many_threads_each_get_their_own_result_in_shared_batches() {
    let h = Arc::new(Harness::new(16, 20, 1000));
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..10u32 {
                    let v = t * 100 + i;
                    let out = wait(h.submit(&[v], 1).into_iter().next().unwrap()).unwrap();
                    assert_eq!(out.output, v * 2);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let batches = h.batches();
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 80);
    assert!(
        batches.iter().any(|b| b.len() > 1),
        "no batch merged callers: {batches:?}"
    );
}

#[test]
fn shutdown_fails_queued_items() {
    let h = Harness::new(8, 0, 100);
    let gate = h.submit(&[GATE], 0);
    h.wait_batches(1);
    let queued = h.submit(&[1], 1);
    let b = h.batcher.clone();
    let stopper = std::thread::spawn(move || b.shutdown());
    std::thread::sleep(Duration::from_millis(20));
    h.open_gate();
    stopper.join().unwrap();
    assert!(matches!(
        wait(queued.into_iter().next().unwrap()),
        Err(BatchError::ShuttingDown { .. })
    ));
    assert!(wait(gate.into_iter().next().unwrap()).is_ok());
}

#[test]
fn a_second_instance_serves_while_the_first_is_busy() {
    let h = Harness::with_instances(8, 0, 100, 2);
    let gate = h.submit(&[GATE], 0);
    h.wait_batches(1);
    // Instance 0 is blocked inside the model; instance 1 takes this batch.
    let other = h.submit(&[4], 1);
    assert_eq!(wait(other.into_iter().next().unwrap()).unwrap().output, 8);
    h.open_gate();
    wait(gate.into_iter().next().unwrap()).unwrap();
    assert_eq!(h.batches(), vec![vec![GATE], vec![4]]);
}

#[test]
fn draining_releases_a_waiting_batch_at_once() {
    // A 60 s batch delay: without the drain release the two items would wait for company.
    let h = Harness::new(8, 60_000, 64);
    h.open_gate();
    let tickets = h.submit(&[1, 2], 1);
    std::thread::sleep(Duration::from_millis(50));
    assert!(h.batches().is_empty(), "the batch waits for its delay");
    let started = Instant::now();
    h.batcher.release_without_delay();
    for t in tickets {
        assert!(wait(t).is_ok());
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(h.batches(), vec![vec![1, 2]]);
}

#[test]
fn batches_never_exceed_the_cap_under_load() {
    let h = Arc::new(Harness::new(16, 5, 1000));
    h.open_gate();
    h.batcher.set_batch_cap(3);
    assert_eq!(h.batcher.batch_cap(), 3);
    assert_eq!(h.count(|c| &c.cap), 3);
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                let values: Vec<u32> = (0..5).map(|i| t * 100 + i).collect();
                for t in h.submit(&values, 1) {
                    wait(t).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let batches = h.batches();
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 40);
    assert!(batches.iter().all(|b| b.len() <= 3), "{batches:?}");
    assert!(batches.iter().any(|b| b.len() == 3), "{batches:?}");
}

#[test]
fn a_cap_is_clamped_to_the_configured_size() {
    let h = Harness::new(8, 0, 100);
    assert_eq!(
        h.count(|c| &c.cap),
        8,
        "the configured size is in force at start"
    );
    h.batcher.set_batch_cap(100);
    assert_eq!(h.batcher.batch_cap(), 8);
    h.batcher.set_batch_cap(0);
    assert_eq!(h.batcher.batch_cap(), 1);
}
