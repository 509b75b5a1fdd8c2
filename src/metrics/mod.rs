//! Prometheus metric families of the service.
//!
//! Every family is registered, and every label combination the service knows in advance is
//! created, at start-up: a scrape before the first request already lists them all (an empty
//! `/metrics` until first use is a known complaint about TEI). Names follow Prometheus
//! conventions: one `psr_reward_` prefix, base units in names, counters end in `_total`.
//!
//! One file per group: [`requests`] (routes and RPCs), [`lanes`] (batcher lanes and model
//! outputs), [`reward`] (cache, remote services, judge, components, copy-paste guard); this
//! file only assembles them on one registry and renders it.

mod lanes;
mod registrar;
mod requests;
mod reward;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Registry, TextEncoder};

pub use lanes::LaneMetrics;
pub use reward::REMOTE_SERVICES;

use lanes::LaneFamilies;
use registrar::Registrar;
use requests::{format_status, itoa_buf, RequestMetrics};
use reward::RemoteFamilies;

/// Latency buckets in seconds, from sub-millisecond overheads to minute-long VLM calls.
const SECONDS_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// All metric families, owned by one registry.
pub struct Metrics {
    registry: Registry,
    requests: RequestMetrics,
    lanes: LaneFamilies,
    ready: IntGauge,
    cache: crate::reward::CacheMetrics,
    remote: RemoteFamilies,
    judge: (IntCounter, IntCounter),
    components: IntCounterVec,
    copy_paste: crate::reward::copy_paste::GuardMetrics,
}

impl Metrics {
    /// Builds and registers every family.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = Registrar {
            registry: &registry,
        };
        let ready = r.gauge(
            "psr_reward_ready",
            "1 once every model is loaded and warmed up and the service is not draining",
        );
        Self {
            requests: RequestMetrics::register(&r),
            lanes: LaneFamilies::register(&r),
            ready,
            cache: reward::cache(&r),
            remote: RemoteFamilies::register(&r),
            judge: reward::judge(&r),
            components: reward::components(&r),
            copy_paste: reward::copy_paste(&r),
            registry,
        }
    }

    /// The invalid-output counters of one model, every reason registered at zero.
    pub fn invalid_outputs(&self, model: &str) -> crate::models::InvalidOutputCounter {
        self.lanes.invalid_outputs(model)
    }

    /// The padded-item counter of one detector, registered at zero.
    pub fn padded_items(&self, model: &str) -> IntCounter {
        self.lanes.padded_items(model)
    }

    /// Creates (or returns) the children of one model, so they show at zero before first use.
    pub fn lane(&self, model: &str) -> LaneMetrics {
        self.lanes.lane(model)
    }

    /// Creates the per-route children so that they are visible before the first request.
    pub fn register_route(&self, route: &str) {
        self.requests.register_route(route, "200");
    }

    /// Records one finished HTTP request.
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        let mut buf = itoa_buf();
        self.requests
            .observe(route, format_status(status, &mut buf), seconds);
    }

    /// Registers a gRPC method's labels (its `OK` count at 0) so it shows before its first call.
    pub fn register_rpc(&self, method: &str) {
        self.requests.register_route(method, "OK");
    }

    /// Records one finished RPC: `method` is its path, `code` the gRPC code name.
    pub fn observe_rpc(&self, method: &str, code: &str, seconds: f64) {
        self.requests.observe(method, code, seconds);
    }

    /// Records the CPU-pool time of one request.
    pub fn observe_preprocess(&self, route: &str, seconds: f64) {
        self.requests.observe_preprocess(route, seconds);
    }

    /// The metrics of a remote service (one of [`REMOTE_SERVICES`]).
    pub fn remote(&self, service: &str) -> crate::reward::RemoteMetrics {
        self.remote.service(service)
    }

    /// Judge answers that did not parse, and judge cache hits.
    pub fn judge_counters(&self) -> (IntCounter, IntCounter) {
        self.judge.clone()
    }

    /// Counts a component that came back null.
    pub fn component_failed(&self, component: &str) {
        self.components.with_label_values(&[component]).inc();
    }

    /// The reference cache's counters.
    pub fn reference_cache(&self) -> crate::reward::CacheMetrics {
        self.cache.clone()
    }

    /// The copy-paste guard's counters.
    pub fn copy_paste(&self) -> &crate::reward::copy_paste::GuardMetrics {
        &self.copy_paste
    }

    /// Sets the service-wide readiness gauge.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Renders the Prometheus text exposition format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::batcher::{FailureReason, LaneObserver};

    #[test]
    fn families_visible_before_use() {
        let m = Metrics::new();
        m.lane("embedder");
        m.register_route("/v1/embed");
        let text = m.render().unwrap();
        for family in [
            "psr_reward_requests_total",
            "psr_reward_queue_depth",
            "psr_reward_batch_size",
            "psr_reward_inference_items_total",
            "psr_reward_batch_executions_total",
            "psr_reward_queue_duration_seconds",
            "psr_reward_inference_duration_seconds",
            "psr_reward_batcher_failures_total",
            "psr_reward_worker_restarts_total",
            "psr_reward_ready",
            "psr_reward_reference_cache_hits_total",
            "psr_reward_reference_cache_bytes",
        ] {
            assert!(text.contains(family), "{family} missing");
        }
        assert!(text
            .contains(r#"psr_reward_batcher_failures_total{model="embedder",reason="timeout"} 0"#));
    }

    #[test]
    fn lane_events_land_in_their_families() {
        let m = Metrics::new();
        let lane = m.lane("embedder");
        lane.items_failed(FailureReason::Timeout, 2);
        lane.batch_started(&[Duration::from_millis(1); 3]);
        lane.worker_restarted();
        let text = m.render().unwrap();
        for line in [
            r#"psr_reward_batcher_failures_total{model="embedder",reason="timeout"} 2"#,
            r#"psr_reward_batcher_failures_total{model="embedder",reason="backend"} 0"#,
            r#"psr_reward_inference_items_total{model="embedder"} 3"#,
            r#"psr_reward_batch_executions_total{model="embedder"} 1"#,
            r#"psr_reward_queue_duration_seconds_count{model="embedder"} 3"#,
            r#"psr_reward_worker_restarts_total{model="embedder"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing");
        }
    }

    #[test]
    fn status_formatting() {
        let mut b = itoa_buf();
        assert_eq!(format_status(429, &mut b), "429");
        assert_eq!(format_status(200, &mut b), "200");
    }
}
