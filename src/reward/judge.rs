//! Semantic alignment by a VLM judge over the OpenAI-compatible chat-completions protocol
//! (what sglang and vLLM serve), as the PSR scripts ask Qwen2.5-VL: one user message with the
//! image as a data URL and a per-task instruction, temperature 0.2, and a `[Score]: x` (0..10)
//! parsed from the answer.
//!
//! Parse failures are reported (`parsed: false` and a counter), never hidden; `mode: "psr"`
//! substitutes the scripts' 5 and says so. Identical (image, prompt, task) judgements are
//! cached.

use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};

use super::remote::{Remote, RemoteError, RemotePolicy};

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
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Judgements kept for identical (image, prompt, task).
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    #[serde(default)]
    pub policy: RemotePolicy,
}

fn default_temperature() -> f64 {
    0.2 // PSR scripts
}

fn default_max_tokens() -> u32 {
    1024
}

fn default_cache_entries() -> usize {
    4096
}

/// The tasks with their own instruction (PSRBench subsets), and the general one.
pub const TASK_TEMPLATES: [&str; 7] = [
    "attribute",
    "action",
    "background",
    "complex",
    "three",
    "four",
    "general",
];

/// The instruction for `task` with the prompt substituted. The wording is this project's;
/// the structure and output form follow the PSR scripts: a role, a 0..10 scale with 10 =
/// perfect, focus on one aspect only, stringent judging, analysis first, then
/// `[Thought]: ... [Score]: ...`, the whole instruction in the description slot.
pub fn instruction(task: &str, prompt: &str) -> String {
    let (aspect, label) = match task {
        "attribute" => ("whether the attributes of each subject in the image (colour, material, shape, texture, clothing) match the attribute description", "attribute description"),
        "action" => ("whether the actions and poses of the subjects in the image match the action description", "action description"),
        "background" => ("whether the background and scene of the image match the background description", "background description"),
        "complex" | "three" | "four" => ("whether the content of the image (every subject, its attributes, actions, relations and the scene) matches the description", "description"),
        _ => ("whether the image matches the description", "description"),
    };
    format!(
        "You are a strict evaluator. Judge {aspect}.\n\
         Rule 1: Give a score from 0 to 10, where 10 means a complete match and lower scores mean a weaker match.\n\
         Rule 2: Consider only this aspect; ignore image quality and everything the description does not mention.\n\
         Rule 3: Be stringent: any clear mismatch must lower the score.\n\
         Rule 4: First write a detailed analysis, then the final score. Your answer must have the form [Thought]: ... [Score]: ...\n\
         [{label}]: {prompt}\n\
         [Thought]:\n\
         [Score]:"
    )
}

/// The first `[Score]: <digits and dots>` of an answer (the scripts' regex
/// `\[Score\]:\s*([\d.]+)`), after removing Markdown emphasis and code marks that judges like
/// to add around it; `None` when absent or not a number.
pub fn parse_score(answer: &str) -> Option<f64> {
    let clean: String = answer
        .chars()
        .filter(|c| !matches!(c, '*' | '`' | '_'))
        .collect();
    let start = clean.find("[Score]:")? + "[Score]:".len();
    let rest = clean[start..].trim_start();
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// One judgement.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Judgement {
    /// The judge's 0..10 score, `None` when the answer did not parse.
    pub raw: Option<f64>,
    pub parsed: bool,
    /// The answer's text (for debugging bad parses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// Why no judgement was made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JudgeError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("cannot read the judge API key: {0}")]
    Key(String),
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<ChatChoice>,
}

#[derive(Deserialize)]
struct ChatChoice {
    message: ChatMessage,
}

#[derive(Deserialize)]
struct ChatMessage {
    #[serde(default)]
    content: Option<String>,
}

/// The judge client with its cache.
pub struct Judge {
    config: JudgeConfig,
    remote: Remote,
    api_key: Option<String>,
    cache: Mutex<LruCache<(String, String, String), Judgement>>,
    parse_failures: IntCounter,
    cache_hits: IntCounter,
}

impl Judge {
    /// Builds the client; reads the API key once.
    pub fn new(
        config: JudgeConfig,
        remote: Remote,
        parse_failures: IntCounter,
        cache_hits: IntCounter,
    ) -> Result<Self, JudgeError> {
        let api_key =
            match (&config.api_key_env, &config.api_key_file) {
                (Some(var), _) => Some(std::env::var(var).map_err(|_| {
                    JudgeError::Key(format!("environment variable {var} is not set"))
                })?),
                (None, Some(path)) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| JudgeError::Key(format!("{}: {e}", path.display())))?
                        .trim()
                        .to_string(),
                ),
                (None, None) => None,
            };
        let entries = std::num::NonZeroUsize::new(config.cache_entries.max(1))
            .unwrap_or(std::num::NonZeroUsize::MIN);
        Ok(Self {
            config,
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

    /// Judges one image (`image_hash` identifies its content for the cache; `data_url` is
    /// what the judge receives) against `prompt` with the `task`'s instruction.
    pub async fn judge(
        &self,
        image_hash: &str,
        data_url: &str,
        prompt: &str,
        task: &str,
    ) -> Result<Judgement, JudgeError> {
        let key = (image_hash.to_string(), prompt.to_string(), task.to_string());
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned()
        {
            self.cache_hits.inc();
            return Ok(hit);
        }
        let body = serde_json::json!({
            "model": self.config.model,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": data_url}},
                {"type": "text", "text": instruction(task, prompt)},
            ]}],
        });
        let url = format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        );
        let resp: ChatResponse = self
            .remote
            .post_json(&url, &body, self.api_key.as_deref())
            .await?;
        let answer = resp
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .unwrap_or_default();
        let raw = parse_score(&answer);
        if raw.is_none() {
            self.parse_failures.inc();
        }
        let judgement = Judgement {
            raw,
            parsed: raw.is_some(),
            answer: raw.is_none().then(|| answer.chars().take(500).collect()),
        };
        // Only parsed judgements are cached: an unparseable answer deserves another try.
        if judgement.parsed {
            self.cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .put(key, judgement.clone());
        }
        Ok(judgement)
    }
}

/// Shared handle.
pub type SharedJudge = Arc<Judge>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_the_scripts_and_through_markdown() {
        assert_eq!(parse_score("[Thought]: fine.\n[Score]: 8"), Some(8.0));
        assert_eq!(parse_score("[Score]:7.5/10"), Some(7.5));
        assert_eq!(parse_score("**[Score]:** 9"), Some(9.0));
        assert_eq!(
            parse_score("```\n[Thought]: ok\n[Score]: `6`\n```"),
            Some(6.0)
        );
        assert_eq!(parse_score("[Score]: 3 and later [Score]: 9"), Some(3.0));
        assert_eq!(parse_score("Score: 8"), None);
        assert_eq!(parse_score("[Score]: high"), None);
        assert_eq!(parse_score("[Score]: 8.5.1"), None);
    }

    #[test]
    fn instructions_follow_the_reference_structure() {
        for task in TASK_TEMPLATES {
            let text = instruction(task, "a cat in a red hat");
            assert!(text.contains("0 to 10"), "{task}");
            assert!(text.contains("[Thought]: ... [Score]: ..."), "{task}");
            assert!(text.contains("a cat in a red hat"), "{task}");
        }
        assert!(instruction("attribute", "x").contains("[attribute description]: x"));
        assert!(instruction("background", "x").contains("background"));
    }
}
