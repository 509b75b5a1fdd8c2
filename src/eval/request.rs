//! One sample as a `/v1/reward` request (the service's own [`RewardRequest`] type, so the
//! evaluation sends exactly what trainers send), and what the evaluation keeps of the answer.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::dataset::{Alignment, Sample};
use crate::reward::{Fallback, Mode};
use crate::server::routes::reward::{ReferenceRequest, RewardItem, RewardRequest, SubjectRequest};

/// The components an evaluation asks for, and which ones this deployment cannot compute.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Components {
    pub subject_consistency: bool,
    pub semantic_alignment: bool,
    pub position: bool,
    pub aesthetic: bool,
    /// Per component not computed, why (shown in the report).
    pub missing: BTreeMap<String, String>,
}

impl Components {
    /// The `rewards` of a sample's request: every served component its subset reports.
    /// Weights only select components here; the evaluation reads each component's score.
    fn weights(&self, alignment: Alignment) -> BTreeMap<String, f64> {
        let mut w = BTreeMap::new();
        let mut add = |on: bool, name: &str| {
            if on {
                w.insert(name.to_string(), 1.0);
            }
        };
        add(self.subject_consistency, "subject_consistency");
        add(self.aesthetic, "aesthetic");
        match alignment {
            Alignment::Semantic => add(self.semantic_alignment, "semantic_alignment"),
            Alignment::Position => add(self.position, "position"),
        }
        w
    }

    /// Whether the subset has at least one component to compute.
    pub fn any_for(&self, alignment: Alignment) -> bool {
        !self.weights(alignment).is_empty()
    }
}

/// The request body for one sample, from its file bytes (generated image, then references).
pub fn body(
    sample: &Sample,
    image: &[u8],
    references: &[Vec<u8>],
    components: &Components,
    mode: Mode,
    timeout_ms: u64,
) -> Result<Vec<u8>, serde_json::Error> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let subjects = sample
        .references
        .iter()
        .zip(references)
        .map(|(r, bytes)| SubjectRequest {
            name: r.category.clone(),
            reference: ReferenceRequest::Image(Cow::Owned(b64(bytes))),
        })
        .collect();
    let request = RewardRequest {
        items: vec![RewardItem {
            image: Cow::Owned(b64(image)),
            prompt: sample.instruction.clone(),
            subjects,
            task: Some(sample.subset.task().to_string()),
        }],
        rewards: Some(components.weights(sample.subset.alignment())),
        mode: Some(mode),
        options: None,
        timeout_ms: Some(timeout_ms),
        priority: None,
        judge_answer: Some(true),
        copy_paste: None,
        explain: None,
    };
    serde_json::to_vec(&request)
}

/// What the evaluation keeps of one item's `/v1/reward` result (the fields it reports; the
/// response has more).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scores {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_consistency: Option<ScScores>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic_alignment: Option<SaScores>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<PositionScores>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aesthetic: Option<AestheticScores>,
    #[serde(default)]
    pub errors: BTreeMap<String, String>,
}

/// Subject consistency of one sample.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScScores {
    pub score: f64,
    pub raw: f64,
    pub subjects: Vec<SubjectScores>,
}

/// One subject's similarity and the boxes behind it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SubjectScores {
    pub name: String,
    pub similarity: f64,
    pub detected: bool,
    #[serde(rename = "box")]
    pub bbox: Option<[i64; 4]>,
    pub fallback: Option<Fallback>,
    pub reference_detected: bool,
    pub reference_box: Option<[i64; 4]>,
    pub reference_fallback: Option<Fallback>,
}

/// The judge's verdict on one sample.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SaScores {
    pub score: Option<f64>,
    pub raw: Option<f64>,
    pub parsed: bool,
    pub substituted: bool,
    pub out_of_range: bool,
    pub dropped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// Position alignment of one sample.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PositionScores {
    pub score: Option<f64>,
    pub relation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The aesthetic score of one sample.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AestheticScores {
    pub score: f64,
    pub raw: f64,
    pub source: String,
}

#[derive(Deserialize)]
struct Response {
    results: Vec<Item>,
}

/// One result as the service writes it: the components, then the errors beside them.
/// `components` is read through a JSON value first, then typed (services before the fix of
/// the position component wrote `position.score` twice, which a typed read refuses).
#[derive(Deserialize)]
struct Item {
    components: serde_json::Value,
    #[serde(default)]
    errors: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    error_type: String,
}

/// How one request ended, read from the status and body.
#[derive(Debug)]
pub enum Answer {
    /// 200: the item's scores.
    Scored(Box<Scores>),
    /// The service refused an image (undecodable, too large): not retried.
    BadImage(String),
    /// Overload or not ready: worth retrying.
    Busy(String),
    /// Anything else (a fault, a deadline, a malformed answer).
    Failed(String),
}

/// Reads a `/v1/reward` answer.
pub fn read_answer(status: u16, body: &[u8]) -> Answer {
    if status == 200 {
        return match serde_json::from_slice::<Response>(body) {
            Ok(r) => match r.results.into_iter().next() {
                Some(item) => match serde_json::from_value::<Scores>(item.components) {
                    Ok(scores) => Answer::Scored(Box::new(Scores {
                        errors: item.errors,
                        ..scores
                    })),
                    Err(e) => Answer::Failed(format!("unreadable /v1/reward components: {e}")),
                },
                None => Answer::Failed("the service answered no result".into()),
            },
            Err(e) => Answer::Failed(format!("unreadable /v1/reward answer: {e}")),
        };
    }
    let (kind, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => (e.error_type, e.error),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        ),
    };
    match (status, kind.as_str()) {
        (429 | 503, _) => Answer::Busy(format!("{status} {message}")),
        (
            413 | 422,
            "invalid_image" | "image_too_large" | "too_many_pixels" | "payload_too_large",
        ) => Answer::BadImage(message),
        _ => Answer::Failed(format!("{status} {kind}: {message}")),
    }
}

impl Scores {
    /// Why a requested component came back without a result (a remote component that
    /// failed: judge down, scorer timeout), or `None` when every one is there. Such a
    /// sample is not journaled, so a rerun asks again.
    pub fn incomplete(&self, components: &Components, alignment: Alignment) -> Option<String> {
        let present = |name: &str| match name {
            "subject_consistency" => self.subject_consistency.is_some(),
            "semantic_alignment" => self.semantic_alignment.is_some(),
            "position" => self.position.is_some(),
            "aesthetic" => self.aesthetic.is_some(),
            _ => true,
        };
        components
            .weights(alignment)
            .keys()
            .find(|c| !present(c))
            .map(|c| {
                let why = self.errors.get(c.as_str()).map_or("no result", |e| e);
                format!("{c}: {why}")
            })
    }

    /// The alignment score the subset reports (`None`: dropped or not computed).
    pub fn alignment(&self, alignment: Alignment) -> Option<f64> {
        match alignment {
            Alignment::Semantic => self.semantic_alignment.as_ref().and_then(|s| s.score),
            Alignment::Position => self.position.as_ref().and_then(|p| p.score),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refusals_are_told_apart_from_overload_and_faults() {
        let e = |t: &str| format!(r#"{{"error": "items[0].image: bad", "error_type": "{t}"}}"#);
        assert!(matches!(
            read_answer(422, e("invalid_image").as_bytes()),
            Answer::BadImage(m) if m == "items[0].image: bad"
        ));
        assert!(matches!(
            read_answer(429, e("overloaded").as_bytes()),
            Answer::Busy(_)
        ));
        assert!(matches!(
            read_answer(500, e("backend").as_bytes()),
            Answer::Failed(_)
        ));
        assert!(matches!(read_answer(502, b"<html>"), Answer::Failed(m) if m.contains("<html>")));
        assert!(matches!(read_answer(200, b"{}"), Answer::Failed(_)));
        let ok = br#"{"results": [{"reward": 1, "components": {"aesthetic": {"score": 0.5, "raw": 5, "source": "model"}}, "errors": {"position": "x"}}]}"#;
        match read_answer(200, ok) {
            Answer::Scored(s) => {
                assert_eq!(s.aesthetic.as_ref().map(|a| a.score), Some(0.5));
                assert_eq!(s.errors["position"], "x");
            }
            other => panic!("{other:?}"),
        }
    }
}
