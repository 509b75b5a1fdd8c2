//! Grounding DINO, Hugging Face export signature: `pixel_values`, `input_ids`,
//! `token_type_ids`, `attention_mask`, `pixel_mask` -> `logits` [B,900,256] and `pred_boxes`
//! [B,900,4] (normalised cx,cy,w,h relative to the unpadded image).
//!
//! Items of different image sizes and caption lengths share a batch: images are zero-padded at
//! the bottom/right with `pixel_mask` 0, captions padded with `attention_mask` 0, exactly as the
//! Hugging Face processor pads a batch.

use std::sync::Arc;

use ort::session::Session;
use ort::value::TensorRef;

use crate::batcher::{BackendError, BatchModel, Batchable};
use crate::imaging::PooledTensor;

use super::manifest::DetectorIo;

/// One (image, caption) pair. The image tensor is shared by every caption asked of it.
pub struct DetectorItem {
    pub image: Arc<PooledTensor>,
    /// Caption tokens (empty for closed-set detectors).
    pub input_ids: Arc<[i64]>,
    /// How the image was letterboxed, for detectors whose boxes are in input pixels.
    pub letterbox: Option<Letterbox>,
    /// Whether this item may be padded into a batch of larger items.
    pub shapes: ShapeRule,
}

/// Which items a detector item may share a batch with.
///
/// Padding is not neutral on the real Grounding DINO: the Swin backbone's convolutions and
/// shifted windows see the padded pixels, and only the position embeddings and the encoder's
/// attention are masked, so a box or a score near the threshold can move when a small image
/// shares a batch with a larger one (issue 19). `psr` mode therefore batches equal shapes only,
/// unless the manifest marks the model's padding as measured neutral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeRule {
    /// Any image size and caption length: smaller ones are padded (`pixel_mask`,
    /// `attention_mask`).
    Pad,
    /// Only items of exactly this tensor shape and caption length: never padded.
    Exact,
}

/// Geometry of a letterboxed input: `input = source * gain + pad`.
#[derive(Debug, Clone, Copy)]
pub struct Letterbox {
    pub gain: f32,
    pub pad_x: f32,
    pub pad_y: f32,
    pub src_w: f32,
    pub src_h: f32,
}

impl Default for Letterbox {
    fn default() -> Self {
        Self {
            gain: 1.0,
            pad_x: 0.0,
            pad_y: 0.0,
            src_w: 1.0,
            src_h: 1.0,
        }
    }
}

impl Batchable for DetectorItem {
    /// `Pad` items share key 0; `Exact` items a key of their shape and caption length, with
    /// the top bit set so that it is never 0.
    fn batch_key(&self) -> u64 {
        match self.shapes {
            ShapeRule::Pad => 0,
            ShapeRule::Exact => {
                let [c, h, w] = self.image.shape();
                let l = self.input_ids.len() as u64;
                (1 << 63) | ((c as u64) << 56) ^ ((h as u64) << 36) ^ ((w as u64) << 16) ^ l
            }
        }
    }
}

/// Raw per-query results for one item.
#[derive(Debug, Clone)]
pub struct DetectorOutput {
    /// Normalised cx, cy, w, h per query.
    pub boxes: Vec<[f32; 4]>,
    /// sigmoid of the max logit over all token columns, per query (the PSR box score).
    pub scores: Vec<f32>,
    /// sigmoid(logits) for the item's own tokens: `[queries, text_len]`, row-major.
    pub token_scores: Vec<f32>,
    pub text_len: usize,
}

/// A kept query, in the original image's pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Detection {
    /// Query index: the PSR scripts keep the first kept query in query order.
    pub query: usize,
    pub score: f32,
    /// x1, y1, x2, y2 in pixels of the original image (not clamped).
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

/// Normalised box coordinates beyond this margin outside the image are not a detection of it.
const BOX_MARGIN: f32 = 1.0;

impl DetectorOutput {
    /// Why this output cannot be trusted: a non-finite score or box, or a box far outside the
    /// image (normalised cx, cy outside [-1, 2], or a negative or > 3 width/height).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if let Some(i) = self
            .scores
            .iter()
            .chain(&self.token_scores)
            .position(|s| !s.is_finite())
        {
            return Some(("non_finite", format!("score {i} is not finite")));
        }
        for (q, b) in self.boxes.iter().enumerate() {
            if b.iter().any(|v| !v.is_finite()) {
                return Some(("non_finite", format!("box of query {q} is {b:?}")));
            }
            let centre_ok = b[..2]
                .iter()
                .all(|&c| (-BOX_MARGIN..=1.0 + BOX_MARGIN).contains(&c));
            let size_ok = b[2..]
                .iter()
                .all(|&s| (0.0..=1.0 + 2.0 * BOX_MARGIN).contains(&s));
            if !(centre_ok && size_ok) {
                return Some((
                    "box_bounds",
                    format!("box of query {q} is {b:?} (normalised cx, cy, w, h)"),
                ));
            }
        }
        None
    }

    /// Queries whose score exceeds `threshold`, in query order, scaled to a `w`×`h` image
    /// as the reference does (scale cx,cy,w,h by (W,H,W,H), then `cx - 0.5 * w` ...).
    pub fn detections(&self, threshold: f32, w: u32, h: u32) -> Vec<Detection> {
        self.scores
            .iter()
            .enumerate()
            .filter(|(_, &s)| s > threshold)
            .map(|(query, &score)| self.detection(query, score, w, h))
            .collect()
    }

    /// Like [`Self::detections`], but scoring each query only over the token columns `span`
    /// (one category of a joint caption such as "cat . crab .").
    pub fn span_detections(
        &self,
        span: std::ops::Range<usize>,
        threshold: f32,
        w: u32,
        h: u32,
    ) -> Vec<Detection> {
        let span = span.start.min(span.end).min(self.text_len)..span.end.min(self.text_len);
        (0..self.boxes.len())
            .filter_map(|query| {
                let row = &self.token_scores[query * self.text_len..(query + 1) * self.text_len];
                let score = row[span.clone()]
                    .iter()
                    .copied()
                    .fold(f32::NEG_INFINITY, f32::max);
                (score > threshold).then(|| self.detection(query, score, w, h))
            })
            .collect()
    }

    fn detection(&self, query: usize, score: f32, w: u32, h: u32) -> Detection {
        let (wf, hf) = (w as f32, h as f32);
        let [cx, cy, bw, bh] = self.boxes[query];
        let (cx, cy, bw, bh) = (cx * wf, cy * hf, bw * wf, bh * hf);
        Detection {
            query,
            score,
            bbox: [cx - 0.5 * bw, cy - 0.5 * bh, cx + 0.5 * bw, cy + 0.5 * bh],
        }
    }
}

/// One Grounding DINO session with reusable batch buffers.
pub struct GroundingDino {
    session: Session,
    io: DetectorIo,
    /// Counts the items run padded (smaller image or shorter caption than their batch's).
    padded: prometheus::IntCounter,
    pixels: Vec<f32>,
    pixel_mask: Vec<i64>,
    ids: Vec<i64>,
    attention: Vec<i64>,
    token_types: Vec<i64>,
}

impl GroundingDino {
    /// Wraps a session; tensor names come from the manifest. `padded` counts the items
    /// run with padding (`psr_reward_detector_padded_items_total`).
    pub fn new(session: Session, io: DetectorIo, padded: prometheus::IntCounter) -> Self {
        Self {
            session,
            io,
            padded,
            pixels: Vec::new(),
            pixel_mask: Vec::new(),
            ids: Vec::new(),
            attention: Vec::new(),
            token_types: Vec::new(),
        }
    }

    /// Pads every item into the batch buffers; returns (height, width, text length).
    fn assemble(&mut self, batch: &[DetectorItem]) -> (usize, usize, usize) {
        let hm = batch.iter().map(|i| i.image.shape()[1]).max().unwrap_or(1);
        let wm = batch.iter().map(|i| i.image.shape()[2]).max().unwrap_or(1);
        let lm = batch.iter().map(|i| i.input_ids.len()).max().unwrap_or(1);
        let n = batch.len();
        let padded = batch.iter().filter(|i| {
            let [_, h, w] = i.image.shape();
            h < hm || w < wm || i.input_ids.len() < lm
        });
        self.padded.inc_by(padded.count() as u64);
        reset(&mut self.pixels, n * 3 * hm * wm, 0.0);
        reset(&mut self.pixel_mask, n * hm * wm, 0);
        reset(&mut self.ids, n * lm, 0);
        reset(&mut self.attention, n * lm, 0);
        reset(&mut self.token_types, n * lm, 0);
        for (b, item) in batch.iter().enumerate() {
            let [c, h, w] = item.image.shape();
            let src = item.image.data();
            for ch in 0..c.min(3) {
                for y in 0..h {
                    let from = ch * h * w + y * w;
                    let to = ((b * 3 + ch) * hm + y) * wm;
                    self.pixels[to..to + w].copy_from_slice(&src[from..from + w]);
                }
            }
            for y in 0..h {
                let to = (b * hm + y) * wm;
                self.pixel_mask[to..to + w].fill(1);
            }
            let l = item.input_ids.len();
            self.ids[b * lm..b * lm + l].copy_from_slice(&item.input_ids);
            self.attention[b * lm..b * lm + l].fill(1);
        }
        (hm, wm, lm)
    }
}

fn reset<T: Copy>(buf: &mut Vec<T>, len: usize, value: T) {
    buf.clear();
    buf.resize(len, value);
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn backend(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

impl BatchModel for GroundingDino {
    type Input = DetectorItem;
    type Output = DetectorOutput;

    fn run(&mut self, batch: &[DetectorItem]) -> Result<Vec<DetectorOutput>, BackendError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let n = batch.len();
        let (hm, wm, lm) = self.assemble(batch);
        let io = &self.io;
        let inputs = ort::inputs![
            io.pixel_values.as_str() => TensorRef::from_array_view(([n, 3, hm, wm], self.pixels.as_slice())).map_err(backend)?,
            io.pixel_mask.as_str() => TensorRef::from_array_view(([n, hm, wm], self.pixel_mask.as_slice())).map_err(backend)?,
            io.input_ids.as_str() => TensorRef::from_array_view(([n, lm], self.ids.as_slice())).map_err(backend)?,
            io.token_type_ids.as_str() => TensorRef::from_array_view(([n, lm], self.token_types.as_slice())).map_err(backend)?,
            io.attention_mask.as_str() => TensorRef::from_array_view(([n, lm], self.attention.as_slice())).map_err(backend)?,
        ];
        let outputs = self.session.run(inputs).map_err(backend)?;
        let get = |name: &str| {
            outputs
                .get(name)
                .ok_or_else(|| BackendError(format!("model has no output `{name}`")))?
                .try_extract_tensor::<f32>()
                .map_err(backend)
        };
        let (lshape, logits) = get(&io.logits)?;
        let (bshape, boxes) = get(&io.boxes)?;
        let (q, t) = match (&lshape[..], &bshape[..]) {
            ([b, q, t], [b2, q2, 4]) if *b == n as i64 && *b2 == n as i64 && q == q2 => {
                (*q as usize, *t as usize)
            }
            _ => {
                return Err(BackendError(format!(
                    "unexpected detector output shapes {lshape:?} and {bshape:?}"
                )))
            }
        };
        let mut results = Vec::with_capacity(n);
        for (b, item) in batch.iter().enumerate() {
            let text_len = item.input_ids.len().min(t);
            let mut scores = Vec::with_capacity(q);
            let mut token_scores = Vec::with_capacity(q * text_len);
            let mut qboxes = Vec::with_capacity(q);
            for qi in 0..q {
                let row = &logits[(b * q + qi) * t..(b * q + qi + 1) * t];
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                scores.push(sigmoid(max));
                token_scores.extend(row[..text_len].iter().map(|&x| sigmoid(x)));
                let bx = &boxes[(b * q + qi) * 4..(b * q + qi + 1) * 4];
                qboxes.push([bx[0], bx[1], bx[2], bx[3]]);
            }
            results.push(DetectorOutput {
                boxes: qboxes,
                scores,
                token_scores,
                text_len,
            });
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detections_scale_to_pixels_in_query_order() {
        let out = DetectorOutput {
            boxes: vec![[0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5], [0.0; 4]],
            scores: vec![0.2, 0.9, 0.5],
            token_scores: vec![],
            text_len: 0,
        };
        let d = out.detections(0.35, 200, 100);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].query, 1);
        assert_eq!(d[0].bbox, [0.0, 0.0, 100.0, 50.0]);
        assert_eq!(d[1].query, 2);
    }

    #[test]
    fn span_detections_score_only_their_columns() {
        let out = DetectorOutput {
            boxes: vec![[0.5; 4], [0.25; 4]],
            scores: vec![0.9, 0.9],
            // query 0 matches token 1, query 1 matches token 3
            token_scores: vec![0.0, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.8],
            text_len: 4,
        };
        let first: Vec<usize> = out
            .span_detections(1..2, 0.35, 10, 10)
            .iter()
            .map(|d| d.query)
            .collect();
        let second: Vec<usize> = out
            .span_detections(3..4, 0.35, 10, 10)
            .iter()
            .map(|d| d.query)
            .collect();
        assert_eq!((first, second), (vec![0], vec![1]));
    }

    /// Fuzz finding (detector_boxes): an inverted span (start past end, here 23..16 on 32
    /// token columns) panicked slicing the score row; it selects no column, so no detection.
    #[test]
    fn inverted_span_detects_nothing() {
        let out = DetectorOutput {
            boxes: vec![[0.5; 4]],
            scores: vec![0.9],
            token_scores: vec![0.9; 32],
            text_len: 32,
        };
        #[allow(clippy::reversed_empty_ranges)] // the inverted span is the point
        let inverted = 23..16;
        assert_eq!(out.span_detections(inverted, 0.35, 10, 10), vec![]);
        assert_eq!(out.span_detections(40..50, 0.35, 10, 10), vec![]);
        assert_eq!(out.span_detections(16..23, 0.35, 10, 10).len(), 1);
    }
}
