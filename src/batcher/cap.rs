//! A batch-size cap learned from the model's measured throughput curve.
//!
//! Larger batches are not always faster per item: on a few CPU cores a ViT's throughput peaks
//! at a middle batch size and then falls (caches overflow), so a lane that forms the largest
//! batch the queue allows loses throughput under load. At start-up a lane can time its real
//! model on batches of 1, 2, 4, ... items and cap its batches at the size that already gives
//! (nearly) the best rate. On a GPU the curve keeps rising and the cap stays at the top.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{BatchError, Batchable, Batcher, SubmitOptions};

/// The cap is the smallest batch whose rate is at least this share of the best rate: a
/// smaller batch at (almost) the same rate waits less for company and keeps latency down.
pub const CAP_SHARE: f64 = 0.97;

/// One point of the throughput curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    pub batch_size: usize,
    /// Items per second of model run time at this batch size.
    pub items_per_s: f64,
}

/// How long the measurement may take.
#[derive(Debug, Clone, Copy)]
pub struct LearnBudget {
    /// Each size runs at least this often...
    pub min_runs: u32,
    /// ...and for at least this much model time, so one noisy run does not decide.
    pub min_time: Duration,
    /// A single run slower than this ends the curve (larger sizes would only be slower).
    pub max_run: Duration,
    /// Once past the peak, a rate below this share of the best ends the curve.
    pub fall_off: f64,
}

impl Default for LearnBudget {
    fn default() -> Self {
        Self {
            min_runs: 2,
            min_time: Duration::from_millis(150),
            max_run: Duration::from_secs(2),
            fall_off: 0.9,
        }
    }
}

/// The cap for `curve`: the smallest measured batch size whose rate is at least
/// [`CAP_SHARE`] of the best measured rate; `None` for an empty curve.
pub fn choose_cap(curve: &[CurvePoint]) -> Option<usize> {
    let best = curve.iter().map(|p| p.items_per_s).fold(f64::NAN, f64::max);
    curve
        .iter()
        .filter(|p| p.items_per_s >= CAP_SHARE * best)
        .map(|p| p.batch_size)
        .min()
}

/// The sizes to try: powers of two below `max`, then `max` itself.
pub fn trial_sizes(max: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> = std::iter::successors(Some(1usize), |s| s.checked_mul(2))
        .take_while(|&s| s < max)
        .collect();
    sizes.push(max.max(1));
    sizes
}

/// What timing one size gave.
struct Timed {
    point: CurvePoint,
    slowest_run: Duration,
}

impl<I: Batchable + Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Measures the throughput curve through the lane's own workers on batches of `sample()`
    /// items and caps the lane's batches by [`choose_cap`]. Call before the lane takes
    /// traffic (other items in a batch would spoil its timing).
    ///
    /// The batches go through the real queue and worker rather than a separate instance, so
    /// they time exactly what serves requests (gather, model, output checks); each point uses
    /// the batch's own run time, which excludes any `max_queue_delay` wait.
    pub async fn learn_cap(
        &self,
        sample: impl Fn() -> I,
        budget: &LearnBudget,
    ) -> Result<Vec<CurvePoint>, BatchError> {
        self.set_batch_cap(self.max_batch_size());
        let mut curve: Vec<CurvePoint> = Vec::new();
        for size in trial_sizes(self.max_batch_size()) {
            let Some(timed) = self.time_size(size, &sample, budget).await? else {
                break;
            };
            curve.push(timed.point);
            let best = curve.iter().map(|p| p.items_per_s).fold(0.0, f64::max);
            if timed.slowest_run > budget.max_run
                || timed.point.items_per_s < budget.fall_off * best
            {
                break;
            }
        }
        if let Some(cap) = choose_cap(&curve) {
            self.set_batch_cap(cap);
        }
        Ok(curve)
    }

    /// Runs batches of `size` until the budget's runs and time are spent; `None` when no run
    /// came back as one batch of exactly `size` items.
    async fn time_size(
        &self,
        size: usize,
        sample: &impl Fn() -> I,
        budget: &LearnBudget,
    ) -> Result<Option<Timed>, BatchError> {
        let (mut runs, mut attempts) = (0u32, 0u32);
        let (mut total, mut slowest) = (Duration::ZERO, Duration::ZERO);
        while (runs < budget.min_runs || total < budget.min_time) && attempts < 4 * budget.min_runs
        {
            attempts += 1;
            if let Some(run) = self.run_once(size, sample).await? {
                runs += 1;
                total += run;
                slowest = slowest.max(run);
                if run > budget.max_run {
                    break;
                }
            }
        }
        if runs == 0 || total.is_zero() {
            return Ok(None);
        }
        let items_per_s = (size as f64 * f64::from(runs)) / total.as_secs_f64();
        Ok(Some(Timed {
            point: CurvePoint {
                batch_size: size,
                items_per_s,
            },
            slowest_run: slowest,
        }))
    }

    /// Submits one batch of `size` sample items; its run time when it ran as one batch of
    /// exactly that size.
    async fn run_once(
        &self,
        size: usize,
        sample: &impl Fn() -> I,
    ) -> Result<Option<Duration>, BatchError> {
        let options = SubmitOptions {
            priority: 0,
            deadline: Instant::now() + Duration::from_secs(600),
        };
        let tickets = self.submit((0..size).map(|_| sample()).collect(), options)?;
        let (mut whole, mut run) = (true, Duration::ZERO);
        for ticket in tickets {
            let done = ticket.await.map_err(|_| BatchError::ShuttingDown {
                model: self.name().to_string(),
            })??;
            whole &= done.batch_size == size;
            run = run.max(done.inference_time);
        }
        Ok(whole.then_some(run))
    }
}

#[cfg(test)]
#[path = "cap_tests.rs"]
mod tests;
