//! HTTP route handlers, one file per concern.

pub mod detect;
pub mod embed;
pub mod health;
pub mod info;
pub mod metrics;
pub mod playground;
pub mod reward;
pub mod timing;

use axum::http::StatusCode;

use super::error::ApiError;

/// JSON 404 for unknown routes (axum's default is an empty plain response).
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// JSON 405 for a known route with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
