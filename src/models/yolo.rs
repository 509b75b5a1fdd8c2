//! Closed-set detectors in the Ultralytics YOLO ONNX export layout: `images` [B,3,S,S]
//! (letterboxed RGB, /255) -> `output0` [B, 4+C, N] (cx, cy, w, h in input pixels, then one
//! score per class), decoded with a confidence threshold and class-wise NMS.
//!
//! Results come out in the same [`DetectorOutput`] form as Grounding DINO: one "query" per kept
//! box, sorted by confidence, with one token column per class, so the reward code asks for a
//! category's detections the same way (the class's column is its span).

use ort::session::Session;
use ort::value::TensorRef;

use super::grounding_dino::{DetectorItem, DetectorOutput};
use crate::batcher::{BackendError, BatchModel};

/// One YOLO session with a reusable batch buffer.
pub struct YoloDetector {
    session: Session,
    input: String,
    output: String,
    conf_threshold: f32,
    iou_threshold: f32,
    batch: Vec<f32>,
}

impl YoloDetector {
    /// Wraps a session; tensor names and thresholds come from the manifest.
    pub fn new(
        session: Session,
        input: String,
        output: String,
        conf_threshold: f32,
        iou_threshold: f32,
    ) -> Self {
        Self {
            session,
            input,
            output,
            conf_threshold,
            iou_threshold,
            batch: Vec::new(),
        }
    }
}

fn backend(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

/// Intersection over union of two x1,y1,x2,y2 boxes.
fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Candidates above the threshold, best class each, class-wise NMS, sorted by confidence.
/// `pred` is one item's `[4 + C, N]` block; returns (x1,y1,x2,y2 in input pixels, class, conf).
pub fn decode(
    pred: &[f32],
    classes: usize,
    n: usize,
    conf: f32,
    iou_threshold: f32,
) -> Vec<([f32; 4], usize, f32)> {
    let at = |row: usize, col: usize| pred[row * n + col];
    let mut cands: Vec<([f32; 4], usize, f32)> =
        (0..n)
            .filter_map(|j| {
                let (class, score) = (0..classes).map(|c| (c, at(4 + c, j))).fold(
                    (0, f32::NEG_INFINITY),
                    |best, x| if x.1 > best.1 { x } else { best },
                );
                if score <= conf {
                    return None;
                }
                let (cx, cy, w, h) = (at(0, j), at(1, j), at(2, j), at(3, j));
                Some((
                    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                    class,
                    score,
                ))
            })
            .collect();
    cands.sort_by(|a, b| b.2.total_cmp(&a.2));
    let mut kept: Vec<([f32; 4], usize, f32)> = Vec::new();
    for c in cands {
        if kept
            .iter()
            .all(|k| k.1 != c.1 || iou(k.0, c.0) <= iou_threshold)
        {
            kept.push(c);
        }
    }
    kept
}

impl BatchModel for YoloDetector {
    type Input = DetectorItem;
    type Output = DetectorOutput;

    fn run(&mut self, batch: &[DetectorItem]) -> Result<Vec<DetectorOutput>, BackendError> {
        let Some(first) = batch.first() else {
            return Ok(Vec::new());
        };
        let [c, h, w] = first.image.shape();
        self.batch.clear();
        for item in batch {
            if item.image.shape() != [c, h, w] {
                return Err(BackendError("mixed tensor shapes in one batch".into()));
            }
            self.batch.extend_from_slice(item.image.data());
        }
        let tensor = TensorRef::from_array_view(([batch.len(), c, h, w], self.batch.as_slice()))
            .map_err(backend)?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(backend)?;
        let value = outputs
            .get(&self.output)
            .ok_or_else(|| BackendError(format!("model has no output `{}`", self.output)))?;
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(backend)?;
        let (rows, n) = match &shape[..] {
            [b, rows, n] if *b == batch.len() as i64 && *rows > 4 => (*rows as usize, *n as usize),
            _ => {
                return Err(BackendError(format!(
                    "unexpected YOLO output shape {shape:?}"
                )))
            }
        };
        let classes = rows - 4;
        let mut results = Vec::with_capacity(batch.len());
        for (b, item) in batch.iter().enumerate() {
            let pred = &data[b * rows * n..(b + 1) * rows * n];
            let lb = item.letterbox.unwrap_or_default();
            let kept = decode(pred, classes, n, self.conf_threshold, self.iou_threshold);
            let mut out = DetectorOutput {
                boxes: Vec::with_capacity(kept.len()),
                scores: Vec::with_capacity(kept.len()),
                token_scores: vec![0.0; kept.len() * classes],
                text_len: classes,
            };
            for (q, (bx, class, score)) in kept.into_iter().enumerate() {
                // Undo the letterbox (Ultralytics scale_boxes), normalise by the source size.
                let x1 = (bx[0] - lb.pad_x) / lb.gain;
                let y1 = (bx[1] - lb.pad_y) / lb.gain;
                let x2 = (bx[2] - lb.pad_x) / lb.gain;
                let y2 = (bx[3] - lb.pad_y) / lb.gain;
                let (sw, sh) = (lb.src_w.max(1.0), lb.src_h.max(1.0));
                out.boxes.push([
                    (x1 + x2) / 2.0 / sw,
                    (y1 + y2) / 2.0 / sh,
                    (x2 - x1) / sw,
                    (y2 - y1) / sh,
                ]);
                out.scores.push(score);
                out.token_scores[q * classes + class] = score;
            }
            results.push(out);
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_thresholds_and_suppresses_per_class() {
        // 2 classes, 3 candidates: two overlapping class-0 boxes, one class-1 box on top.
        #[rustfmt::skip]
        let pred = [
            10.0, 11.0, 10.0,   // cx
            10.0, 10.0, 10.0,   // cy
            10.0, 10.0, 10.0,   // w
            10.0, 10.0, 10.0,   // h
            0.8,  0.9,  0.0,    // class 0
            0.0,  0.0,  0.7,    // class 1
        ];
        let kept = decode(&pred, 2, 3, 0.25, 0.45);
        let classes: Vec<(usize, f32)> = kept.iter().map(|k| (k.1, k.2)).collect();
        assert_eq!(classes, vec![(0, 0.9), (1, 0.7)]);
        assert_eq!(kept[0].0, [6.0, 5.0, 16.0, 15.0]);
    }
}
