//! What a lane reports about itself, as an interface the batcher owns.
//!
//! The batcher is a lower layer than the service's metrics: it says *what happened* (a batch
//! ran, items failed for a reason) through [`LaneObserver`], and the application decides how to
//! record it (`crate::metrics` implements it with Prometheus children). A trait rather than a
//! struct of Prometheus handles keeps the batcher free of the metrics library and lets its
//! tests count events directly; the cost is one dynamic call per event, a few per batch.

use std::sync::Arc;
use std::time::Duration;

/// Why a batcher item did not produce a result; the discriminant is its index in [`Self::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// Rejected at admission: the queue was full or the submission larger than the queue.
    Overloaded = 0,
    /// Its deadline passed while it waited.
    Timeout = 1,
    /// Its caller went away before the result was delivered.
    Dropped = 2,
    /// The model failed on its batch.
    Backend = 3,
}

impl FailureReason {
    /// Every reason, in label order (observers pre-create one series per reason).
    pub const ALL: [FailureReason; 4] = [
        FailureReason::Overloaded,
        FailureReason::Timeout,
        FailureReason::Dropped,
        FailureReason::Backend,
    ];

    /// The reason's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Overloaded => "overloaded",
            FailureReason::Timeout => "timeout",
            FailureReason::Dropped => "dropped",
            FailureReason::Backend => "backend",
        }
    }
}

/// Receives a lane's events; called from submitters and worker threads, so it must be cheap
/// and never block on the lane.
pub trait LaneObserver: Send + Sync {
    /// The number of items waiting changed to `depth`.
    fn queue_depth(&self, depth: usize);
    /// A batch of `queue_waits.len()` items is about to run; each waited that long in the queue.
    fn batch_started(&self, queue_waits: &[Duration]);
    /// The batch that started last on this worker ran for `inference`.
    fn batch_finished(&self, inference: Duration);
    /// `n` items got no result for `reason` (`n` may be zero).
    fn items_failed(&self, reason: FailureReason, n: usize);
    /// A worker's model instance is being rebuilt after a panic.
    fn worker_restarted(&self);
    /// Whether the lane has at least one instance able to run a batch.
    fn lane_ready(&self, ready: bool);
    /// The most items per batch now in force (`max_batch_size`, or a learned cap).
    fn batch_cap(&self, cap: usize);
}

/// Shares one observer between a lane and its owner (e.g. a test that reads the counts).
impl<T: LaneObserver + ?Sized> LaneObserver for Arc<T> {
    fn queue_depth(&self, depth: usize) {
        (**self).queue_depth(depth);
    }
    fn batch_started(&self, queue_waits: &[Duration]) {
        (**self).batch_started(queue_waits);
    }
    fn batch_finished(&self, inference: Duration) {
        (**self).batch_finished(inference);
    }
    fn items_failed(&self, reason: FailureReason, n: usize) {
        (**self).items_failed(reason, n);
    }
    fn worker_restarted(&self) {
        (**self).worker_restarted();
    }
    fn lane_ready(&self, ready: bool) {
        (**self).lane_ready(ready);
    }
    fn batch_cap(&self, cap: usize) {
        (**self).batch_cap(cap);
    }
}
