//! One reward request end to end: the requested components computed concurrently (subject
//! consistency and position from one detection pass, the judge, the aesthetic scorer), each
//! normalised, then combined. A remote component that fails is null with its reason; the
//! others still come back. The in-process models fail the request as a whole (see
//! [`RewardError`]), so overload always reaches the caller as 429/503/504.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::aesthetic::remote_scores;
use super::combine::{combine, FailurePolicy, Normalization};
use super::copy_paste::CopyPastePolicy;
use super::judge::Judge;
use super::position::{position_score, PositionScore};
use super::remote::Remote;
use super::subject_consistency::{
    score_items, ItemInput, ScError, ScItem, ScServices, StageTiming,
};
use super::{Component, ErrorKey, Mode, ScOptions};
use crate::batcher::{await_all, AwaitError, BatchError, Batcher, SubmitOptions};
use crate::cpu_pool::CpuPoolError;
use crate::imaging;
use crate::metrics::Metrics;

/// Everything the components need.
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

/// What to compute.
#[derive(Debug, Clone)]
pub struct Plan {
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

impl Plan {
    fn wants(&self, component: Component) -> bool {
        self.weights.contains_key(&component)
    }
}

/// Subject consistency as reported.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScComponent {
    /// The normalised score the reward uses.
    pub score: f64,
    /// Mean cosine similarity over subjects.
    pub raw: f64,
    pub subjects: Vec<super::SubjectScore>,
}

pub use super::judge::SaComponent;

/// Aesthetic as reported.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AestheticComponent {
    pub score: f64,
    pub raw: f64,
    /// `model` (in-process) or `remote`.
    pub source: &'static str,
}

/// Position as reported: the normalised score beside the script's own result (one `score`
/// key; flattening [`PositionScore`] here once wrote `score` twice).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PositionComponent {
    /// Normalised; null when the prompt names no relation.
    pub score: Option<f64>,
    /// The script's 0..1 before normalisation; null when the prompt names no relation.
    pub raw: Option<f64>,
    /// The relation phrase found in the prompt.
    pub relation: Option<&'static str>,
    /// Why there is no score, or why it is 0 without geometry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl PositionComponent {
    /// The reported component: `score` normalised, the rest from the script's result.
    pub fn new(score: Option<f64>, detail: PositionScore) -> Self {
        Self {
            score,
            raw: detail.score,
            relation: detail.relation,
            reason: detail.reason,
        }
    }
}

/// The components of one item (absent when not requested).
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Components {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_consistency: Option<ScComponent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semantic_alignment: Option<SaComponent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aesthetic: Option<AestheticComponent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<PositionComponent>,
}

/// One item's reward.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemReward {
    /// Weighted sum of the normalised components; see the failure policy when one is null.
    pub reward: Option<f64>,
    pub components: Components,
    /// Per failed (or unscored) component, why.
    #[schema(value_type = BTreeMap<String, String>)]
    pub errors: BTreeMap<ErrorKey, String>,
    /// What the copy-paste guard took off `reward` (penalty x suspected subjects / subjects);
    /// absent when no penalty is in force or subject consistency was not computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_paste_penalty: Option<f64>,
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
pub async fn compute(
    svc: &RewardServices,
    items: Vec<PreparedItem>,
    plan: &Plan,
) -> Result<(Vec<ItemReward>, StageTiming), RewardError> {
    let need_sc = plan.wants(Component::SubjectConsistency) || plan.wants(Component::Position);
    let mut sc_inputs = Vec::with_capacity(items.len());
    let mut meta = Vec::with_capacity(items.len());
    for it in items {
        meta.push(ItemMeta {
            image: it.input.image.clone(),
            prompt: it.prompt,
            task: it.task,
            image_b64: it.image_b64,
            mime: it.mime,
        });
        sc_inputs.push(it.input);
    }
    // In-process models fail the whole request (overload is 429, a passed deadline 504: the
    // caller must see backpressure, never a 200 with holes); remote components (the judge, a
    // remote scorer) degrade to a null component with its reason.
    let sc = async {
        if !need_sc {
            return Ok(None);
        }
        Ok(Some(
            score_items(&svc.sc, sc_inputs, plan.options, plan.submit).await?,
        ))
    };
    // The request's deadline bounds the remote components too (a slow judge queues callers
    // behind its concurrency limit); what does not finish in time becomes a component error.
    let deadline = tokio::time::Instant::from_std(plan.submit.deadline);
    let late = || "the request's deadline passed before the component completed".to_string();
    let sa = async {
        if !plan.wants(Component::SemanticAlignment) {
            return Ok(None);
        }
        let calls = futures_util::future::join_all(meta.iter().map(|m| judge_one(svc, m, plan)));
        Ok(Some(
            tokio::time::timeout_at(deadline, calls)
                .await
                .unwrap_or_else(|_| vec![Err(late()); meta.len()]),
        ))
    };
    let ae = async {
        if !plan.wants(Component::Aesthetic) {
            return Ok(None);
        }
        match tokio::time::timeout_at(deadline, aesthetic_all(svc, &meta, plan.submit)).await {
            Ok(scores) => scores.map(Some),
            Err(_) if svc.sc.models.has_aesthetic_model() => Err(RewardError::Timeout),
            Err(_) => Ok(Some(Err(late()))),
        }
    };
    let (sc, sa, ae) = tokio::try_join!(sc, sa, ae)?;
    let (sc_items, timing) = match sc {
        Some((items, timing)) => (Some(items), timing),
        None => (None, StageTiming::default()),
    };
    let norm = |c: Component, raw: f64| svc.normalization.get(&c).map_or(raw, |n| n.apply(raw));
    let mut out = Vec::with_capacity(meta.len());
    for (i, m) in meta.iter().enumerate() {
        let mut components = Components::default();
        let mut errors = BTreeMap::new();
        let mut scores: BTreeMap<Component, Option<f64>> = BTreeMap::new();
        let sc_item: Result<&ScItem, String> = match &sc_items {
            Some(items) => match items.get(i) {
                Some(Ok(item)) => Ok(item),
                Some(Err(e)) => Err(e.clone()),
                None => Err("missing result".to_string()),
            },
            None => Err(String::new()),
        };
        let mut copy_paste_penalty = None;
        if plan.wants(Component::SubjectConsistency) {
            match &sc_item {
                Ok(item) => {
                    let score = norm(Component::SubjectConsistency, item.score);
                    scores.insert(Component::SubjectConsistency, Some(score));
                    let (subjects, penalty) = guard(&plan.copy_paste, item, &svc.metrics);
                    copy_paste_penalty = penalty;
                    components.subject_consistency = Some(ScComponent {
                        score,
                        raw: item.score,
                        subjects,
                    });
                }
                Err(e) => {
                    errors.insert(Component::SubjectConsistency.into(), e.clone());
                }
            }
        }
        if plan.wants(Component::Position) {
            match &sc_item {
                Ok(item) if item.first_boxes.len() >= 2 => {
                    let detail =
                        position_score(&m.prompt, item.first_boxes[0], item.first_boxes[1]);
                    let score = detail.score.map(|s| norm(Component::Position, s));
                    if let (None, Some(reason)) = (score, detail.reason) {
                        errors.insert(Component::Position.into(), reason.to_string());
                    }
                    scores.insert(Component::Position, score);
                    components.position = Some(PositionComponent::new(score, detail));
                }
                Ok(_) => {
                    errors.insert(
                        Component::Position.into(),
                        "position needs two subjects".to_string(),
                    );
                }
                Err(e) => {
                    errors.insert(Component::Position.into(), e.clone());
                }
            }
        }
        if let Some(results) = &sa {
            match &results[i] {
                Ok(j) => {
                    let (sa, error) = j.report(|r| norm(Component::SemanticAlignment, r));
                    if let Some(e) = error {
                        errors.insert(Component::SemanticAlignment.into(), e);
                    }
                    scores.insert(Component::SemanticAlignment, sa.score);
                    components.semantic_alignment = Some(sa);
                }
                Err(e) => {
                    errors.insert(Component::SemanticAlignment.into(), e.clone());
                }
            }
        }
        if let Some(results) = &ae {
            match results.as_ref().map(|r| &r[i]) {
                Ok((Ok(raw), source)) => {
                    let (raw, source) = (*raw, *source);
                    let score = norm(Component::Aesthetic, raw);
                    scores.insert(Component::Aesthetic, Some(score));
                    components.aesthetic = Some(AestheticComponent { score, raw, source });
                }
                Ok((Err(e), _)) | Err(e) => {
                    errors.insert(Component::Aesthetic.into(), e.clone());
                }
            }
        }
        for name in plan.weights.keys() {
            if scores.get(name).copied().flatten().is_none() {
                svc.metrics.component_failed(name.as_str());
            }
        }
        let reward = combine(&plan.weights, &scores, svc.policy);
        out.push(ItemReward {
            reward: reward.map(|r| r - copy_paste_penalty.unwrap_or(0.0)),
            components,
            errors,
            copy_paste_penalty,
        });
    }
    Ok((out, timing))
}

/// The item's subjects with the copy-paste guard's verdicts under `policy` (each counted),
/// and the penalty they cost when one is in force.
fn guard(
    policy: &CopyPastePolicy,
    item: &ScItem,
    metrics: &Metrics,
) -> (Vec<super::SubjectScore>, Option<f64>) {
    let mut subjects = item.subjects.clone();
    for s in &mut subjects {
        s.copy_paste = policy.verdict(s.copy_paste.score);
        metrics.copy_paste().observe(s.copy_paste);
    }
    let suspected = subjects.iter().filter(|s| s.copy_paste.suspected).count();
    let penalty = (policy.penalty > 0.0).then(|| policy.penalty(suspected, subjects.len()));
    (subjects, penalty)
}

async fn judge_one(
    svc: &RewardServices,
    m: &ItemMeta,
    plan: &Plan,
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

/// One item's raw aesthetic score (or why it has none) and where it came from.
type AestheticScore = (Result<f64, String>, &'static str);

/// Raw aesthetic scores of every item: the preference model (image + prompt) when the
/// manifest has one, else the image scorer, else the remote scorer. The outer error fails the
/// request (an in-process lane); the inner one is the remote scorer's component error.
async fn aesthetic_all(
    svc: &RewardServices,
    meta: &[ItemMeta],
    submit: SubmitOptions,
) -> Result<Result<Vec<AestheticScore>, String>, RewardError> {
    let models = &svc.sc.models;
    if let Some(lane) = models.preference.as_ref() {
        let (pre, tok, pool) = (
            lane.preprocess.clone(),
            lane.tokenizer.clone(),
            svc.sc.tensors.clone(),
        );
        let work = meta
            .iter()
            .map(|m| (m.image.clone(), m.prompt.clone()))
            .collect();
        let scores = run_on_lane(svc, &lane.batcher, work, submit, move |(img, prompt)| {
            Ok(crate::models::PreferenceItem {
                image: imaging::to_tensor(&img.rgb, &pre, &pool).map_err(|e| e.to_string())?,
                input_ids: tok
                    .encode_truncated(&prompt)
                    .map_err(|e| e.to_string())?
                    .into(),
            })
        })
        .await?;
        return Ok(Ok(scores
            .into_iter()
            .map(|v| (v.map(f64::from).map_err(|e| e.to_string()), "preference"))
            .collect()));
    }
    if let Some(lane) = models.aesthetic.as_ref() {
        let (pre, pool) = (lane.preprocess.clone(), svc.sc.tensors.clone());
        let work = meta.iter().map(|m| m.image.clone()).collect();
        let outputs = run_on_lane(svc, &lane.batcher, work, submit, move |img| {
            imaging::to_tensor(&img.rgb, &pre, &pool).map_err(|e| e.to_string())
        })
        .await?;
        return Ok(Ok(outputs
            .into_iter()
            .map(|o| {
                let score = o.map(|v| f64::from(v[0])).map_err(|e| e.to_string());
                (score, "model")
            })
            .collect()));
    }
    let Some((remote, url)) = svc.aesthetic_remote.as_ref() else {
        return Ok(Err("no aesthetic scorer is configured".to_string()));
    };
    let prompts: Vec<&str> = meta.iter().map(|m| m.prompt.as_str()).collect();
    let images: Vec<&str> = meta
        .iter()
        .map(|m| m.image_b64.as_deref().unwrap_or(""))
        .collect();
    Ok(remote_scores(remote, url, &prompts, &images)
        .await
        .map(|scores| {
            let missing = || "the scorer returned no score for this image".to_string();
            scores
                .into_iter()
                .map(|s| (s.ok_or_else(missing), "remote"))
                .collect()
        })
        .map_err(|e| e.to_string()))
}

/// Builds one model input per work item on the CPU pool, then runs them all through `lane`
/// under the request's deadline.
async fn run_on_lane<T, I, O>(
    svc: &RewardServices,
    lane: &Batcher<I, O>,
    work: Vec<T>,
    submit: SubmitOptions,
    build: impl Fn(T) -> Result<I, String> + Send + Sync + 'static,
) -> Result<Vec<O>, RewardError>
where
    T: Send + 'static,
    I: crate::batcher::Batchable + Send + 'static,
    O: Send + 'static,
{
    let cpu = svc.sc.cpu.clone();
    let inputs = svc
        .sc
        .cpu
        .run(move || {
            cpu.map(work, build)
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
        })
        .await?
        .map_err(RewardError::Preprocess)?;
    let tickets = lane.submit(inputs, submit)?;
    let (outputs, _) = await_all(tickets, submit.deadline).await?;
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of a position component names each field once: `score` (normalised) and
    /// `raw` (the script's 0..1), not the detail's `score` a second time.
    #[test]
    fn position_component_writes_each_field_once() {
        let detail = position_score(
            "a cat to the left of a dog",
            Some([0, 0, 10, 10]),
            Some([50, 0, 60, 10]),
        );
        let c = PositionComponent::new(detail.score.map(|s| s * 0.5), detail);
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text.matches("\"score\"").count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["score"], 0.5);
        assert_eq!(v["raw"], 1.0);
        assert_eq!(v["relation"], "to the left of");
    }
}
