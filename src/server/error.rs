//! The one place where library errors become HTTP responses.
//!
//! Every response that is not a success is `{"error": "...", "error_type": "snake_case"}`,
//! including the rejections axum would otherwise send as plain text (body too large, wrong
//! content type, unknown route, wrong method, panics).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::batcher::{AwaitError, BatchError};
use crate::cpu_pool::CpuPoolError;
use crate::imaging::ImageError;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

/// The JSON body of every error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Human-readable explanation.
    pub error: String,
    /// Stable machine-readable kind, e.g. `invalid_request`, `overloaded`, `timeout`.
    pub error_type: String,
}

impl ApiError {
    /// Builds an error of any kind.
    pub fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// 422: the request is well-formed JSON but asks for something invalid.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    /// 503: the service cannot take work yet (loading) or any more (draining).
    pub fn not_ready(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message);
        e.retry_after_secs = Some(1);
        e
    }

    /// 404: the route exists but its model is not part of the served model set.
    pub fn not_served(role: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "model_not_loaded",
            format!("no {role} model is configured in the model manifest"),
        )
    }

    /// 504: the request's deadline passed.
    pub fn timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "the request's deadline passed before it completed",
        )
    }

    /// 500: a model returned an output that failed validation (NaN, zero norm, bad shape).
    pub fn invalid_output(e: crate::models::InvalidOutput) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "invalid_model_output",
            e.to_string(),
        )
    }

    /// 500: a fault inside the service.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Prefixes the message with the JSON path of the offending field, e.g. `images[2]`.
    pub fn at(mut self, path: impl std::fmt::Display) -> Self {
        self.message = format!("{path}: {}", self.message);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            error_type: self.error_type.to_string(),
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> Self {
        match &e {
            BatchError::Overloaded { retry_after, .. } => {
                let mut api = Self::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", e.to_string());
                api.retry_after_secs = Some(retry_after.as_secs().max(1));
                api
            }
            BatchError::TooLarge { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "request_too_large",
                e.to_string(),
            ),
            BatchError::Timeout { .. } => {
                Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", e.to_string())
            }
            BatchError::Backend { .. } => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "backend", e.to_string())
            }
            BatchError::ShuttingDown { .. } => Self::not_ready(e.to_string()),
        }
    }
}

impl From<AwaitError> for ApiError {
    fn from(e: AwaitError) -> Self {
        match e {
            AwaitError::Batch(b) => b.into(),
            AwaitError::Deadline => Self::timeout(),
            AwaitError::Closed => Self::internal(e.to_string()),
        }
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::TooManyBytes { .. } | ImageError::TooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "image_too_large",
                e.to_string(),
            ),
            _ => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_image",
                e.to_string(),
            ),
        }
    }
}

impl From<CpuPoolError> for ApiError {
    fn from(e: CpuPoolError) -> Self {
        Self::internal(e.to_string())
    }
}

/// Maps serde_json errors: broken JSON is 400, well-formed JSON of the wrong shape is 422.
pub fn json_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => ApiError::invalid(e.to_string()),
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string())
        }
    }
}
