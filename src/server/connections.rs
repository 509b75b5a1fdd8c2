//! The accept loop: every connection served by hyper with limits of our choosing, so that
//! oversized request heads reach the application and get a JSON answer.
//!
//! With hyper's defaults a long URI or a large header block is refused by hyper's parser
//! itself, with an empty body, before any middleware runs. Here hyper's buffer is large
//! (1 MiB) and [`check_request_head`] enforces the service's own, smaller limits with JSON
//! 414 / 431. What remains answered by hyper alone is malformed framing (a negative
//! `Content-Length`, a URI beyond hyper's hard 64 KiB, a head beyond 1 MiB): those never
//! parse into a request.

use std::future::Future;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use super::error::ApiError;

/// Longest request target (path and query) the service answers: far above any route's need.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest header block (names and values) the service answers.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most header fields the service answers.
pub const MAX_HEADERS: usize = 128;
/// How long a client may take to send a request head (hyper closes the connection then).
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// hyper's read buffer: above every limit here, so hyper parses what we then refuse in JSON.
const HYPER_MAX_BUF: usize = 1 << 20;
/// hyper's own header count limit, above [`MAX_HEADERS`] for the same reason.
const HYPER_MAX_HEADERS: usize = 512;

/// Serves `app` on every connection `listener` accepts until `shutdown` resolves, then
/// stops accepting and waits for the open connections to finish their requests.
pub async fn serve_until<L>(mut listener: L, app: Router, shutdown: impl Future<Output = ()>)
where
    L: axum::serve::Listener,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(HYPER_MAX_BUF)
        .max_headers(HYPER_MAX_HEADERS);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            (io, _) = listener.accept() => {
                let service = TowerToHyperService::new(app.clone());
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(io), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Marks error answers to requests that carry a body `Connection: close`. Such answers may
/// leave (a 429 from admission, a 401, a 415) before the body was read, and hyper then
/// closes the connection; without the header a keep-alive client would send its next
/// request into a closed socket.
pub async fn close_after_early_errors(req: Request, next: Next) -> Response {
    let has_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let mut resp = next.run(req).await;
    if has_body && (resp.status().is_client_error() || resp.status().is_server_error()) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Refuses over-long URIs (414) and oversized header blocks (431) with JSON errors.
pub async fn check_request_head(req: Request, next: Next) -> Response {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {uri} bytes; the limit is {MAX_URI_BYTES}"),
        )
        .into_response();
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "{} header fields of {bytes} bytes; the limits are {MAX_HEADERS} fields and {MAX_HEADER_BYTES} bytes",
                headers.len()
            ),
        )
        .into_response();
    }
    next.run(req).await
}
