//! Turning component scores into one training reward: per-component normalisation onto a
//! common scale, weights, and a documented policy for components that failed.
//!
//! PSR trains with R = 0.4 subject consistency + 0.4 semantic alignment + 0.2 aesthetic
//! (psr-reference.md); the judge's 0..10 and HPSv3's ~5..11 would swamp the 0..1 similarity,
//! so each component is normalised first (the paper's tables divide those by 10).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Component;

/// `normalised = raw * scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
}

impl Normalization {
    /// Applies the normalisation.
    pub fn apply(&self, raw: f64) -> f64 {
        raw * self.scale + self.offset
    }
}

/// The defaults that put each component on 0..1 as the paper's tables do.
pub fn default_normalization() -> BTreeMap<Component, Normalization> {
    let n = |scale| Normalization { scale, offset: 0.0 };
    BTreeMap::from([
        (Component::SubjectConsistency, n(1.0)),
        (Component::SemanticAlignment, n(0.1)),
        (Component::Aesthetic, n(0.1)),
        (Component::Position, n(1.0)),
    ])
}

/// The paper's weights.
pub fn default_weights() -> BTreeMap<Component, f64> {
    BTreeMap::from([
        (Component::SubjectConsistency, 0.4),
        (Component::SemanticAlignment, 0.4),
        (Component::Aesthetic, 0.2),
    ])
}

/// What `reward` is when a weighted component has no score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// `reward` is null: no partial reward is passed off as a whole one.
    #[default]
    Null,
    /// Weighted mean of the components that scored, scaled by the total weight
    /// (`sum(w_ok * s) * sum(w) / sum(w_ok)`), so rewards stay on one scale.
    Renormalize,
}

/// The weighted reward of normalised component scores (`None` = failed or not applicable).
pub fn combine(
    weights: &BTreeMap<Component, f64>,
    scores: &BTreeMap<Component, Option<f64>>,
    policy: FailurePolicy,
) -> Option<f64> {
    let total: f64 = weights.values().sum();
    let mut ok_weight = 0.0;
    let mut sum = 0.0;
    let mut missing = false;
    for (name, w) in weights {
        match scores.get(name).copied().flatten() {
            Some(s) => {
                sum += w * s;
                ok_weight += w;
            }
            None => missing = true,
        }
    }
    match (missing, policy) {
        (false, _) => Some(sum),
        (true, FailurePolicy::Null) => None,
        (true, FailurePolicy::Renormalize) if ok_weight > 0.0 => Some(sum * total / ok_weight),
        (true, FailurePolicy::Renormalize) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Component::{Aesthetic, SemanticAlignment, SubjectConsistency};

    fn map<T: Clone>(v: &[(Component, T)]) -> BTreeMap<Component, T> {
        v.iter().cloned().collect()
    }

    #[test]
    fn paper_weights_on_normalised_scores() {
        let w = default_weights();
        let n = default_normalization();
        let s = map(&[
            (SubjectConsistency, Some(n[&SubjectConsistency].apply(0.7))),
            (SemanticAlignment, Some(n[&SemanticAlignment].apply(8.0))),
            (Aesthetic, Some(n[&Aesthetic].apply(6.0))),
        ]);
        // 0.4*0.7 + 0.4*0.8 + 0.2*0.6 = 0.72
        let r = combine(&w, &s, FailurePolicy::Null).unwrap();
        assert!((r - 0.72).abs() < 1e-12);
    }

    #[test]
    fn failure_policies() {
        let w = default_weights();
        let s = map(&[
            (SubjectConsistency, Some(0.5)),
            (SemanticAlignment, None),
            (Aesthetic, Some(1.0)),
        ]);
        assert_eq!(combine(&w, &s, FailurePolicy::Null), None);
        // (0.4*0.5 + 0.2*1.0) * 1.0 / 0.6 = 0.6667
        let r = combine(&w, &s, FailurePolicy::Renormalize).unwrap();
        assert!((r - 0.4 / 0.6).abs() < 1e-12);
        let none = map(&[(SubjectConsistency, None::<f64>)]);
        assert_eq!(
            combine(
                &map(&[(SubjectConsistency, 1.0)]),
                &none,
                FailurePolicy::Renormalize
            ),
            None
        );
    }

    #[test]
    fn offsets_and_overrides() {
        let n = Normalization {
            scale: 0.5,
            offset: -1.0,
        };
        assert_eq!(n.apply(4.0), 1.0);
        let w = map(&[(Aesthetic, 2.0)]);
        assert_eq!(
            combine(&w, &map(&[(Aesthetic, Some(0.25))]), FailurePolicy::Null),
            Some(0.5)
        );
    }
}
