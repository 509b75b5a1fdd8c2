//! Admission: what the requests in flight may hold together, in the spirit of TEI's
//! `max_concurrent_requests`, but measured in what the input decodes to.
//!
//! Two gates, both non-blocking so an overloaded service answers at once instead of queueing
//! without bound:
//! - a count of requests in flight (`limits.max_concurrent_requests`), taken when a model or
//!   reward request arrives;
//! - a byte budget (`limits.max_inflight_bytes`) of decoded pixels and model tensors, taken
//!   from the image headers before any pixel is decoded and held until the response is built.
//!
//! A request that does not fit now gets 429 with `Retry-After`; one that could never fit (its
//! cost exceeds the whole budget) gets 422 naming the limit, so a client that honours
//! `Retry-After` never loops forever.

use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::error::ApiError;
use crate::config::{Config, LimitsConfig};
use crate::imaging::{ImageHeader, Preprocess};
use crate::models::Models;
use crate::reward::MAX_CANDIDATES;

/// Bytes per budget unit: permits count KiB so a `u32` acquisition covers 4 TiB.
const UNIT: u64 = 1024;

/// The two admission gates; cheap to clone.
#[derive(Clone)]
pub struct Admission {
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_requests: usize,
    max_bytes: u64,
    max_request_pixels: u64,
}

/// A request's place among those in flight; released on drop.
pub struct RequestPermit(#[allow(dead_code)] OwnedSemaphorePermit);

/// A request's share of the byte budget; released on drop (when its response is built).
#[must_use = "the budget is released when the permit drops"]
pub struct BytesPermit(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Admission {
    /// Gates sized by the configured limits.
    pub fn new(limits: &LimitsConfig) -> Self {
        let units = (limits.max_inflight_bytes / UNIT).min(Semaphore::MAX_PERMITS as u64);
        Self {
            requests: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            bytes: Arc::new(Semaphore::new(units as usize)),
            max_requests: limits.max_concurrent_requests,
            max_bytes: limits.max_inflight_bytes,
            max_request_pixels: limits.max_request_pixels,
        }
    }

    /// Takes a request slot, or 429 when `max_concurrent_requests` are in flight.
    pub fn request(&self) -> Result<RequestPermit, ApiError> {
        self.requests
            .clone()
            .try_acquire_owned()
            .map(RequestPermit)
            .map_err(|_| {
                overloaded(format!(
                    "{} requests are in flight (limits.max_concurrent_requests); retry later",
                    self.max_requests
                ))
            })
    }

    /// Takes `cost` from the byte budget: 422 when it can never fit, 429 when it does not
    /// fit now.
    pub fn bytes(&self, cost: &RequestCost) -> Result<BytesPermit, ApiError> {
        if cost.pixels > self.max_request_pixels {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_pixels",
                format!(
                    "the request's images hold {} pixels; limits.max_request_pixels is {}",
                    cost.pixels, self.max_request_pixels
                ),
            ));
        }
        if cost.bytes > self.max_bytes {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "request_too_large",
                format!(
                    "the request needs {} bytes of pixels and tensors; limits.max_inflight_bytes is {}: split it",
                    cost.bytes, self.max_bytes
                ),
            ));
        }
        let units = u32::try_from(cost.bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
        if units == 0 {
            return Ok(BytesPermit(None));
        }
        match self.bytes.clone().try_acquire_many_owned(units) {
            Ok(p) => Ok(BytesPermit(Some(p))),
            Err(TryAcquireError::NoPermits) => Err(overloaded(format!(
                "the in-flight budget (limits.max_inflight_bytes = {}) is in use; retry later",
                self.max_bytes
            ))),
            Err(TryAcquireError::Closed) => {
                Err(ApiError::not_ready("the service is shutting down"))
            }
        }
    }

    /// Bytes of the budget in use now.
    pub fn bytes_in_use(&self) -> u64 {
        let free = self.bytes.available_permits() as u64 * UNIT;
        self.max_bytes.saturating_sub(free).min(self.max_bytes)
    }

    /// Requests in flight now.
    pub fn requests_in_flight(&self) -> usize {
        self.max_requests
            .saturating_sub(self.requests.available_permits())
    }
}

/// Most items one request may put on each lane, from the request limits: a lane whose queue
/// is smaller could never admit such a request, and a client honouring `Retry-After` would
/// retry it forever, so start-up refuses the configuration instead.
pub fn check_lane_capacity(config: &Config, models: &Models) -> Result<(), CapacityError> {
    let l = &config.limits;
    let (n, phrases, subjects) = (
        l.max_items_per_request,
        l.max_phrases,
        config.rewards.max_subjects,
    );
    // /v1/detect: every (image, phrase); /v1/reward: every (image, category) of the
    // generated images and every reference.
    let detector = (n * phrases).max(2 * n * subjects);
    // /v1/embed: every image; /v1/reward: per item its references, and per subject up to
    // MAX_CANDIDATES kept boxes plus the whole image (assignment matching).
    // Subject consistency needs both models; without a detector only /v1/embed feeds it.
    let reward_crops = match models.detector {
        Some(_) => n * subjects * (MAX_CANDIDATES + 2),
        None => 0,
    };
    let embedder = n.max(reward_crops);
    let lanes = [
        (
            "detector",
            models.detector.as_ref().map(|d| d.batcher.queue_capacity()),
            detector,
        ),
        (
            "embedder",
            models.embedder.as_ref().map(|e| e.batcher.queue_capacity()),
            embedder,
        ),
        (
            "aesthetic",
            models
                .aesthetic
                .as_ref()
                .map(|a| a.batcher.queue_capacity()),
            n,
        ),
        (
            "preference",
            models
                .preference
                .as_ref()
                .map(|p| p.batcher.queue_capacity()),
            n,
        ),
    ];
    for (role, capacity, needed) in lanes {
        if let Some(capacity) = capacity.filter(|&c| c < needed) {
            return Err(CapacityError {
                role,
                capacity,
                needed,
            });
        }
    }
    Ok(())
}

/// A lane too small for the largest request the limits allow.
#[derive(Debug, thiserror::Error)]
#[error("the {role} lane's batching.queue_capacity is {capacity}, but one request within the configured limits (limits.max_items_per_request, limits.max_phrases, rewards.max_subjects) can queue {needed} items on it: raise queue_capacity in the manifest or lower the limits")]
pub struct CapacityError {
    pub role: &'static str,
    pub capacity: usize,
    pub needed: usize,
}

fn overloaded(message: String) -> ApiError {
    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", message);
    e.retry_after_secs = Some(1);
    e
}

/// What a request will hold while in flight, estimated from image headers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestCost {
    /// Decoded pixels over the request's distinct images.
    pub pixels: u64,
    /// Decoded bytes (RGB plus alpha or the mode's own samples) and model tensor bytes.
    pub bytes: u64,
}

impl RequestCost {
    /// Adds one decoded image: 4 bytes a pixel (RGB, and alpha when it has one), more for
    /// the modes kept in their own samples too (CMYK 7, `I;16` 5).
    pub fn image(&mut self, header: &ImageHeader) {
        self.pixels += header.pixels();
        self.bytes += header.decoded_bytes();
    }

    /// Adds `count` `f32` tensors that `preprocess` makes from a `width`×`height` image.
    pub fn tensors(&mut self, preprocess: &Preprocess, (width, height): (u32, u32), count: u64) {
        let plan = preprocess.plan(width, height);
        let per = u64::from(plan.out_w) * u64::from(plan.out_h) * 3 * 4;
        self.bytes += per * count;
    }
}
