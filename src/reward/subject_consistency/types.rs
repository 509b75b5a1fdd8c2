//! The inputs, outputs and errors of the subject-consistency reward.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::super::cache::ReferenceCache;
use super::super::Fallback;
use crate::batcher::BatchError;
use crate::cpu_pool::{CpuPool, CpuPoolError};
use crate::imaging::{DecodedImage, TensorPool};
use crate::models::{Models, TokenizeError};

/// Shared services the reward needs.
#[derive(Clone)]
pub struct ScServices {
    pub models: Arc<Models>,
    pub cache: Arc<ReferenceCache>,
    pub cpu: CpuPool,
    pub tensors: TensorPool,
}

/// One generated image and its subjects.
pub struct ItemInput {
    pub image: Arc<DecodedImage>,
    pub subjects: Vec<SubjectInput>,
}

/// A subject: its category name and its reference.
pub struct SubjectInput {
    pub name: String,
    pub reference: ReferenceInput,
}

/// A reference image, or the content hash of one the cache already holds.
pub enum ReferenceInput {
    Image(Arc<DecodedImage>),
    Cached(String),
}

/// Why the reward could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ScError {
    #[error("items[{item}].subjects[{subject}]: reference {hash} is not in the reference cache (never sent, or evicted); send the image again")]
    UnknownReference {
        item: usize,
        subject: usize,
        hash: String,
    },
    #[error("items[{item}].subjects[{subject}].name: {source}")]
    Name {
        item: usize,
        subject: usize,
        source: TokenizeError,
    },
    #[error("no {0} model is configured")]
    NotServed(&'static str),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("a model lane closed an item without answering")]
    Closed,
    #[error("cannot preprocess image: {0}")]
    Preprocess(String),
    #[error("the request's deadline passed")]
    Timeout,
    #[error(transparent)]
    Pool(#[from] CpuPoolError),
}

impl From<crate::batcher::AwaitError> for ScError {
    fn from(e: crate::batcher::AwaitError) -> Self {
        match e {
            crate::batcher::AwaitError::Batch(b) => Self::Batch(b),
            crate::batcher::AwaitError::Deadline => Self::Timeout,
            crate::batcher::AwaitError::Closed => Self::Closed,
        }
    }
}

/// The per-subject result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubjectScore {
    pub name: String,
    /// Cosine similarity of the generated and reference crop embeddings.
    pub similarity: f64,
    /// A box was kept for this subject in the generated image.
    pub detected: bool,
    /// That box, `[x1, y1, x2, y2]` after the scripts' `int()` truncation.
    #[serde(rename = "box")]
    pub bbox: Option<[i64; 4]>,
    /// Why the whole generated image was embedded instead of the crop.
    pub fallback: Option<Fallback>,
    /// With `fallback: non_rgb`, the Pillow mode the generated image opens in (`"RGBA"`,
    /// `"LA"`, `"L"`, `"P"`, `"1"`, `"CMYK"`, `"I;16"`).
    pub fallback_mode: Option<&'static str>,
    pub reference_detected: bool,
    pub reference_box: Option<[i64; 4]>,
    pub reference_fallback: Option<Fallback>,
    /// With `reference_fallback: non_rgb`, the Pillow mode of the reference.
    pub reference_fallback_mode: Option<&'static str>,
    /// How literally the generated crop copies the reference crop (the copy-paste guard).
    pub copy_paste: super::super::copy_paste::CopyPaste,
    /// Content hash of the reference: send `{"ref": hash}` next time instead of the image.
    pub reference: String,
}

/// The subject-consistency component of one item.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScItem {
    /// Mean of the subjects' similarities.
    pub score: f64,
    pub subjects: Vec<SubjectScore>,
    /// Per subject, the first kept box of its category in the generated image (what the
    /// position script uses, whatever the matching rule), `None` when nothing was kept.
    #[serde(skip)]
    pub first_boxes: Vec<Option<[i64; 4]>>,
}

/// Where the time of a request went.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageTiming {
    pub detection: Duration,
    pub embedding: Duration,
    pub queue: Duration,
    pub inference: Duration,
}
