//! The gRPC edge (proto/psr_reward/v1/reward.proto): `RewardService` with raw image bytes and
//! streamed rewards, `grpc.health.v1.Health` following `/ready`, and server reflection.
//!
//! The tonic services are served as one axum router through the HTTP edge's own accept loop
//! (`connections::serve_until`), on their own port (`[grpc]`): not through tonic's transport
//! server, which answers a passed deadline with CANCELLED and has its own connection
//! handling. Everything behind the edge is shared with HTTP: the state, admission gates,
//! batcher lanes, request decode, API keys and metrics.

mod config;
mod convert;
mod edge;
mod health;
mod service;
mod status;
mod stream;

use std::future::Future;
use std::time::Duration;

pub use config::GrpcConfig;
pub use service::METHODS;
pub use status::{code_of, status_of, DOMAIN};

use super::state::AppState;

/// The generated messages, server and client of `psr_reward.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("psr_reward.v1");

    /// The encoded descriptors of proto/ (for reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/psr_reward_descriptor.bin"));
}

/// Why the gRPC router could not be built.
#[derive(Debug, thiserror::Error)]
#[error("gRPC reflection: {0}")]
pub struct GrpcError(#[from] tonic_reflection::server::Error);

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// The gRPC router (RewardService, health, reflection v1 and v1alpha) and the task that
/// keeps health in step with readiness (it stops when dropped).
pub fn router(state: &AppState) -> Result<(axum::Router, health::Follower), GrpcError> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let follower = health::follow(reporter, state.clone());
    for method in METHODS {
        state.metrics().register_rpc(method);
    }
    let max_message = state.config().limits.max_body_bytes;
    let rewards =
        pb::reward_service_server::RewardServiceServer::new(service::Service::new(state.clone()))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(usize::MAX);
    let routes = tonic::service::Routes::new(rewards)
        .add_service(health_service)
        .add_service(reflection_builder().build_v1()?)
        .add_service(reflection_builder().build_v1alpha()?);
    let mut app = routes.into_axum_router();
    if let Some(keys) = state.api_keys() {
        app = app.layer(axum::middleware::from_fn_with_state(
            keys.clone(),
            edge::require_key,
        ));
    }
    Ok((app, follower))
}

/// Serves the gRPC API on `listener` until `shutdown` resolves, then stops accepting and
/// gives in-flight calls up to `grace` (as [`super::serve`] does for HTTP).
pub async fn serve<L>(
    listener: L,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    let (app, _follower) = router(&state).map_err(std::io::Error::other)?;
    super::serve_app(listener, app, shutdown, || {}, grace).await
}
