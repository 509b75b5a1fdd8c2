//! Protobuf messages into the requests both edges share, and the service's results into
//! protobuf messages. Images are borrowed from the messages as raw bytes.

use crate::reward::copy_paste::CopyPasteOverrides;
use crate::reward::engine::{self, ItemReward};
use crate::reward::{
    self, AlphaRule, DetectionRule, DetectorBatching, Fallback, Matching, Mode, ScOptions,
};
use crate::server::error::ApiError;
use crate::server::images::ImageSource;
use crate::server::reward_input::{ItemIn, ReferenceIn, RewardInput, SubjectIn};

use super::pb;

/// An enum field's value, or INVALID_ARGUMENT naming the field for a value the proto does
/// not define (prost keeps unknown values as plain integers).
fn known<E: TryFrom<i32>>(value: i32, field: &str) -> Result<E, ApiError> {
    E::try_from(value).map_err(|_| ApiError::invalid(format!("{field}: unknown value {value}")))
}

/// A `priority` in range of the HTTP API's `u8` (the level check itself is shared).
pub fn priority(p: Option<u32>) -> Result<Option<u8>, ApiError> {
    p.map(|p| {
        u8::try_from(p)
            .map_err(|_| ApiError::invalid("priority must be a priority level (0 is served first)"))
    })
    .transpose()
}

fn overrides(o: Option<&pb::SubjectConsistencyOptions>) -> Result<reward::ScOverrides, ApiError> {
    let Some(o) = o else {
        return Ok(reward::ScOverrides::default());
    };
    Ok(reward::ScOverrides {
        clamp_boxes: o.clamp_boxes,
        alpha: match known(o.alpha, "options.alpha")? {
            pb::AlphaRule::Unspecified => None,
            pb::AlphaRule::SkipDetection => Some(AlphaRule::SkipDetection),
            pb::AlphaRule::CompositeWhite => Some(AlphaRule::CompositeWhite),
        },
        matching: match known(o.matching, "options.matching")? {
            pb::Matching::Unspecified => None,
            pb::Matching::Psr => Some(Matching::Psr),
            pb::Matching::Assignment => Some(Matching::Assignment),
        },
        detection: match known(o.detection, "options.detection")? {
            pb::DetectionRule::Unspecified => None,
            pb::DetectionRule::PerCategory => Some(DetectionRule::PerCategory),
            pb::DetectionRule::Joint => Some(DetectionRule::Joint),
        },
        batching: match known(o.batching, "options.batching")? {
            pb::DetectorBatching::Unspecified => None,
            pb::DetectorBatching::EqualShapes => Some(DetectorBatching::EqualShapes),
            pb::DetectorBatching::Padded => Some(DetectorBatching::Padded),
        },
    })
}

fn item(i: usize, item: &pb::RewardItem) -> Result<ItemIn<'_>, ApiError> {
    let subjects = item
        .subjects
        .iter()
        .enumerate()
        .map(|(s, subject)| {
            let reference = match &subject.reference {
                Some(pb::subject::Reference::ReferenceImage(bytes)) => {
                    ReferenceIn::Image(ImageSource::Raw(bytes))
                }
                Some(pb::subject::Reference::ReferenceHash(hash)) => {
                    ReferenceIn::Cached(hash.clone())
                }
                None => {
                    return Err(ApiError::invalid(format!(
                        "items[{i}].subjects[{s}]: set reference_image or reference_hash"
                    )))
                }
            };
            Ok(SubjectIn {
                name: subject.name.clone(),
                reference,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(ItemIn {
        image: ImageSource::Raw(&item.image),
        prompt: item.prompt.clone(),
        subjects,
        task: item.task.clone(),
    })
}

/// A reward request; `timeout_ms` comes from the call's deadline.
pub fn reward_input(
    req: &pb::RewardRequest,
    timeout_ms: Option<u64>,
) -> Result<RewardInput<'_>, ApiError> {
    let items = req
        .items
        .iter()
        .enumerate()
        .map(|(i, it)| item(i, it))
        .collect::<Result<_, _>>()?;
    Ok(RewardInput {
        items,
        rewards: (!req.rewards.is_empty())
            .then(|| req.rewards.iter().map(|(k, v)| (k.clone(), *v)).collect()),
        mode: match known(req.mode, "mode")? {
            pb::Mode::Unspecified | pb::Mode::Psr => Mode::Psr,
            pb::Mode::Robust => Mode::Robust,
        },
        options: overrides(req.options.as_ref())?,
        timeout_ms,
        priority: priority(req.priority)?,
        judge_answer: req.judge_answer.unwrap_or(false),
        copy_paste: copy_paste(req.copy_paste.as_ref()),
        // Explanations (annotated images) are an HTTP feature: not in the proto.
        explain: false,
    })
}

/// The copy-paste guard's overrides (their ranges are checked where HTTP's are).
fn copy_paste(o: Option<&pb::CopyPasteOptions>) -> CopyPasteOverrides {
    o.map_or_else(CopyPasteOverrides::default, |o| CopyPasteOverrides {
        threshold: o.threshold,
        penalty: o.penalty,
    })
}

/// A stream request as the unary request it mirrors.
pub fn unary(req: pb::StreamRewardsRequest) -> pb::RewardRequest {
    pb::RewardRequest {
        items: req.items,
        rewards: req.rewards,
        mode: req.mode,
        options: req.options,
        priority: req.priority,
        judge_answer: req.judge_answer,
        copy_paste: req.copy_paste,
    }
}

/// The options in force.
pub fn options(o: &ScOptions) -> pb::SubjectConsistencyOptions {
    pb::SubjectConsistencyOptions {
        clamp_boxes: Some(o.clamp_boxes),
        alpha: match o.alpha {
            AlphaRule::SkipDetection => pb::AlphaRule::SkipDetection,
            AlphaRule::CompositeWhite => pb::AlphaRule::CompositeWhite,
        } as i32,
        matching: match o.matching {
            Matching::Psr => pb::Matching::Psr,
            Matching::Assignment => pb::Matching::Assignment,
        } as i32,
        detection: match o.detection {
            DetectionRule::PerCategory => pb::DetectionRule::PerCategory,
            DetectionRule::Joint => pb::DetectionRule::Joint,
        } as i32,
        batching: match o.batching {
            DetectorBatching::EqualShapes => pb::DetectorBatching::EqualShapes,
            DetectorBatching::Padded => pb::DetectorBatching::Padded,
        } as i32,
    }
}

fn pixel_box(b: Option<[i64; 4]>) -> Option<pb::PixelBox> {
    b.map(|[x1, y1, x2, y2]| pb::PixelBox { x1, y1, x2, y2 })
}

fn fallback(f: Option<Fallback>) -> i32 {
    (match f {
        None => pb::Fallback::Unspecified,
        Some(Fallback::NotDetected) => pb::Fallback::NotDetected,
        Some(Fallback::NonRgb) => pb::Fallback::NonRgb,
        Some(Fallback::EmptyCrop) => pb::Fallback::EmptyCrop,
    }) as i32
}

fn subject(s: &reward::SubjectScore) -> pb::SubjectScore {
    pb::SubjectScore {
        name: s.name.clone(),
        similarity: s.similarity,
        detected: s.detected,
        r#box: pixel_box(s.bbox),
        fallback: fallback(s.fallback),
        fallback_mode: s.fallback_mode.unwrap_or_default().to_string(),
        reference_detected: s.reference_detected,
        reference_box: pixel_box(s.reference_box),
        reference_fallback: fallback(s.reference_fallback),
        reference_fallback_mode: s.reference_fallback_mode.unwrap_or_default().to_string(),
        reference: s.reference.clone(),
        copy_paste: Some(pb::CopyPaste {
            score: s.copy_paste.score,
            suspected: s.copy_paste.suspected,
        }),
    }
}

fn components(c: engine::Components) -> pb::Components {
    pb::Components {
        subject_consistency: c
            .subject_consistency
            .map(|sc| pb::SubjectConsistencyComponent {
                score: sc.score,
                raw: sc.raw,
                subjects: sc.subjects.iter().map(subject).collect(),
            }),
        semantic_alignment: c
            .semantic_alignment
            .map(|sa| pb::SemanticAlignmentComponent {
                score: sa.score,
                raw: sa.raw,
                parsed: sa.parsed,
                substituted: sa.substituted,
                out_of_range: sa.out_of_range,
                dropped: sa.dropped,
                template: sa.template,
                template_hash: sa.template_hash,
                answer: sa.answer,
            }),
        aesthetic: c.aesthetic.map(|a| pb::AestheticComponent {
            score: a.score,
            raw: a.raw,
            source: a.source.to_string(),
        }),
        position: c.position.map(|p| pb::PositionComponent {
            score: p.score,
            raw: p.raw,
            relation: p.relation.map(str::to_string),
            reason: p.reason.map(str::to_string),
        }),
    }
}

/// One item's reward.
pub fn item_reward(r: ItemReward) -> pb::ItemReward {
    pb::ItemReward {
        reward: r.reward,
        components: Some(components(r.components)),
        errors: r
            .errors
            .into_iter()
            .map(|(k, v)| (k.as_str().to_string(), v))
            .collect(),
        copy_paste_penalty: r.copy_paste_penalty,
    }
}
