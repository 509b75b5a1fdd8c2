//! The cap rule on given curves, and learning on a model with a known curve.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::batcher::{BackendError, BatchModel, LaneConfig, ModelFactory};

fn curve(points: &[(usize, f64)]) -> Vec<CurvePoint> {
    points
        .iter()
        .map(|&(batch_size, items_per_s)| CurvePoint {
            batch_size,
            items_per_s,
        })
        .collect()
}

#[test]
fn rising_curve_caps_at_the_top() {
    let c = curve(&[(1, 10.0), (2, 19.0), (4, 35.0), (8, 60.0), (16, 100.0)]);
    assert_eq!(choose_cap(&c), Some(16));
}

#[test]
fn peaked_curve_caps_at_the_peak() {
    // The 2-core ViT-S/16 curve of benches/README.md section 1.
    let c = curve(&[
        (1, 21.2),
        (2, 23.6),
        (4, 24.5),
        (8, 24.0),
        (16, 22.9),
        (32, 22.2),
    ]);
    // 2 gives 96 % of the best (below the line), 4 is the best: the 64-caller batches of ~28
    // would run at 22-23 images/s instead.
    assert_eq!(choose_cap(&c), Some(4));
}

#[test]
fn flat_curve_caps_at_the_smallest_size() {
    let c = curve(&[(1, 50.0), (2, 50.5), (4, 49.8), (8, 50.2)]);
    assert_eq!(choose_cap(&c), Some(1));
}

#[test]
fn noisy_curve_takes_the_smallest_size_within_three_percent() {
    // Best 100 at 16; 8 at 97.5 is within 3 %, 4 at 96 is not.
    let c = curve(&[
        (1, 40.0),
        (2, 70.0),
        (4, 96.0),
        (8, 97.5),
        (16, 100.0),
        (32, 91.0),
    ]);
    assert_eq!(choose_cap(&c), Some(8));
}

#[test]
fn empty_curve_has_no_cap() {
    assert_eq!(choose_cap(&[]), None);
}

#[test]
fn trial_sizes_double_up_to_the_configured_size() {
    assert_eq!(trial_sizes(1), vec![1]);
    assert_eq!(trial_sizes(8), vec![1, 2, 4, 8]);
    assert_eq!(trial_sizes(12), vec![1, 2, 4, 8, 12]);
}

/// Takes as long per batch as its curve says (items / rate), and records the batch sizes.
struct Paced {
    seen: Arc<Mutex<Vec<usize>>>,
}

impl crate::batcher::Batchable for u8 {}

impl BatchModel for Paced {
    type Input = u8;
    type Output = ();

    fn run(&mut self, batch: &[u8]) -> Result<Vec<()>, BackendError> {
        let n = batch.len();
        self.seen.lock().unwrap().push(n);
        // Items per second: rises to a peak at 4, collapses at 8 and beyond.
        let rate = match n {
            1 => 100.0,
            2 => 180.0,
            4 => 300.0,
            _ => 100.0,
        };
        std::thread::sleep(Duration::from_secs_f64(n as f64 / rate));
        Ok(vec![(); n])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learning_measures_until_the_fall_and_caps_at_the_peak() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let factory: ModelFactory<u8, ()> =
        Arc::new(move |_| Ok(Box::new(Paced { seen: s.clone() }) as _));
    let config = LaneConfig {
        max_batch_size: 32,
        max_queue_delay: Duration::from_millis(2),
        queue_capacity: 100,
        priority_levels: 1,
        instances: 1,
    };
    let lane = Batcher::start("paced", config, factory, NoObserver).unwrap();
    let budget = LearnBudget {
        min_runs: 2,
        min_time: Duration::from_millis(40),
        ..LearnBudget::default()
    };
    let learned = lane.learn_cap(|| 0u8, &budget).await.unwrap();
    let sizes: Vec<usize> = learned.iter().map(|p| p.batch_size).collect();
    assert_eq!(
        sizes,
        vec![1, 2, 4, 8],
        "stops once the rate fell below 90 %"
    );
    assert!(learned.iter().all(|p| p.items_per_s > 0.0));
    assert_eq!(lane.batch_cap(), 4);
    assert_eq!(choose_cap(&learned), Some(4));
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().all(|n| [1, 2, 4, 8].contains(n)), "{seen:?}");
    lane.shutdown();
}

/// Ignores every event.
struct NoObserver;

impl crate::batcher::LaneObserver for NoObserver {
    fn queue_depth(&self, _: usize) {}
    fn batch_started(&self, _: &[Duration]) {}
    fn batch_finished(&self, _: Duration) {}
    fn items_failed(&self, _: crate::batcher::FailureReason, _: usize) {}
    fn worker_restarted(&self) {}
    fn lane_ready(&self, _: bool) {}
    fn batch_cap(&self, _: usize) {}
}
