//! A reward request as both edges hand it over (JSON over HTTP, protobuf over gRPC): parsed,
//! its images borrowed from the message, then validated, admitted and decoded on the CPU
//! pool by one function, so both APIs accept and refuse exactly the same requests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::explain::{self, ExplainInput};
use crate::imaging::{DecodedImage, EncodedImage};
use crate::reward::engine::{PreparedItem, RewardPlan, RewardServices};
use crate::reward::{
    Component, ItemInput, Mode, ReferenceInput, ScOptions, ScOverrides, SubjectInput,
};

use super::admission::{BytesPermit, RequestCost};
use super::error::ApiError;
use super::images::ImageSource;
use super::prepare;
use super::state::AppState;

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

/// Largest accepted weight: weighted sums of normalised scores stay far from overflow (a
/// weight of 1e308 would make every reward infinite, which JSON cannot carry).
const MAX_WEIGHT: f64 = 1e6;

/// A subject's reference: an image, or the content hash of one sent before.
pub enum ReferenceIn<'a> {
    Image(ImageSource<'a>),
    Cached(String),
}

/// One subject of an item.
pub struct SubjectIn<'a> {
    pub name: String,
    pub reference: ReferenceIn<'a>,
}

/// One generated image to score.
pub struct ItemIn<'a> {
    pub image: ImageSource<'a>,
    pub prompt: String,
    pub subjects: Vec<SubjectIn<'a>>,
    pub task: Option<String>,
}

/// A reward request, whichever edge it came through.
pub struct RewardInput<'a> {
    pub items: Vec<ItemIn<'a>>,
    /// `None`: the configured weights of the served components.
    pub rewards: Option<BTreeMap<String, f64>>,
    pub mode: Mode,
    pub options: ScOverrides,
    pub timeout_ms: Option<u64>,
    pub priority: Option<u8>,
    pub judge_answer: bool,
    /// Copy-paste guard overrides (none: the mode's default).
    pub copy_paste: crate::reward::copy_paste::CopyPasteOverrides,
    /// Return an explanation per item (at most [`explain::MAX_ITEMS`] items).
    pub explain: bool,
}

/// A request message that owns its images and parses into a [`RewardInput`] borrowing
/// them, on the CPU pool.
pub trait RewardBody: Send + 'static {
    /// Parses the message and hands the parsed request to `f`.
    fn with_input<R>(
        &self,
        f: impl FnOnce(RewardInput<'_>) -> Result<R, ApiError>,
    ) -> Result<R, ApiError>;
}

/// A validated, admitted and decoded request, ready for the reward engine.
pub struct Decoded {
    pub items: Vec<PreparedItem>,
    pub plan: RewardPlan,
    /// The request's share of the in-flight budget, held until the response is built.
    pub permit: BytesPermit,
    /// With `explain`, per item the images its explanation is drawn from.
    pub explain: Option<Vec<ExplainInput>>,
}

/// What the reward engine needs of the state, or 503 while models load.
pub fn services(state: &AppState) -> Result<RewardServices, ApiError> {
    Ok(RewardServices {
        sc: state.sc_services()?,
        judge: state.judge().cloned(),
        aesthetic_remote: state
            .aesthetic_remote()
            .zip(state.config().aesthetic_remote.as_ref())
            .map(|(r, c)| (r.clone(), c.url.clone())),
        normalization: state.config().rewards.component_normalization(),
        policy: state.config().rewards.failure_policy,
        metrics: state.metrics_arc(),
    })
}

/// Parses `body`, then validates, admits and decodes it on the CPU pool; `route` labels the
/// preprocess metric. Returns the decoded request and the time the CPU pool took.
pub async fn decode_on_pool(
    state: &AppState,
    arrived: Instant,
    route: &str,
    body: impl RewardBody,
) -> Result<(Decoded, std::time::Duration), ApiError> {
    let st = state.clone();
    let decoded = state
        .cpu()
        .run(move || body.with_input(|input| decode(&st, input, arrived)))
        .await??;
    let decode_time = arrived.elapsed();
    state
        .metrics()
        .observe_preprocess(route, decode_time.as_secs_f64());
    Ok((decoded, decode_time))
}

/// Whether this deployment can compute `component`: its models are in the manifest, or its
/// remote service is configured.
fn available(st: &AppState, component: Component) -> bool {
    let models = st.loaded_models();
    let has = |f: fn(&crate::models::Models) -> bool| models.is_some_and(|m| f(m));
    match component {
        Component::SubjectConsistency | Component::Position => {
            has(|m| m.detector.is_some() && m.embedder.is_some())
        }
        Component::SemanticAlignment => st.judge().is_some(),
        Component::Aesthetic => {
            has(|m| m.aesthetic.is_some() || m.preference.is_some())
                || st.aesthetic_remote().is_some()
        }
    }
}

/// The component a request's `rewards` key names, if this deployment serves it; else why
/// not (an unknown name lists the known ones).
fn served(st: &AppState, name: &str) -> Result<Component, String> {
    let Ok(component) = name.parse::<Component>() else {
        return Err(format!(
            "rewards.{name}: unknown component (known: {})",
            Component::known()
        ));
    };
    if available(st, component) {
        Ok(component)
    } else {
        Err(format!("rewards.{name}: this deployment does not serve it (see the model manifest and the [judge] / [aesthetic_remote] config)"))
    }
}

/// The request's weights by component (default: the configured weights of the served
/// components), each checked in name order: served, finite and in range; not all zero.
fn validate_weights(
    st: &AppState,
    rewards: Option<BTreeMap<String, f64>>,
) -> Result<BTreeMap<Component, f64>, ApiError> {
    let Some(rewards) = rewards else {
        let weights: BTreeMap<Component, f64> = st
            .config()
            .rewards
            .component_weights()
            .into_iter()
            .filter(|(c, _)| available(st, *c))
            .collect();
        return check_weights(weights.into_iter().map(|(c, w)| (c.as_str(), Ok(c), w)));
    };
    check_weights(
        rewards
            .iter()
            .map(|(name, w)| (name.as_str(), served(st, name), *w)),
    )
}

/// The weights as named, each with its component (or why it has none), checked in order.
fn check_weights<'a>(
    named: impl ExactSizeIterator<Item = (&'a str, Result<Component, String>, f64)>,
) -> Result<BTreeMap<Component, f64>, ApiError> {
    if named.len() == 0 {
        return Err(ApiError::invalid("rewards: name at least one component"));
    }
    let mut weights = BTreeMap::new();
    for (name, component, w) in named {
        let component = component.map_err(ApiError::invalid)?;
        if !w.is_finite() || !(0.0..=MAX_WEIGHT).contains(&w) {
            return Err(ApiError::invalid(format!(
                "rewards.{name}: weight must be in [0, {MAX_WEIGHT:e}]"
            )));
        }
        weights.insert(component, w);
    }
    if weights.values().all(|w| *w == 0.0) {
        return Err(ApiError::invalid("rewards: all weights are zero"));
    }
    Ok(weights)
}

/// The per-item checks: subject count and names, task, prompt length.
fn validate_items(st: &AppState, items: &[ItemIn<'_>]) -> Result<(), ApiError> {
    let limits = &st.config().limits;
    let max_subjects = st.config().rewards.max_subjects;
    if items.is_empty() || items.len() > limits.max_items_per_request {
        return Err(ApiError::invalid(format!(
            "items must hold 1..={} items",
            limits.max_items_per_request
        )));
    }
    for (i, item) in items.iter().enumerate() {
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
    for (i, item) in items.iter().enumerate() {
        if item.prompt.chars().count() > max_prompt {
            return Err(ApiError::invalid(format!(
                "items[{i}].prompt is longer than {max_prompt} characters"
            )));
        }
    }
    Ok(())
}

/// Every distinct image of a request once, where it was first used, and which one each
/// item and each subject's reference uses (GRPO groups repeat references).
struct Distinct<'a> {
    unique: Vec<ImageSource<'a>>,
    paths: Vec<String>,
    image_of_item: Vec<usize>,
    /// Per subject: the index of its reference image, or the hash it names.
    image_of_ref: Vec<Vec<Result<usize, String>>>,
}

fn distinct<'a>(items: &[ItemIn<'a>]) -> Distinct<'a> {
    let mut d = Distinct {
        unique: Vec::new(),
        paths: Vec::new(),
        image_of_item: Vec::with_capacity(items.len()),
        image_of_ref: Vec::with_capacity(items.len()),
    };
    let mut index: HashMap<&'a [u8], usize> = HashMap::new();
    let mut intern = |image: ImageSource<'a>, path: String, d: &mut Distinct<'a>| {
        *index.entry(image.key()).or_insert_with(|| {
            d.unique.push(image);
            d.paths.push(path);
            d.unique.len() - 1
        })
    };
    for (i, item) in items.iter().enumerate() {
        let k = intern(item.image, format!("items[{i}].image"), &mut d);
        d.image_of_item.push(k);
        let mut refs = Vec::with_capacity(item.subjects.len());
        for (s, subject) in item.subjects.iter().enumerate() {
            refs.push(match &subject.reference {
                ReferenceIn::Image(image) => Ok(intern(
                    *image,
                    format!("items[{i}].subjects[{s}].reference"),
                    &mut d,
                )),
                ReferenceIn::Cached(hash) => Err(hash.clone()),
            });
        }
        d.image_of_ref.push(refs);
    }
    d
}

/// What a reward request holds in flight, an upper bound: its distinct decoded images, one
/// detector tensor each, the embedder crops of its subjects (cached references need none)
/// and one aesthetic tensor per item.
fn reward_cost(
    st: &AppState,
    encoded: &[EncodedImage],
    items: &[ItemIn<'_>],
    image_of_item: &[usize],
    weights: &BTreeMap<Component, f64>,
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
    let detects = weights.contains_key(&Component::SubjectConsistency)
        || weights.contains_key(&Component::Position);
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
        if weights.contains_key(&Component::Aesthetic) {
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

/// Validates, admits and decodes a parsed request (on the CPU pool). Identical images are
/// decoded once.
pub fn decode(st: &AppState, req: RewardInput<'_>, arrived: Instant) -> Result<Decoded, ApiError> {
    validate_items(st, &req.items)?;
    if req.explain && req.items.len() > explain::MAX_ITEMS {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "request_too_large",
            format!(
                "explain: at most {} items a request (an explanation is a PNG per item): split it",
                explain::MAX_ITEMS
            ),
        ));
    }
    let weights = validate_weights(st, req.rewards)?;
    if weights.contains_key(&Component::Position)
        && req.items.iter().any(|it| it.subjects.len() < 2)
    {
        return Err(ApiError::invalid(
            "rewards.position needs items with at least two subjects",
        ));
    }
    // The judge and a remote scorer receive the generated image as base64.
    let keep_b64 = weights.contains_key(&Component::SemanticAlignment)
        || (weights.contains_key(&Component::Aesthetic)
            && st.loaded_models().is_some_and(|m| m.aesthetic.is_none()));
    let options = ScOptions::resolve(req.mode, req.options);
    let copy_paste = st
        .config()
        .rewards
        .copy_paste
        .resolve(req.mode, req.copy_paste)
        .map_err(ApiError::invalid)?;
    let submit = st.submit_options(arrived, req.timeout_ms, req.priority)?;
    let d = distinct(&req.items);
    let encoded = prepare::read_all(st, &d.unique, |k| d.paths[k].clone())?;
    let cost = reward_cost(
        st,
        &encoded,
        &req.items,
        &d.image_of_item,
        &weights,
        &options,
    );
    let permit = st.admission().bytes(&cost)?;
    let decode_limits = st.decode_limits();
    let decoded: Vec<Arc<DecodedImage>> = st
        .cpu()
        .map(encoded.into_iter().enumerate().collect(), |(k, e)| {
            e.decode(&decode_limits)
                .map(Arc::new)
                .map_err(|err| ApiError::from(err).at(&d.paths[k]))
        })
        .into_iter()
        .collect::<Result<_, _>>()?;
    let items: Vec<PreparedItem> = req
        .items
        .into_iter()
        .zip(d.image_of_ref)
        .enumerate()
        .map(|(i, (item, refs))| PreparedItem {
            mime: item.image.mime(),
            image_b64: keep_b64.then(|| item.image.to_base64()),
            input: ItemInput {
                image: decoded[d.image_of_item[i]].clone(),
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
        })
        .collect();
    let explain = req
        .explain
        .then(|| items.iter().map(explain_input).collect());
    Ok(Decoded {
        items,
        permit,
        explain,
        plan: RewardPlan {
            weights,
            mode: req.mode,
            options,
            submit,
            judge_answer: req.judge_answer,
            copy_paste,
        },
    })
}

/// The images an item's explanation is drawn from (shared, not copied).
fn explain_input(item: &PreparedItem) -> ExplainInput {
    ExplainInput {
        image: item.input.image.clone(),
        references: item
            .input
            .subjects
            .iter()
            .map(|s| match &s.reference {
                ReferenceInput::Image(d) => Some(d.clone()),
                ReferenceInput::Cached(_) => None,
            })
            .collect(),
    }
}
