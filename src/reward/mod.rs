//! Rewards: subject consistency (the PSR reward), position alignment, semantic alignment by a
//! VLM judge, aesthetic scores, and their weighted combination.

pub mod aesthetic;
mod assignment;
pub use assignment::MAX_CANDIDATES;
mod cache;
pub mod combine;
mod component;
pub mod copy_paste;
pub mod crop;
pub mod engine;
pub mod judge;
pub mod position;
pub mod remote;
mod subject_consistency;

use serde::{Deserialize, Serialize};

use crate::imaging::DecodedImage;

pub use aesthetic::RemoteScorerConfig;
pub use cache::{CacheMetrics, ReferenceCache};
pub use combine::{combine, default_normalization, default_weights, FailurePolicy, Normalization};
pub use component::{Component, ErrorKey, UnknownComponent};
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
    /// The image does not open in Pillow mode RGB (RGBA, LA, L, P, 1, CMYK, I;16): the PSR
    /// scripts' detector transform raises on it, so they skip detection. The subject's
    /// `fallback_mode` names the mode.
    NonRgb,
    /// The box selects no pixels (the scripts' resize raises and they use the whole image).
    EmptyCrop,
}

/// Reproduce the evaluation scripts exactly, or use the better-behaved defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The PSR scripts, quirks included (see README, "PSR compatibility").
    #[default]
    Psr,
    /// Clamp boxes, composite alpha on white, assign repeated categories by similarity.
    Robust,
}

/// How images with an alpha channel (or other non-RGB modes) are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlphaRule {
    /// As the scripts: no detection on non-RGB images, alpha dropped for embedding.
    SkipDetection,
    /// Composite on white and treat the result as RGB (detection runs).
    CompositeWhite,
}

/// How detections are matched to subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Matching {
    /// First kept box per category; for 2-subject items of one category, boxes 0 and 1.
    Psr,
    /// Detections of a category are assigned to its subjects maximising total similarity.
    Assignment,
}

/// How the generated image is detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DetectionRule {
    /// One detector pass per (image, category), as the scripts.
    PerCategory,
    /// One pass with all categories in one caption ("cat . crab ."), each category scored on
    /// its own token columns.
    Joint,
}

/// Which detector batches an item may join (see [`crate::models::ShapeRule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DetectorBatching {
    /// Only with items of the same input shape and caption length, never padded, so a result
    /// equals the model's at batch size 1 whoever else calls (unless the manifest marks the
    /// detector's padding neutral). The `psr` default.
    EqualShapes,
    /// With any items, smaller images padded (`pixel_mask`): more throughput when sizes mix,
    /// but a box or score may move with the batch. The `robust` default.
    Padded,
}

impl DetectorBatching {
    /// The detector items' shape rule.
    pub fn shape_rule(self) -> crate::models::ShapeRule {
        match self {
            Self::EqualShapes => crate::models::ShapeRule::Exact,
            Self::Padded => crate::models::ShapeRule::Pad,
        }
    }
}

/// Implements `Deserialize` for a unit-only enum from its snake_case name only. serde's derive
/// also takes the map form (`{"psr": null}`) and reports a number as a JSON *syntax* error
/// (400 without the field's path); here anything but a known name is a type error of the field
/// (422 naming its path).
macro_rules! deserialize_from_name {
    ($ty:ident { $($name:literal => $variant:ident),+ $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                const NAMES: &[&str] = &[$($name),+];
                struct Names;
                impl serde::de::Visitor<'_> for Names {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "one of the strings {}", NAMES.join(", "))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        match v {
                            $($name => Ok($ty::$variant),)+
                            other => Err(E::unknown_variant(other, NAMES)),
                        }
                    }
                }
                d.deserialize_str(Names)
            }
        }
    };
}

deserialize_from_name!(Mode { "psr" => Psr, "robust" => Robust });
deserialize_from_name!(AlphaRule { "skip_detection" => SkipDetection, "composite_white" => CompositeWhite });
deserialize_from_name!(Matching { "psr" => Psr, "assignment" => Assignment });
deserialize_from_name!(DetectionRule { "per_category" => PerCategory, "joint" => Joint });
deserialize_from_name!(DetectorBatching { "equal_shapes" => EqualShapes, "padded" => Padded });

/// Resolved subject-consistency options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScOptions {
    pub clamp_boxes: bool,
    pub alpha: AlphaRule,
    pub matching: Matching,
    pub detection: DetectionRule,
    pub batching: DetectorBatching,
}

/// Per-request overrides of the mode's defaults.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScOverrides {
    pub clamp_boxes: Option<bool>,
    pub alpha: Option<AlphaRule>,
    pub matching: Option<Matching>,
    pub detection: Option<DetectionRule>,
    pub batching: Option<DetectorBatching>,
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
                batching: DetectorBatching::EqualShapes,
            },
            Mode::Robust => Self {
                clamp_boxes: true,
                alpha: AlphaRule::CompositeWhite,
                matching: Matching::Assignment,
                detection: DetectionRule::PerCategory,
                batching: DetectorBatching::Padded,
            },
        };
        Self {
            clamp_boxes: o.clamp_boxes.unwrap_or(base.clamp_boxes),
            alpha: o.alpha.unwrap_or(base.alpha),
            matching: o.matching.unwrap_or(base.matching),
            detection: o.detection.unwrap_or(base.detection),
            batching: o.batching.unwrap_or(base.batching),
        }
    }

    /// How a detector box becomes crop bounds under these options.
    pub fn crop_rule(&self) -> crop::CropRule {
        if self.clamp_boxes {
            crop::CropRule::Clamp
        } else {
            crop::CropRule::PythonSlice
        }
    }

    /// The RGB pixels boxes are cropped from: the image composited on white when the alpha
    /// rule asks for it and the image has alpha, else its RGB pixels (alpha dropped).
    pub fn crop_source<'a>(&self, d: &'a DecodedImage) -> std::borrow::Cow<'a, image::RgbImage> {
        match (self.alpha, d.alpha.is_some()) {
            (AlphaRule::CompositeWhite, true) => std::borrow::Cow::Owned(d.composited_on_white()),
            _ => std::borrow::Cow::Borrowed(&d.rgb),
        }
    }

    /// The options that change a reference's cached result.
    fn reference_variant(&self) -> u8 {
        u8::from(self.clamp_boxes)
            | (u8::from(self.alpha == AlphaRule::CompositeWhite) << 1)
            | (u8::from(self.batching == DetectorBatching::Padded) << 2)
    }

    /// The detector's shape rule for this request's items.
    pub fn shape_rule(&self) -> crate::models::ShapeRule {
        self.batching.shape_rule()
    }
}
