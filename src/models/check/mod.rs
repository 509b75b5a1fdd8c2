//! `psr-reward models check`: checks exported ONNX files against the adapters that will serve
//! them, right after exporting: signature (names, dtypes, ranks, fixed sizes), one real
//! forward pass, timing per batch size, the provider each instance really runs on, and
//! batch safety (an item's output must not depend on its place in a batch).

mod expect;
mod probe;
mod report;

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::manifest::{DetectorIo, DetectorKind, Manifest, ManifestError, Pooling, RuntimeSpec};
use super::tokenizer::CaptionTokenizer;
use crate::imaging::{self, resize::Filter, Preprocess, ResizeRule};
use crate::runtime::{build_session, describe, ProviderChoice, SessionOptions, Signature};

pub use expect::Contract;
pub use probe::{BatchSafety, Timing, BATCH_SAFE_TOLERANCE};
pub use report::render_text;

use expect::ProbeShape;
use probe::ProbeInput;

/// Why the check could not start (problems of a model itself go into its report instead).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("model `{model}`: cannot load its tokenizer: {message}")]
    Tokenizer { model: String, message: String },
    #[error("{0}: not a file")]
    NotAFile(PathBuf),
}

/// The adapter a single `.onnx` file is checked against (`--as`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// Grounding DINO, Hugging Face export.
    Detector,
    /// Image embedder `[B,3,H,W]` -> `embeddings` `[B,D]`.
    Embedder,
    /// Image scorer `[B,3,H,W]` -> `score` `[B,1]`.
    Aesthetic,
    /// CLIP-style preference model -> `logits_per_image` `[B,B]`.
    Preference,
}

impl std::str::FromStr for Adapter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "detector" => Ok(Self::Detector),
            "embedder" => Ok(Self::Embedder),
            "aesthetic" => Ok(Self::Aesthetic),
            "preference" => Ok(Self::Preference),
            other => Err(format!(
                "unknown adapter `{other}` (expected detector, embedder, aesthetic or preference)"
            )),
        }
    }
}

/// One model to check: where it is, which adapter serves it, and how.
pub struct Target {
    pub name: String,
    pub role: &'static str,
    pub path: PathBuf,
    pub contract: Contract,
    pub preprocess: Preprocess,
    pub runtime: RuntimeSpec,
    pub max_batch_size: usize,
    /// Caption tokens the probe feeds (empty for image-only models).
    pub tokens: Vec<i64>,
}

/// What the check found for one model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub name: String,
    pub role: &'static str,
    pub adapter: &'static str,
    pub path: String,
    /// The provider each instance really runs on.
    pub instances: Vec<ProviderChoice>,
    pub signature: Option<Signature>,
    pub max_batch_size: usize,
    /// Probe tensor height and width (the preprocess output size).
    pub input_size: [usize; 2],
    pub timings: Vec<Timing>,
    /// `None` when not run (a problem came first, or `max_batch_size` is 1).
    pub batch_safety: Option<BatchSafety>,
    /// Every mismatch or failure; empty means the model passes.
    pub problems: Vec<String>,
}

impl ModelReport {
    /// Whether the model passed every check.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A caption for the probe: the manifest's tokenizer when it has one.
const PROBE_CAPTION: &str = "a cat .";
/// `[CLS] a cat . [SEP]` in bert-base-uncased ids, for a detector file checked without a tokenizer.
const BERT_FALLBACK: [i64; 5] = [101, 1037, 4937, 1012, 102];
/// `<|startoftext|> a cat <|endoftext|>` in CLIP ids, for a preference file without a tokenizer.
const CLIP_FALLBACK: [i64; 4] = [49406, 320, 2368, 49407];
/// Source image size the probe's input size is planned from (the preprocess output of it).
const PROBE_SOURCE: u32 = 512;

fn probe_tokens(
    manifest: &Manifest,
    model: &str,
    tokenizer: &Path,
    max_len: usize,
) -> Result<Vec<i64>, CheckError> {
    let fail = |e: super::TokenizeError| CheckError::Tokenizer {
        model: model.to_string(),
        message: e.to_string(),
    };
    CaptionTokenizer::load(&manifest.resolve(tokenizer), max_len)
        .map_err(fail)?
        .encode_truncated(PROBE_CAPTION)
        .map_err(fail)
}

/// Every model of a manifest, each with the adapter its entry names.
pub fn targets_from_manifest(manifest: &Manifest) -> Result<Vec<Target>, CheckError> {
    let mut targets = Vec::new();
    if let Some(d) = &manifest.detector {
        let (contract, tokens) = match d.kind {
            DetectorKind::GroundingDino => {
                let tokens = match &d.tokenizer {
                    Some(t) => probe_tokens(manifest, &d.name, t, d.max_text_len)?,
                    None => BERT_FALLBACK.to_vec(),
                };
                (Contract::grounding_dino(&d.io), tokens)
            }
            DetectorKind::Yolo => (Contract::yolo(&d.io), Vec::new()),
        };
        targets.push(Target {
            name: d.name.clone(),
            role: "detector",
            path: manifest.resolve(&d.path),
            contract,
            preprocess: d.preprocess.build(),
            runtime: d.runtime.clone(),
            max_batch_size: d.batching.max_batch_size,
            tokens,
        });
    }
    for (role, spec) in [
        ("embedder", &manifest.embedder),
        ("aesthetic", &manifest.aesthetic),
    ] {
        if let Some(s) = spec {
            targets.push(Target {
                name: s.name.clone(),
                role,
                path: manifest.resolve(&s.path),
                contract: Contract::image_model(
                    &s.input,
                    &s.output,
                    s.pooling,
                    role == "aesthetic",
                ),
                preprocess: s.preprocess.build(),
                runtime: s.runtime.clone(),
                max_batch_size: s.batching.max_batch_size,
                tokens: Vec::new(),
            });
        }
    }
    if let Some(p) = &manifest.preference {
        targets.push(Target {
            name: p.name.clone(),
            role: "preference",
            path: manifest.resolve(&p.path),
            contract: Contract::preference(
                &p.pixel_values,
                &p.input_ids,
                &p.attention_mask,
                &p.logits,
            ),
            preprocess: p.preprocess.build(),
            runtime: p.runtime.clone(),
            max_batch_size: p.batching.max_batch_size,
            tokens: probe_tokens(manifest, &p.name, &p.tokenizer, p.max_text_len)?,
        });
    }
    Ok(targets)
}

/// One `.onnx` file checked against `adapter` with the manifest's default names, the usual
/// preprocessing of that family (Grounding DINO 800/1333 bilinear ImageNet; embedders
/// 256 -> 224 bicubic ImageNet; scorers and CLIP 224 bicubic CLIP) and default batching.
pub fn target_from_file(path: &Path, adapter: Adapter) -> Result<Target, CheckError> {
    if !path.is_file() {
        return Err(CheckError::NotAFile(path.to_path_buf()));
    }
    let name = path
        .file_stem()
        .map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
    let crop = |resize, normalize| {
        Preprocess::new(
            ResizeRule::ShortSideCenterCrop { resize, crop: 224 },
            Filter::Bicubic,
            normalize,
        )
    };
    let (role, contract, preprocess, tokens) = match adapter {
        Adapter::Detector => (
            "detector",
            Contract::grounding_dino(&DetectorIo::default()),
            Preprocess::new(
                ResizeRule::ShortSideMaxLong {
                    short: 800,
                    max_long: 1333,
                },
                Filter::Bilinear,
                imaging::IMAGENET,
            ),
            BERT_FALLBACK.to_vec(),
        ),
        Adapter::Embedder => (
            "embedder",
            Contract::image_model("pixel_values", "embeddings", Pooling::None, false),
            crop(256, imaging::IMAGENET),
            Vec::new(),
        ),
        Adapter::Aesthetic => (
            "aesthetic",
            Contract::image_model("pixel_values", "score", Pooling::None, true),
            crop(224, imaging::CLIP),
            Vec::new(),
        ),
        Adapter::Preference => (
            "preference",
            Contract::preference(
                "pixel_values",
                "input_ids",
                "attention_mask",
                "logits_per_image",
            ),
            crop(224, imaging::CLIP),
            CLIP_FALLBACK.to_vec(),
        ),
    };
    Ok(Target {
        name,
        role,
        path: path.to_path_buf(),
        contract,
        preprocess,
        runtime: RuntimeSpec::default(),
        max_batch_size: super::manifest::BatchingSpec::default().max_batch_size,
        tokens,
    })
}

/// Builds one session per instance, recording the provider each really runs on.
fn build_instances(
    env: &ort::environment::Environment,
    target: &Target,
) -> Result<Vec<(ort::session::Session, ProviderChoice)>, String> {
    let rt = &target.runtime;
    (0..rt.instances)
        .map(|i| {
            let opts = SessionOptions {
                path: target.path.clone(),
                provider: rt.provider,
                device_id: rt.device_ids[i % rt.device_ids.len()],
                fallback: rt.on_provider_failure,
                intra_threads: rt.intra_threads,
            };
            build_session(env, &opts).map_err(|e| format!("instance {i}: {e}"))
        })
        .collect()
}

/// Checks one model: load, signature, forward pass, timing, batch safety. Stops at the first
/// step that fails, since the later ones depend on it.
pub fn check_target(env: &ort::environment::Environment, target: &Target) -> ModelReport {
    let plan = target.preprocess.plan(PROBE_SOURCE, PROBE_SOURCE);
    let (height, width) = (plan.out_h as usize, plan.out_w as usize);
    let mut report = ModelReport {
        name: target.name.clone(),
        role: target.role,
        adapter: target.contract.family,
        path: target.path.display().to_string(),
        instances: Vec::new(),
        signature: None,
        max_batch_size: target.max_batch_size,
        input_size: [height, width],
        timings: Vec::new(),
        batch_safety: None,
        problems: Vec::new(),
    };
    let mut sessions = match build_instances(env, target) {
        Ok(s) => s,
        Err(e) => {
            report.problems.push(format!("cannot load: {e}"));
            return report;
        }
    };
    report.instances = sessions.iter().map(|(_, c)| c.clone()).collect();
    let Some((session, _)) = sessions.first_mut() else {
        report.problems.push("no instance to run".into());
        return report;
    };
    let signature = describe(session);
    let shape = ProbeShape {
        height,
        width,
        max_batch_size: target.max_batch_size,
    };
    report.problems = expect::compare(&signature, &target.contract, shape);
    report.signature = Some(signature);
    if !report.ok() {
        return report;
    }
    let probe = ProbeInput {
        height,
        width,
        tokens: target.tokens.clone(),
    };
    if let Err(e) = probe::forward(session, &target.contract, &probe) {
        report.problems.push(format!("forward pass failed: {e}"));
        return report;
    }
    match probe::time_batches(session, &target.contract, &probe, target.max_batch_size) {
        Ok(t) => report.timings = t,
        Err(e) => {
            report.problems.push(format!("forward pass failed: {e}"));
            return report;
        }
    }
    if target.max_batch_size > 1 {
        match probe::batch_safety(session, &target.contract, &probe) {
            Ok(s) => {
                if !s.safe {
                    report.problems.push(format!(
                        "batch safety: output \"{}\" differs by {:.4} (max abs diff, tolerance {BATCH_SAFE_TOLERANCE:e}) between an item alone and the same item at position 1 of a batch of 2: the export is not batch-safe; serve it with max_batch_size = 1",
                        s.output, s.max_abs_diff
                    ));
                }
                report.batch_safety = Some(s);
            }
            Err(e) => report.problems.push(format!("forward pass failed: {e}")),
        }
    }
    report
}
