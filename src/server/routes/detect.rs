//! `POST /v1/detect`: the detector stage on its own. Each (image, phrase) pair is one detector
//! item, captioned the way the PSR scripts caption a category ("cat" -> "cat.").

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::timing::{collect, Timing};
use crate::models::{category_caption, Detection, DetectorItem, Prompt};
use crate::reward::DetectorBatching;
use crate::server::error::{ApiError, ErrorBody};
use crate::server::extract::{parse, JsonBytes};
use crate::server::images::ImageSource;
use crate::server::prepare;
use crate::server::state::AppState;

/// Images and the phrases to find in each of them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectRequest<'a> {
    /// Base64 images (PNG, JPEG or WebP; a `data:` URL prefix is accepted).
    #[serde(borrow)]
    #[schema(value_type = Vec<String>)]
    pub images: Vec<Cow<'a, str>>,
    /// Phrases (categories) to detect, each in its own detector pass.
    pub phrases: Vec<String>,
    /// Score threshold (default: the manifest's `box_threshold`, 0.35 as in PSR).
    pub box_threshold: Option<f32>,
    /// Deadline in milliseconds from arrival.
    pub timeout_ms: Option<u64>,
    /// Priority level, 0 = served first.
    pub priority: Option<u8>,
    /// `equal_shapes` (default): batched only with items needing no padding, so a detection
    /// equals the model's at batch size 1; `padded`: with any, for throughput.
    pub batching: Option<DetectorBatching>,
}

/// Detections of one phrase in one image, in query order (the PSR box is the first).
#[derive(Debug, Serialize, ToSchema)]
pub struct PhraseDetections {
    pub phrase: String,
    pub caption: String,
    pub detections: Vec<Detection>,
}

/// Results for one image.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageDetections {
    pub width: u32,
    pub height: u32,
    pub phrases: Vec<PhraseDetections>,
}

/// Detections for every image, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct DetectResponse {
    pub model: String,
    pub box_threshold: f32,
    pub results: Vec<ImageDetections>,
}

/// A detect request as both edges parse it, its images borrowed from the message.
pub struct DetectInput<'a> {
    pub images: Vec<ImageSource<'a>>,
    pub phrases: Vec<String>,
    pub box_threshold: Option<f32>,
    pub timeout_ms: Option<u64>,
    pub priority: Option<u8>,
    /// `None`: `equal_shapes`.
    pub batching: Option<DetectorBatching>,
}

/// A request message that owns its images (a JSON body, a protobuf message) and parses into
/// a [`DetectInput`] borrowing them, on the CPU pool.
pub trait DetectBody: Send + 'static {
    /// Parses the message and hands the parsed request to `f`.
    fn with_input<R>(
        &self,
        f: impl FnOnce(DetectInput<'_>) -> Result<R, ApiError>,
    ) -> Result<R, ApiError>;
}

/// The JSON body of `POST /v1/detect`.
struct DetectJson(axum::body::Bytes);

impl DetectBody for DetectJson {
    fn with_input<R>(
        &self,
        f: impl FnOnce(DetectInput<'_>) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let req: DetectRequest = parse(&self.0)?;
        f(DetectInput {
            images: req.images.iter().map(|s| ImageSource::Base64(s)).collect(),
            phrases: req.phrases,
            box_threshold: req.box_threshold,
            timeout_ms: req.timeout_ms,
            priority: req.priority,
            batching: req.batching,
        })
    }
}

struct Prepared {
    items: Vec<DetectorItem>,
    sizes: Vec<(u32, u32)>,
    phrases: Vec<(String, String)>,
    prompts: Vec<Prompt>,
    threshold: f32,
    opts: crate::batcher::SubmitOptions,
    /// The request's share of the in-flight budget, held until the response is built.
    _permit: crate::server::admission::BytesPermit,
}

/// Checks a parsed request and turns it into detector items (CPU pool).
fn prepare(
    st: &AppState,
    lane: &crate::models::DetectorLane,
    req: DetectInput<'_>,
    arrived: Instant,
) -> Result<Prepared, ApiError> {
    let lim = &st.config().limits;
    if req.phrases.is_empty() || req.phrases.len() > lim.max_phrases {
        return Err(ApiError::invalid(format!(
            "phrases must hold 1..={} phrases",
            lim.max_phrases
        )));
    }
    let threshold = req.box_threshold.unwrap_or(lane.box_threshold);
    if !(0.0..1.0).contains(&threshold) {
        return Err(ApiError::invalid("box_threshold must be in [0, 1)"));
    }
    let opts = st.submit_options(arrived, req.timeout_ms, req.priority)?;
    let shapes = req
        .batching
        .unwrap_or(DetectorBatching::EqualShapes)
        .shape_rule();
    let mut phrases = Vec::with_capacity(req.phrases.len());
    let mut prompts = Vec::with_capacity(req.phrases.len());
    for (i, phrase) in req.phrases.into_iter().enumerate() {
        let at = |e: crate::models::TokenizeError| {
            ApiError::invalid(e.to_string()).at(format_args!("phrases[{i}]"))
        };
        let caption = category_caption(&phrase).map_err(at)?;
        prompts.push(lane.prompt(&[phrase.as_str()]).map_err(at)?);
        phrases.push((phrase, caption));
    }
    let (images, permit) = prepare::decode_each(st, &req.images, &lane.preprocess, |img| {
        let t = prepare::tensor(&img.rgb, &lane.preprocess, st.tensors())?;
        Ok((img.rgb.dimensions(), Arc::new(t)))
    })?;
    let mut items = Vec::with_capacity(images.len() * prompts.len());
    let mut sizes = Vec::with_capacity(images.len());
    for ((w, h), tensor) in images {
        sizes.push((w, h));
        items.extend(
            prompts
                .iter()
                .map(|p| lane.item(tensor.clone(), p, (w, h), shapes)),
        );
    }
    Ok(Prepared {
        items,
        sizes,
        phrases,
        prompts,
        threshold,
        opts,
        _permit: permit,
    })
}

/// Runs one detect request from either edge: parse and decode on the CPU pool, the detector
/// lane, then the detections per image and phrase. `route` labels the preprocess metric.
pub async fn run(
    state: &AppState,
    arrived: Instant,
    route: &str,
    body: impl DetectBody,
) -> Result<(DetectResponse, Timing), ApiError> {
    let models = state.models()?.clone();
    let lane = models
        .detector
        .as_ref()
        .ok_or_else(|| ApiError::not_served("detector"))?;
    let (st, job_models) = (state.clone(), models.clone());
    let prepared = state
        .cpu()
        .run(move || {
            let lane = job_models
                .detector
                .as_ref()
                .ok_or_else(|| ApiError::not_served("detector"))?;
            body.with_input(|input| prepare(&st, lane, input, arrived))
        })
        .await??;
    let mut timing = Timing {
        preprocess: arrived.elapsed(),
        ..Timing::default()
    };
    state
        .metrics()
        .observe_preprocess(route, timing.preprocess.as_secs_f64());
    let tickets = lane.batcher.submit(prepared.items, prepared.opts)?;
    let outputs = collect(tickets, prepared.opts.deadline, &mut timing).await?;
    for (k, out) in outputs.iter().enumerate() {
        lane.validate(out).map_err(|e| {
            let (image, phrase) = (k / prepared.phrases.len(), k % prepared.phrases.len());
            ApiError::invalid_output(e).at(format_args!("images[{image}], phrases[{phrase}]"))
        })?;
    }
    let per_image = prepared.phrases.len();
    let results = prepared
        .sizes
        .iter()
        .zip(outputs.chunks(per_image))
        .map(|(&(w, h), outs)| ImageDetections {
            width: w,
            height: h,
            phrases: prepared
                .phrases
                .iter()
                .zip(&prepared.prompts)
                .zip(outs)
                .map(|(((phrase, caption), prompt), out)| PhraseDetections {
                    phrase: phrase.clone(),
                    caption: caption.clone(),
                    detections: lane.detections(out, prompt, 0, prepared.threshold, w, h),
                })
                .collect(),
        })
        .collect();
    let body = DetectResponse {
        model: lane.batcher.name().to_string(),
        box_threshold: prepared.threshold,
        results,
    };
    Ok((body, timing))
}

/// Detects phrases in images with the served detector.
#[utoipa::path(post, path = "/v1/detect", tag = crate::server::docs::MODEL_STAGES,
    summary = "Detect phrases in images with the served detector",
    description = "Each (image, phrase) pair is one detector pass with the PSR caption \
(`\"Cat\"` -> `\"cat.\"`). Detections are the queries scoring above `box_threshold`, in query \
order (subject consistency keeps the first); boxes are `[x1, y1, x2, y2]` in image pixels.\n\n\
The example finds the red and the blue square of a small image with `make run`'s default \
fixture detector, which detects solid shapes by the colour words of the phrase.",
    request_body(content = DetectRequest, description = "Images and the phrases to find in each",
        example = crate::server::docs::examples::detect),
    responses(
        (status = 200, description = "Detections per image and phrase, in request order", body = DetectResponse),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
        (status = 504, body = ErrorBody)))]
pub async fn detect(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let (body, timing) = run(&state, arrived, "/v1/detect", DetectJson(body)).await?;
    Ok((timing.headers(arrived), Json(body)).into_response())
}
