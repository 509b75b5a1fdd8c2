//! Model outputs checked at the adapter boundary: a model that returns NaN, a zero vector, an
//! empty or misshapen tensor or absurd boxes yields an item error with a reason, never a NaN
//! reward, a silent 0 or a panic. Every rejected output is counted by model and reason
//! (`psr_reward_invalid_model_outputs_total`).

use prometheus::IntCounter;

/// Why one item's model output was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("model `{model}` returned an invalid output ({reason}): {detail}")]
pub struct InvalidOutput {
    pub model: String,
    /// One of [`INVALID_OUTPUT_REASONS`] (the metric label).
    pub reason: &'static str,
    pub detail: String,
}

/// The reasons an output is rejected, as metric labels.
pub const INVALID_OUTPUT_REASONS: [&str; 4] = ["shape", "non_finite", "zero_norm", "box_bounds"];

/// The per-model counters, one per reason, resolved at start-up.
#[derive(Clone)]
pub struct InvalidOutputCounter {
    model: String,
    counters: [IntCounter; 4],
}

impl InvalidOutputCounter {
    /// Counters for `model`, in the order of [`INVALID_OUTPUT_REASONS`].
    pub fn new(model: &str, counters: [IntCounter; 4]) -> Self {
        Self {
            model: model.to_string(),
            counters,
        }
    }

    /// Counts and builds the error of one rejected output.
    pub fn reject(&self, reason: &'static str, detail: impl Into<String>) -> InvalidOutput {
        if let Some(i) = INVALID_OUTPUT_REASONS.iter().position(|r| *r == reason) {
            self.counters[i].inc();
        }
        InvalidOutput {
            model: self.model.clone(),
            reason,
            detail: detail.into(),
        }
    }

    /// An embedding must be non-empty, finite and of non-zero norm (its cosine is undefined
    /// otherwise).
    pub fn embedding(&self, v: Vec<f32>) -> Result<Vec<f32>, InvalidOutput> {
        if v.is_empty() {
            return Err(self.reject("shape", "empty embedding"));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(self.reject("non_finite", format!("value {} at index {i}", v[i])));
        }
        if v.iter().all(|&x| x == 0.0) {
            return Err(self.reject("zero_norm", "the embedding is all zeros"));
        }
        Ok(v)
    }

    /// A score output must be exactly one finite value per image.
    pub fn score(&self, v: Vec<f32>) -> Result<Vec<f32>, InvalidOutput> {
        match v.as_slice() {
            [x] if x.is_finite() => Ok(v),
            [x] => Err(self.reject("non_finite", format!("score {x}"))),
            _ => Err(self.reject(
                "shape",
                format!("{} values per image, expected one score", v.len()),
            )),
        }
    }

    /// A scalar score must be finite.
    pub fn scalar(&self, x: f32) -> Result<f32, InvalidOutput> {
        if x.is_finite() {
            Ok(x)
        } else {
            Err(self.reject("non_finite", format!("score {x}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> InvalidOutputCounter {
        let c = || IntCounter::new("x", "x").unwrap();
        InvalidOutputCounter::new("m", [c(), c(), c(), c()])
    }

    #[test]
    fn bad_embeddings_and_scores_are_rejected_and_counted() {
        let c = counter();
        assert!(c.embedding(vec![0.5, -1.0]).is_ok());
        assert_eq!(c.embedding(vec![]).unwrap_err().reason, "shape");
        assert_eq!(
            c.embedding(vec![1.0, f32::NAN]).unwrap_err().reason,
            "non_finite"
        );
        assert_eq!(c.embedding(vec![0.0; 8]).unwrap_err().reason, "zero_norm");
        assert_eq!(c.score(vec![1.0, 2.0]).unwrap_err().reason, "shape");
        assert_eq!(
            c.score(vec![f32::INFINITY]).unwrap_err().reason,
            "non_finite"
        );
        assert_eq!(c.counters.iter().map(IntCounter::get).sum::<u64>(), 5);
    }
}
