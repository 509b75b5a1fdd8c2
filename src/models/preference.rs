//! CLIP-style image + text preference models (HPSv2, PickScore exports): `pixel_values`
//! [B,3,H,W], `input_ids` / `attention_mask` [T,L] -> `logits_per_image` [B,T]. Each image is
//! scored against its own prompt, the diagonal of that matrix.

use std::sync::Arc;

use ort::session::Session;
use ort::value::TensorRef;

use super::validate::{InvalidOutput, InvalidOutputCounter};
use crate::batcher::{BackendError, BatchModel, Batchable};
use crate::imaging::PooledTensor;

/// One image with its tokenised prompt.
pub struct PreferenceItem {
    pub image: PooledTensor,
    pub input_ids: Arc<[i64]>,
}

impl Batchable for PreferenceItem {
    /// Equal image shapes batch together; prompts are padded with an attention mask.
    fn batch_key(&self) -> u64 {
        self.image.batch_key()
    }
}

/// Tensor names of a preference export.
#[derive(Debug, Clone)]
pub struct PreferenceIo {
    pub pixel_values: String,
    pub input_ids: String,
    pub attention_mask: String,
    pub logits: String,
}

/// One preference-model session with reusable batch buffers.
pub struct PreferenceModel {
    session: Session,
    io: PreferenceIo,
    pixels: Vec<f32>,
    ids: Vec<i64>,
    mask: Vec<i64>,
    check: InvalidOutputCounter,
}

impl PreferenceModel {
    /// Wraps a session; tensor names come from the manifest.
    pub fn new(session: Session, io: PreferenceIo, check: InvalidOutputCounter) -> Self {
        Self {
            session,
            io,
            check,
            pixels: Vec::new(),
            ids: Vec::new(),
            mask: Vec::new(),
        }
    }
}

fn backend(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

impl BatchModel for PreferenceModel {
    type Input = PreferenceItem;
    type Output = Result<f32, InvalidOutput>;

    fn run(&mut self, batch: &[PreferenceItem]) -> Result<Vec<Self::Output>, BackendError> {
        let Some(first) = batch.first() else {
            return Ok(Vec::new());
        };
        let n = batch.len();
        let [c, h, w] = first.image.shape();
        let l = batch
            .iter()
            .map(|i| i.input_ids.len())
            .max()
            .unwrap_or(1)
            .max(1);
        self.pixels.clear();
        self.ids.clear();
        self.ids.resize(n * l, 0);
        self.mask.clear();
        self.mask.resize(n * l, 0);
        for (b, item) in batch.iter().enumerate() {
            if item.image.shape() != [c, h, w] {
                return Err(BackendError("mixed tensor shapes in one batch".into()));
            }
            self.pixels.extend_from_slice(item.image.data());
            let k = item.input_ids.len();
            self.ids[b * l..b * l + k].copy_from_slice(&item.input_ids);
            self.mask[b * l..b * l + k].fill(1);
        }
        let io = &self.io;
        let inputs = ort::inputs![
            io.pixel_values.as_str() => TensorRef::from_array_view(([n, c, h, w], self.pixels.as_slice())).map_err(backend)?,
            io.input_ids.as_str() => TensorRef::from_array_view(([n, l], self.ids.as_slice())).map_err(backend)?,
            io.attention_mask.as_str() => TensorRef::from_array_view(([n, l], self.mask.as_slice())).map_err(backend)?,
        ];
        let outputs = self.session.run(inputs).map_err(backend)?;
        let (shape, data) = outputs
            .get(&io.logits)
            .ok_or_else(|| BackendError(format!("model has no output `{}`", io.logits)))?
            .try_extract_tensor::<f32>()
            .map_err(backend)?;
        if shape[..] != [n as i64, n as i64] || data.len() != n * n {
            let detail = format!("expected logits [{n},{n}], got {shape:?}");
            return Ok((0..n)
                .map(|_| Err(self.check.reject("shape", detail.clone())))
                .collect());
        }
        Ok((0..n).map(|i| self.check.scalar(data[i * n + i])).collect())
    }
}
