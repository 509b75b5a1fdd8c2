//! `GET /metrics`: Prometheus text exposition.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::server::error::ApiError;
use crate::server::state::AppState;

/// Renders every metric family.
#[utoipa::path(get, path = "/metrics", tag = crate::server::docs::OPERATIONS,
    summary = "Prometheus metrics",
    description = "Requests, latencies, queue depths, batch sizes, cache hits and remote \
service health, in the Prometheus text exposition format.",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics()
        .render()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
