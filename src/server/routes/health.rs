//! Liveness and readiness.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::server::error::{ApiError, ErrorBody};
use crate::server::state::AppState;

/// A probe's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub status: &'static str,
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Status)))]
pub async fn health() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness: every model loaded and warmed up by a real forward pass, and not draining.
#[utoipa::path(get, path = "/ready", responses((status = 200, body = Status), (status = 503, body = ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    if state.is_draining() {
        return Err(ApiError::not_ready(
            "draining: the service is shutting down",
        ));
    }
    if !state.is_ready() {
        return Err(ApiError::not_ready("models are loading or warming up"));
    }
    Ok(Json(Status { status: "ready" }))
}
