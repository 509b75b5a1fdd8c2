//! Models that take one image tensor: embedders (`[B,3,H,W] -> [B,D]`) and image scorers
//! (`[B,3,H,W] -> [B,1]` or `[B]`). DINO, DINOv2 CLS exports, CLIP vision towers with
//! projected image embeddings, and LAION-style aesthetic heads all have this shape.

use ort::session::Session;
use ort::value::TensorRef;

use crate::batcher::{BackendError, BatchModel, Batchable};
use crate::imaging::PooledTensor;

impl Batchable for PooledTensor {
    /// Only equal shapes share a batch (the model takes no mask to pad with).
    fn batch_key(&self) -> u64 {
        let [c, h, w] = self.shape();
        ((c as u64) << 48) ^ ((h as u64) << 24) ^ w as u64
    }
}

/// One session of an image model, with a reusable batch buffer.
pub struct ImageModel {
    session: Session,
    input: String,
    output: String,
    batch: Vec<f32>,
}

impl ImageModel {
    /// Wraps a session; `input`/`output` are the tensor names from the manifest.
    pub fn new(session: Session, input: String, output: String) -> Self {
        Self {
            session,
            input,
            output,
            batch: Vec::new(),
        }
    }
}

impl BatchModel for ImageModel {
    type Input = PooledTensor;
    type Output = Vec<f32>;

    fn run(&mut self, batch: &[PooledTensor]) -> Result<Vec<Vec<f32>>, BackendError> {
        let Some(first) = batch.first() else {
            return Ok(Vec::new());
        };
        let [c, h, w] = first.shape();
        self.batch.clear();
        for item in batch {
            if item.shape() != [c, h, w] {
                return Err(BackendError("mixed tensor shapes in one batch".into()));
            }
            self.batch.extend_from_slice(item.data());
        }
        let shape = [batch.len(), c, h, w];
        let tensor = TensorRef::from_array_view((shape, self.batch.as_slice()))
            .map_err(|e| BackendError(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| BackendError(e.to_string()))?;
        let value = outputs
            .get(&self.output)
            .ok_or_else(|| BackendError(format!("model has no output `{}`", self.output)))?;
        let (out_shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| BackendError(e.to_string()))?;
        split_rows(out_shape, data, batch.len())
    }
}

/// Splits a `[B, ...]` output into one row per item.
fn split_rows(shape: &[i64], data: &[f32], n: usize) -> Result<Vec<Vec<f32>>, BackendError> {
    if shape.first().copied() != Some(n as i64) || !data.len().is_multiple_of(n) {
        return Err(BackendError(format!(
            "output shape {shape:?} does not match batch size {n}"
        )));
    }
    let per_item = data.len() / n;
    Ok(data.chunks_exact(per_item).map(<[f32]>::to_vec).collect())
}
