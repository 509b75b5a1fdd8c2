//! Real forward passes with seeded inputs: timing per batch size and the batch-safety check
//! (an item's output must not depend on its place in a batch).

use std::time::Instant;

use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;
use serde::Serialize;

use super::expect::{Contract, Fill, RowRule};

/// Largest output difference allowed between an item alone and the same item at the last
/// position of a batch of two (float32 reordering noise is orders of magnitude below it).
pub const BATCH_SAFE_TOLERANCE: f32 = 1e-3;

/// The size of the probe's tensors.
#[derive(Debug, Clone)]
pub struct ProbeInput {
    pub height: usize,
    pub width: usize,
    /// Caption tokens fed to every row.
    pub tokens: Vec<i64>,
}

/// One timed forward pass.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub batch_size: usize,
    pub ms: f64,
    pub ms_per_item: f64,
}

/// Seeded pseudo-random pixels in [-1, 1] for batch row `seed` (a small LCG: the check only
/// needs inputs that differ between rows and repeat between runs).
fn seeded_image(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The inputs of one batch whose rows are the images of `seeds`.
fn batch_inputs(
    contract: &Contract,
    probe: &ProbeInput,
    seeds: &[u64],
) -> Result<Vec<(String, SessionInputValue<'static>)>, String> {
    let (n, h, w, l) = (seeds.len(), probe.height, probe.width, probe.tokens.len());
    contract
        .inputs
        .iter()
        .map(|need| {
            let value: SessionInputValue<'static> = match need.fill {
                Fill::Image => {
                    let data: Vec<f32> = seeds
                        .iter()
                        .flat_map(|s| seeded_image(*s, 3 * h * w))
                        .collect();
                    Tensor::from_array((vec![n, 3, h, w], data))
                        .map_err(|e| e.to_string())?
                        .into()
                }
                Fill::PixelMask => Tensor::from_array((vec![n, h, w], vec![1i64; n * h * w]))
                    .map_err(|e| e.to_string())?
                    .into(),
                Fill::Tokens => Tensor::from_array((vec![n, l], probe.tokens.repeat(n)))
                    .map_err(|e| e.to_string())?
                    .into(),
                Fill::Zeros => Tensor::from_array((vec![n, l], vec![0i64; n * l]))
                    .map_err(|e| e.to_string())?
                    .into(),
                Fill::Ones => Tensor::from_array((vec![n, l], vec![1i64; n * l]))
                    .map_err(|e| e.to_string())?
                    .into(),
            };
            Ok((need.name.clone(), value))
        })
        .collect()
}

/// Runs one batch and returns, per output of the contract, each row's values.
fn run_rows(
    session: &mut Session,
    contract: &Contract,
    probe: &ProbeInput,
    seeds: &[u64],
) -> Result<Vec<Vec<Vec<f32>>>, String> {
    let inputs = batch_inputs(contract, probe, seeds)?;
    let outputs = session.run(inputs).map_err(|e| e.to_string())?;
    let n = seeds.len();
    contract
        .outputs
        .iter()
        .map(|need| {
            let value = outputs
                .get(&need.name)
                .ok_or_else(|| format!("output \"{}\": not produced", need.name))?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("output \"{}\": {e}", need.name))?;
            split(&need.name, need.rows, shape, data, n)
        })
        .collect()
}

/// One vector per batch row of an output (`[B,B]` diagonals for preference logits).
fn split(
    name: &str,
    rule: RowRule,
    shape: &[i64],
    data: &[f32],
    n: usize,
) -> Result<Vec<Vec<f32>>, String> {
    let bad = || format!("output \"{name}\": shape {shape:?} does not match batch size {n}");
    if shape.first().copied() != Some(n as i64) || data.is_empty() || !data.len().is_multiple_of(n)
    {
        return Err(bad());
    }
    match rule {
        RowRule::Rows => Ok(data
            .chunks_exact(data.len() / n)
            .map(<[f32]>::to_vec)
            .collect()),
        RowRule::Diagonal if data.len() == n * n => {
            Ok((0..n).map(|i| vec![data[i * n + i]]).collect())
        }
        RowRule::Diagonal => Err(bad()),
    }
}

/// One real forward pass at batch size 1, so a model that loads but cannot run is caught.
pub fn forward(
    session: &mut Session,
    contract: &Contract,
    probe: &ProbeInput,
) -> Result<(), String> {
    run_rows(session, contract, probe, &[1]).map(|_| ())
}

/// Batch sizes to time: 1, 2, 4, ... up to `max_batch_size`, and `max_batch_size` itself.
pub fn batch_sizes(max_batch_size: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> = std::iter::successors(Some(1usize), |b| b.checked_mul(2))
        .take_while(|b| *b <= max_batch_size)
        .collect();
    if sizes.last() != Some(&max_batch_size) {
        sizes.push(max_batch_size);
    }
    sizes
}

/// Times one forward pass per batch size (after [`forward`] warmed the session up).
pub fn time_batches(
    session: &mut Session,
    contract: &Contract,
    probe: &ProbeInput,
    max_batch_size: usize,
) -> Result<Vec<Timing>, String> {
    batch_sizes(max_batch_size)
        .into_iter()
        .map(|b| {
            let seeds: Vec<u64> = (1..=b as u64).collect();
            let start = Instant::now();
            run_rows(session, contract, probe, &seeds)?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            Ok(Timing {
                batch_size: b,
                ms,
                ms_per_item: ms / b as f64,
            })
        })
        .collect()
}

/// Result of the batch-safety check.
#[derive(Debug, Clone, Serialize)]
pub struct BatchSafety {
    /// Largest difference over every output between the item alone and at position 1.
    pub max_abs_diff: f32,
    /// The output where it was found.
    pub output: String,
    pub safe: bool,
}

/// Runs item `1` alone and at the last position of a batch `[2, 1]`, and compares every
/// output of the contract.
pub fn batch_safety(
    session: &mut Session,
    contract: &Contract,
    probe: &ProbeInput,
) -> Result<BatchSafety, String> {
    let alone = run_rows(session, contract, probe, &[1])?;
    let paired = run_rows(session, contract, probe, &[2, 1])?;
    let mut worst = BatchSafety {
        max_abs_diff: 0.0,
        output: String::new(),
        safe: true,
    };
    for ((need, a), p) in contract.outputs.iter().zip(&alone).zip(&paired) {
        let diff = max_abs_diff(&a[0], &p[1]);
        if diff.is_nan() || diff > worst.max_abs_diff || worst.output.is_empty() {
            worst.max_abs_diff = diff;
            worst.output.clone_from(&need.name);
        }
    }
    // NaN compares false: a NaN difference is unsafe too.
    worst.safe = worst.max_abs_diff <= BATCH_SAFE_TOLERANCE;
    Ok(worst)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        // Equal values differ by 0, masked -inf logits (Grounding DINO's padded text columns)
        // included; -inf - -inf would be NaN.
        .map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() })
        .fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_double_up_to_the_maximum() {
        assert_eq!(batch_sizes(1), vec![1]);
        assert_eq!(batch_sizes(4), vec![1, 2, 4]);
        assert_eq!(batch_sizes(12), vec![1, 2, 4, 8, 12]);
    }

    #[test]
    fn diagonal_rows_take_each_items_own_prompt() {
        let rows = split("l", RowRule::Diagonal, &[2, 2], &[1.0, 2.0, 3.0, 4.0], 2).unwrap();
        assert_eq!(rows, vec![vec![1.0], vec![4.0]]);
        assert!(split("l", RowRule::Rows, &[3, 1], &[1.0, 2.0, 3.0], 2).is_err());
    }

    #[test]
    fn nan_differences_are_not_hidden() {
        assert!(max_abs_diff(&[f32::NAN], &[0.0]).is_nan());
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.5, 2.0]), 0.5);
        assert_eq!(
            max_abs_diff(&[f32::NEG_INFINITY], &[f32::NEG_INFINITY]),
            0.0
        );
    }
}
