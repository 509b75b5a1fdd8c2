//! Request families: count and duration per route (HTTP) or method (gRPC), and the CPU-pool
//! preprocessing time of each request.

use prometheus::{HistogramVec, IntCounterVec};

use super::registrar::Registrar;
use super::SECONDS_BUCKETS;

/// The request families, labelled by route or gRPC method.
pub(super) struct RequestMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    preprocess: HistogramVec,
}

impl RequestMetrics {
    /// Registers the request families.
    pub fn register(r: &Registrar<'_>) -> Self {
        Self {
            requests: r.counters(
                "psr_reward_requests_total",
                "Requests by route and status: HTTP routes with their status code, gRPC methods (`/psr_reward.v1.RewardService/Reward`) with their gRPC code name (`OK`, `INVALID_ARGUMENT`, ...)",
                &["route", "status"],
            ),
            duration: r.histograms(
                "psr_reward_request_duration_seconds",
                "Request duration by route (HTTP route or gRPC method)",
                &["route"],
                &SECONDS_BUCKETS,
            ),
            preprocess: r.histograms(
                "psr_reward_preprocess_duration_seconds",
                "Parse, decode and preprocess time of one request on the CPU pool",
                &["route"],
                &SECONDS_BUCKETS,
            ),
        }
    }

    /// Creates the children of a route or method with its success status (`200`, `OK`).
    pub fn register_route(&self, route: &str, ok_status: &str) {
        self.duration.with_label_values(&[route]);
        self.preprocess.with_label_values(&[route]);
        self.requests.with_label_values(&[route, ok_status]);
    }

    /// Records one finished request with its status label.
    pub fn observe(&self, route: &str, status: &str, seconds: f64) {
        self.requests.with_label_values(&[route, status]).inc();
        self.duration.with_label_values(&[route]).observe(seconds);
    }

    /// Records the CPU-pool time of one request.
    pub fn observe_preprocess(&self, route: &str, seconds: f64) {
        self.preprocess.with_label_values(&[route]).observe(seconds);
    }
}

/// A stack buffer for [`format_status`].
pub(super) fn itoa_buf() -> [u8; 3] {
    [b'0'; 3]
}

/// Formats a 3-digit HTTP status without allocating.
pub(super) fn format_status(status: u16, buf: &mut [u8; 3]) -> &str {
    let s = status.min(999);
    buf[0] = b'0' + (s / 100) as u8;
    buf[1] = b'0' + (s / 10 % 10) as u8;
    buf[2] = b'0' + (s % 10) as u8;
    std::str::from_utf8(buf).unwrap_or("000")
}
