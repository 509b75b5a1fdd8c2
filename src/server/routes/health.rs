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
#[utoipa::path(get, path = "/health", tag = crate::server::docs::OPERATIONS,
    summary = "Liveness: the process answers HTTP",
    responses((status = 200, description = "Always `ok` while the process serves", body = Status)))]
pub async fn health() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness, with the state of the remote services the rewards depend on.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub status: &'static str,
    /// Judge circuit breaker: `closed`, `open`, `half_open`, or `not_configured`. An open
    /// breaker degrades semantic alignment only, so the service stays ready.
    pub judge: &'static str,
    /// Remote aesthetic scorer breaker, likewise.
    pub aesthetic_remote: &'static str,
}

/// Readiness: every model loaded and warmed up by a real forward pass, and not draining.
#[utoipa::path(get, path = "/ready", tag = crate::server::docs::OPERATIONS,
    summary = "Readiness: models loaded and warmed up, not draining",
    description = "200 once every model is loaded and has run a real forward pass; 503 \
(`not_ready`, with `Retry-After`) before that and while draining at shutdown. Also reports the \
circuit breakers of the remote judge and aesthetic scorer, which degrade their components \
only.",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "Loading, warming up or draining", body = ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    readiness(&state)?;
    Ok(Json(Readiness {
        status: "ready",
        judge: state.judge().map_or("not_configured", |j| j.health()),
        aesthetic_remote: state
            .aesthetic_remote()
            .map_or("not_configured", |r| r.breaker_state()),
    }))
}

/// Whether the service takes work (what `/ready` and `grpc.health.v1` answer): models
/// loaded and warmed up, a live instance on every lane, not draining.
pub fn readiness(state: &AppState) -> Result<(), ApiError> {
    if state.is_draining() {
        return Err(ApiError::not_ready(
            "draining: the service is shutting down",
        ));
    }
    if !state.is_ready() {
        return Err(ApiError::not_ready("models are loading or warming up"));
    }
    let down = state
        .loaded_models()
        .map(|m| m.lanes_without_instances())
        .unwrap_or_default();
    if !down.is_empty() {
        return Err(ApiError::not_ready(format!(
            "no live instance of model {}: rebuilding after a failure",
            down.join(", ")
        )));
    }
    Ok(())
}
