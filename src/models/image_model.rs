//! Models that take one image tensor: embedders (`[B,3,H,W] -> [B,D]`) and image scorers
//! (`[B,3,H,W] -> [B,1]` or `[B]`). DINO, DINOv2 CLS exports, CLIP vision towers with
//! projected image embeddings, and LAION-style aesthetic heads all have this shape.

use ort::session::Session;
use ort::value::TensorRef;

use super::manifest::Pooling;
use super::validate::{InvalidOutput, InvalidOutputCounter};
use crate::batcher::{BackendError, BatchModel, Batchable};
use crate::imaging::PooledTensor;

impl Batchable for PooledTensor {
    /// Only equal shapes share a batch (the model takes no mask to pad with).
    fn batch_key(&self) -> u64 {
        let [c, h, w] = self.shape();
        ((c as u64) << 48) ^ ((h as u64) << 24) ^ w as u64
    }
}

/// What one image's output must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// An embedding: non-empty, finite, non-zero norm.
    Embedding,
    /// A score: one finite value.
    Score,
}

/// One session of an image model, with a reusable batch buffer.
pub struct ImageModel {
    session: Session,
    input: String,
    output: String,
    pooling: Pooling,
    kind: OutputKind,
    check: InvalidOutputCounter,
    batch: Vec<f32>,
}

impl ImageModel {
    /// Wraps a session; `input`/`output` are the tensor names from the manifest, `pooling`
    /// how a `[B,T,D]` output becomes one vector per image, `kind` what each vector must be.
    pub fn new(
        session: Session,
        (input, output): (String, String),
        pooling: Pooling,
        kind: OutputKind,
        check: InvalidOutputCounter,
    ) -> Self {
        Self {
            session,
            input,
            output,
            pooling,
            kind,
            check,
            batch: Vec::new(),
        }
    }
}

impl BatchModel for ImageModel {
    type Input = PooledTensor;
    type Output = Result<Vec<f32>, InvalidOutput>;

    fn run(&mut self, batch: &[PooledTensor]) -> Result<Vec<Self::Output>, BackendError> {
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
        let n = batch.len();
        let rows = match split_rows(out_shape, data, n, self.pooling) {
            Ok(rows) => rows,
            Err(detail) => {
                return Ok((0..n)
                    .map(|_| Err(self.check.reject("shape", detail.clone())))
                    .collect())
            }
        };
        Ok(rows
            .into_iter()
            .map(|row| match self.kind {
                OutputKind::Embedding => self.check.embedding(row),
                OutputKind::Score => self.check.score(row),
            })
            .collect())
    }
}

/// Splits a `[B, ...]` output into one vector per item; with `Cls`/`Mean` pooling a `[B,T,D]`
/// output gives token 0 / the mean over tokens.
fn split_rows(
    shape: &[i64],
    data: &[f32],
    n: usize,
    pooling: Pooling,
) -> Result<Vec<Vec<f32>>, String> {
    if shape.first().copied() != Some(n as i64)
        || n == 0
        || data.is_empty()
        || shape.iter().product::<i64>() != data.len() as i64
        || !data.len().is_multiple_of(n)
    {
        return Err(format!(
            "output shape {shape:?} does not match batch size {n}"
        ));
    }
    let per_item = data.len() / n;
    let rows = data.chunks_exact(per_item);
    match (pooling, shape) {
        (Pooling::None, _) => Ok(rows.map(<[f32]>::to_vec).collect()),
        (Pooling::Cls, [_, _, d]) => Ok(rows.map(|r| r[..*d as usize].to_vec()).collect()),
        (Pooling::Mean, [_, t, d]) => {
            let (t, d) = (*t as usize, *d as usize);
            Ok(rows
                .map(|r| {
                    let mut mean = vec![0.0f32; d];
                    for tok in r.chunks_exact(d) {
                        mean.iter_mut().zip(tok).for_each(|(m, v)| *m += v);
                    }
                    mean.iter_mut().for_each(|m| *m /= t as f32);
                    mean
                })
                .collect())
        }
        _ => Err(format!(
            "pooling {pooling:?} needs a [B,T,D] output, got {shape:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_of_token_outputs() {
        // B=2, T=2, D=2
        let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let shape = [2, 2, 2];
        assert_eq!(
            split_rows(&shape, &data, 2, Pooling::Cls).unwrap(),
            vec![vec![1.0, 2.0], vec![5.0, 6.0]]
        );
        assert_eq!(
            split_rows(&shape, &data, 2, Pooling::Mean).unwrap(),
            vec![vec![2.0, 3.0], vec![6.0, 7.0]]
        );
        assert_eq!(
            split_rows(&[2, 4], &data, 2, Pooling::None).unwrap()[1],
            vec![5.0, 6.0, 7.0, 8.0]
        );
        assert!(split_rows(&[2, 4], &data, 2, Pooling::Cls).is_err());
        assert!(split_rows(&[3, 4], &data, 2, Pooling::None).is_err());
        // A [B,0] output is a shape error, not a division by zero.
        assert!(split_rows(&[2, 0], &[], 2, Pooling::None).is_err());
    }
}
