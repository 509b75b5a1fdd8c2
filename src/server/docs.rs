//! The API documentation, served from the binary: the OpenAPI document (served at `/openapi.json`)
//! (operations grouped by meaning, with request examples that work as they are against
//! `make run`'s default models) and Swagger UI at `/docs`, whose assets are embedded at build
//! time (`utoipa-swagger-ui`'s `vendored` feature), so the page loads on an offline machine.

pub mod examples;

use axum::Router;
use utoipa::OpenApi;
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::{error, routes};

/// Tag of the reward route.
pub const SCORING: &str = "Scoring";
/// Tag of the single-model routes (detector, embedder).
pub const MODEL_STAGES: &str = "Model stages";
/// Tag of the probes, the service description and the metrics.
pub const OPERATIONS: &str = "Operations";

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Where Swagger UI is served (`/docs` redirects to `/docs/`).
pub const DOCS_PATH: &str = "/docs";

/// The OpenAPI document, generated from the handler and type annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "psr-reward",
        description = "Batched reward service for multi-subject personalised image generation \
(PSR rewards). Images are base64 PNG, JPEG or WebP (a `data:` URL prefix is accepted). Every \
error is `{\"error\", \"error_type\"}` with its HTTP status.\n\n\
The request examples are small embedded images that `make run`'s default models \
(`models/default.toml`: the fixture colour detector, MobileNetV2, the fixture aesthetic scorer) \
understand: a black picture with a red and a blue square, detected by the colour words in the \
subject names. *Try it out* sends them as they are."
    ),
    tags(
        (name = SCORING, description = "Rewards for generated images: subject consistency (the \
PSR reward), position and semantic alignment, aesthetic, and their weighted combination."),
        (name = MODEL_STAGES, description = "One served model on its own (detector, embedder), \
for debugging, reuse of its outputs and benchmarks."),
        (name = OPERATIONS, description = "Liveness and readiness probes, what the service runs, \
and Prometheus metrics."),
    ),
    paths(
        routes::reward::reward,
        routes::detect::detect,
        routes::embed::embed,
        routes::health::health,
        routes::health::ready,
        routes::info::info,
        routes::metrics::metrics,
    ),
    components(schemas(error::ErrorBody))
)]
pub struct ApiDoc;

/// Swagger UI under `/docs`, reading the document the router serves at `/openapi.json`.
pub fn swagger_ui<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let config = Config::new([OPENAPI_PATH])
        .use_base_layout()
        // The default validator badge would call validator.swagger.io.
        .validator_url("none")
        .try_it_out_enabled(true)
        .display_request_duration(true)
        .doc_expansion("list");
    SwaggerUi::new(DOCS_PATH).config(config).into()
}
