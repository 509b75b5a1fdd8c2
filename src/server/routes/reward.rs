//! `POST /v1/reward`: rewards for generated images: subject consistency (the PSR reward),
//! position alignment, semantic alignment by the VLM judge, aesthetic, and their weighted,
//! normalised combination.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::explain::{self, ExplainInput, Explanation};
use crate::reward::copy_paste::CopyPasteOverrides;
use crate::reward::engine::{self, ItemReward};
use crate::reward::{ErrorKey, Mode, ScError, ScOptions, ScOverrides};
use crate::server::error::{ApiError, ErrorBody};
use crate::server::extract::{parse, JsonBytes};
use crate::server::images::ImageSource;
use crate::server::reward_input::{self, ItemIn, ReferenceIn, RewardBody, RewardInput, SubjectIn};
use crate::server::state::AppState;

/// A subject's reference: a base64 image, or `{"ref": hash}` of one sent before.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ReferenceRequest<'a> {
    #[schema(value_type = String)]
    Image(#[serde(borrow)] Cow<'a, str>),
    Cached {
        #[serde(rename = "ref")]
        hash: String,
    },
}

/// One subject: its category (the detector phrase) and its reference image.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectRequest<'a> {
    pub name: String,
    #[serde(borrow)]
    pub reference: ReferenceRequest<'a>,
}

/// One generated image to score.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RewardItem<'a> {
    /// Base64 generated image.
    #[serde(borrow)]
    #[schema(value_type = String)]
    pub image: Cow<'a, str>,
    /// The generation prompt (used by the alignment components).
    #[serde(default)]
    pub prompt: String,
    #[serde(borrow)]
    pub subjects: Vec<SubjectRequest<'a>>,
    /// PSRBench task (attribute, action, background, position, complex, three, four).
    pub task: Option<String>,
}

/// A reward request. `Serialize` too: `psr-reward eval` builds exactly this type, in
/// process and over HTTP.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RewardRequest<'a> {
    #[serde(borrow)]
    pub items: Vec<RewardItem<'a>>,
    /// Component weights (`subject_consistency`, `semantic_alignment`, `aesthetic`,
    /// `position`); only named components are computed. Default: the configured weights
    /// (the paper's 0.4 / 0.4 / 0.2) of the components this deployment serves.
    pub rewards: Option<BTreeMap<String, f64>>,
    /// `psr` (default): the evaluation scripts exactly; `robust`: better-behaved defaults.
    pub mode: Option<Mode>,
    /// Overrides of the mode's subject-consistency options.
    pub options: Option<ScOverrides>,
    pub timeout_ms: Option<u64>,
    pub priority: Option<u8>,
    /// Return the judge's answer (up to 4000 characters: its reasoning) with every
    /// semantic-alignment result; by default only unusable answers come back (500).
    pub judge_answer: Option<bool>,
    /// Copy-paste guard overrides: `threshold` (suspected when a subject's score reaches it)
    /// and `penalty` (subtracted times the share of suspected subjects; default 0 in `psr`
    /// mode, `[rewards.copy_paste].penalty` in `robust` mode).
    pub copy_paste: Option<CopyPasteOverrides>,
    /// Return per item an `explanation`: the generated image annotated with each subject's
    /// crop and similarity, and each subject's generated and reference crops (PNGs; at most 8
    /// items a request, else 422 `request_too_large`).
    pub explain: Option<bool>,
}

/// Where the request's time went, in milliseconds.
#[derive(Debug, Serialize, ToSchema)]
pub struct RewardTiming {
    pub total_ms: f64,
    pub decode_ms: f64,
    pub detection_ms: f64,
    pub embedding_ms: f64,
}

/// One item's reward, with its explanation when the request asked for one.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResult {
    #[serde(flatten)]
    pub reward: ItemReward,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// The reward response.
#[derive(Debug, Serialize, ToSchema)]
pub struct RewardResponse {
    pub results: Vec<ItemResult>,
    /// The subject-consistency options in force.
    pub options: ScOptions,
    pub timing: RewardTiming,
}

/// The JSON body of `POST /v1/reward`.
struct RewardJson(axum::body::Bytes);

impl RewardBody for RewardJson {
    fn with_input<R>(
        &self,
        f: impl FnOnce(RewardInput<'_>) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let req: RewardRequest = parse(&self.0)?;
        let items = req.items.iter().map(|item| ItemIn {
            image: ImageSource::Base64(&item.image),
            prompt: item.prompt.clone(),
            subjects: item
                .subjects
                .iter()
                .map(|s| SubjectIn {
                    name: s.name.clone(),
                    reference: match &s.reference {
                        ReferenceRequest::Image(b64) => {
                            ReferenceIn::Image(ImageSource::Base64(b64))
                        }
                        ReferenceRequest::Cached { hash } => ReferenceIn::Cached(hash.clone()),
                    },
                })
                .collect(),
            task: item.task.clone(),
        });
        f(RewardInput {
            items: items.collect(),
            rewards: req.rewards,
            mode: req.mode.unwrap_or_default(),
            options: req.options.unwrap_or_default(),
            timeout_ms: req.timeout_ms,
            priority: req.priority,
            judge_answer: req.judge_answer.unwrap_or(false),
            copy_paste: req.copy_paste.unwrap_or_default(),
            explain: req.explain.unwrap_or(false),
        })
    }
}

impl From<ScError> for ApiError {
    fn from(e: ScError) -> Self {
        match e {
            ScError::UnknownReference { .. } => ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_reference",
                e.to_string(),
            ),
            ScError::Name { .. } => ApiError::invalid(e.to_string()),
            ScError::NotServed(role) => ApiError::not_served(role),
            ScError::Batch(b) => b.into(),
            ScError::Timeout => ApiError::timeout(),
            ScError::Pool(p) => p.into(),
            ScError::Closed => ApiError::internal(e.to_string()),
            ScError::Preprocess(m) => ApiError::internal(m),
        }
    }
}

impl From<engine::RewardError> for ApiError {
    fn from(e: engine::RewardError) -> Self {
        use engine::RewardError;
        match e {
            RewardError::SubjectConsistency(sc) => sc.into(),
            RewardError::Lane(lane) => lane.into(),
            RewardError::Timeout => ApiError::timeout(),
            RewardError::Preprocess(m) => ApiError::internal(m),
            RewardError::Pool(p) => p.into(),
        }
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Scores generated images.
#[utoipa::path(post, path = "/v1/reward", tag = crate::server::docs::SCORING,
    summary = "Score generated images (subject consistency, alignment, aesthetic)",
    description = "Each item is a generated image, its prompt and its subjects (a category \
name, which is the detector phrase, and a reference image). Subject consistency detects each \
subject in the image, crops it and compares its embedding with the reference's (the PSR \
reward); position and semantic alignment and the aesthetic score are the other components. \
`rewards` names the components and their weights (default: the configured weights of the \
components this deployment serves); `reward` is the weighted sum of the normalised scores. A \
remote component that fails (the judge, a remote aesthetic scorer) is null with its reason in \
`errors`; the others still come back. The in-process models never hide overload: a lane that \
refuses is 429 with `Retry-After`, a passed deadline 504, a model fault 500; an item whose \
model output is invalid (NaN, zero norm) has its component error in `errors`.\n\n\
The example scores a black image with a red and a blue square against a red and a blue \
reference, with `make run`'s default models.",
    request_body(content = RewardRequest, description = "Images to score, with their subjects",
        example = crate::server::docs::examples::reward),
    responses(
        (status = 200, description = "One result per item, in request order", body = RewardResponse),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
        (status = 504, body = ErrorBody)))]
pub async fn reward(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let services = reward_input::services(&state)?;
    let (decoded, decode_time) =
        reward_input::decode_on_pool(&state, arrived, "/v1/reward", RewardJson(body)).await?;
    let (results, stages) = engine::compute(&services, decoded.items, &decoded.plan).await?;
    let results = match decoded.explain {
        Some(inputs) => {
            let options = decoded.plan.options;
            state
                .cpu()
                .run(move || with_explanations(results, &inputs, options))
                .await?
        }
        None => results
            .into_iter()
            .map(|reward| ItemResult {
                reward,
                explanation: None,
            })
            .collect(),
    };
    let timing = RewardTiming {
        total_ms: ms(arrived.elapsed()),
        decode_ms: ms(decode_time),
        detection_ms: ms(stages.detection),
        embedding_ms: ms(stages.embedding),
    };
    let headers = super::timing::Timing {
        preprocess: decode_time,
        queue: stages.queue,
        inference: stages.inference,
    }
    .headers(arrived);
    let body = RewardResponse {
        results,
        options: decoded.plan.options,
        timing,
    };
    drop(decoded.permit);
    Ok((headers, Json(body)).into_response())
}

/// Each result with its explanation; one that cannot be drawn is reported in the item's
/// `errors` (`explanation`), never failing the request.
fn with_explanations(
    results: Vec<ItemReward>,
    inputs: &[ExplainInput],
    options: crate::reward::ScOptions,
) -> Vec<ItemResult> {
    results
        .into_iter()
        .zip(inputs)
        .map(|(mut reward, input)| {
            let sc = reward.components.subject_consistency.as_ref();
            let explanation = match explain::explain(input, sc, options) {
                Ok(e) => Some(e),
                Err(e) => {
                    reward.errors.insert(ErrorKey::Explanation, e.to_string());
                    None
                }
            };
            ItemResult {
                reward,
                explanation,
            }
        })
        .collect()
}
