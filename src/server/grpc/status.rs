//! The one place where the service's errors become gRPC statuses: the code follows the HTTP
//! status (and a few `error_type`s), and the details carry a `google.rpc.ErrorInfo` whose
//! `reason` is the HTTP API's `error_type`, plus a `google.rpc.RetryInfo` when HTTP would send
//! `Retry-After` (the table is in the proto's header).

use std::collections::HashMap;
use std::time::Duration;

use axum::http::StatusCode;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::server::error::ApiError;

/// `ErrorInfo.domain` of every error the service sends.
pub const DOMAIN: &str = "psr-reward";

/// The gRPC code of an error.
pub fn code_of(e: &ApiError) -> Code {
    match (e.status, e.error_type) {
        (_, "unknown_reference") => Code::NotFound,
        (_, "model_not_loaded") => Code::Unimplemented,
        (StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE, _) => Code::InvalidArgument,
        (StatusCode::UNPROCESSABLE_ENTITY, _) => Code::InvalidArgument,
        (StatusCode::UNAUTHORIZED, _) => Code::Unauthenticated,
        (StatusCode::NOT_FOUND, _) => Code::NotFound,
        (StatusCode::TOO_MANY_REQUESTS, _) => Code::ResourceExhausted,
        (StatusCode::SERVICE_UNAVAILABLE, _) => Code::Unavailable,
        (StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT, _) => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

/// The status of an error, with its `error_type` and retry delay in the details.
pub fn status_of(e: ApiError) -> Status {
    let mut details = ErrorDetails::with_error_info(e.error_type, DOMAIN, HashMap::new());
    if let Some(secs) = e.retry_after_secs {
        details.set_retry_info(Some(Duration::from_secs(secs)));
    }
    Status::with_error_details(code_of(&e), e.message, details)
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        status_of(e)
    }
}

/// The name the metrics use for a code (`OK`, `INVALID_ARGUMENT`, ...), as the gRPC spec
/// spells it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_carries_its_error_type_and_retry_delay() {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", "busy");
        e.retry_after_secs = Some(2);
        let status = status_of(e);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "busy");
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("overloaded", DOMAIN)
        );
        assert_eq!(
            details.retry_info().unwrap().retry_delay,
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn codes_follow_the_http_status_and_error_type() {
        let cases = [
            (ApiError::invalid("x"), Code::InvalidArgument),
            (
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "image_too_large", "x"),
                Code::InvalidArgument,
            ),
            (
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_reference", "x"),
                Code::NotFound,
            ),
            (ApiError::not_served("detector"), Code::Unimplemented),
            (ApiError::not_ready("x"), Code::Unavailable),
            (ApiError::timeout(), Code::DeadlineExceeded),
            (ApiError::internal("x"), Code::Internal),
        ];
        for (e, code) in cases {
            let t = e.error_type;
            let status = status_of(e);
            assert_eq!(status.code(), code, "{t}");
            assert_eq!(status.get_error_details().error_info().unwrap().reason, t);
        }
        assert!(status_of(ApiError::not_ready("x"))
            .get_error_details()
            .retry_info()
            .is_some());
        assert!(status_of(ApiError::timeout())
            .get_error_details()
            .retry_info()
            .is_none());
    }
}
