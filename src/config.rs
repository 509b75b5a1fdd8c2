//! Typed service configuration.
//!
//! Precedence, lowest to highest: built-in defaults, the TOML file (`--config`), then CLI flags
//! and their environment twins (clap's `env`). Everything is validated once at start-up, and a
//! bad value is reported with the dotted path of the field it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::reward::Component;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown / mistyped fields.
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value is out of its allowed range.
    #[error("invalid config value `{field}`: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub runtime: RuntimeConfig,
    pub limits: LimitsConfig,
    pub models: ModelsConfig,
    pub rewards: RewardsConfig,
    /// The VLM judge for semantic alignment (none: the component is not served).
    pub judge: Option<crate::reward::JudgeConfig>,
    /// A remote aesthetic scorer, used instead of an in-process `[aesthetic]` model.
    pub aesthetic_remote: Option<crate::reward::RemoteScorerConfig>,
    /// API keys at the door (none configured: every route is open).
    pub auth: crate::server::auth::AuthConfig,
    /// HTTPS for the listener (none: plain HTTP).
    pub tls: Option<crate::server::tls::TlsConfig>,
    /// The gRPC API on its own port (off by default).
    pub grpc: crate::server::grpc::GrpcConfig,
}

/// Reward computation settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardsConfig {
    /// Most subjects per item (PSRBench has 2 to 4).
    pub max_subjects: usize,
    /// Byte budget of the reference cache (detections and crop embeddings of references);
    /// 0 disables it.
    pub reference_cache_bytes: usize,
    /// Longest prompt accepted, in characters.
    pub max_prompt_chars: usize,
    /// Default component weights (the paper's 0.4 / 0.4 / 0.2), restricted to the components
    /// this deployment serves; a request may override them. Keyed by the names as written, so
    /// that [`Config::validate`] names an unknown one with its field (see
    /// [`RewardsConfig::component_weights`]).
    pub weights: BTreeMap<String, f64>,
    /// Per-component `raw * scale + offset` onto a common 0..1 scale (keyed as `weights`).
    pub normalization: BTreeMap<String, crate::reward::Normalization>,
    /// What `reward` is when a weighted component has no score.
    pub failure_policy: crate::reward::FailurePolicy,
    /// The copy-paste guard's threshold and (robust mode's) penalty.
    pub copy_paste: crate::reward::copy_paste::CopyPasteConfig,
}

impl RewardsConfig {
    /// `weights` by component. A validated config names only components; in one that is not,
    /// the unknown names are left out.
    pub fn component_weights(&self) -> BTreeMap<Component, f64> {
        by_component(&self.weights)
    }

    /// `normalization` by component (unknown names left out, as in
    /// [`RewardsConfig::component_weights`]).
    pub fn component_normalization(&self) -> BTreeMap<Component, crate::reward::Normalization> {
        by_component(&self.normalization)
    }
}

/// The entries of a map keyed by component names whose names parse.
fn by_component<V: Copy>(map: &BTreeMap<String, V>) -> BTreeMap<Component, V> {
    map.iter()
        .filter_map(|(name, v)| Some((name.parse().ok()?, *v)))
        .collect()
}

/// The same map keyed by the components' names, as the config file writes them.
fn by_name<V>(map: BTreeMap<Component, V>) -> BTreeMap<String, V> {
    map.into_iter()
        .map(|(c, v)| (c.as_str().to_string(), v))
        .collect()
}

impl Default for RewardsConfig {
    fn default() -> Self {
        Self {
            max_subjects: 4,
            reference_cache_bytes: 64 * 1024 * 1024,
            max_prompt_chars: 2000,
            weights: by_name(crate::reward::default_weights()),
            normalization: by_name(crate::reward::default_normalization()),
            failure_policy: crate::reward::FailurePolicy::default(),
            copy_paste: crate::reward::copy_paste::CopyPasteConfig::default(),
        }
    }
}

/// HTTP server settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind.
    pub host: String,
    /// Port to listen on.
    pub port: u16,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// Emit logs as JSON lines (for log shippers) instead of human-readable text.
    pub json_logs: bool,
    /// Threads of the CPU pool that parses, decodes and preprocesses images (0 = one per core).
    pub cpu_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8080,
            shutdown_grace_secs: 30,
            json_logs: false,
            cpu_threads: 0,
        }
    }
}

/// Where ONNX Runtime comes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Path of `libonnxruntime.so` (loaded at run time: the `ort` crate's `load-dynamic`).
    pub onnxruntime_library: Option<PathBuf>,
}

/// Request limits: what one caller may ask of the service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted request body (base64 images inflate bytes by 4/3).
    pub max_body_bytes: usize,
    /// How long a client may take to send a request body once its headers arrived; beyond
    /// it, 408 (a client that never sends its body must not hold a request slot forever).
    pub body_timeout_ms: u64,
    /// Largest accepted encoded image, after base64 decoding.
    pub max_image_bytes: usize,
    /// Largest accepted image side, in pixels (guards against decompression bombs).
    pub max_image_side: u32,
    /// Largest accepted image area, in pixels.
    pub max_image_pixels: u64,
    /// Largest accepted ratio of an image's long side to its short side (a 1×8192 strip is
    /// refused from its header: no real generated image or reference looks like that).
    pub max_aspect_ratio: f64,
    /// Most decoded pixels in one request, summed over its distinct images (error
    /// `too_many_pixels`, checked from the image headers before anything is decoded).
    pub max_request_pixels: u64,
    /// Bytes of decoded pixels and model tensors all requests in flight may hold together;
    /// a request that does not fit now is refused with 429 and `Retry-After` (it will fit
    /// once others finish), one that could never fit with a 422 naming this limit.
    pub max_inflight_bytes: u64,
    /// Most requests in flight at once (model and reward routes); beyond it, 429.
    pub max_concurrent_requests: usize,
    /// Most images (or items) in one request.
    pub max_items_per_request: usize,
    /// Most phrases per detection request.
    pub max_phrases: usize,
    /// Deadline applied when a request names none.
    pub default_timeout_ms: u64,
    /// Largest deadline a request may ask for.
    pub max_timeout_ms: u64,
    /// Number of priority levels; a request's `priority` is `0` (most urgent) to `levels - 1`.
    pub priority_levels: u8,
    /// Priority of requests that name none.
    pub default_priority: u8,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024 * 1024,
            body_timeout_ms: 30_000,
            max_image_bytes: 16 * 1024 * 1024,
            max_image_side: 8192,
            max_image_pixels: 40_000_000,
            max_aspect_ratio: 32.0,
            max_request_pixels: 256 * 1024 * 1024,
            max_inflight_bytes: 4 << 30,
            max_concurrent_requests: 512,
            max_items_per_request: 256,
            max_phrases: 8,
            default_timeout_ms: 60_000,
            max_timeout_ms: 600_000,
            priority_levels: 3,
            default_priority: 1,
        }
    }
}

/// Which models to serve.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Model manifest (see `models/*.toml`); relative model paths inside it are resolved
    /// against the manifest's own folder.
    pub manifest: PathBuf,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            manifest: PathBuf::from("models/default.toml"),
        }
    }
}

impl Config {
    /// Reads a TOML file; unknown fields are errors so that typos do not pass silently.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Checks every range constraint, naming the offending field: one check per concern,
    /// in this order (the first violation is the one reported).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_ports()?;
        self.limits.check()?;
        self.rewards.check()?;
        if let Some(judge) = &self.judge {
            check_judge(judge)?;
        }
        check_auth(&self.auth)?;
        self.server.check()
    }

    /// The gRPC listener needs a port of its own (0 asks the OS for one, so may repeat).
    fn check_ports(&self) -> Result<(), ConfigError> {
        if self.grpc.enabled && self.grpc.port == self.server.port && self.grpc.port != 0 {
            return Err(invalid("grpc.port", "must differ from server.port"));
        }
        Ok(())
    }
}

impl LimitsConfig {
    /// Every limit, by concern: the body, images and pixels, request counts, the deadline,
    /// priorities.
    fn check(&self) -> Result<(), ConfigError> {
        self.check_body()?;
        self.check_images()?;
        self.check_counts()?;
        self.check_timeouts()?;
        self.check_priorities()
    }

    /// The request body: large enough for a small request, and some time to arrive.
    fn check_body(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(invalid("limits.max_body_bytes", "must be at least 1024"));
        }
        if self.body_timeout_ms == 0 {
            return Err(invalid("limits.body_timeout_ms", "must be at least 1"));
        }
        Ok(())
    }

    /// Image and pixel limits: each must admit a small image, and the request-wide ones at
    /// least one image at the per-image limits.
    fn check_images(&self) -> Result<(), ConfigError> {
        if self.max_image_bytes == 0 || self.max_image_bytes > self.max_body_bytes {
            return Err(invalid(
                "limits.max_image_bytes",
                "must be > 0 and at most limits.max_body_bytes",
            ));
        }
        if self.max_image_side < 16 {
            return Err(invalid("limits.max_image_side", "must be at least 16"));
        }
        if self.max_image_pixels < 256 {
            return Err(invalid("limits.max_image_pixels", "must be at least 256"));
        }
        if !(self.max_aspect_ratio.is_finite() && self.max_aspect_ratio >= 1.0) {
            return Err(invalid(
                "limits.max_aspect_ratio",
                "must be finite and >= 1",
            ));
        }
        if self.max_request_pixels < self.max_image_pixels {
            return Err(invalid(
                "limits.max_request_pixels",
                "must be at least limits.max_image_pixels (one largest image must fit)",
            ));
        }
        // A request at its pixel limit holds 4 bytes per pixel decoded (RGB + alpha) before
        // any tensor: a budget below that would refuse requests the limits allow.
        if self.max_inflight_bytes < self.max_request_pixels.saturating_mul(4) {
            return Err(invalid(
                "limits.max_inflight_bytes",
                "must be at least 4 x limits.max_request_pixels (a request at its pixel limit must fit)",
            ));
        }
        Ok(())
    }

    /// Requests in flight, items and phrases: at least one of each, or nothing is served.
    fn check_counts(&self) -> Result<(), ConfigError> {
        if self.max_concurrent_requests == 0 {
            return Err(invalid(
                "limits.max_concurrent_requests",
                "must be at least 1",
            ));
        }
        if self.max_items_per_request == 0 {
            return Err(invalid(
                "limits.max_items_per_request",
                "must be at least 1",
            ));
        }
        if self.max_phrases == 0 {
            return Err(invalid("limits.max_phrases", "must be at least 1"));
        }
        Ok(())
    }

    /// The default deadline must be one a request could ask for.
    fn check_timeouts(&self) -> Result<(), ConfigError> {
        if self.default_timeout_ms == 0 || self.default_timeout_ms > self.max_timeout_ms {
            return Err(invalid(
                "limits.default_timeout_ms",
                "must be > 0 and at most limits.max_timeout_ms",
            ));
        }
        Ok(())
    }

    /// The batcher's queues have one level per priority (at most 16); the default is one
    /// of them.
    fn check_priorities(&self) -> Result<(), ConfigError> {
        if self.priority_levels == 0 || self.priority_levels > 16 {
            return Err(invalid("limits.priority_levels", "must be 1..=16"));
        }
        if self.default_priority >= self.priority_levels {
            return Err(invalid(
                "limits.default_priority",
                "must be below limits.priority_levels",
            ));
        }
        Ok(())
    }
}

impl RewardsConfig {
    /// Subject and prompt limits, the component maps and the copy-paste guard.
    fn check(&self) -> Result<(), ConfigError> {
        if self.max_subjects == 0 || self.max_subjects > 16 {
            return Err(invalid("rewards.max_subjects", "must be 1..=16"));
        }
        self.check_weights()?;
        self.check_normalization()?;
        let cp = &self.copy_paste;
        crate::reward::copy_paste::CopyPasteConfig::check(
            cp.threshold,
            cp.penalty,
            "rewards.copy_paste",
        )
        .map_err(|m| invalid("rewards.copy_paste", m))?;
        if self.max_prompt_chars == 0 {
            return Err(invalid("rewards.max_prompt_chars", "must be at least 1"));
        }
        Ok(())
    }

    /// Each weight names a component and is a finite, non-negative number.
    fn check_weights(&self) -> Result<(), ConfigError> {
        for (name, w) in &self.weights {
            let field = format!("rewards.weights.{name}");
            if name.parse::<Component>().is_err() {
                return Err(invalid(&field, "unknown component"));
            }
            if !w.is_finite() || *w < 0.0 {
                return Err(invalid(&field, "must be finite and >= 0"));
            }
        }
        Ok(())
    }

    /// Each normalisation names a component and has a finite scale and offset.
    fn check_normalization(&self) -> Result<(), ConfigError> {
        for (name, n) in &self.normalization {
            let field = format!("rewards.normalization.{name}");
            if name.parse::<Component>().is_err() {
                return Err(invalid(&field, "unknown component"));
            }
            if !(n.scale.is_finite() && n.offset.is_finite()) {
                return Err(invalid(&field, "scale and offset must be finite"));
            }
        }
        Ok(())
    }
}

impl ServerConfig {
    /// The drain after SIGTERM lasts at most an hour: a longer grace is taken for a typo.
    fn check(&self) -> Result<(), ConfigError> {
        if self.shutdown_grace_secs > 3600 {
            return Err(invalid(
                "server.shutdown_grace_secs",
                "must be at most 3600",
            ));
        }
        Ok(())
    }
}

/// The judge: an http(s) URL, a temperature its API accepts, and templates that each have
/// their one placeholder.
fn check_judge(j: &crate::reward::JudgeConfig) -> Result<(), ConfigError> {
    if !(j.base_url.starts_with("http://") || j.base_url.starts_with("https://")) {
        return Err(invalid("judge.base_url", "must be an http(s) URL"));
    }
    if !(0.0..=2.0).contains(&j.temperature) {
        return Err(invalid("judge.temperature", "must be in [0, 2]"));
    }
    for (task, source) in &j.templates {
        source
            .check(task)
            .map_err(|m| invalid(&format!("judge.templates.{task}"), m))?;
    }
    Ok(())
}

/// API keys: `keys_env` names a variable, and the key file is not checked for changes in a
/// busy loop (every 50 ms at most).
fn check_auth(a: &crate::server::auth::AuthConfig) -> Result<(), ConfigError> {
    if a.keys_env.as_deref().is_some_and(str::is_empty) {
        return Err(invalid(
            "auth.keys_env",
            "must name an environment variable",
        ));
    }
    if a.reload_interval_ms < 50 {
        return Err(invalid("auth.reload_interval_ms", "must be at least 50"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_field_is_named() {
        let err = toml::from_str::<Config>("[server]\nprot = 1\n").unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn judge_templates_are_checked_by_task() {
        let judge = "[judge]\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\n";
        let with = |t: &str| toml::from_str::<Config>(&format!("{judge}{t}")).unwrap();
        with("[judge.templates.four]\nfile = \"four.txt\"\n")
            .validate()
            .unwrap();
        let err = |t: &str| with(t).validate().unwrap_err().to_string();
        assert!(err("[judge.templates.fourr]\ntext = \"{}\"\n").contains("judge.templates.fourr"));
        assert!(err("[judge.templates.four]\ntext = \"no slot\"\n").contains("placeholder"));
        assert!(err("[judge.templates.four]\n").contains("exactly one"));
    }

    /// One bad value per concern: the error names its field with its message.
    #[test]
    fn each_concern_names_its_field() {
        type Spoil = fn(&mut Config);
        let cases: [(Spoil, &str); 8] = [
            (
                |c| (c.grpc.enabled, c.grpc.port) = (true, c.server.port),
                "invalid config value `grpc.port`: must differ from server.port",
            ),
            (
                |c| c.limits.body_timeout_ms = 0,
                "invalid config value `limits.body_timeout_ms`: must be at least 1",
            ),
            (
                |c| c.limits.max_inflight_bytes = 1,
                "invalid config value `limits.max_inflight_bytes`: must be at least 4 x limits.max_request_pixels (a request at its pixel limit must fit)",
            ),
            (
                |c| c.limits.max_phrases = 0,
                "invalid config value `limits.max_phrases`: must be at least 1",
            ),
            (
                |c| c.limits.default_timeout_ms = c.limits.max_timeout_ms + 1,
                "invalid config value `limits.default_timeout_ms`: must be > 0 and at most limits.max_timeout_ms",
            ),
            (
                |c| {
                    c.rewards.weights.insert("beauty".into(), 1.0);
                },
                "invalid config value `rewards.weights.beauty`: unknown component",
            ),
            (
                |c| c.auth.reload_interval_ms = 49,
                "invalid config value `auth.reload_interval_ms`: must be at least 50",
            ),
            (
                |c| c.server.shutdown_grace_secs = 3601,
                "invalid config value `server.shutdown_grace_secs`: must be at most 3600",
            ),
        ];
        for (spoil, message) in cases {
            let mut c = Config::default();
            spoil(&mut c);
            assert_eq!(c.validate().unwrap_err().to_string(), message);
        }
    }

    /// The typed views of the component maps hold what the file names.
    #[test]
    fn component_maps_are_keyed_by_component() {
        let rewards = RewardsConfig::default();
        assert_eq!(
            rewards.component_weights(),
            crate::reward::default_weights()
        );
        assert_eq!(
            rewards.component_normalization(),
            crate::reward::default_normalization()
        );
    }

    #[test]
    fn out_of_range_value_names_field() {
        let mut c = Config::default();
        c.limits.default_priority = 5;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("limits.default_priority"), "{err}");
    }
}
