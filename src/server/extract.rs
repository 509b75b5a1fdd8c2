//! Request bodies: raw bytes with the content type checked and axum's plain-text rejections
//! replaced by JSON errors. Parsing itself happens on the CPU pool, borrowing the base64 strings
//! straight from these bytes instead of copying them.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};

use std::time::Duration;

use super::error::{json_error, ApiError};
use super::state::AppState;

/// The body of a JSON POST, not yet parsed.
pub struct JsonBytes(pub Bytes);

impl FromRequest<AppState> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected `Content-Type: application/json`",
            ));
        }
        // The request already holds its admission slot: a body that never arrives must not
        // keep it (a slow-loris client would shut every caller out).
        let timeout = Duration::from_millis(state.config().limits.body_timeout_ms);
        let read = tokio::time::timeout(timeout, Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body did not arrive within limits.body_timeout_ms ({} ms)",
                        timeout.as_millis()
                    ),
                )
            })?;
        let bytes = read.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "payload_too_large", rejection.body_text())
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    rejection.body_text(),
                )
            }
        })?;
        Ok(Self(bytes))
    }
}

/// Parses a JSON body whose strings may borrow from `bytes`. Errors of shape name the path
/// of the offending field (`items[0].subjects[1].name: ...`).
pub fn parse<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let api = json_error(e.inner());
        if path == "." || api.status == axum::http::StatusCode::BAD_REQUEST {
            api
        } else {
            api.at(path)
        }
    })?;
    de.end().map_err(|e| json_error(&e))?;
    Ok(value)
}
