//! `POST /v1/embed`: the embedder stage on its own (debugging, reuse, benchmarks).

use std::borrow::Cow;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::timing::{collect, Timing};
use crate::server::error::{ApiError, ErrorBody};
use crate::server::extract::{parse, JsonBytes};
use crate::server::images::ImageSource;
use crate::server::prepare;
use crate::server::state::AppState;

/// Images to embed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest<'a> {
    /// Base64 images (PNG, JPEG or WebP; a `data:` URL prefix is accepted).
    #[serde(borrow)]
    #[schema(value_type = Vec<String>)]
    pub images: Vec<Cow<'a, str>>,
    /// Deadline in milliseconds from arrival (server default and maximum in config).
    pub timeout_ms: Option<u64>,
    /// Priority level, 0 = served first.
    pub priority: Option<u8>,
}

/// One embedding per image, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbedResponse {
    pub model: String,
    pub dimensions: usize,
    pub embeddings: Vec<Vec<f32>>,
}

/// An embed request as both edges parse it, its images borrowed from the message.
pub struct EmbedInput<'a> {
    pub images: Vec<ImageSource<'a>>,
    pub timeout_ms: Option<u64>,
    pub priority: Option<u8>,
}

/// A request message that owns its images and parses into an [`EmbedInput`] borrowing
/// them, on the CPU pool.
pub trait EmbedBody: Send + 'static {
    /// Parses the message and hands the parsed request to `f`.
    fn with_input<R>(
        &self,
        f: impl FnOnce(EmbedInput<'_>) -> Result<R, ApiError>,
    ) -> Result<R, ApiError>;
}

/// The JSON body of `POST /v1/embed`.
struct EmbedJson(axum::body::Bytes);

impl EmbedBody for EmbedJson {
    fn with_input<R>(
        &self,
        f: impl FnOnce(EmbedInput<'_>) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let req: EmbedRequest = parse(&self.0)?;
        f(EmbedInput {
            images: req.images.iter().map(|s| ImageSource::Base64(s)).collect(),
            timeout_ms: req.timeout_ms,
            priority: req.priority,
        })
    }
}

/// Runs one embed request from either edge: parse and decode on the CPU pool, then the
/// embedder lane. `route` labels the preprocess metric.
pub async fn run(
    state: &AppState,
    arrived: Instant,
    route: &str,
    body: impl EmbedBody,
) -> Result<(EmbedResponse, Timing), ApiError> {
    let models = state.models()?.clone();
    let lane_ref = models
        .embedder
        .as_ref()
        .ok_or_else(|| ApiError::not_served("embedder"))?;
    let (preprocess, st) = (lane_ref.preprocess.clone(), state.clone());
    let (tensors, opts, _permit) = state
        .cpu()
        .run(move || {
            body.with_input(|req| {
                let opts = st.submit_options(arrived, req.timeout_ms, req.priority)?;
                let (tensors, permit) =
                    prepare::decode_each(&st, &req.images, &preprocess, |img| {
                        prepare::tensor(&img.rgb, &preprocess, st.tensors())
                    })?;
                Ok((tensors, opts, permit))
            })
        })
        .await??;
    let mut timing = Timing {
        preprocess: arrived.elapsed(),
        ..Timing::default()
    };
    state
        .metrics()
        .observe_preprocess(route, timing.preprocess.as_secs_f64());
    let tickets = lane_ref.batcher.submit(tensors, opts)?;
    let embeddings = collect(tickets, opts.deadline, &mut timing)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, e)| e.map_err(|e| ApiError::invalid_output(e).at(format_args!("images[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    let body = EmbedResponse {
        model: lane_ref.batcher.name().to_string(),
        dimensions: embeddings.first().map_or(0, Vec::len),
        embeddings,
    };
    Ok((body, timing))
}

/// Embeds images with the served embedder.
#[utoipa::path(post, path = "/v1/embed", tag = crate::server::docs::MODEL_STAGES,
    summary = "Embed images with the served embedder",
    description = "Whole images, preprocessed as the model manifest says (MobileNetV2 under \
`make run`: 224 x 224, 1280 dimensions), batched with every other caller's. Useful to debug \
subject consistency, to reuse embeddings and for benchmarks.",
    request_body(content = EmbedRequest, description = "Images to embed",
        example = crate::server::docs::examples::embed),
    responses(
        (status = 200, description = "One embedding per image, in request order", body = EmbedResponse),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
        (status = 504, body = ErrorBody)))]
pub async fn embed(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let (body, timing) = run(&state, arrived, "/v1/embed", EmbedJson(body)).await?;
    Ok((timing.headers(arrived), Json(body)).into_response())
}
