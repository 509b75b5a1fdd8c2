//! Model manifests: which ONNX files play which role, with their preprocessing, execution
//! provider and batching. A manifest is a TOML file; relative paths in it are resolved against
//! the manifest's own folder, so a manifest and its models can move together.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::imaging::{self, resize::Filter, Preprocess, ResizeRule};
use crate::runtime::{FallbackPolicy, Provider};

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read model manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid model manifest {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid model manifest {path}: `{field}` {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// A manifest: one optional entry per role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub detector: Option<DetectorSpec>,
    pub embedder: Option<ImageModelSpec>,
    pub aesthetic: Option<ImageModelSpec>,
    /// A CLIP-style image + text preference model (HPSv2, PickScore): scores the aesthetic
    /// component against each item's prompt; preferred over `aesthetic` when both are set.
    pub preference: Option<PreferenceSpec>,
    /// Folder relative paths are resolved against (the manifest's folder).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Which detector family a manifest entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// Open-vocabulary Grounding DINO, Hugging Face export signature.
    #[default]
    GroundingDino,
    /// Closed-set Ultralytics YOLO export (`images` -> `output0` [B, 4+C, N]).
    Yolo,
}

/// A detector: Grounding DINO (any category) or a YOLO-style closed-set model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSpec {
    pub name: String,
    #[serde(default)]
    pub kind: DetectorKind,
    pub path: PathBuf,
    /// `tokenizer.json` of the text encoder (Grounding DINO: bert-base-uncased).
    pub tokenizer: Option<PathBuf>,
    /// Class names in output order (YOLO).
    #[serde(default)]
    pub classes: Vec<String>,
    /// IoU above which a lower-scoring box of the same class is suppressed (YOLO NMS).
    #[serde(default = "default_iou_threshold")]
    pub iou_threshold: f32,
    /// Keep a query when the max over token columns of sigmoid(logits) exceeds this
    /// (0.35 in the PSR evaluation scripts).
    #[serde(default = "default_box_threshold")]
    pub box_threshold: f32,
    /// Longest caption in tokens (256 for Grounding DINO).
    #[serde(default = "default_max_text_len")]
    pub max_text_len: usize,
    /// Padding a smaller image (or shorter caption) into a batch of larger ones was measured
    /// not to change this model's outputs beyond float noise, so `psr` mode may batch mixed
    /// shapes too. Default false: `psr` mode batches equal shapes only (see
    /// [`crate::models::ShapeRule`]).
    #[serde(default)]
    pub padding_neutral: bool,
    #[serde(default)]
    pub io: DetectorIo,
    pub preprocess: PreprocessSpec,
    #[serde(default)]
    pub runtime: RuntimeSpec,
    #[serde(default)]
    pub batching: BatchingSpec,
}

/// Tensor names of the detector export (Hugging Face Grounding DINO names, and the
/// Ultralytics `images` / `output0` for YOLO).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorIo {
    pub images: String,
    pub output: String,
    pub pixel_values: String,
    pub pixel_mask: String,
    pub input_ids: String,
    pub token_type_ids: String,
    pub attention_mask: String,
    pub logits: String,
    pub boxes: String,
}

impl Default for DetectorIo {
    fn default() -> Self {
        Self {
            images: "images".into(),
            output: "output0".into(),
            pixel_values: "pixel_values".into(),
            pixel_mask: "pixel_mask".into(),
            input_ids: "input_ids".into(),
            token_type_ids: "token_type_ids".into(),
            attention_mask: "attention_mask".into(),
            logits: "logits".into(),
            boxes: "pred_boxes".into(),
        }
    }
}

/// A model taking one image tensor `[B,3,H,W]` and giving `[B,D]` (embedders) or `[B,1]`
/// / `[B]` (scorers).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageModelSpec {
    pub name: String,
    pub path: PathBuf,
    #[serde(default = "default_image_input")]
    pub input: String,
    pub output: String,
    /// How a token-sequence output `[B,T,D]` becomes one vector (DINOv2 `last_hidden_state`:
    /// `cls`); `none` for outputs that already are `[B,D]` (DINO, CLIP `image_embeds`).
    #[serde(default)]
    pub pooling: Pooling,
    pub preprocess: PreprocessSpec,
    #[serde(default)]
    pub runtime: RuntimeSpec,
    #[serde(default)]
    pub batching: BatchingSpec,
}

/// A CLIP-style preference model: image tensor plus tokenised prompt -> `logits_per_image`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferenceSpec {
    pub name: String,
    pub path: PathBuf,
    /// `tokenizer.json` of the text tower.
    pub tokenizer: PathBuf,
    /// Prompts are truncated to this many tokens (77 for CLIP).
    #[serde(default = "default_clip_text_len")]
    pub max_text_len: usize,
    #[serde(default = "default_image_input")]
    pub pixel_values: String,
    #[serde(default = "default_input_ids")]
    pub input_ids: String,
    #[serde(default = "default_attention_mask")]
    pub attention_mask: String,
    #[serde(default = "default_logits_per_image")]
    pub logits: String,
    pub preprocess: PreprocessSpec,
    #[serde(default)]
    pub runtime: RuntimeSpec,
    #[serde(default)]
    pub batching: BatchingSpec,
}

fn default_clip_text_len() -> usize {
    77
}

fn default_input_ids() -> String {
    "input_ids".into()
}

fn default_attention_mask() -> String {
    "attention_mask".into()
}

fn default_logits_per_image() -> String {
    "logits_per_image".into()
}

/// What every model entry has, whatever its role: enough to start its lane.
pub trait LaneSpec {
    fn name(&self) -> &str;
    fn path(&self) -> &Path;
    fn runtime(&self) -> &RuntimeSpec;
    fn batching(&self) -> &BatchingSpec;
    fn preprocess(&self) -> &PreprocessSpec;
}

macro_rules! lane_spec {
    ($($t:ty),*) => {$(
        impl LaneSpec for $t {
            fn name(&self) -> &str { &self.name }
            fn path(&self) -> &Path { &self.path }
            fn runtime(&self) -> &RuntimeSpec { &self.runtime }
            fn batching(&self) -> &BatchingSpec { &self.batching }
            fn preprocess(&self) -> &PreprocessSpec { &self.preprocess }
        }
    )*};
}

lane_spec!(DetectorSpec, ImageModelSpec, PreferenceSpec);

/// See [`ImageModelSpec::pooling`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    #[default]
    None,
    /// Token 0.
    Cls,
    /// Mean over tokens.
    Mean,
}

/// Resize, crop and normalisation of a model's input.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessSpec {
    pub resize: ResizeRuleSpec,
    pub filter: FilterSpec,
    pub normalize: NormalizeSpec,
}

/// See [`ResizeRule`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResizeRuleSpec {
    CenterCrop { short_side: u32, crop: u32 },
    ShortSideMaxLong { short_side: u32, max_long_side: u32 },
    Squash { width: u32, height: u32 },
    Letterbox { size: u32, fill: u8 },
}

/// Pillow resampling filter.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterSpec {
    Bilinear,
    Bicubic,
}

/// Normalisation statistics by name or explicit values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NormalizeSpec {
    Named(NamedNormalize),
    Explicit { mean: [f32; 3], std: [f32; 3] },
}

/// Well-known normalisation statistics.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamedNormalize {
    Imagenet,
    Clip,
    /// `x / 255` only.
    Unit,
}

/// Where and how a model runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSpec {
    pub provider: Provider,
    /// Devices for the instances, used round-robin (instance i runs on `device_ids[i % len]`).
    pub device_ids: Vec<i32>,
    pub on_provider_failure: FallbackPolicy,
    /// Model instances (sessions), each on its own worker thread.
    pub instances: usize,
    /// ONNX Runtime intra-op threads per instance (0 = one per core).
    pub intra_threads: usize,
}

impl Default for RuntimeSpec {
    fn default() -> Self {
        Self {
            provider: Provider::Cpu,
            device_ids: vec![0],
            on_provider_failure: FallbackPolicy::Fail,
            instances: 1,
            intra_threads: 0,
        }
    }
}

/// Dynamic batching of one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingSpec {
    pub max_batch_size: usize,
    pub max_queue_delay_ms: u64,
    pub queue_capacity: usize,
    /// Time the model at batch sizes 1, 2, 4, ... up to `max_batch_size` after warm-up and
    /// cap batches where throughput stops rising (see `crate::batcher::choose_cap`). Off by
    /// default: it costs start-up time, and the many test servers should start fast.
    pub learn_cap: bool,
}

impl Default for BatchingSpec {
    fn default() -> Self {
        Self {
            max_batch_size: 16,
            max_queue_delay_ms: 0,
            queue_capacity: 16384,
            learn_cap: false,
        }
    }
}

fn default_box_threshold() -> f32 {
    0.35
}

fn default_iou_threshold() -> f32 {
    0.45
}

fn default_max_text_len() -> usize {
    256
}

fn default_image_input() -> String {
    "pixel_values".into()
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut m: Manifest = toml::from_str(&text).map_err(|e| ManifestError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        m.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        m.validate(path)?;
        Ok(m)
    }

    /// Resolves a path from the manifest against its folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ManifestError> {
        let bad = |field: &str, message: &str| ManifestError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            message: message.to_string(),
        };
        if let Some(d) = &self.detector {
            if !(0.0..1.0).contains(&d.box_threshold) {
                return Err(bad("detector.box_threshold", "must be in [0, 1)"));
            }
            if d.max_text_len == 0 {
                return Err(bad("detector.max_text_len", "must be at least 1"));
            }
            match d.kind {
                DetectorKind::GroundingDino if d.tokenizer.is_none() => {
                    return Err(bad("detector.tokenizer", "is required for grounding_dino"));
                }
                DetectorKind::Yolo if d.classes.is_empty() => {
                    return Err(bad(
                        "detector.classes",
                        "must list the class names for yolo",
                    ));
                }
                _ => {}
            }
            if !(0.0..=1.0).contains(&d.iou_threshold) {
                return Err(bad("detector.iou_threshold", "must be in [0, 1]"));
            }
            check_common("detector", &d.runtime, &d.batching, &d.preprocess)
                .map_err(|(f, m)| bad(&f, m))?;
        }
        for (role, spec) in [("embedder", &self.embedder), ("aesthetic", &self.aesthetic)] {
            if let Some(s) = spec {
                check_common(role, &s.runtime, &s.batching, &s.preprocess)
                    .map_err(|(f, m)| bad(&f, m))?;
            }
        }
        if let Some(p) = &self.preference {
            if p.max_text_len == 0 {
                return Err(bad("preference.max_text_len", "must be at least 1"));
            }
            check_common("preference", &p.runtime, &p.batching, &p.preprocess)
                .map_err(|(f, m)| bad(&f, m))?;
        }
        Ok(())
    }
}

fn check_common(
    role: &str,
    rt: &RuntimeSpec,
    b: &BatchingSpec,
    p: &PreprocessSpec,
) -> Result<(), (String, &'static str)> {
    let field = |f: &str| format!("{role}.{f}");
    if rt.instances == 0 || rt.instances > 64 {
        return Err((field("runtime.instances"), "must be 1..=64"));
    }
    if rt.device_ids.is_empty() {
        return Err((field("runtime.device_ids"), "must name at least one device"));
    }
    if b.max_batch_size == 0 || b.max_batch_size > 1024 {
        return Err((field("batching.max_batch_size"), "must be 1..=1024"));
    }
    if b.queue_capacity < b.max_batch_size {
        return Err((
            field("batching.queue_capacity"),
            "must be at least max_batch_size",
        ));
    }
    if b.max_queue_delay_ms > 10_000 {
        return Err((
            field("batching.max_queue_delay_ms"),
            "must be at most 10000",
        ));
    }
    let sizes_ok = match p.resize {
        ResizeRuleSpec::CenterCrop { short_side, crop } => crop > 0 && short_side >= crop,
        ResizeRuleSpec::ShortSideMaxLong {
            short_side,
            max_long_side,
        } => short_side > 0 && max_long_side >= short_side,
        ResizeRuleSpec::Squash { width, height } => width > 0 && height > 0,
        ResizeRuleSpec::Letterbox { size, .. } => size > 0,
    };
    if !sizes_ok {
        return Err((
            field("preprocess.resize"),
            "sizes must be positive, crop <= short_side, short_side <= max_long_side",
        ));
    }
    if let NormalizeSpec::Explicit { std, .. } = p.normalize {
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err((field("preprocess.normalize.std"), "must be positive"));
        }
    }
    Ok(())
}

impl PreprocessSpec {
    /// The executable recipe.
    pub fn build(&self) -> Preprocess {
        let rule = match self.resize {
            ResizeRuleSpec::CenterCrop { short_side, crop } => ResizeRule::ShortSideCenterCrop {
                resize: short_side,
                crop,
            },
            ResizeRuleSpec::ShortSideMaxLong {
                short_side,
                max_long_side,
            } => ResizeRule::ShortSideMaxLong {
                short: short_side,
                max_long: max_long_side,
            },
            ResizeRuleSpec::Squash { width, height } => ResizeRule::Squash { width, height },
            ResizeRuleSpec::Letterbox { size, fill } => ResizeRule::Letterbox { size, fill },
        };
        let filter = match self.filter {
            FilterSpec::Bilinear => Filter::Bilinear,
            FilterSpec::Bicubic => Filter::Bicubic,
        };
        let normalize = match self.normalize {
            NormalizeSpec::Named(NamedNormalize::Imagenet) => imaging::IMAGENET,
            NormalizeSpec::Named(NamedNormalize::Clip) => imaging::CLIP,
            NormalizeSpec::Named(NamedNormalize::Unit) => imaging::UNIT,
            NormalizeSpec::Explicit { mean, std } => imaging::Normalize { mean, std },
        };
        Preprocess::new(rule, filter, normalize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_manifests_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        for name in ["default.toml", "fixtures.toml", "psr-paper.toml"] {
            let m = Manifest::load(&root.join(name)).unwrap();
            assert!(m.detector.is_some() && m.embedder.is_some(), "{name}");
        }
    }

    #[test]
    fn invalid_values_name_the_field() {
        let text = r#"
[embedder]
name = "e"
path = "e.onnx"
output = "embeddings"
preprocess = { resize = { rule = "center_crop", short_side = 200, crop = 224 }, filter = "bicubic", normalize = "imagenet" }
"#;
        let dir = std::env::temp_dir().join(format!("psr-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.toml");
        std::fs::write(&path, text).unwrap();
        let err = Manifest::load(&path).unwrap_err().to_string();
        assert!(err.contains("embedder.preprocess.resize"), "{err}");
    }
}
