//! What a reward request reports per item: each requested component normalised beside its
//! raw value (or its error), the copy-paste guard's verdicts, and the combined reward.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ItemMeta, ItemOutcome, RewardPlan, RewardServices};
use crate::metrics::Metrics;
use crate::reward::copy_paste::CopyPastePolicy;
use crate::reward::judge::SaComponent;
use crate::reward::{
    combine, position_score, Component, ErrorKey, Judgement, PositionScore, ScItem, SubjectScore,
};

/// Subject consistency as reported.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScComponent {
    /// The normalised score the reward uses.
    pub score: f64,
    /// Mean cosine similarity over subjects.
    pub raw: f64,
    pub subjects: Vec<SubjectScore>,
}

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

/// One item's reward from its outcomes: each requested component normalised and reported
/// (or its error), the copy-paste guard's verdicts, then the weighted combination.
pub(super) fn assemble(
    svc: &RewardServices,
    plan: &RewardPlan,
    m: &ItemMeta,
    outcome: ItemOutcome,
) -> ItemReward {
    let mut report = Report::default();
    if let Some(sc) = &outcome.subject_consistency {
        if plan.wants(Component::SubjectConsistency) {
            report.subject_consistency(svc, plan, sc);
        }
        if plan.wants(Component::Position) {
            report.position(svc, &m.prompt, sc);
        }
    }
    if let Some(sa) = outcome.semantic_alignment {
        report.semantic_alignment(svc, sa);
    }
    if let Some(ae) = outcome.aesthetic {
        report.aesthetic(svc, ae);
    }
    report.finish(svc, plan)
}

/// An item's reward as it is assembled: the reported components, their errors and the
/// normalised scores the combination reads.
#[derive(Default)]
struct Report {
    components: Components,
    errors: BTreeMap<ErrorKey, String>,
    scores: BTreeMap<Component, Option<f64>>,
    copy_paste_penalty: Option<f64>,
}

impl Report {
    fn subject_consistency(
        &mut self,
        svc: &RewardServices,
        plan: &RewardPlan,
        sc: &Result<ScItem, String>,
    ) {
        let item = match sc {
            Ok(item) => item,
            Err(e) => return self.fail(Component::SubjectConsistency, e.clone()),
        };
        let score = svc.normalise(Component::SubjectConsistency, item.score);
        self.scores
            .insert(Component::SubjectConsistency, Some(score));
        let (subjects, penalty) = guard(&plan.copy_paste, item, &svc.metrics);
        self.copy_paste_penalty = penalty;
        self.components.subject_consistency = Some(ScComponent {
            score,
            raw: item.score,
            subjects,
        });
    }

    /// Position reads the first two subjects' first boxes that subject consistency found.
    fn position(&mut self, svc: &RewardServices, prompt: &str, sc: &Result<ScItem, String>) {
        let item = match sc {
            Ok(item) if item.first_boxes.len() >= 2 => item,
            Ok(_) => return self.fail(Component::Position, "position needs two subjects".into()),
            Err(e) => return self.fail(Component::Position, e.clone()),
        };
        let detail = position_score(prompt, item.first_boxes[0], item.first_boxes[1]);
        let score = detail.score.map(|s| svc.normalise(Component::Position, s));
        if let (None, Some(reason)) = (score, detail.reason) {
            self.errors
                .insert(Component::Position.into(), reason.to_string());
        }
        self.scores.insert(Component::Position, score);
        self.components.position = Some(PositionComponent::new(score, detail));
    }

    fn semantic_alignment(&mut self, svc: &RewardServices, sa: Result<Judgement, String>) {
        let judgement = match sa {
            Ok(j) => j,
            Err(e) => return self.fail(Component::SemanticAlignment, e),
        };
        let (sa, error) = judgement.report(|r| svc.normalise(Component::SemanticAlignment, r));
        if let Some(e) = error {
            self.errors.insert(Component::SemanticAlignment.into(), e);
        }
        self.scores.insert(Component::SemanticAlignment, sa.score);
        self.components.semantic_alignment = Some(sa);
    }

    fn aesthetic(&mut self, svc: &RewardServices, ae: Result<(f64, &'static str), String>) {
        let (raw, source) = match ae {
            Ok(scored) => scored,
            Err(e) => return self.fail(Component::Aesthetic, e),
        };
        let score = svc.normalise(Component::Aesthetic, raw);
        self.scores.insert(Component::Aesthetic, Some(score));
        self.components.aesthetic = Some(AestheticComponent { score, raw, source });
    }

    /// A component without a result: its reason goes to `errors`, and it has no score.
    fn fail(&mut self, component: Component, why: String) {
        self.errors.insert(component.into(), why);
    }

    /// Counts each weighted component without a score, then combines the scores under the
    /// failure policy and takes off the copy-paste penalty.
    fn finish(self, svc: &RewardServices, plan: &RewardPlan) -> ItemReward {
        for component in plan.weights.keys() {
            if self.scores.get(component).copied().flatten().is_none() {
                svc.metrics.component_failed(component.as_str());
            }
        }
        let reward = combine(&plan.weights, &self.scores, svc.policy);
        ItemReward {
            reward: reward.map(|r| r - self.copy_paste_penalty.unwrap_or(0.0)),
            components: self.components,
            errors: self.errors,
            copy_paste_penalty: self.copy_paste_penalty,
        }
    }
}

/// The item's subjects with the copy-paste guard's verdicts under `policy` (each counted),
/// and the penalty they cost when one is in force.
fn guard(
    policy: &CopyPastePolicy,
    item: &ScItem,
    metrics: &Metrics,
) -> (Vec<SubjectScore>, Option<f64>) {
    let mut subjects = item.subjects.clone();
    for s in &mut subjects {
        s.copy_paste = policy.verdict(s.copy_paste.score);
        metrics.copy_paste().observe(s.copy_paste);
    }
    let suspected = subjects.iter().filter(|s| s.copy_paste.suspected).count();
    let penalty = (policy.penalty > 0.0).then(|| policy.penalty(suspected, subjects.len()));
    (subjects, penalty)
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
