//! Cross-caller dynamic batching: one lane per model.
//!
//! Callers submit work items (an image tensor, a crop, an (image, caption) pair) and await their
//! own result; the lane merges items from every caller into model batches. Semantics follow
//! Triton's dynamic batcher (size cap, `max_queue_delay` measured from the oldest waiting item,
//! priority levels with FIFO inside a level, bounded queue) with TEI's all-or-nothing admission
//! (a full queue rejects at once instead of queueing without bound).
//!
//! Batches are formed by the model workers themselves at the moment one becomes free: under load
//! everything that arrived while the model was busy leaves in the next batch, which is the
//! largest batch the queue can give. Items are fully preprocessed before they are queued, so
//! forming a batch is only moving entries and the gather into the model's input buffer, the
//! work TEI's prefetch hides. With several instances, one worker forms the next batch while
//! the others run theirs.

mod cap;
mod observer;
mod queue;
mod worker;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use queue::{Entry, Queue};

pub use cap::{choose_cap, trial_sizes, CurvePoint, LearnBudget, CAP_SHARE};
pub use observer::{FailureReason, LaneObserver};
pub use worker::ModelFactory;

/// A model as the batcher sees it: a batch of inputs in, one output per input out.
pub trait BatchModel: Send {
    /// One preprocessed work item.
    type Input: Batchable + Send + 'static;
    /// The result of one item.
    type Output: Send + 'static;
    /// Runs one batch. Must return exactly one output per input, in order.
    fn run(&mut self, batch: &[Self::Input]) -> Result<Vec<Self::Output>, BackendError>;
}

/// Items that can only share a batch with items of the same key (e.g. the same tensor shape).
pub trait Batchable {
    /// Equal keys may be batched together; models that pad (masks) return a constant.
    fn batch_key(&self) -> u64 {
        0
    }
}

/// A failure inside a model run; fails only the batch it happened in.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// Why an item got no result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    /// The lane's queue is full; retry later.
    #[error("model `{model}` queue is full ({capacity} items); retry later")]
    Overloaded {
        model: String,
        capacity: usize,
        retry_after: Duration,
    },
    /// One submission holds more items than the queue ever can; splitting it is the only fix.
    #[error("{items} items for model `{model}` exceed its queue capacity of {capacity}")]
    TooLarge {
        model: String,
        items: usize,
        capacity: usize,
    },
    /// The item's deadline passed before it reached the model.
    #[error("deadline passed while queued for model `{model}`")]
    Timeout { model: String },
    /// The model failed on the batch holding this item.
    #[error("model `{model}` failed: {source}")]
    Backend { model: String, source: BackendError },
    /// The lane is shutting down.
    #[error("model `{model}` is shutting down")]
    ShuttingDown { model: String },
}

/// A result with the times it spent in the lane.
#[derive(Debug)]
pub struct Completed<O> {
    pub output: O,
    pub queue_time: Duration,
    pub inference_time: Duration,
    pub batch_size: usize,
}

/// Tunables of one lane.
#[derive(Debug, Clone)]
pub struct LaneConfig {
    /// Most items per model batch.
    pub max_batch_size: usize,
    /// How long the oldest item may wait for a fuller batch (zero = greedy).
    pub max_queue_delay: Duration,
    /// Most items waiting; beyond it submissions are rejected with [`BatchError::Overloaded`].
    pub queue_capacity: usize,
    /// Number of priority levels (0 is served first).
    pub priority_levels: u8,
    /// Worker threads, each owning one model instance.
    pub instances: usize,
}

/// How one submission is queued.
#[derive(Debug, Clone, Copy)]
pub struct SubmitOptions {
    pub priority: u8,
    pub deadline: Instant,
}

/// The awaitable result of one submitted item.
pub type Ticket<O> = oneshot::Receiver<Result<Completed<O>, BatchError>>;

/// How long the slowest item of a submission queued, and how long its batch ran.
#[derive(Debug, Default, Clone, Copy)]
pub struct WaitTimes {
    pub queue: Duration,
    pub inference: Duration,
}

/// Why awaiting a submission failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AwaitError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("the deadline passed before every item completed")]
    Deadline,
    #[error("the model lane closed an item without answering")]
    Closed,
}

/// Awaits every ticket of a submission until `deadline`. The first failed item fails the
/// whole submission (its siblings' results would be incomplete).
pub async fn await_all<O>(
    tickets: Vec<Ticket<O>>,
    deadline: Instant,
) -> Result<(Vec<O>, WaitTimes), AwaitError> {
    let all = async {
        let mut out = Vec::with_capacity(tickets.len());
        let mut times = WaitTimes::default();
        for ticket in tickets {
            let done = ticket.await.map_err(|_| AwaitError::Closed)??;
            times.queue = times.queue.max(done.queue_time);
            times.inference = times.inference.max(done.inference_time);
            out.push(done.output);
        }
        Ok((out, times))
    };
    tokio::time::timeout_at(deadline.into(), all)
        .await
        .unwrap_or(Err(AwaitError::Deadline))
}

pub(crate) struct Shared<I, O> {
    name: String,
    config: LaneConfig,
    queue: Mutex<QueueState<I, O>>,
    wakeup: Condvar,
    observer: Box<dyn LaneObserver>,
    /// Instances able to run a batch (not being rebuilt): a lane at zero is not ready.
    live: AtomicUsize,
    /// Most items per formed batch now: `config.max_batch_size` until a cap is learned.
    cap: AtomicUsize,
}

struct QueueState<I, O> {
    queue: Queue<I, O>,
    closed: bool,
    /// Draining: batches leave at once instead of waiting `max_queue_delay` for company.
    greedy: bool,
}

impl<I, O> Shared<I, O> {
    /// An instance panicked and is being rebuilt.
    fn instance_down(&self) {
        let live = self.live.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        self.observer.lane_ready(live > 0);
    }

    /// A rebuilt instance is serving again.
    fn instance_up(&self) {
        self.live.fetch_add(1, Ordering::SeqCst);
        self.observer.lane_ready(true);
    }

    /// The batch size in force.
    fn cap(&self) -> usize {
        self.cap.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<I, O>> {
        // A worker never panics while holding the lock (model runs happen outside it), so a
        // poisoned lock still guards a consistent queue.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Handle of one model lane; cheap to clone and share between handlers.
pub struct Batcher<I, O> {
    shared: Arc<Shared<I, O>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            workers: self.workers.clone(),
        }
    }
}

impl<I: Batchable + Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Builds every model instance (so load errors surface at start-up) and starts one worker
    /// thread per instance. `observer` hears of every event of the lane (see [`LaneObserver`]).
    pub fn start(
        name: &str,
        config: LaneConfig,
        factory: ModelFactory<I, O>,
        observer: impl LaneObserver + 'static,
    ) -> Result<Self, BackendError> {
        let instances = config.instances.max(1);
        let config_max = config.max_batch_size.max(1);
        let mut models = Vec::with_capacity(instances);
        for i in 0..instances {
            models.push(factory(i)?);
        }
        let shared = Arc::new(Shared {
            name: name.to_string(),
            queue: Mutex::new(QueueState {
                queue: Queue::new(config.priority_levels, config.queue_capacity),
                closed: false,
                greedy: false,
            }),
            config,
            wakeup: Condvar::new(),
            observer: Box::new(observer),
            live: AtomicUsize::new(instances),
            cap: AtomicUsize::new(config_max),
        });
        shared.observer.batch_cap(config_max);
        let mut handles = Vec::with_capacity(instances);
        for (i, model) in models.into_iter().enumerate() {
            let shared = shared.clone();
            let factory = factory.clone();
            let handle = std::thread::Builder::new()
                .name(format!("{name}-worker-{i}"))
                .spawn(move || worker::run(shared, i, model, factory))
                .map_err(|e| BackendError(format!("cannot spawn worker thread: {e}")))?;
            handles.push(handle);
        }
        shared.observer.lane_ready(true);
        Ok(Self {
            shared,
            workers: Arc::new(Mutex::new(handles)),
        })
    }

    /// The lane's model name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Instances able to run a batch now; zero while every instance is being rebuilt.
    pub fn live_instances(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// Most items the lane's queue holds: a larger submission can never be admitted.
    pub fn queue_capacity(&self) -> usize {
        self.shared.config.queue_capacity
    }

    /// The configured most items per batch (the upper bound of any cap).
    pub fn max_batch_size(&self) -> usize {
        self.shared.config.max_batch_size.max(1)
    }

    /// The most items per batch in force now.
    pub fn batch_cap(&self) -> usize {
        self.shared.cap()
    }

    /// Caps formed batches at `cap` items, clamped to `1..=max_batch_size`.
    pub fn set_batch_cap(&self, cap: usize) {
        let cap = cap.clamp(1, self.max_batch_size());
        self.shared.cap.store(cap, Ordering::SeqCst);
        self.shared.observer.batch_cap(cap);
        self.shared.wakeup.notify_all();
    }

    /// Queues all `inputs` or none: a request is never half-admitted.
    pub fn submit(
        &self,
        inputs: Vec<I>,
        options: SubmitOptions,
    ) -> Result<Vec<Ticket<O>>, BatchError> {
        let shared = &self.shared;
        let n = inputs.len();
        let now = Instant::now();
        let mut state = shared.lock();
        if state.closed {
            return Err(BatchError::ShuttingDown {
                model: shared.name.clone(),
            });
        }
        if n > shared.config.queue_capacity {
            drop(state);
            shared.observer.items_failed(FailureReason::Overloaded, n);
            return Err(BatchError::TooLarge {
                model: shared.name.clone(),
                items: n,
                capacity: shared.config.queue_capacity,
            });
        }
        if !state.queue.has_room(n) {
            // Items of callers that went away (a refused or cancelled request) must not keep
            // others out: drop them now rather than at the next batch.
            let abandoned = state.queue.remove_abandoned();
            shared
                .observer
                .items_failed(FailureReason::Dropped, abandoned);
        }
        if !state.queue.has_room(n) {
            drop(state);
            shared.observer.items_failed(FailureReason::Overloaded, n);
            return Err(BatchError::Overloaded {
                model: shared.name.clone(),
                capacity: shared.config.queue_capacity,
                retry_after: Duration::from_secs(1),
            });
        }
        let mut tickets = Vec::with_capacity(n);
        for input in inputs {
            let (reply, rx) = oneshot::channel();
            let key = input.batch_key();
            state.queue.push(
                options.priority,
                Entry {
                    input,
                    key,
                    enqueued: now,
                    deadline: options.deadline,
                    reply,
                },
            );
            tickets.push(rx);
        }
        shared.observer.queue_depth(state.queue.len());
        drop(state);
        if n >= shared.cap() || shared.config.instances > 1 {
            shared.wakeup.notify_all();
        } else {
            shared.wakeup.notify_one();
        }
        Ok(tickets)
    }

    /// From now on batches leave as soon as a worker is free (shutdown drain: no more callers
    /// are coming to fill them, so waiting `max_queue_delay` would only delay the exit).
    pub fn release_without_delay(&self) {
        self.shared.lock().greedy = true;
        self.shared.wakeup.notify_all();
    }

    /// Stops accepting work, fails what is still queued, and joins the workers.
    pub fn shutdown(&self) {
        let leftover = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.queue.drain()
        };
        self.shared.observer.queue_depth(0);
        for entry in leftover {
            let _ = entry.reply.send(Err(BatchError::ShuttingDown {
                model: self.shared.name.clone(),
            }));
        }
        self.shared.wakeup.notify_all();
        let handles =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(PoisonError::into_inner));
        for h in handles {
            let _ = h.join();
        }
        self.shared.observer.lane_ready(false);
    }
}

#[cfg(test)]
mod tests;
