//! The detector lane: one detector (Grounding DINO or a YOLO export) behind its batcher, with
//! the vocabulary that turns categories into its inputs and its outputs back into detections.

use std::sync::{Arc, Mutex};

use super::manifest::{self, DetectorKind};
use super::validate::{InvalidOutput, InvalidOutputCounter};
use super::{
    category_caption, CaptionTokenizer, Detection, DetectorItem, DetectorOutput, GroundingDino,
    Letterbox, Loader, ModelError, ModelInfo, ShapeRule, TokenizeError, YoloDetector,
};
use crate::batcher::Batcher;
use crate::imaging::{PooledTensor, Preprocess};

/// How categories are put to a detector.
pub enum Vocabulary {
    /// Open vocabulary: a tokenised caption (Grounding DINO).
    Captions(Arc<CaptionTokenizer>),
    /// A fixed list of class names (YOLO): one pass finds every class.
    Classes(Arc<[String]>),
}

/// What the detector is fed for some categories, and which score columns belong to each.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub input_ids: Arc<[i64]>,
    /// Per category, its token (or class) columns; `None` for a single-category caption,
    /// scored over all columns as the PSR scripts do.
    pub spans: Option<Vec<std::ops::Range<usize>>>,
}

/// The detector behind its batcher, with its vocabulary and threshold.
pub struct DetectorLane {
    pub batcher: Batcher<DetectorItem, DetectorOutput>,
    pub preprocess: Arc<Preprocess>,
    pub vocabulary: Vocabulary,
    pub box_threshold: f32,
    /// The manifest's `padding_neutral`: `Exact` requests may be padded all the same.
    pub padding_neutral: bool,
    pub(super) info: Arc<Mutex<ModelInfo>>,
    pub(super) check: InvalidOutputCounter,
}

impl DetectorLane {
    /// Whether one pass per image answers every category (closed-set detectors).
    pub fn single_pass(&self) -> bool {
        matches!(self.vocabulary, Vocabulary::Classes(_))
    }

    /// The input for `categories` (one, or several in one joint caption).
    pub fn prompt(&self, categories: &[&str]) -> Result<Prompt, TokenizeError> {
        match &self.vocabulary {
            Vocabulary::Captions(tok) => match categories {
                [one] => Ok(Prompt {
                    input_ids: tok.encode(&category_caption(one)?)?.into(),
                    spans: None,
                }),
                many => {
                    let (ids, spans) = tok.encode_joint(many)?;
                    Ok(Prompt {
                        input_ids: ids.into(),
                        spans: Some(spans),
                    })
                }
            },
            Vocabulary::Classes(classes) => {
                let spans = categories
                    .iter()
                    .map(|c| {
                        let wanted = c.trim().trim_end_matches('.').trim();
                        classes
                            .iter()
                            .position(|k| k.eq_ignore_ascii_case(wanted))
                            .map(|i| i..i + 1)
                            .ok_or_else(|| TokenizeError::UnknownClass {
                                name: c.to_string(),
                                known: classes.join(", "),
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Prompt {
                    input_ids: Arc::from([]),
                    spans: Some(spans),
                })
            }
        }
    }

    /// The detector item for an image tensor made from a `w`×`h` source; `shapes` is what
    /// the request asks (relaxed to `Pad` when this model's padding is neutral).
    pub fn item(
        &self,
        image: Arc<PooledTensor>,
        prompt: &Prompt,
        (w, h): (u32, u32),
        shapes: ShapeRule,
    ) -> DetectorItem {
        let letterbox = matches!(
            self.preprocess.rule(),
            crate::imaging::ResizeRule::Letterbox { .. }
        )
        .then(|| {
            let plan = self.preprocess.plan(w, h);
            Letterbox {
                gain: plan.gain(w),
                pad_x: plan.pad_x as f32,
                pad_y: plan.pad_y as f32,
                src_w: w as f32,
                src_h: h as f32,
            }
        });
        DetectorItem {
            image,
            input_ids: prompt.input_ids.clone(),
            letterbox,
            shapes: if self.padding_neutral {
                ShapeRule::Pad
            } else {
                shapes
            },
        }
    }

    /// Category `k` of `prompt`'s detections scoring above `threshold` in a `w`×`h` image,
    /// in query order.
    /// Accepts one item's raw output, or rejects it (counted) when its values are not finite
    /// or its boxes leave sane bounds. Call once per output, before [`Self::detections`].
    pub fn validate(&self, out: &DetectorOutput) -> Result<(), InvalidOutput> {
        match out.problem() {
            None => Ok(()),
            Some((reason, detail)) => Err(self.check.reject(reason, detail)),
        }
    }

    pub fn detections(
        &self,
        out: &DetectorOutput,
        prompt: &Prompt,
        k: usize,
        threshold: f32,
        w: u32,
        h: u32,
    ) -> Vec<Detection> {
        match &prompt.spans {
            None => out.detections(threshold, w, h),
            Some(spans) => spans
                .get(k)
                .map(|s| out.span_detections(s.clone(), threshold, w, h))
                .unwrap_or_default(),
        }
    }
}

/// Loads the detector of a manifest: Grounding DINO with its tokenizer, or a YOLO export.
pub(super) fn load_detector(
    spec: &manifest::DetectorSpec,
    loader: &Loader<'_>,
) -> Result<DetectorLane, ModelError> {
    let io = spec.io.clone();
    let (started, vocabulary) = match spec.kind {
        DetectorKind::GroundingDino => {
            let tokenizer_path = spec
                .tokenizer
                .as_deref()
                .unwrap_or(std::path::Path::new("tokenizer.json"));
            let tokenizer =
                CaptionTokenizer::load(&loader.manifest.resolve(tokenizer_path), spec.max_text_len)
                    .map_err(|e| ModelError::Load {
                        model: spec.name.clone(),
                        message: e.to_string(),
                    })?;
            let padded = loader.metrics.padded_items(&spec.name);
            let st = loader.start(spec, "detector", move |session| {
                GroundingDino::new(session, io.clone(), padded.clone())
            })?;
            (st, Vocabulary::Captions(Arc::new(tokenizer)))
        }
        DetectorKind::Yolo => {
            let (conf, iou) = (spec.box_threshold, spec.iou_threshold);
            let st = loader.start(spec, "detector", move |session| {
                YoloDetector::new(session, io.images.clone(), io.output.clone(), conf, iou)
            })?;
            (st, Vocabulary::Classes(spec.classes.clone().into()))
        }
    };
    Ok(DetectorLane {
        batcher: started.batcher,
        preprocess: started.preprocess,
        vocabulary,
        box_threshold: spec.box_threshold,
        padding_neutral: spec.padding_neutral,
        info: started.info,
        check: loader.metrics.invalid_outputs(&spec.name),
    })
}
