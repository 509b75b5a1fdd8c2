//! Calling services beside ours (the VLM judge, remote reward scorers) without letting them
//! hurt us: bounded concurrency, a per-attempt timeout, retries with exponential backoff on
//! 429 / 5xx / connection failures, and a circuit breaker so a dead service fails fast instead
//! of holding every request for the whole retry budget.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter, IntGauge};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// How a remote service is called.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemotePolicy {
    /// Most calls in flight at once.
    pub max_concurrency: usize,
    /// Limit of one attempt.
    pub timeout_ms: u64,
    /// Attempts after the first, on 429 / 5xx / connection errors / timeouts.
    pub retries: u32,
    /// First backoff; doubles per retry.
    pub backoff_ms: u64,
    /// Consecutive failed calls (after retries) that open the breaker.
    pub breaker_failures: u32,
    /// How long an open breaker fails calls at once before one trial call.
    pub breaker_cooldown_ms: u64,
    /// PEM CA certificates trusted for an `https://` URL besides the public roots (a private
    /// CA in the cluster).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for RemotePolicy {
    fn default() -> Self {
        Self {
            max_concurrency: 16,
            timeout_ms: 60_000,
            retries: 3,
            backoff_ms: 200,
            breaker_failures: 5,
            breaker_cooldown_ms: 10_000,
            ca_file: None,
        }
    }
}

/// Why a remote call gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    #[error("{service} is unavailable: circuit breaker open after repeated failures")]
    BreakerOpen { service: &'static str },
    #[error("{service} answered HTTP {status}: {body}")]
    Status {
        service: &'static str,
        status: u16,
        body: String,
    },
    #[error("{service} timed out after {timeout_ms} ms")]
    Timeout {
        service: &'static str,
        timeout_ms: u64,
    },
    #[error("{service} cannot be reached: {message}")]
    Connect {
        service: &'static str,
        message: String,
    },
    #[error("{service} sent an invalid response: {message}")]
    Invalid {
        service: &'static str,
        message: String,
    },
}

impl RemoteError {
    fn retryable(&self) -> bool {
        match self {
            RemoteError::Status { status, .. } => *status == 429 || *status >= 500,
            RemoteError::Timeout { .. } | RemoteError::Connect { .. } => true,
            RemoteError::BreakerOpen { .. } | RemoteError::Invalid { .. } => false,
        }
    }

    /// Low-cardinality label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            RemoteError::BreakerOpen { .. } => "breaker_open",
            RemoteError::Status { .. } => "status",
            RemoteError::Timeout { .. } => "timeout",
            RemoteError::Connect { .. } => "connect",
            RemoteError::Invalid { .. } => "invalid",
        }
    }
}

/// The metrics of one remote service.
#[derive(Clone)]
pub struct RemoteMetrics {
    pub ok: IntCounter,
    pub retries: IntCounter,
    /// Failed calls by reason (see [`RemoteError::reason`]).
    pub failures: [IntCounter; 5],
    pub duration: Histogram,
    /// 0 closed, 1 open, 2 half-open.
    pub breaker_state: IntGauge,
}

/// The failure reasons, in the order of [`RemoteMetrics::failures`].
pub const REMOTE_FAILURE_REASONS: [&str; 5] =
    ["breaker_open", "status", "timeout", "connect", "invalid"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial call is in flight; everyone else still fails fast until it answers.
    HalfOpen {
        trial_since: Instant,
    },
}

/// A remote service endpoint with its policy.
pub struct Remote {
    pub service: &'static str,
    http: reqwest::Client,
    policy: RemotePolicy,
    permits: Semaphore,
    breaker: Mutex<Breaker>,
    metrics: RemoteMetrics,
}

impl Remote {
    /// A client for `service` (a name for errors and metrics).
    pub fn new(
        service: &'static str,
        policy: RemotePolicy,
        metrics: RemoteMetrics,
    ) -> Result<Self, RemoteError> {
        let http = crate::server::tls::client_builder(policy.ca_file.as_deref())
            .map_err(|e| RemoteError::Connect {
                service,
                message: e.to_string(),
            })?
            .timeout(Duration::from_millis(policy.timeout_ms))
            .no_proxy()
            .build()
            .map_err(|e| RemoteError::Connect {
                service,
                message: e.to_string(),
            })?;
        Ok(Self {
            service,
            http,
            permits: Semaphore::new(policy.max_concurrency.max(1)),
            policy,
            breaker: Mutex::new(Breaker::Closed { failures: 0 }),
            metrics,
        })
    }

    /// Whether calls currently go through (`closed` or `half_open`) or fail fast (`open`).
    pub fn breaker_state(&self) -> &'static str {
        match *self.breaker.lock().unwrap_or_else(PoisonError::into_inner) {
            Breaker::Closed { .. } => "closed",
            Breaker::Open { until } if Instant::now() < until => "open",
            _ => "half_open",
        }
    }

    fn admit(&self) -> Result<(), RemoteError> {
        let mut b = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        match *b {
            Breaker::Open { until } if Instant::now() < until => Err(RemoteError::BreakerOpen {
                service: self.service,
            }),
            Breaker::Open { .. } => {
                *b = Breaker::HalfOpen {
                    trial_since: Instant::now(),
                };
                self.metrics.breaker_state.set(2);
                Ok(())
            }
            // Exactly one trial: a second caller waits for its verdict, unless the trial was
            // abandoned (its caller went away before it could record), then a new one starts.
            Breaker::HalfOpen { trial_since } if trial_since.elapsed() < self.trial_limit() => {
                Err(RemoteError::BreakerOpen {
                    service: self.service,
                })
            }
            Breaker::HalfOpen { .. } => {
                *b = Breaker::HalfOpen {
                    trial_since: Instant::now(),
                };
                Ok(())
            }
            Breaker::Closed { .. } => Ok(()),
        }
    }

    /// How long a half-open trial may take with all its retries before another is allowed.
    fn trial_limit(&self) -> Duration {
        let per_try = self.policy.timeout_ms + self.policy.backoff_ms;
        Duration::from_millis(per_try.saturating_mul(u64::from(self.policy.retries) + 1))
    }

    fn record(&self, ok: bool) {
        let mut b = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        *b = match (*b, ok) {
            (_, true) => Breaker::Closed { failures: 0 },
            (Breaker::Closed { failures }, false)
                if failures + 1 < self.policy.breaker_failures =>
            {
                Breaker::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => Breaker::Open {
                until: Instant::now() + Duration::from_millis(self.policy.breaker_cooldown_ms),
            },
        };
        self.metrics.breaker_state.set(match *b {
            Breaker::Closed { .. } => 0,
            Breaker::Open { .. } => 1,
            Breaker::HalfOpen { .. } => 2,
        });
    }

    /// POSTs `body` as JSON to `url` (with a bearer token when given) and parses the JSON
    /// answer, applying the policy.
    pub async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: &serde_json::Value,
        bearer: Option<&str>,
    ) -> Result<T, RemoteError> {
        self.admit()
            .inspect_err(|e| self.metrics.failures[reason_index(e)].inc())?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| RemoteError::Connect {
                service: self.service,
                message: "client closed".into(),
            })?;
        let started = Instant::now();
        let mut attempt = 0;
        let result = loop {
            match self.attempt(url, body, bearer).await {
                Err(e) if e.retryable() && attempt < self.policy.retries => {
                    self.metrics.retries.inc();
                    let backoff = self.policy.backoff_ms.saturating_mul(1 << attempt.min(16));
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                    attempt += 1;
                }
                other => break other,
            }
        };
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        self.record(result.is_ok());
        match &result {
            Ok(_) => self.metrics.ok.inc(),
            Err(e) => self.metrics.failures[reason_index(e)].inc(),
        }
        result
    }

    async fn attempt<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: &serde_json::Value,
        bearer: Option<&str>,
    ) -> Result<T, RemoteError> {
        let service = self.service;
        let mut req = self.http.post(url).json(body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(RemoteError::Status {
                service,
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        serde_json::from_slice(&bytes).map_err(|e| RemoteError::Invalid {
            service,
            message: e.to_string(),
        })
    }

    fn transport(&self, e: reqwest::Error) -> RemoteError {
        if e.is_timeout() {
            RemoteError::Timeout {
                service: self.service,
                timeout_ms: self.policy.timeout_ms,
            }
        } else {
            RemoteError::Connect {
                service: self.service,
                message: e.to_string(),
            }
        }
    }
}

fn reason_index(e: &RemoteError) -> usize {
    REMOTE_FAILURE_REASONS
        .iter()
        .position(|r| *r == e.reason())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_open_breaker_admits_exactly_one_trial() {
        let policy = RemotePolicy {
            breaker_failures: 1,
            breaker_cooldown_ms: 0,
            ..RemotePolicy::default()
        };
        let metrics = crate::metrics::Metrics::new().remote("judge");
        let remote = Remote::new("judge", policy, metrics).unwrap();
        remote.record(false);
        assert!(remote.admit().is_ok(), "the cooldown passed: one trial");
        assert_eq!(remote.breaker_state(), "half_open");
        for _ in 0..3 {
            assert!(matches!(
                remote.admit(),
                Err(RemoteError::BreakerOpen { .. })
            ));
        }
        remote.record(true);
        assert!(remote.admit().is_ok() && remote.admit().is_ok());
        assert_eq!(remote.breaker_state(), "closed");
    }
}
