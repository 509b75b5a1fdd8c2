//! Model worker threads: each owns one model instance, forms batches from the shared queue,
//! runs them, and answers every caller. A panic inside a model fails only that batch; the
//! instance is then rebuilt from its factory.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::{Entry, Formed};
use super::{BackendError, BatchError, BatchModel, Batchable, Completed, FailureReason, Shared};

/// Builds model instance `i` (the index lets a factory spread instances over devices).
pub type ModelFactory<I, O> = Arc<
    dyn Fn(usize) -> Result<Box<dyn BatchModel<Input = I, Output = O>>, BackendError> + Send + Sync,
>;

type Model<I, O> = Box<dyn BatchModel<Input = I, Output = O>>;

pub(crate) fn run<I: Batchable + Send + 'static, O: Send + 'static>(
    shared: Arc<Shared<I, O>>,
    instance: usize,
    mut model: Model<I, O>,
    factory: ModelFactory<I, O>,
) {
    while let Some(batch) = next_batch(&shared) {
        if let Err(panic) = execute(&shared, model.as_mut(), batch) {
            tracing::error!(model = %shared.name, instance, panic = %panic, "model worker panicked; rebuilding the instance");
            shared.observer.worker_restarted();
            match rebuild(&shared, instance, &factory) {
                Some(fresh) => {
                    model = fresh;
                    shared.instance_up();
                }
                None => return,
            }
        }
    }
}

/// Blocks until a batch should leave: it is full, the delay of its oldest item elapsed, or
/// the lane is greedy. Returns `None` once the lane is closed and empty.
fn next_batch<I, O>(shared: &Shared<I, O>) -> Option<Vec<Entry<I, O>>> {
    let delay = shared.config.max_queue_delay;
    let mut state = shared.lock();
    loop {
        if state.queue.is_empty() {
            if state.closed {
                return None;
            }
            state = shared
                .wakeup
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            continue;
        }
        let now = Instant::now();
        let release_at = state.queue.oldest().map_or(now, |oldest| oldest + delay);
        let cap = shared.cap();
        let full = state.queue.ready_count(cap) >= cap;
        if full || now >= release_at || state.closed || state.greedy {
            let formed = state.queue.take_batch(cap, now);
            shared.observer.queue_depth(state.queue.len());
            if !state.queue.is_empty() {
                // Another idle instance may take the rest right away.
                shared.wakeup.notify_one();
            }
            drop(state);
            let batch = settle_rejects(shared, formed);
            if !batch.is_empty() {
                return Some(batch);
            }
            state = shared.lock();
            continue;
        }
        let (guard, _) = shared
            .wakeup
            .wait_timeout(state, release_at - now)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state = guard;
    }
}

/// Answers expired and abandoned items (never run) and returns the batch to execute.
fn settle_rejects<I, O>(shared: &Shared<I, O>, formed: Formed<I, O>) -> Vec<Entry<I, O>> {
    let m = &shared.observer;
    if !formed.expired.is_empty() {
        m.items_failed(FailureReason::Timeout, formed.expired.len());
        for e in formed.expired {
            let _ = e.reply.send(Err(BatchError::Timeout {
                model: shared.name.clone(),
            }));
        }
    }
    m.items_failed(FailureReason::Dropped, formed.dropped.len());
    formed.batch
}

/// Runs one batch and answers its callers. `Err` carries a panic message.
fn execute<I: Batchable + Send + 'static, O: Send + 'static>(
    shared: &Shared<I, O>,
    model: &mut dyn BatchModel<Input = I, Output = O>,
    batch: Vec<Entry<I, O>>,
) -> Result<(), String> {
    let m = &shared.observer;
    let n = batch.len();
    let started = Instant::now();
    let mut inputs = Vec::with_capacity(n);
    let mut replies = Vec::with_capacity(n);
    let mut waits = Vec::with_capacity(n);
    for e in batch {
        let waited = started.saturating_duration_since(e.enqueued);
        waits.push(waited);
        inputs.push(e.input);
        replies.push((e.reply, waited));
    }
    m.batch_started(&waits);

    let outcome = catch_unwind(AssertUnwindSafe(|| model.run(&inputs)));
    let inference_time = started.elapsed();
    m.batch_finished(inference_time);
    drop(inputs);

    let (result, panic) = match outcome {
        Ok(Ok(outputs)) if outputs.len() == n => {
            let mut dropped = 0;
            for ((reply, queue_time), output) in replies.into_iter().zip(outputs) {
                let done = Completed {
                    output,
                    queue_time,
                    inference_time,
                    batch_size: n,
                };
                if reply.send(Ok(done)).is_err() {
                    dropped += 1;
                }
            }
            m.items_failed(FailureReason::Dropped, dropped);
            return Ok(());
        }
        Ok(Ok(outputs)) => (
            BackendError(format!(
                "model returned {} outputs for {n} inputs",
                outputs.len()
            )),
            None,
        ),
        Ok(Err(e)) => (e, None),
        Err(payload) => {
            let msg = panic_message(payload.as_ref());
            (
                BackendError(format!("model worker panicked: {msg}")),
                Some(msg),
            )
        }
    };
    tracing::warn!(model = %shared.name, batch = n, error = %result, "model batch failed");
    m.items_failed(FailureReason::Backend, n);
    if panic.is_some() {
        // Down before the callers hear of it, so a probe right after sees the truth.
        shared.instance_down();
    }
    for (reply, _) in replies {
        let _ = reply.send(Err(BatchError::Backend {
            model: shared.name.clone(),
            source: result.clone(),
        }));
    }
    panic.map_or(Ok(()), Err)
}

/// Rebuilds a model instance after a panic, retrying with backoff until the lane closes.
fn rebuild<I: Batchable + Send + 'static, O: Send + 'static>(
    shared: &Shared<I, O>,
    instance: usize,
    factory: &super::ModelFactory<I, O>,
) -> Option<Box<dyn BatchModel<Input = I, Output = O>>> {
    let mut backoff = Duration::from_millis(50);
    loop {
        match catch_unwind(AssertUnwindSafe(|| factory(instance))) {
            Ok(Ok(model)) => return Some(model),
            Ok(Err(e)) => {
                tracing::error!(model = %shared.name, instance, error = %e, "cannot rebuild model instance")
            }
            Err(p) => {
                tracing::error!(model = %shared.name, instance, panic = %panic_message(p.as_ref()), "model factory panicked")
            }
        }
        if shared.lock().closed {
            return None;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
