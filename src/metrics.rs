//! Prometheus metric families of the service.
//!
//! Every family is registered, and every label combination the service knows in advance is
//! created, at start-up: a scrape before the first request already lists them all (an empty
//! `/metrics` until first use is a known complaint about TEI). Names follow Prometheus
//! conventions: one `psr_reward_` prefix, base units in names, counters end in `_total`.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::batcher::{FailureReason, LaneObserver};

/// Latency buckets in seconds, from sub-millisecond overheads to minute-long VLM calls.
const SECONDS_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// All metric families, owned by one registry.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    queue_depth: IntGaugeVec,
    batch_size: HistogramVec,
    items: IntCounterVec,
    batches: IntCounterVec,
    queue_duration: HistogramVec,
    inference_duration: HistogramVec,
    failures: IntCounterVec,
    worker_restarts: IntCounterVec,
    model_ready: IntGaugeVec,
    preprocess_duration: HistogramVec,
    ready: IntGauge,
    cache: crate::reward::CacheMetrics,
    remote_calls: IntCounterVec,
    remote_retries: IntCounterVec,
    remote_duration: HistogramVec,
    remote_breaker: IntGaugeVec,
    judge_parse_failures: IntCounter,
    judge_cache_hits: IntCounter,
    components: IntCounterVec,
    invalid_outputs: IntCounterVec,
    padded_items: IntCounterVec,
    copy_paste: crate::reward::copy_paste::GuardMetrics,
}

/// The remote services the metrics know (labels created at start-up).
pub const REMOTE_SERVICES: [&str; 2] = ["judge", "aesthetic_remote"];

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
}

fn must<T>(r: Result<T, prometheus::Error>) -> T {
    // Metric definitions are static; a failure here is a programming error caught by tests.
    match r {
        Ok(v) => v,
        Err(e) => panic!("invalid metric definition: {e}"),
    }
}

impl Metrics {
    /// Builds and registers every family.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = must(IntCounterVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let h = must(HistogramVec::new(opts, labels));
            must(registry.register(Box::new(h.clone())));
            h
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = must(IntGaugeVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(g.clone())));
            g
        };
        let ready = must(IntGauge::new(
            "psr_reward_ready",
            "1 once every model is loaded and warmed up and the service is not draining",
        ));
        must(registry.register(Box::new(ready.clone())));
        let plain_counter = |name: &str, help: &str| {
            let c = must(IntCounter::new(name, help));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let cache = crate::reward::CacheMetrics {
            hits: plain_counter(
                "psr_reward_reference_cache_hits_total",
                "Reference lookups served from the cache",
            ),
            misses: plain_counter(
                "psr_reward_reference_cache_misses_total",
                "Reference lookups that had to detect and embed",
            ),
            evictions: plain_counter(
                "psr_reward_reference_cache_evictions_total",
                "References evicted to stay within the byte budget",
            ),
            bytes: {
                let g = must(IntGauge::new(
                    "psr_reward_reference_cache_bytes",
                    "Approximate bytes held by the reference cache",
                ));
                must(registry.register(Box::new(g.clone())));
                g
            },
        };
        let remote_calls = counter(
            "psr_reward_remote_calls_total",
            "Calls to remote services (judge, remote scorer) by outcome: ok or a failure reason",
            &["service", "outcome"],
        );
        let remote_retries = counter(
            "psr_reward_remote_retries_total",
            "Retried attempts to remote services",
            &["service"],
        );
        let remote_duration = histogram(
            "psr_reward_remote_duration_seconds",
            "Duration of a remote call, retries included",
            &["service"],
            &SECONDS_BUCKETS,
        );
        let remote_breaker = gauge(
            "psr_reward_remote_breaker_state",
            "Circuit breaker of a remote service: 0 closed, 1 open, 2 half-open",
            &["service"],
        );
        let components = counter(
            "psr_reward_component_failures_total",
            "Reward components that came back null, by component",
            &["component"],
        );
        for service in REMOTE_SERVICES {
            remote_retries.with_label_values(&[service]);
            remote_duration.with_label_values(&[service]);
            remote_breaker.with_label_values(&[service]);
            remote_calls.with_label_values(&[service, "ok"]);
            for reason in crate::reward::remote::REMOTE_FAILURE_REASONS {
                remote_calls.with_label_values(&[service, reason]);
            }
        }
        for c in crate::reward::Component::ALL {
            components.with_label_values(&[c.as_str()]);
        }
        let checks = counter(
            "psr_reward_copy_paste_checks_total",
            "Subjects checked by the copy-paste guard, by outcome (suspected, clear, unscored: untextured reference)",
            &["outcome"],
        );
        let copy_paste = crate::reward::copy_paste::GuardMetrics {
            suspected: checks.with_label_values(&["suspected"]),
            clear: checks.with_label_values(&["clear"]),
            unscored: checks.with_label_values(&["unscored"]),
            score: histogram(
                "psr_reward_copy_paste_score",
                "Copy-paste guard scores of the subjects that had one",
                &[],
                &[-0.5, 0.0, 0.25, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95, 1.0],
            )
            .with_label_values::<&str>(&[]),
        };
        Self {
            judge_parse_failures: plain_counter(
                "psr_reward_judge_parse_failures_total",
                "Judge answers without a parseable [Score]",
            ),
            judge_cache_hits: plain_counter(
                "psr_reward_judge_cache_hits_total",
                "Judgements served from the judge cache",
            ),
            copy_paste,
            remote_calls,
            remote_retries,
            remote_duration,
            remote_breaker,
            components,
            cache,
            requests: counter(
                "psr_reward_requests_total",
                "Requests by route and status: HTTP routes with their status code, gRPC methods (`/psr_reward.v1.RewardService/Reward`) with their gRPC code name (`OK`, `INVALID_ARGUMENT`, ...)",
                &["route", "status"],
            ),
            request_duration: histogram(
                "psr_reward_request_duration_seconds",
                "Request duration by route (HTTP route or gRPC method)",
                &["route"],
                &SECONDS_BUCKETS,
            ),
            queue_depth: gauge(
                "psr_reward_queue_depth",
                "Items waiting in a model's batcher queue",
                &["model"],
            ),
            batch_size: histogram(
                "psr_reward_batch_size",
                "Items per executed model batch",
                &["model"],
                &BATCH_BUCKETS,
            ),
            items: counter(
                "psr_reward_inference_items_total",
                "Items that reached the model (divide by batch executions for the mean batch size)",
                &["model"],
            ),
            batches: counter(
                "psr_reward_batch_executions_total",
                "Model batch executions",
                &["model"],
            ),
            queue_duration: histogram(
                "psr_reward_queue_duration_seconds",
                "Time an item waited in the batcher queue",
                &["model"],
                &SECONDS_BUCKETS,
            ),
            inference_duration: histogram(
                "psr_reward_inference_duration_seconds",
                "Time of one model batch execution",
                &["model"],
                &SECONDS_BUCKETS,
            ),
            failures: counter(
                "psr_reward_batcher_failures_total",
                "Items that got no result, by reason (overloaded, timeout, dropped, backend)",
                &["model", "reason"],
            ),
            worker_restarts: counter(
                "psr_reward_worker_restarts_total",
                "Model workers rebuilt after a panic",
                &["model"],
            ),
            invalid_outputs: counter(
                "psr_reward_invalid_model_outputs_total",
                "Model outputs rejected at the adapter boundary (NaN, zero norm, bad shape, absurd boxes), by model and reason",
                &["model", "reason"],
            ),
            padded_items: counter(
                "psr_reward_detector_padded_items_total",
                "Detector items run padded into a batch of larger images or longer captions (psr mode pads only models whose padding is marked neutral)",
                &["model"],
            ),
            model_ready: gauge(
                "psr_reward_model_ready",
                "1 when a model has at least one healthy worker",
                &["model"],
            ),
            preprocess_duration: histogram(
                "psr_reward_preprocess_duration_seconds",
                "Parse, decode and preprocess time of one request on the CPU pool",
                &["route"],
                &SECONDS_BUCKETS,
            ),
            ready,
            registry,
        }
    }

    /// The invalid-output counters of one model, every reason registered at zero.
    pub fn invalid_outputs(&self, model: &str) -> crate::models::InvalidOutputCounter {
        let [a, b, c, d] = crate::models::INVALID_OUTPUT_REASONS;
        let get = |r: &str| self.invalid_outputs.with_label_values(&[model, r]);
        crate::models::InvalidOutputCounter::new(model, [get(a), get(b), get(c), get(d)])
    }

    /// The padded-item counter of one detector, registered at zero.
    pub fn padded_items(&self, model: &str) -> prometheus::IntCounter {
        self.padded_items.with_label_values(&[model])
    }

    /// Creates (or returns) the children of one model, so they show at zero before first use.
    pub fn lane(&self, model: &str) -> LaneMetrics {
        let l = [model];
        let fail = |reason: &str| self.failures.with_label_values(&[model, reason]);
        LaneMetrics {
            queue_depth: self.queue_depth.with_label_values(&l),
            batch_size: self.batch_size.with_label_values(&l),
            items: self.items.with_label_values(&l),
            batches: self.batches.with_label_values(&l),
            queue_duration: self.queue_duration.with_label_values(&l),
            inference_duration: self.inference_duration.with_label_values(&l),
            worker_restarts: self.worker_restarts.with_label_values(&l),
            ready: self.model_ready.with_label_values(&l),
            failures: FailureReason::ALL.map(|r| fail(r.as_str())),
        }
    }

    /// Creates the per-route children so that they are visible before the first request.
    pub fn register_route(&self, route: &str) {
        self.request_duration.with_label_values(&[route]);
        self.preprocess_duration.with_label_values(&[route]);
        self.requests.with_label_values(&[route, "200"]);
    }

    /// Records one finished HTTP request.
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        let mut buf = itoa_buf();
        let status = format_status(status, &mut buf);
        self.requests.with_label_values(&[route, status]).inc();
        self.request_duration
            .with_label_values(&[route])
            .observe(seconds);
    }

    /// Registers a gRPC method's labels (its `OK` count at 0) so it shows before its first call.
    pub fn register_rpc(&self, method: &str) {
        self.request_duration.with_label_values(&[method]);
        self.preprocess_duration.with_label_values(&[method]);
        self.requests.with_label_values(&[method, "OK"]);
    }

    /// Records one finished RPC: `method` is its path, `code` the gRPC code name.
    pub fn observe_rpc(&self, method: &str, code: &str, seconds: f64) {
        self.requests.with_label_values(&[method, code]).inc();
        self.request_duration
            .with_label_values(&[method])
            .observe(seconds);
    }

    /// Records the CPU-pool time of one request.
    pub fn observe_preprocess(&self, route: &str, seconds: f64) {
        self.preprocess_duration
            .with_label_values(&[route])
            .observe(seconds);
    }

    /// The metrics of a remote service (one of [`REMOTE_SERVICES`]).
    pub fn remote(&self, service: &str) -> crate::reward::RemoteMetrics {
        crate::reward::RemoteMetrics {
            ok: self.remote_calls.with_label_values(&[service, "ok"]),
            retries: self.remote_retries.with_label_values(&[service]),
            failures: crate::reward::remote::REMOTE_FAILURE_REASONS
                .map(|r| self.remote_calls.with_label_values(&[service, r])),
            duration: self.remote_duration.with_label_values(&[service]),
            breaker_state: self.remote_breaker.with_label_values(&[service]),
        }
    }

    /// Judge answers that did not parse, and judge cache hits.
    pub fn judge_counters(&self) -> (IntCounter, IntCounter) {
        (
            self.judge_parse_failures.clone(),
            self.judge_cache_hits.clone(),
        )
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

fn itoa_buf() -> [u8; 3] {
    [b'0'; 3]
}

/// Formats a 3-digit HTTP status without allocating.
fn format_status(status: u16, buf: &mut [u8; 3]) -> &str {
    let s = status.min(999);
    buf[0] = b'0' + (s / 100) as u8;
    buf[1] = b'0' + (s / 10 % 10) as u8;
    buf[2] = b'0' + (s % 10) as u8;
    std::str::from_utf8(buf).unwrap_or("000")
}

#[cfg(test)]
mod tests {
    use super::*;

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
