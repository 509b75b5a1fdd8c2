//! `POST /v1/reward`: rewards for generated images: subject consistency (the PSR reward),
//! position alignment, semantic alignment by the VLM judge, aesthetic, and their weighted,
//! normalised combination.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::imaging::{DecodedImage, EncodedImage};
use crate::reward::engine::{self, ItemReward, Plan, PreparedItem, RewardServices};
use crate::reward::{
    ItemInput, Mode, ReferenceInput, ScError, ScOptions, ScOverrides, SubjectInput, COMPONENTS,
};
use crate::server::admission::{BytesPermit, RequestCost};
use crate::server::error::{ApiError, ErrorBody};
use crate::server::extract::{parse, JsonBytes};
use crate::server::prepare;
use crate::server::state::AppState;

/// PSRBench subsets (psr-reference.md), the values `task` may take.
const TASKS: [&str; 7] = [
    "attribute",
    "action",
    "background",
    "position",
    "complex",
    "three",
    "four",
];

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
}

/// Where the request's time went, in milliseconds.
#[derive(Debug, Serialize, ToSchema)]
pub struct RewardTiming {
    pub total_ms: f64,
    pub decode_ms: f64,
    pub detection_ms: f64,
    pub embedding_ms: f64,
}

/// The reward response.
#[derive(Debug, Serialize, ToSchema)]
pub struct RewardResponse {
    pub results: Vec<ItemReward>,
    /// The subject-consistency options in force.
    pub options: ScOptions,
    pub timing: RewardTiming,
}

/// Which components this deployment can compute.
fn available(st: &AppState, component: &str) -> Result<(), String> {
    let models = st.loaded_models();
    let has = |f: fn(&crate::models::Models) -> bool| models.is_some_and(|m| f(m));
    let ok = match component {
        "subject_consistency" => has(|m| m.detector.is_some() && m.embedder.is_some()),
        "position" => has(|m| m.detector.is_some() && m.embedder.is_some()),
        "semantic_alignment" => st.judge().is_some(),
        "aesthetic" => {
            has(|m| m.aesthetic.is_some() || m.preference.is_some())
                || st.aesthetic_remote().is_some()
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else if COMPONENTS.contains(&component) {
        Err(format!("rewards.{component}: this deployment does not serve it (see the model manifest and the [judge] / [aesthetic_remote] config)"))
    } else {
        Err(format!(
            "rewards.{component}: unknown component (known: {})",
            COMPONENTS.join(", ")
        ))
    }
}

/// Largest accepted weight: weighted sums of normalised scores stay far from overflow (a
/// weight of 1e308 would make every reward infinite, which JSON cannot carry).
const MAX_WEIGHT: f64 = 1e6;

fn validate_weights(
    st: &AppState,
    rewards: Option<BTreeMap<String, f64>>,
) -> Result<BTreeMap<String, f64>, ApiError> {
    let weights = match rewards {
        Some(w) => w,
        None => st
            .config()
            .rewards
            .weights
            .iter()
            .filter(|(name, _)| available(st, name).is_ok())
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
    };
    if weights.is_empty() {
        return Err(ApiError::invalid("rewards: name at least one component"));
    }
    for (name, w) in &weights {
        available(st, name).map_err(ApiError::invalid)?;
        if !w.is_finite() || *w < 0.0 || *w > MAX_WEIGHT {
            return Err(ApiError::invalid(format!(
                "rewards.{name}: weight must be in [0, {MAX_WEIGHT:e}]"
            )));
        }
    }
    if weights.values().all(|w| *w == 0.0) {
        return Err(ApiError::invalid("rewards: all weights are zero"));
    }
    Ok(weights)
}

struct Decoded {
    items: Vec<PreparedItem>,
    plan: Plan,
    /// The request's share of the in-flight budget, held until the response is built.
    _permit: BytesPermit,
}

/// What a reward request holds in flight, an upper bound: its distinct decoded images, one
/// detector tensor each, the embedder crops of its subjects (cached references need none)
/// and one aesthetic tensor per item.
fn reward_cost(
    st: &AppState,
    encoded: &[EncodedImage],
    items: &[RewardItem<'_>],
    image_of_item: &[usize],
    weights: &BTreeMap<String, f64>,
    options: &ScOptions,
) -> RequestCost {
    // Crops per subject: its generated crop and its reference, or with assignment matching
    // up to MAX_CANDIDATES kept boxes and the whole image besides the reference.
    let crops_per_subject = match options.matching {
        crate::reward::Matching::Psr => 2,
        crate::reward::Matching::Assignment => crate::reward::MAX_CANDIDATES as u64 + 2,
    };
    let mut cost = RequestCost::default();
    let models = st.loaded_models();
    // Detection and crops only when subject consistency (or position, which shares them) runs.
    let detects = weights.contains_key("subject_consistency") || weights.contains_key("position");
    for e in encoded {
        cost.image(&e.header);
        if let Some(d) = models.and_then(|m| m.detector.as_ref()).filter(|_| detects) {
            cost.tensors(&d.preprocess, (e.header.width, e.header.height), 1);
        }
    }
    for (item, &k) in items.iter().zip(image_of_item) {
        let size = (encoded[k].header.width, encoded[k].header.height);
        if let Some(e) = models.and_then(|m| m.embedder.as_ref()).filter(|_| detects) {
            cost.tensors(
                &e.preprocess,
                size,
                crops_per_subject * item.subjects.len() as u64,
            );
        }
        if weights.contains_key("aesthetic") {
            let aesthetic = models.and_then(|m| {
                m.preference
                    .as_ref()
                    .map(|p| p.preprocess.clone())
                    .or_else(|| m.aesthetic.as_ref().map(|a| a.preprocess.clone()))
            });
            if let Some(pre) = aesthetic {
                cost.tensors(&pre, size, 1);
            }
        }
    }
    cost
}

/// Parses, validates and decodes a request on the CPU pool. Identical reference strings are
/// decoded once (GRPO groups repeat them).
fn decode_request(st: &AppState, body: &[u8], arrived: Instant) -> Result<Decoded, ApiError> {
    let req: RewardRequest = parse(body)?;
    let limits = &st.config().limits;
    let max_subjects = st.config().rewards.max_subjects;
    if req.items.is_empty() || req.items.len() > limits.max_items_per_request {
        return Err(ApiError::invalid(format!(
            "items must hold 1..={} items",
            limits.max_items_per_request
        )));
    }
    for (i, item) in req.items.iter().enumerate() {
        if item.subjects.is_empty() || item.subjects.len() > max_subjects {
            return Err(ApiError::invalid(format!(
                "items[{i}].subjects must hold 1..={max_subjects} subjects"
            )));
        }
        for (s, subject) in item.subjects.iter().enumerate() {
            if subject.name.trim().is_empty() {
                return Err(ApiError::invalid(format!(
                    "items[{i}].subjects[{s}].name is empty"
                )));
            }
        }
        if let Some(task) = &item.task {
            if !TASKS.contains(&task.as_str()) {
                return Err(ApiError::invalid(format!(
                    "items[{i}].task: unknown task `{task}` (known: {})",
                    TASKS.join(", ")
                )));
            }
        }
    }
    let max_prompt = st.config().rewards.max_prompt_chars;
    for (i, item) in req.items.iter().enumerate() {
        if item.prompt.chars().count() > max_prompt {
            return Err(ApiError::invalid(format!(
                "items[{i}].prompt is longer than {max_prompt} characters"
            )));
        }
    }
    let weights = validate_weights(st, req.rewards)?;
    if weights.contains_key("position") && req.items.iter().any(|it| it.subjects.len() < 2) {
        return Err(ApiError::invalid(
            "rewards.position needs items with at least two subjects",
        ));
    }
    // The judge and a remote scorer receive the generated image as sent.
    let keep_b64 = weights.contains_key("semantic_alignment")
        || (weights.contains_key("aesthetic")
            && st.loaded_models().is_some_and(|m| m.aesthetic.is_none()));
    let mode = req.mode.unwrap_or_default();
    let options = ScOptions::resolve(mode, req.options.unwrap_or_default());
    let submit = st.submit_options(arrived, req.timeout_ms, req.priority)?;

    // Every distinct image string once, decoded in parallel.
    let mut unique: Vec<&str> = Vec::new();
    let mut where_used: Vec<String> = Vec::new();
    let mut image_of_item = Vec::with_capacity(req.items.len());
    // Per subject: the index of its decoded reference, or the hash it names.
    let mut image_of_ref: Vec<Vec<Result<usize, String>>> = Vec::with_capacity(req.items.len());
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, item) in req.items.iter().enumerate() {
        image_of_item.push(intern(
            &item.image,
            format!("items[{i}].image"),
            &mut unique,
            &mut where_used,
            &mut index,
        ));
        let mut refs = Vec::with_capacity(item.subjects.len());
        for (s, subject) in item.subjects.iter().enumerate() {
            refs.push(match &subject.reference {
                ReferenceRequest::Image(b64) => Ok(intern(
                    b64,
                    format!("items[{i}].subjects[{s}].reference"),
                    &mut unique,
                    &mut where_used,
                    &mut index,
                )),
                ReferenceRequest::Cached { hash } => Err(hash.clone()),
            });
        }
        image_of_ref.push(refs);
    }
    let paths: Vec<String> = where_used;
    let encoded = prepare::read_all(st, &unique, |k| paths[k].clone())?;
    let cost = reward_cost(st, &encoded, &req.items, &image_of_item, &weights, &options);
    let permit = st.admission().bytes(&cost)?;
    let decode_limits = st.decode_limits();
    let decoded: Vec<Arc<DecodedImage>> = st
        .cpu()
        .map(encoded.into_iter().enumerate().collect(), |(k, e)| {
            e.decode(&decode_limits)
                .map(Arc::new)
                .map_err(|err| ApiError::from(err).at(&paths[k]))
        })
        .into_iter()
        .collect::<Result<_, _>>()?;
    let items = req
        .items
        .into_iter()
        .zip(image_of_ref)
        .enumerate()
        .map(|(i, (item, refs))| {
            let image_b64 = keep_b64.then(|| item.image.to_string());
            PreparedItem {
                mime: mime_of(&item.image),
                input: ItemInput {
                    image: decoded[image_of_item[i]].clone(),
                    subjects: item
                        .subjects
                        .into_iter()
                        .zip(refs)
                        .map(|(subject, reference)| SubjectInput {
                            name: subject.name,
                            reference: match reference {
                                Ok(k) => ReferenceInput::Image(decoded[k].clone()),
                                Err(hash) => ReferenceInput::Cached(hash),
                            },
                        })
                        .collect(),
                },
                prompt: item.prompt,
                task: item.task,
                image_b64,
            }
        })
        .collect();
    Ok(Decoded {
        items,
        _permit: permit,
        plan: Plan {
            weights,
            mode,
            options,
            submit,
            judge_answer: req.judge_answer.unwrap_or(false),
        },
    })
}

/// The MIME type of a base64 image, from its first bytes (for the judge's data URL).
fn mime_of(b64: &str) -> &'static str {
    let head = b64.trim_start();
    let head = head.split_once(";base64,").map_or(head, |(_, rest)| rest);
    if head.starts_with("/9j/") {
        "image/jpeg"
    } else if head.starts_with("UklGR") {
        "image/webp"
    } else {
        "image/png"
    }
}

/// Index of `s` among the distinct image strings, adding it (and where it was used) if new.
fn intern<'a>(
    s: &'a str,
    path: String,
    unique: &mut Vec<&'a str>,
    paths: &mut Vec<String>,
    index: &mut HashMap<&'a str, usize>,
) -> usize {
    if let Some(&k) = index.get(s) {
        return k;
    }
    unique.push(s);
    paths.push(path);
    index.insert(s, unique.len() - 1);
    unique.len() - 1
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
    let services = RewardServices {
        sc: state.sc_services()?,
        judge: state.judge().cloned(),
        aesthetic_remote: state
            .aesthetic_remote()
            .zip(state.config().aesthetic_remote.as_ref())
            .map(|(r, c)| (r.clone(), c.url.clone())),
        normalization: state.config().rewards.normalization.clone(),
        policy: state.config().rewards.failure_policy,
        metrics: state.metrics_arc(),
    };
    let st = state.clone();
    let decoded = state
        .cpu()
        .run(move || decode_request(&st, &body, arrived))
        .await??;
    let decode_time = arrived.elapsed();
    state
        .metrics()
        .observe_preprocess("/v1/reward", decode_time.as_secs_f64());
    let (results, stages) = engine::compute(&services, decoded.items, &decoded.plan).await?;
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
    Ok((headers, Json(body)).into_response())
}
