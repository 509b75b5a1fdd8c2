//! Awaiting batcher tickets under the request deadline, and the timing headers of a success.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::batcher::{await_all, Ticket};
use crate::server::error::ApiError;

/// Where a request's time went.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timing {
    pub preprocess: Duration,
    pub queue: Duration,
    pub inference: Duration,
}

impl Timing {
    /// `x-total-time`, `x-preprocess-time`, `x-queue-time`, `x-inference-time` in
    /// milliseconds (TEI's header names); queue and inference are the slowest item's.
    pub fn headers(&self, arrived: Instant) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, d: Duration| {
            if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", d.as_secs_f64() * 1e3)) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        put("x-total-time", arrived.elapsed());
        put("x-preprocess-time", self.preprocess);
        put("x-queue-time", self.queue);
        put("x-inference-time", self.inference);
        h
    }
}

/// Awaits every ticket (504 once `deadline` passes) and records the wait times.
pub async fn collect<O>(
    tickets: Vec<Ticket<O>>,
    deadline: Instant,
    timing: &mut Timing,
) -> Result<Vec<O>, ApiError> {
    let (out, times) = await_all(tickets, deadline).await?;
    timing.queue = timing.queue.max(times.queue);
    timing.inference = timing.inference.max(times.inference);
    Ok(out)
}
