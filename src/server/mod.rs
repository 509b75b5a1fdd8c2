//! The HTTP edge: router, middleware (request ids, tracing, metrics, JSON panics), OpenAPI,
//! and the serve loop with graceful shutdown; the gRPC edge (`grpc`) beside it, sharing
//! everything behind the edge.

pub mod admission;
pub mod auth;
mod connections;
pub mod docs;
pub mod error;
mod extract;
pub mod grpc;
mod images;
mod prepare;
mod reward_input;
pub mod routes;
mod state;
pub mod tls;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

pub use docs::ApiDoc;
pub use error::ApiError;
pub use state::AppState;

/// The operational routes and the playground page: (path, handler).
fn operational_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/health", get(routes::health::health)),
        ("/ready", get(routes::health::ready)),
        ("/info", get(routes::info::info)),
        ("/metrics", get(routes::metrics::metrics)),
        ("/openapi.json", get(openapi_json)),
    ]
    .into_iter()
    .chain(routes::playground::routes())
    .collect()
}

/// The model and reward routes, which pass the admission gate (`limits.max_concurrent_requests`).
fn model_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/v1/embed", post(routes::embed::embed)),
        ("/v1/detect", post(routes::detect::detect)),
        ("/v1/reward", post(routes::reward::reward)),
    ]
}

/// Adds `routes` to `router`, registering each path's metric labels first. The router and the
/// metric labels come from the same list, so no hand-kept list of labels can fall behind.
fn add_routes(
    mut router: Router<AppState>,
    routes: Vec<(&'static str, MethodRouter<AppState>)>,
    metrics: &crate::metrics::Metrics,
) -> Router<AppState> {
    for (path, handler) in routes {
        metrics.register_route(path);
        router = router.route(path, handler);
    }
    router
}

/// Builds the router with every route and layer.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config().limits.max_body_bytes;
    let x_request_id = axum::http::HeaderName::from_static("x-request-id");
    let models = add_routes(Router::new(), model_routes(), state.metrics()).route_layer(
        axum::middleware::from_fn_with_state(state.clone(), admit_request),
    );
    add_routes(Router::new(), operational_routes(), state.metrics())
        .merge(models)
        .merge(docs::swagger_ui())
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(auth::layer(&state))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), record_metrics))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(x_request_id, SequentialRequestId::default()))
        .layer(axum::middleware::from_fn(connections::check_request_head))
        .layer(axum::middleware::from_fn(connections::close_after_early_errors))
        .with_state(state)
}

async fn openapi_json() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

/// Request ids: the caller's `x-request-id` is kept; otherwise a process-unique counter.
#[derive(Clone, Default)]
struct SequentialRequestId(Arc<AtomicU64>);

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("psr-{n:016x}"))
            .ok()
            .map(RequestId::new)
    }
}

async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // The matched route template (never the raw path), so the label set stays bounded.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    state.metrics().observe_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// Holds a request slot for the whole request, or answers 429 when none is free.
async fn admit_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match state.admission().request() {
        Ok(_permit) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
    .into_response()
}

/// Serves `router` on `listener` until `shutdown` resolves; then flips `/ready` to 503, stops
/// accepting, and gives in-flight requests up to `grace` to finish.
pub async fn serve<L>(
    listener: L,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let app = router(state.clone());
    let _key_reloader = state.api_keys().cloned().map(auth::spawn_reloader);
    let drain_state = state.clone();
    serve_app(
        listener,
        app,
        shutdown,
        move || {
            tracing::info!("shutdown requested: draining in-flight requests");
            drain_state.start_draining();
        },
        grace,
    )
    .await
}

/// Serves `app` on `listener` until `shutdown` resolves; then runs `on_shutdown`, stops
/// accepting, and gives in-flight requests up to `grace` to finish.
async fn serve_app<L>(
    listener: L,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_shutdown: impl FnOnce() + Send + 'static,
    grace: Duration,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let server = connections::serve_until(listener, app, async move {
        shutdown.await;
        on_shutdown();
        let _ = signalled_tx.send(());
    });
    let server = std::pin::pin!(async {
        server.await;
        Ok(())
    });
    let grace_timer = async {
        if signalled_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result,
        () = grace_timer => {
            tracing::warn!(grace_secs = grace.as_secs(), "grace period over; exiting with requests still in flight");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
