//! Semantic alignment by a VLM judge over the OpenAI-compatible chat-completions protocol
//! (what sglang and vLLM serve), as the PSR scripts ask Qwen2.5-VL: one user message with the
//! image as a data URL and then a per-task instruction, temperature 0.2, and a
//! `[Score]: x` (0..10) read from the answer.
//!
//! `psr` mode reads the answer exactly as the scripts' `extract_score` does, and `robust`
//! mode tolerantly (see [`verdict`]); parse failures are reported (flags, a counter), never
//! hidden. The instruction templates are built in or configured ([`templates`]), each named
//! by a short hash in `/info` and in every result. Answers are cached by image content,
//! prompt, template text and model.

mod parse;
mod request;
pub mod templates;
mod verdict;

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use lru::LruCache;
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};

use super::remote::{Remote, RemoteError, RemotePolicy};
use super::Mode;
pub use parse::{psr_score, robust_score, PsrParse};
pub use templates::{TemplateInfo, TemplateSource, Templates, PLACEHOLDERS, TASK_TEMPLATES};
pub use verdict::{assess, Assessment, Judgement, SaComponent};

/// Where the judge is and how it is asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    /// Base URL of the OpenAI-compatible API, e.g. `http://127.0.0.1:30000/v1`.
    pub base_url: String,
    /// Model name the server expects, e.g. `Qwen/Qwen2.5-VL-7B-Instruct`.
    pub model: String,
    /// Environment variable holding the API key (never logged).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the API key (never logged).
    #[serde(default)]
    pub api_key_file: Option<std::path::PathBuf>,
    /// Sampling temperature; the scripts' 0.2.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Longest answer; unset (the default), none is sent, as in the scripts, and the
    /// server's own limit applies.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Judgements kept for identical (image, prompt, template, model).
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    #[serde(default)]
    pub policy: RemotePolicy,
    /// Instruction templates by task (`attribute`, `action`, `background`, `complex`,
    /// `three`, `four`, `general`): `{ file = "path" }` or `{ text = "..." }` with one
    /// `{instruction}` (or `{}`) placeholder; tasks not named keep the built-in template.
    #[serde(default)]
    pub templates: BTreeMap<String, TemplateSource>,
}

fn default_temperature() -> f64 {
    0.2 // PSR scripts
}

fn default_cache_entries() -> usize {
    4096
}

/// Why no judgement was made, or the judge could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JudgeError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("cannot read the judge API key: {0}")]
    Key(String),
    #[error("{0}")]
    Template(String),
}

/// The judge client with its templates and cache.
pub struct Judge {
    config: JudgeConfig,
    templates: Templates,
    remote: Remote,
    api_key: Option<String>,
    /// Answers (`None`: the response had no text) by [`request::cache_key`].
    cache: Mutex<LruCache<[u8; 32], Option<String>>>,
    parse_failures: IntCounter,
    cache_hits: IntCounter,
}

/// How much of an unusable answer a result repeats.
const ANSWER_EXCERPT_CHARS: usize = 500;

/// How much of an answer a result repeats when the caller asks for every answer (the
/// judge's reasoning, e.g. for `psr-reward eval`'s report).
const ANSWER_REQUESTED_CHARS: usize = 4000;

impl Judge {
    /// Builds the client; reads the API key and the template files once.
    pub fn new(
        config: JudgeConfig,
        remote: Remote,
        parse_failures: IntCounter,
        cache_hits: IntCounter,
    ) -> Result<Self, JudgeError> {
        let api_key = read_api_key(&config)?;
        let templates = Templates::load(&config.templates).map_err(JudgeError::Template)?;
        let entries = std::num::NonZeroUsize::new(config.cache_entries.max(1))
            .unwrap_or(std::num::NonZeroUsize::MIN);
        Ok(Self {
            config,
            templates,
            remote,
            api_key,
            cache: Mutex::new(LruCache::new(entries)),
            parse_failures,
            cache_hits,
        })
    }

    /// The breaker state, for `/ready` and `/info`.
    pub fn health(&self) -> &'static str {
        self.remote.breaker_state()
    }

    /// The configured model and URL (no key).
    pub fn describe(&self) -> (String, String) {
        (self.config.base_url.clone(), self.config.model.clone())
    }

    /// Hash and source of each task's active template, for `/info`.
    pub fn templates(&self) -> BTreeMap<String, TemplateInfo> {
        self.templates.info()
    }

    /// Judges one image (`image_hash` identifies its content for the cache; `data_url` is
    /// what the judge receives) against `prompt` with the template of `task`, and reads the
    /// answer in `mode`. The answer comes back when it gave no usable score, or always
    /// (longer) with `keep_answer`.
    pub async fn judge(
        &self,
        image_hash: &str,
        data_url: &str,
        prompt: &str,
        task: Option<&str>,
        mode: Mode,
        keep_answer: bool,
    ) -> Result<Judgement, JudgeError> {
        let (task, template) = self.templates.for_task(task);
        let key = request::cache_key(image_hash, &self.config.model, &template.text, prompt);
        let answer = match self.cached(&key) {
            Some(answer) => answer,
            None => {
                let answer = self.ask(data_url, &template.render(prompt)).await?;
                if assess(answer.as_deref(), mode).failed_to_parse() {
                    self.parse_failures.inc();
                }
                if verdict::worth_caching(answer.as_deref()) {
                    self.cache_lock().put(key, answer.clone());
                }
                answer
            }
        };
        let assessment = assess(answer.as_deref(), mode);
        let unusable = !assessment.parsed || assessment.out_of_range;
        let excerpt = if keep_answer {
            ANSWER_REQUESTED_CHARS
        } else {
            ANSWER_EXCERPT_CHARS
        };
        Ok(Judgement {
            assessment,
            template: task,
            template_hash: template.hash.clone(),
            answer: answer
                .filter(|_| unusable || keep_answer)
                .map(|a| a.chars().take(excerpt).collect()),
        })
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, LruCache<[u8; 32], Option<String>>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A cached answer, counting the hit.
    fn cached(&self, key: &[u8; 32]) -> Option<Option<String>> {
        let hit = self.cache_lock().get(key).cloned();
        if hit.is_some() {
            self.cache_hits.inc();
        }
        hit
    }

    /// One chat completion; the first choice's text.
    async fn ask(&self, data_url: &str, text: &str) -> Result<Option<String>, JudgeError> {
        let c = &self.config;
        let body = request::chat_body(&c.model, c.temperature, c.max_tokens, data_url, text);
        let url = format!("{}/chat/completions", c.base_url.trim_end_matches('/'));
        let resp: request::ChatResponse = self
            .remote
            .post_json(&url, &body, self.api_key.as_deref())
            .await?;
        Ok(resp.answer())
    }
}

/// The API key from the configured environment variable or file, if any.
fn read_api_key(config: &JudgeConfig) -> Result<Option<String>, JudgeError> {
    match (&config.api_key_env, &config.api_key_file) {
        (Some(var), _) => std::env::var(var)
            .map(Some)
            .map_err(|_| JudgeError::Key(format!("environment variable {var} is not set"))),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|k| Some(k.trim().to_string()))
            .map_err(|e| JudgeError::Key(format!("{}: {e}", path.display()))),
        (None, None) => Ok(None),
    }
}
