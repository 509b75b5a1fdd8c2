//! Rewards: subject consistency (the PSR reward), position alignment, semantic alignment by a
//! VLM judge, aesthetic scores, and their weighted combination.

pub mod aesthetic;
mod assignment;
mod cache;
pub mod combine;
pub mod crop;
pub mod engine;
pub mod judge;
pub mod position;
pub mod remote;
mod subject_consistency;

use serde::{Deserialize, Serialize};

pub use aesthetic::RemoteScorerConfig;
pub use cache::{CacheMetrics, ReferenceCache};
pub use combine::{
    combine, default_normalization, default_weights, FailurePolicy, Normalization, COMPONENTS,
};
pub use judge::{Judge, JudgeConfig, Judgement};
pub use position::{position_score, PositionScore};
pub use remote::{Remote, RemoteError, RemoteMetrics, RemotePolicy};
pub use subject_consistency::{
    score_items, ItemInput, ReferenceInput, ScError, ScItem, ScServices, SubjectInput, SubjectScore,
};

/// Why a subject's whole image was embedded instead of a crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// No query above the box threshold for this subject.
    NotDetected,
    /// The image is not RGB (RGBA, LA, L, P, 16-bit grey): the PSR scripts skip detection.
    NonRgb,
    /// The box selects no pixels (the scripts' resize raises and they use the whole image).
    EmptyCrop,
}

/// Reproduce the evaluation scripts exactly, or use the better-behaved defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The PSR scripts, quirks included (see README, "PSR compatibility").
    #[default]
    Psr,
    /// Clamp boxes, composite alpha on white, assign repeated categories by similarity.
    Robust,
}

/// How images with an alpha channel (or other non-RGB modes) are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlphaRule {
    /// As the scripts: no detection on non-RGB images, alpha dropped for embedding.
    SkipDetection,
    /// Composite on white and treat the result as RGB (detection runs).
    CompositeWhite,
}

/// How detections are matched to subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Matching {
    /// First kept box per category; for 2-subject items of one category, boxes 0 and 1.
    Psr,
    /// Detections of a category are assigned to its subjects maximising total similarity.
    Assignment,
}

/// How the generated image is detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DetectionRule {
    /// One detector pass per (image, category), as the scripts.
    PerCategory,
    /// One pass with all categories in one caption ("cat . crab ."), each category scored on
    /// its own token columns.
    Joint,
}

/// Resolved subject-consistency options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScOptions {
    pub clamp_boxes: bool,
    pub alpha: AlphaRule,
    pub matching: Matching,
    pub detection: DetectionRule,
}

/// Per-request overrides of the mode's defaults.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScOverrides {
    pub clamp_boxes: Option<bool>,
    pub alpha: Option<AlphaRule>,
    pub matching: Option<Matching>,
    pub detection: Option<DetectionRule>,
}

impl ScOptions {
    /// The mode's defaults with the request's overrides applied.
    pub fn resolve(mode: Mode, o: ScOverrides) -> Self {
        let base = match mode {
            Mode::Psr => Self {
                clamp_boxes: false,
                alpha: AlphaRule::SkipDetection,
                matching: Matching::Psr,
                detection: DetectionRule::PerCategory,
            },
            Mode::Robust => Self {
                clamp_boxes: true,
                alpha: AlphaRule::CompositeWhite,
                matching: Matching::Assignment,
                detection: DetectionRule::PerCategory,
            },
        };
        Self {
            clamp_boxes: o.clamp_boxes.unwrap_or(base.clamp_boxes),
            alpha: o.alpha.unwrap_or(base.alpha),
            matching: o.matching.unwrap_or(base.matching),
            detection: o.detection.unwrap_or(base.detection),
        }
    }

    /// The options that change a reference's cached result.
    fn reference_variant(&self) -> u8 {
        u8::from(self.clamp_boxes) | (u8::from(self.alpha == AlphaRule::CompositeWhite) << 1)
    }
}
