//! Reward-path families: the reference cache, remote services (judge, remote scorer), judge
//! answers, null components, and the copy-paste guard.

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGaugeVec};

use super::registrar::Registrar;
use super::SECONDS_BUCKETS;
use crate::reward::copy_paste::GuardMetrics;
use crate::reward::remote::REMOTE_FAILURE_REASONS;
use crate::reward::{CacheMetrics, RemoteMetrics};

/// The remote services the metrics know (labels created at start-up).
pub const REMOTE_SERVICES: [&str; 2] = ["judge", "aesthetic_remote"];

/// Copy-paste guard score buckets: dense near the suspicion threshold.
const COPY_PASTE_BUCKETS: [f64; 11] = [-0.5, 0.0, 0.25, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95, 1.0];

/// The reference cache's counters and byte gauge.
pub(super) fn cache(r: &Registrar<'_>) -> CacheMetrics {
    CacheMetrics {
        hits: r.counter(
            "psr_reward_reference_cache_hits_total",
            "Reference lookups served from the cache",
        ),
        misses: r.counter(
            "psr_reward_reference_cache_misses_total",
            "Reference lookups that had to detect and embed",
        ),
        evictions: r.counter(
            "psr_reward_reference_cache_evictions_total",
            "References evicted to stay within the byte budget",
        ),
        bytes: r.gauge(
            "psr_reward_reference_cache_bytes",
            "Approximate bytes held by the reference cache",
        ),
    }
}

/// The remote-service families, labelled by service.
pub(super) struct RemoteFamilies {
    calls: IntCounterVec,
    retries: IntCounterVec,
    duration: HistogramVec,
    breaker: IntGaugeVec,
}

impl RemoteFamilies {
    /// Registers the families and creates every service's children (each outcome at zero).
    pub fn register(r: &Registrar<'_>) -> Self {
        let families = Self {
            calls: r.counters(
                "psr_reward_remote_calls_total",
                "Calls to remote services (judge, remote scorer) by outcome: ok or a failure reason",
                &["service", "outcome"],
            ),
            retries: r.counters(
                "psr_reward_remote_retries_total",
                "Retried attempts to remote services",
                &["service"],
            ),
            duration: r.histograms(
                "psr_reward_remote_duration_seconds",
                "Duration of a remote call, retries included",
                &["service"],
                &SECONDS_BUCKETS,
            ),
            breaker: r.gauges(
                "psr_reward_remote_breaker_state",
                "Circuit breaker of a remote service: 0 closed, 1 open, 2 half-open",
                &["service"],
            ),
        };
        for service in REMOTE_SERVICES {
            families.service(service);
        }
        families
    }

    /// The children of one service.
    pub fn service(&self, service: &str) -> RemoteMetrics {
        RemoteMetrics {
            ok: self.calls.with_label_values(&[service, "ok"]),
            retries: self.retries.with_label_values(&[service]),
            failures: REMOTE_FAILURE_REASONS.map(|r| self.calls.with_label_values(&[service, r])),
            duration: self.duration.with_label_values(&[service]),
            breaker_state: self.breaker.with_label_values(&[service]),
        }
    }
}

/// Judge answers without a parseable score, and judgements served from the judge cache.
pub(super) fn judge(r: &Registrar<'_>) -> (IntCounter, IntCounter) {
    (
        r.counter(
            "psr_reward_judge_parse_failures_total",
            "Judge answers without a parseable [Score]",
        ),
        r.counter(
            "psr_reward_judge_cache_hits_total",
            "Judgements served from the judge cache",
        ),
    )
}

/// Null reward components, every component's child at zero.
pub(super) fn components(r: &Registrar<'_>) -> IntCounterVec {
    let components = r.counters(
        "psr_reward_component_failures_total",
        "Reward components that came back null, by component",
        &["component"],
    );
    for c in crate::reward::Component::ALL {
        components.with_label_values(&[c.as_str()]);
    }
    components
}

/// The copy-paste guard's outcome counters and score histogram.
pub(super) fn copy_paste(r: &Registrar<'_>) -> GuardMetrics {
    let checks = r.counters(
        "psr_reward_copy_paste_checks_total",
        "Subjects checked by the copy-paste guard, by outcome (suspected, clear, unscored: untextured reference)",
        &["outcome"],
    );
    GuardMetrics {
        suspected: checks.with_label_values(&["suspected"]),
        clear: checks.with_label_values(&["clear"]),
        unscored: checks.with_label_values(&["unscored"]),
        score: r
            .histograms(
                "psr_reward_copy_paste_score",
                "Copy-paste guard scores of the subjects that had one",
                &[],
                &COPY_PASTE_BUCKETS,
            )
            .with_label_values::<&str>(&[]),
    }
}
