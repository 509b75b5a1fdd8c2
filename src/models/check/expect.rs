//! What each adapter feeds a model and reads back (the `io` names of the manifest), and the
//! comparison of a model's real signature with it.

use crate::runtime::{Signature, TensorSignature};

use super::super::manifest::{DetectorIo, Pooling};

/// How the probe fills one input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// `[B,3,H,W]` float pixels (seeded noise, one image per batch row).
    Image,
    /// `[B,H,W]` int64 ones (Grounding DINO `pixel_mask`: every pixel is real).
    PixelMask,
    /// `[B,L]` int64 caption tokens.
    Tokens,
    /// `[B,L]` int64 zeros (`token_type_ids`).
    Zeros,
    /// `[B,L]` int64 ones (`attention_mask`).
    Ones,
}

/// One input the adapter feeds.
#[derive(Debug, Clone)]
pub struct InputNeed {
    pub name: String,
    pub fill: Fill,
}

impl InputNeed {
    /// The element type the adapter sends.
    pub fn dtype(&self) -> &'static str {
        match self.fill {
            Fill::Image => "Float32",
            _ => "Int64",
        }
    }

    /// The rank of the tensor the adapter sends.
    pub fn rank(&self) -> usize {
        match self.fill {
            Fill::Image => 4,
            Fill::PixelMask => 3,
            _ => 2,
        }
    }
}

/// How one batch row of an output is compared across batch sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowRule {
    /// Output is `[B, ...]`: row `i` is item `i`.
    Rows,
    /// Output is `[B,B]` (image x prompt logits): item `i` is the diagonal element `[i,i]`.
    Diagonal,
}

/// One output the adapter reads (always float32).
#[derive(Debug, Clone)]
pub struct OutputNeed {
    pub name: String,
    /// Ranks the adapter accepts.
    pub ranks: &'static [usize],
    pub rows: RowRule,
}

/// An adapter's whole contract with its model.
#[derive(Debug, Clone)]
pub struct Contract {
    /// The adapter in words, for messages (`Grounding DINO HF export`).
    pub family: &'static str,
    pub inputs: Vec<InputNeed>,
    pub outputs: Vec<OutputNeed>,
}

fn input(name: &str, fill: Fill) -> InputNeed {
    InputNeed {
        name: name.to_string(),
        fill,
    }
}

fn output(name: &str, ranks: &'static [usize], rows: RowRule) -> OutputNeed {
    OutputNeed {
        name: name.to_string(),
        ranks,
        rows,
    }
}

impl Contract {
    /// Grounding DINO, Hugging Face export (src/models/grounding_dino.rs).
    pub fn grounding_dino(io: &DetectorIo) -> Self {
        Self {
            family: "Grounding DINO HF export",
            inputs: vec![
                input(&io.pixel_values, Fill::Image),
                input(&io.input_ids, Fill::Tokens),
                input(&io.token_type_ids, Fill::Zeros),
                input(&io.attention_mask, Fill::Ones),
                input(&io.pixel_mask, Fill::PixelMask),
            ],
            outputs: vec![
                output(&io.logits, &[3], RowRule::Rows),
                output(&io.boxes, &[3], RowRule::Rows),
            ],
        }
    }

    /// Ultralytics YOLO export (src/models/yolo.rs): `images` -> `output0` `[B,4+C,N]`.
    pub fn yolo(io: &DetectorIo) -> Self {
        Self {
            family: "YOLO export",
            inputs: vec![input(&io.images, Fill::Image)],
            outputs: vec![output(&io.output, &[3], RowRule::Rows)],
        }
    }

    /// An image model (src/models/image_model.rs): embedders give `[B,D]`, or `[B,T,D]` with
    /// `cls`/`mean` pooling; scorers give `[B,1]` or `[B]`.
    pub fn image_model(
        input_name: &str,
        output_name: &str,
        pooling: Pooling,
        scorer: bool,
    ) -> Self {
        let ranks: &'static [usize] = match (scorer, pooling) {
            (_, Pooling::Cls | Pooling::Mean) => &[3],
            (true, Pooling::None) => &[1, 2],
            (false, Pooling::None) => &[2],
        };
        Self {
            family: if scorer {
                "image scorer"
            } else {
                "image embedder"
            },
            inputs: vec![input(input_name, Fill::Image)],
            outputs: vec![output(output_name, ranks, RowRule::Rows)],
        }
    }

    /// A CLIP-style preference model (src/models/preference.rs): `logits_per_image` `[B,B]`.
    pub fn preference(
        pixel_values: &str,
        input_ids: &str,
        attention_mask: &str,
        logits: &str,
    ) -> Self {
        Self {
            family: "CLIP-style preference export",
            inputs: vec![
                input(pixel_values, Fill::Image),
                input(input_ids, Fill::Tokens),
                input(attention_mask, Fill::Ones),
            ],
            outputs: vec![output(logits, &[2], RowRule::Diagonal)],
        }
    }

    fn input_names(&self) -> String {
        let names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        names.join(", ")
    }

    fn output_names(&self) -> String {
        let names: Vec<&str> = self.outputs.iter().map(|o| o.name.as_str()).collect();
        names.join(", ")
    }
}

/// What the probe's tensors will look like, for checking fixed dimensions.
#[derive(Debug, Clone, Copy)]
pub struct ProbeShape {
    /// Preprocess output height and width.
    pub height: usize,
    pub width: usize,
    pub max_batch_size: usize,
}

/// Every difference between the model's signature and the adapter's contract, each naming
/// the tensor and what was expected.
pub fn compare(sig: &Signature, contract: &Contract, probe: ProbeShape) -> Vec<String> {
    let mut problems = Vec::new();
    for need in &contract.inputs {
        match sig.inputs.iter().find(|t| t.name == need.name) {
            None => problems.push(format!(
                "input \"{}\": missing ({} needs {})",
                need.name,
                contract.family,
                contract.input_names()
            )),
            Some(t) => {
                problems.extend(dtype_problem("input", t, need.dtype()));
                problems.extend(input_shape_problem(t, need, probe));
            }
        }
    }
    for t in &sig.inputs {
        if !contract.inputs.iter().any(|n| n.name == t.name) {
            problems.push(format!(
                "input \"{}\": not fed by the adapter ({} feeds {})",
                t.name,
                contract.family,
                contract.input_names()
            ));
        }
    }
    for need in &contract.outputs {
        match sig.outputs.iter().find(|t| t.name == need.name) {
            None => problems.push(format!(
                "output \"{}\": missing ({} reads {}; the model has {})",
                need.name,
                contract.family,
                contract.output_names(),
                names(&sig.outputs)
            )),
            Some(t) => {
                problems.extend(dtype_problem("output", t, "Float32"));
                if !need.ranks.contains(&t.shape.len()) {
                    problems.push(format!(
                        "output \"{}\": shape {:?} has rank {}, expected rank {}",
                        t.name,
                        t.shape,
                        t.shape.len(),
                        ranks(need.ranks)
                    ));
                }
            }
        }
    }
    problems
}

fn names(tensors: &[TensorSignature]) -> String {
    let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    names.join(", ")
}

fn ranks(ranks: &[usize]) -> String {
    let r: Vec<String> = ranks.iter().map(usize::to_string).collect();
    r.join(" or ")
}

fn dtype_problem(kind: &str, t: &TensorSignature, expected: &str) -> Option<String> {
    (t.dtype != expected).then(|| {
        format!(
            "{kind} \"{}\": dtype {}, expected {}",
            t.name,
            t.dtype.to_lowercase(),
            expected.to_lowercase()
        )
    })
}

/// Rank, then every fixed dimension against the probe's size (dynamic `-1` always fits).
fn input_shape_problem(t: &TensorSignature, need: &InputNeed, probe: ProbeShape) -> Option<String> {
    if t.shape.len() != need.rank() {
        return Some(format!(
            "input \"{}\": shape {:?} has rank {}, expected rank {}",
            t.name,
            t.shape,
            t.shape.len(),
            need.rank()
        ));
    }
    let batch = t.shape[0];
    if batch > 0 && batch as usize != probe.max_batch_size {
        return Some(format!(
            "input \"{}\": batch dimension fixed at {batch}, but max_batch_size is {} (export with a dynamic batch axis)",
            t.name, probe.max_batch_size
        ));
    }
    let (h, w) = (probe.height as i64, probe.width as i64);
    let wanted: Option<Vec<i64>> = match need.fill {
        Fill::Image => Some(vec![3, h, w]),
        Fill::PixelMask => Some(vec![h, w]),
        _ => None,
    };
    let wanted = wanted?;
    let fits = t.shape[1..]
        .iter()
        .zip(&wanted)
        .all(|(have, want)| *have < 0 || have == want);
    (!fits).then(|| {
        format!(
            "input \"{}\": shape {:?} does not take the preprocess output {:?}",
            t.name, t.shape, wanted
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, dtype: &str, shape: &[i64]) -> TensorSignature {
        TensorSignature {
            name: name.into(),
            dtype: dtype.into(),
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn mismatches_name_the_tensor_and_the_expectation() {
        let sig = Signature {
            inputs: vec![t("pixel_values", "Float32", &[-1, 3, 224, 224])],
            outputs: vec![t("logits", "Float16", &[-1, 900, 256])],
        };
        let contract = Contract::image_model("pixel_values", "logits", Pooling::Cls, false);
        let probe = ProbeShape {
            height: 256,
            width: 256,
            max_batch_size: 4,
        };
        let problems = compare(&sig, &contract, probe);
        assert_eq!(
            problems,
            vec![
                "input \"pixel_values\": shape [-1, 3, 224, 224] does not take the preprocess output [3, 256, 256]".to_string(),
                "output \"logits\": dtype float16, expected float32".to_string(),
            ]
        );
    }

    #[test]
    fn a_fixed_batch_axis_is_reported_when_batching() {
        let sig = Signature {
            inputs: vec![t("pixel_values", "Float32", &[1, 3, 224, 224])],
            outputs: vec![t("embeddings", "Float32", &[1, 48])],
        };
        let contract = Contract::image_model("pixel_values", "embeddings", Pooling::None, false);
        let probe = |max_batch_size| ProbeShape {
            height: 224,
            width: 224,
            max_batch_size,
        };
        assert!(compare(&sig, &contract, probe(1)).is_empty());
        let problems = compare(&sig, &contract, probe(8));
        assert!(
            problems[0].contains("batch dimension fixed at 1"),
            "{problems:?}"
        );
    }
}
