//! A bounded pool of CPU threads for request parsing, image decoding and preprocessing.
//!
//! This work is CPU-bound and would stall the async runtime; tokio's blocking pool grows to
//! hundreds of threads and would oversubscribe the cores the models need, so it runs here, on
//! a fixed number of threads, and the handler awaits the result.

use std::panic::{catch_unwind, AssertUnwindSafe};

use tokio::sync::oneshot;

/// Why a CPU job produced no value.
#[derive(Debug, thiserror::Error)]
pub enum CpuPoolError {
    /// The pool could not be built.
    #[error("cannot build CPU pool: {0}")]
    Build(String),
    /// The job panicked (a bug); the pool itself keeps running.
    #[error("CPU job panicked")]
    Panicked,
}

/// Handle of the pool; clones share the same threads.
#[derive(Clone)]
pub struct CpuPool {
    pool: std::sync::Arc<rayon::ThreadPool>,
}

impl CpuPool {
    /// Starts `threads` threads (0 = one per core).
    pub fn new(threads: usize) -> Result<Self, CpuPoolError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("cpu-pool-{i}"))
            .build()
            .map_err(|e| CpuPoolError::Build(e.to_string()))?;
        Ok(Self {
            pool: std::sync::Arc::new(pool),
        })
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `job` on the pool and awaits its value. A panic in `job` becomes an error instead
    /// of aborting the process (rayon's default for panics in spawned jobs).
    pub async fn run<T, F>(&self, job: F) -> Result<T, CpuPoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.pool.spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(job));
            let _ = tx.send(result);
        });
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            _ => Err(CpuPoolError::Panicked),
        }
    }

    /// Runs `f` over `items` in parallel on the pool (used to decode a request's images).
    pub fn map<T, R, F>(&self, items: Vec<T>, f: F) -> Vec<R>
    where
        T: Send,
        R: Send,
        F: Fn(T) -> R + Sync + Send,
    {
        use rayon::prelude::*;
        self.pool.install(|| items.into_par_iter().map(f).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_panics() {
        let pool = CpuPool::new(1).unwrap();
        assert_eq!(pool.run(|| 2 + 2).await.unwrap(), 4);
        let err = pool.run(|| -> u8 { panic!("boom") }).await;
        assert!(matches!(err, Err(CpuPoolError::Panicked)));
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
