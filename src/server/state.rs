//! Shared state of the HTTP handlers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::batcher::SubmitOptions;
use crate::config::Config;
use crate::cpu_pool::CpuPool;
use crate::imaging::{DecodeLimits, TensorPool};
use crate::metrics::Metrics;
use crate::models::Models;
use crate::reward::judge::JudgeError;
use crate::reward::{Judge, ReferenceCache, Remote, RemoteError, ScServices};

/// Why the state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("judge: {0}")]
    Judge(#[from] JudgeError),
    #[error("remote client: {0}")]
    Remote(#[from] RemoteError),
    #[error("auth: {0}")]
    Auth(#[from] super::auth::AuthError),
}

use super::admission::{check_lane_capacity, Admission, CapacityError};
use super::error::ApiError;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    api_keys: Option<Arc<super::auth::ApiKeys>>,
    judge: Option<Arc<Judge>>,
    aesthetic_remote: Option<Arc<Remote>>,
    config: Config,
    metrics: Arc<Metrics>,
    cpu: CpuPool,
    tensors: TensorPool,
    models: OnceLock<Arc<Models>>,
    reference_cache: Arc<ReferenceCache>,
    admission: Admission,
    warmed: AtomicBool,
    draining: AtomicBool,
}

impl AppState {
    /// State with no models yet: the listener can answer `/health` and `/ready` (503)
    /// while models load. Builds the judge and remote-scorer clients (no call is made).
    pub fn new(config: Config, metrics: Arc<Metrics>, cpu: CpuPool) -> Result<Self, StateError> {
        let judge = match &config.judge {
            Some(j) => {
                let remote = Remote::new("judge", j.policy.clone(), metrics.remote("judge"))?;
                let (parse_failures, cache_hits) = metrics.judge_counters();
                Some(Arc::new(Judge::new(
                    j.clone(),
                    remote,
                    parse_failures,
                    cache_hits,
                )?))
            }
            None => None,
        };
        let aesthetic_remote = match &config.aesthetic_remote {
            Some(a) => Some(Arc::new(Remote::new(
                "aesthetic_remote",
                a.policy.clone(),
                metrics.remote("aesthetic_remote"),
            )?)),
            None => None,
        };
        let api_keys = super::auth::ApiKeys::from_config(&config.auth)?;
        Ok(Self {
            inner: Arc::new(Inner {
                api_keys,
                judge,
                aesthetic_remote,
                reference_cache: Arc::new(ReferenceCache::new(
                    config.rewards.reference_cache_bytes,
                    metrics.reference_cache(),
                )),
                admission: Admission::new(&config.limits),
                config,
                metrics,
                cpu,
                tensors: TensorPool::new(),
                models: OnceLock::new(),
                warmed: AtomicBool::new(false),
                draining: AtomicBool::new(false),
            }),
        })
    }

    /// The API keys requests must carry, when `[auth]` configures any.
    pub fn api_keys(&self) -> Option<&Arc<super::auth::ApiKeys>> {
        self.inner.api_keys.as_ref()
    }

    /// The VLM judge, when configured.
    pub fn judge(&self) -> Option<&Arc<Judge>> {
        self.inner.judge.as_ref()
    }

    /// The remote aesthetic scorer, when configured.
    pub fn aesthetic_remote(&self) -> Option<&Arc<Remote>> {
        self.inner.aesthetic_remote.as_ref()
    }

    /// Installs the loaded models (once), after checking that every lane can take the
    /// largest request the limits allow.
    pub fn set_models(&self, models: Arc<Models>) -> Result<(), CapacityError> {
        check_lane_capacity(&self.inner.config, &models)?;
        let _ = self.inner.models.set(models);
        Ok(())
    }

    /// Marks warm-up done: `/ready` turns 200 unless draining.
    pub fn set_warmed(&self) {
        self.inner.warmed.store(true, Ordering::SeqCst);
        self.inner.metrics.set_ready(self.is_ready());
    }

    /// Starts draining: `/ready` turns 503 so load balancers stop sending work.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
        self.inner.metrics.set_ready(false);
        if let Some(models) = self.inner.models.get() {
            models.release_without_delay();
        }
    }

    /// Loaded, warmed up and not draining.
    pub fn is_ready(&self) -> bool {
        self.inner.warmed.load(Ordering::SeqCst) && !self.inner.draining.load(Ordering::SeqCst)
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The metric families.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The metric families, shared.
    pub fn metrics_arc(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// The CPU pool for parsing and preprocessing.
    pub fn cpu(&self) -> &CpuPool {
        &self.inner.cpu
    }

    /// The admission gates (requests in flight, in-flight byte budget).
    pub fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    /// The tensor buffer pool.
    pub fn tensors(&self) -> &TensorPool {
        &self.inner.tensors
    }

    /// The models, or 503 while they are still loading or warming up.
    pub fn models(&self) -> Result<&Arc<Models>, ApiError> {
        if self.is_draining() {
            return Err(ApiError::not_ready("the service is shutting down"));
        }
        match self.inner.models.get() {
            Some(m) if self.inner.warmed.load(Ordering::SeqCst) => Ok(m),
            _ => Err(ApiError::not_ready("models are still loading")),
        }
    }

    /// What the subject-consistency reward needs, or 503 while models load.
    pub fn sc_services(&self) -> Result<ScServices, ApiError> {
        Ok(ScServices {
            models: self.models()?.clone(),
            cache: self.inner.reference_cache.clone(),
            cpu: self.inner.cpu.clone(),
            tensors: self.inner.tensors.clone(),
        })
    }

    /// The models if loaded, warmed or not (for `/info`).
    pub fn loaded_models(&self) -> Option<&Arc<Models>> {
        self.inner.models.get()
    }

    /// Image decoding limits.
    pub fn decode_limits(&self) -> DecodeLimits {
        let l = &self.inner.config.limits;
        DecodeLimits {
            max_bytes: l.max_image_bytes,
            max_side: l.max_image_side,
            max_pixels: l.max_image_pixels,
            max_aspect_ratio: l.max_aspect_ratio,
        }
    }

    /// Validates a request's `timeout_ms` and `priority` and turns them into queue options,
    /// with the deadline counted from `arrived`.
    pub fn submit_options(
        &self,
        arrived: Instant,
        timeout_ms: Option<u64>,
        priority: Option<u8>,
    ) -> Result<SubmitOptions, ApiError> {
        let l = &self.inner.config.limits;
        let timeout = timeout_ms.unwrap_or(l.default_timeout_ms);
        if timeout == 0 || timeout > l.max_timeout_ms {
            return Err(ApiError::invalid(format!(
                "timeout_ms must be 1..={}",
                l.max_timeout_ms
            )));
        }
        let priority = priority.unwrap_or(l.default_priority);
        if priority >= l.priority_levels {
            return Err(ApiError::invalid(format!(
                "priority must be 0..={} (0 is served first)",
                l.priority_levels - 1
            )));
        }
        Ok(SubmitOptions {
            priority,
            deadline: arrived + Duration::from_millis(timeout),
        })
    }
}
