//! Per-model families: the batcher lanes (queue, batches, failures, readiness) and the
//! adapters' output checks.

use std::time::Duration;

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::registrar::Registrar;
use super::SECONDS_BUCKETS;
use crate::batcher::{FailureReason, LaneObserver};

const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The lane and model-output families, labelled by model.
pub(super) struct LaneFamilies {
    queue_depth: IntGaugeVec,
    batch_size: HistogramVec,
    items: IntCounterVec,
    batches: IntCounterVec,
    queue_duration: HistogramVec,
    inference_duration: HistogramVec,
    failures: IntCounterVec,
    worker_restarts: IntCounterVec,
    model_ready: IntGaugeVec,
    batch_cap: IntGaugeVec,
    invalid_outputs: IntCounterVec,
    padded_items: IntCounterVec,
}

impl LaneFamilies {
    /// Registers the per-model families (children are created per model, see [`Self::lane`]).
    pub fn register(r: &Registrar<'_>) -> Self {
        Self {
            queue_depth: r.gauges(
                "psr_reward_queue_depth",
                "Items waiting in a model's batcher queue",
                &["model"],
            ),
            batch_size: r.histograms(
                "psr_reward_batch_size",
                "Items per executed model batch",
                &["model"],
                &BATCH_BUCKETS,
            ),
            items: r.counters(
                "psr_reward_inference_items_total",
                "Items that reached the model (divide by batch executions for the mean batch size)",
                &["model"],
            ),
            batches: r.counters(
                "psr_reward_batch_executions_total",
                "Model batch executions",
                &["model"],
            ),
            queue_duration: r.histograms(
                "psr_reward_queue_duration_seconds",
                "Time an item waited in the batcher queue",
                &["model"],
                &SECONDS_BUCKETS,
            ),
            inference_duration: r.histograms(
                "psr_reward_inference_duration_seconds",
                "Time of one model batch execution",
                &["model"],
                &SECONDS_BUCKETS,
            ),
            failures: r.counters(
                "psr_reward_batcher_failures_total",
                "Items that got no result, by reason (overloaded, timeout, dropped, backend)",
                &["model", "reason"],
            ),
            worker_restarts: r.counters(
                "psr_reward_worker_restarts_total",
                "Model workers rebuilt after a panic",
                &["model"],
            ),
            model_ready: r.gauges(
                "psr_reward_model_ready",
                "1 when a model has at least one healthy worker",
                &["model"],
            ),
            batch_cap: r.gauges(
                "psr_reward_batch_cap",
                "Most items per model batch in force: max_batch_size, or the cap learned from the measured throughput curve (learn_cap)",
                &["model"],
            ),
            invalid_outputs: r.counters(
                "psr_reward_invalid_model_outputs_total",
                "Model outputs rejected at the adapter boundary (NaN, zero norm, bad shape, absurd boxes), by model and reason",
                &["model", "reason"],
            ),
            padded_items: r.counters(
                "psr_reward_detector_padded_items_total",
                "Detector items run padded into a batch of larger images or longer captions (psr mode pads only models whose padding is marked neutral)",
                &["model"],
            ),
        }
    }

    /// The children of one model's lane, created now so they show at zero before first use.
    pub fn lane(&self, model: &str) -> LaneMetrics {
        let l = [model];
        let fail =
            |reason: FailureReason| self.failures.with_label_values(&[model, reason.as_str()]);
        LaneMetrics {
            queue_depth: self.queue_depth.with_label_values(&l),
            batch_size: self.batch_size.with_label_values(&l),
            items: self.items.with_label_values(&l),
            batches: self.batches.with_label_values(&l),
            queue_duration: self.queue_duration.with_label_values(&l),
            inference_duration: self.inference_duration.with_label_values(&l),
            worker_restarts: self.worker_restarts.with_label_values(&l),
            ready: self.model_ready.with_label_values(&l),
            batch_cap: self.batch_cap.with_label_values(&l),
            failures: FailureReason::ALL.map(fail),
        }
    }

    /// The invalid-output counters of one model, every reason registered at zero.
    pub fn invalid_outputs(&self, model: &str) -> crate::models::InvalidOutputCounter {
        let get = |r: &str| self.invalid_outputs.with_label_values(&[model, r]);
        crate::models::InvalidOutputCounter::new(
            model,
            crate::models::INVALID_OUTPUT_REASONS.map(get),
        )
    }

    /// The padded-item counter of one detector, registered at zero.
    pub fn padded_items(&self, model: &str) -> IntCounter {
        self.padded_items.with_label_values(&[model])
    }
}

/// The per-model children, resolved once so the hot path never looks labels up; the lane's
/// [`LaneObserver`].
#[derive(Clone)]
pub struct LaneMetrics {
    queue_depth: IntGauge,
    batch_size: prometheus::Histogram,
    items: IntCounter,
    batches: IntCounter,
    queue_duration: prometheus::Histogram,
    inference_duration: prometheus::Histogram,
    worker_restarts: IntCounter,
    ready: IntGauge,
    batch_cap: IntGauge,
    /// One counter per [`FailureReason::ALL`], in that order.
    failures: [IntCounter; 4],
}

impl LaneObserver for LaneMetrics {
    fn queue_depth(&self, depth: usize) {
        self.queue_depth.set(depth as i64);
    }

    fn batch_started(&self, queue_waits: &[Duration]) {
        for waited in queue_waits {
            self.queue_duration.observe(waited.as_secs_f64());
        }
        let n = queue_waits.len();
        self.batch_size.observe(n as f64);
        self.items.inc_by(n as u64);
        self.batches.inc();
    }

    fn batch_finished(&self, inference: Duration) {
        self.inference_duration.observe(inference.as_secs_f64());
    }

    fn items_failed(&self, reason: FailureReason, n: usize) {
        self.failures[reason as usize].inc_by(n as u64);
    }

    fn worker_restarted(&self) {
        self.worker_restarts.inc();
    }

    fn lane_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    fn batch_cap(&self, cap: usize) {
        self.batch_cap.set(cap as i64);
    }
}
