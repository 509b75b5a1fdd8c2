//! What every RPC passes through besides its handler: API keys (the HTTP API's, as
//! `authorization` metadata), the call's deadline (`grpc-timeout`, the role of `timeout_ms`),
//! and its count and duration in the metrics, labelled by method.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tonic::{Code, Status};

use super::status::{code_name, status_of};
use crate::config::LimitsConfig;
use crate::server::auth::{bearer_token, ApiKeys};
use crate::server::error::ApiError;
use crate::server::state::AppState;

/// Services open without a key unless `auth.protect_operational` is set, as `/ready` is.
const OPERATIONAL_SERVICES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Passes calls with an accepted key (or to an operational service); answers
/// UNAUTHENTICATED (`unauthorized`) otherwise.
pub async fn require_key(State(keys): State<Arc<ApiKeys>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let public =
        !keys.protects_operational() && OPERATIONAL_SERVICES.iter().any(|s| path.starts_with(s));
    if public || bearer_token(req.headers()).is_some_and(|k| keys.accepts(k)) {
        return next.run(req).await;
    }
    let e = ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid API key is required: send `authorization: Bearer <key>` metadata",
    );
    status_of(e).into_http()
}

/// Parses a `grpc-timeout` value ("100m", "5S": at most 8 digits and a unit, as the gRPC
/// over HTTP/2 protocol document defines it).
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The call's deadline as the HTTP API's `timeout_ms`: none sent, none (the default
/// applies); beyond `limits.max_timeout_ms`, shortened to it; below a millisecond, one.
pub fn timeout_ms<T>(
    req: &tonic::Request<T>,
    limits: &LimitsConfig,
) -> Result<Option<u64>, ApiError> {
    let Some(value) = req.metadata().get("grpc-timeout") else {
        return Ok(None);
    };
    let timeout = value
        .to_str()
        .ok()
        .and_then(parse_timeout)
        .ok_or_else(|| ApiError::invalid("grpc-timeout: not a gRPC timeout value"))?;
    let ms = u64::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
    Ok(Some(ms.clamp(1, limits.max_timeout_ms)))
}

/// One call in the metrics: counted and timed when it ends, with its code; a call dropped
/// before it ended (the client cancelled, the connection went) counts as `CANCELLED`.
pub struct Call {
    state: AppState,
    method: &'static str,
    started: Instant,
    code: Option<Code>,
}

impl Call {
    /// Starts timing `method` (its full path).
    pub fn start(state: &AppState, method: &'static str) -> Self {
        Self {
            state: state.clone(),
            method,
            started: Instant::now(),
            code: None,
        }
    }

    /// Records how the call ended.
    pub fn end(&mut self, code: Code) {
        self.code.get_or_insert(code);
    }

    /// Records a unary call's outcome and passes it on.
    pub fn finish<T>(mut self, result: Result<T, Status>) -> Result<T, Status> {
        self.end(result.as_ref().map_or_else(Status::code, |_| Code::Ok));
        result
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled);
        self.state.metrics().observe_rpc(
            self.method,
            code_name(code),
            self.started.elapsed().as_secs_f64(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_as_the_protocol_spells_them() {
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("1500u"), Some(Duration::from_micros(1500)));
        assert_eq!(
            parse_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S", "ä"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }
}
