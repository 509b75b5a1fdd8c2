//! One reward request end to end: the requested components computed concurrently (subject
//! consistency and position from one detection pass, the judge, the aesthetic scorer), each
//! normalised, then combined. A remote component that fails is null with its reason; the
//! others still come back. The in-process models fail the request as a whole (see
//! [`RewardError`]), so overload always reaches the caller as 429/503/504.
//!
//! [`compute`] names the stages; `scorers` holds where aesthetic scores come from and
//! `report` how one item's outcomes become its reported reward.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::combine::{FailurePolicy, Normalization};
use super::copy_paste::CopyPastePolicy;
use super::judge::Judge;
use super::remote::Remote;
use super::subject_consistency::{
    score_items, ItemInput, ScError, ScItem, ScServices, StageTiming,
};
use super::{Component, Mode, ScOptions};
use crate::batcher::{AwaitError, BatchError, SubmitOptions};
use crate::cpu_pool::CpuPoolError;
use crate::imaging;
use crate::metrics::Metrics;

mod report;
mod scorers;

pub use super::judge::SaComponent;
use report::assemble;
pub use report::{AestheticComponent, Components, ItemReward, PositionComponent, ScComponent};
use scorers::aesthetic_all;

/// What the components run on: the in-process models (through subject consistency's
/// services), the remote judge and scorer, and how scores are normalised and combined.
/// Cloned from the app state once per request (its fields are shared handles).
#[derive(Clone)]
pub struct RewardServices {
    pub sc: ScServices,
    pub judge: Option<Arc<Judge>>,
    /// Remote aesthetic scorer and its URL.
    pub aesthetic_remote: Option<(Arc<Remote>, String)>,
    pub normalization: BTreeMap<Component, Normalization>,
    pub policy: FailurePolicy,
    pub metrics: Arc<Metrics>,
}

impl RewardServices {
    /// `raw` on the common scale of `component` (unchanged without a normalisation).
    fn normalise(&self, component: Component, raw: f64) -> f64 {
        self.normalization
            .get(&component)
            .map_or(raw, |n| n.apply(raw))
    }
}

/// One item with what the non-visual components need.
pub struct PreparedItem {
    pub input: ItemInput,
    pub prompt: String,
    pub task: Option<String>,
    /// The generated image as sent (base64), kept when a remote service needs it.
    pub image_b64: Option<String>,
    /// MIME type of the generated image (for the judge's data URL).
    pub mime: &'static str,
}

/// What to compute for a request: the weighted components (only those are computed), the
/// subject-consistency options, the lanes' deadline and priority, and what to report.
#[derive(Debug, Clone)]
pub struct RewardPlan {
    pub weights: BTreeMap<Component, f64>,
    pub mode: Mode,
    pub options: ScOptions,
    pub submit: SubmitOptions,
    /// Return the judge's answer (its reasoning) with every semantic-alignment result, not
    /// only with unusable ones.
    pub judge_answer: bool,
    /// The copy-paste guard's threshold and penalty for this request.
    pub copy_paste: CopyPastePolicy,
}

impl RewardPlan {
    /// Whether the request weights `component` (a zero weight still computes and reports it).
    fn wants(&self, component: Component) -> bool {
        self.weights.contains_key(&component)
    }
}

/// What the non-visual components keep of an item while subject consistency runs.
struct ItemMeta {
    image: Arc<imaging::DecodedImage>,
    prompt: String,
    task: Option<String>,
    image_b64: Option<String>,
    mime: &'static str,
}

/// Why a whole reward request fails, rather than one of its remote components.
#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    /// Subject consistency (and position) could not be computed: bad input, or its lanes.
    #[error(transparent)]
    SubjectConsistency(#[from] ScError),
    /// An in-process model lane refused or failed the request's items.
    #[error(transparent)]
    Lane(#[from] AwaitError),
    /// The request's deadline passed before an in-process model answered.
    #[error("the request's deadline passed")]
    Timeout,
    /// Preprocessing on the CPU pool failed.
    #[error("cannot preprocess image: {0}")]
    Preprocess(String),
    /// The CPU pool failed.
    #[error(transparent)]
    Pool(#[from] CpuPoolError),
}

impl From<BatchError> for RewardError {
    fn from(e: BatchError) -> Self {
        Self::Lane(AwaitError::Batch(e))
    }
}

/// Computes every requested component of every item. The in-process models' failures
/// (overload, deadline, faults) and input errors fail the whole request; a remote
/// component's failure is that component's null with its reason.
///
/// Three stages: [`split`] what each item hands to subject consistency from what the other
/// components read, [`run_components`] runs the requested components concurrently, and
/// [`assemble`] turns each item's outcomes into its reported, combined reward.
pub async fn compute(
    svc: &RewardServices,
    items: Vec<PreparedItem>,
    plan: &RewardPlan,
) -> Result<(Vec<ItemReward>, StageTiming), RewardError> {
    let (sc_inputs, meta) = split(items);
    let (outcomes, timing) = run_components(svc, sc_inputs, &meta, plan).await?;
    let rewards = meta
        .iter()
        .zip(outcomes)
        .map(|(m, outcome)| assemble(svc, plan, m, outcome))
        .collect();
    Ok((rewards, timing))
}

/// Subject consistency takes its inputs by value (they move into model work); the other
/// components only read the generated image, the prompt and what the judge needs, so those
/// are kept apart, one [`ItemMeta`] per item.
fn split(items: Vec<PreparedItem>) -> (Vec<ItemInput>, Vec<ItemMeta>) {
    items
        .into_iter()
        .map(|it| {
            let meta = ItemMeta {
                image: it.input.image.clone(),
                prompt: it.prompt,
                task: it.task,
                image_b64: it.image_b64,
                mime: it.mime,
            };
            (it.input, meta)
        })
        .unzip()
}

/// What each requested component produced for one item (`None`: not requested), before
/// normalisation. Subject consistency's result also feeds position.
struct ItemOutcome {
    subject_consistency: Option<Result<ScItem, String>>,
    semantic_alignment: Option<Result<super::Judgement, String>>,
    aesthetic: Option<Result<(f64, &'static str), String>>,
}

/// Runs the requested components of every item concurrently: subject consistency (which
/// position shares), the judge and the aesthetic scorer. The components run over all items
/// at once, since the models batch across items; their results are then handed out per item.
///
/// In-process models fail the whole request (overload is 429, a passed deadline 504: the
/// caller must see backpressure, never a 200 with holes); remote components (the judge, a
/// remote scorer) degrade to a null component with its reason.
async fn run_components(
    svc: &RewardServices,
    sc_inputs: Vec<ItemInput>,
    meta: &[ItemMeta],
    plan: &RewardPlan,
) -> Result<(Vec<ItemOutcome>, StageTiming), RewardError> {
    let (sc, sa, ae) = tokio::try_join!(
        subject_consistency(svc, sc_inputs, plan),
        semantic_alignment(svc, meta, plan),
        aesthetic(svc, meta, plan),
    )?;
    let (sc, timing) = match sc {
        Some((items, timing)) => (Some(items), timing),
        None => (None, StageTiming::default()),
    };
    let (mut sc, mut sa, mut ae) = (
        sc.map(Vec::into_iter),
        sa.map(Vec::into_iter),
        ae.map(Vec::into_iter),
    );
    let outcomes = meta
        .iter()
        .map(|_| ItemOutcome {
            subject_consistency: next_of(&mut sc),
            semantic_alignment: next_of(&mut sa),
            aesthetic: next_of(&mut ae),
        })
        .collect();
    Ok((outcomes, timing))
}

/// The next item's result of a component that ran over all items (`None`: it did not run).
fn next_of<T>(
    results: &mut Option<std::vec::IntoIter<Result<T, String>>>,
) -> Option<Result<T, String>> {
    let results = results.as_mut()?;
    Some(
        results
            .next()
            .unwrap_or_else(|| Err("missing result".to_string())),
    )
}

/// Per item, its subjects' similarities and boxes, when subject consistency or position is
/// requested (one detection pass serves both).
async fn subject_consistency(
    svc: &RewardServices,
    inputs: Vec<ItemInput>,
    plan: &RewardPlan,
) -> Result<Option<(Vec<Result<ScItem, String>>, StageTiming)>, RewardError> {
    if !(plan.wants(Component::SubjectConsistency) || plan.wants(Component::Position)) {
        return Ok(None);
    }
    Ok(Some(
        score_items(&svc.sc, inputs, plan.options, plan.submit).await?,
    ))
}

/// Why a remote component has no result when the request's deadline passed first.
fn late() -> String {
    "the request's deadline passed before the component completed".to_string()
}

/// Per item, the judge's verdict, when semantic alignment is requested. The request's
/// deadline bounds the judge too (a slow judge queues callers behind its concurrency limit);
/// what does not finish in time becomes each item's component error.
async fn semantic_alignment(
    svc: &RewardServices,
    meta: &[ItemMeta],
    plan: &RewardPlan,
) -> Result<Option<Vec<Result<super::Judgement, String>>>, RewardError> {
    if !plan.wants(Component::SemanticAlignment) {
        return Ok(None);
    }
    let deadline = tokio::time::Instant::from_std(plan.submit.deadline);
    let calls = futures_util::future::join_all(meta.iter().map(|m| judge_one(svc, m, plan)));
    Ok(Some(
        tokio::time::timeout_at(deadline, calls)
            .await
            .unwrap_or_else(|_| vec![Err(late()); meta.len()]),
    ))
}

/// Per item, the raw aesthetic score and its source, when aesthetic is requested. Past the
/// deadline an in-process model fails the request (504), a remote scorer only the component.
async fn aesthetic(
    svc: &RewardServices,
    meta: &[ItemMeta],
    plan: &RewardPlan,
) -> Result<Option<Vec<Result<(f64, &'static str), String>>>, RewardError> {
    if !plan.wants(Component::Aesthetic) {
        return Ok(None);
    }
    let deadline = tokio::time::Instant::from_std(plan.submit.deadline);
    let scores =
        match tokio::time::timeout_at(deadline, aesthetic_all(svc, meta, plan.submit)).await {
            Ok(scores) => scores?,
            Err(_) if svc.sc.models.has_aesthetic_model() => return Err(RewardError::Timeout),
            Err(_) => Err(late()),
        };
    // A remote scorer's failure is every item's component error.
    Ok(Some(match scores {
        Ok(scores) => scores
            .into_iter()
            .map(|(raw, source)| raw.map(|raw| (raw, source)))
            .collect(),
        Err(e) => vec![Err(e); meta.len()],
    }))
}

async fn judge_one(
    svc: &RewardServices,
    m: &ItemMeta,
    plan: &RewardPlan,
) -> Result<super::Judgement, String> {
    let judge = svc.judge.as_ref().ok_or("no judge is configured")?;
    let b64 = m
        .image_b64
        .as_deref()
        .ok_or("the image was not kept for the judge")?;
    let data_url = format!("data:{};base64,{b64}", m.mime);
    judge
        .judge(
            &m.image.content_hash,
            &data_url,
            &m.prompt,
            m.task.as_deref(),
            plan.mode,
            plan.judge_answer,
        )
        .await
        .map_err(|e| e.to_string())
}
