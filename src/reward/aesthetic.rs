//! Aesthetic scores: an in-process ONNX scorer (the manifest's `[aesthetic]` model, image ->
//! score), or a remote scorer for models that do not belong in-process (HPSv3, a 7B VLM),
//! called with the Flow-Factory reward-server convention: POST `{"prompt": [...], "image":
//! [base64 PNG/JPEG ...]}` -> `{"rewards": [...]}`.

use serde::{Deserialize, Serialize};

use super::remote::{Remote, RemoteError, RemotePolicy};

/// A remote reward scorer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteScorerConfig {
    /// Full URL of the scoring endpoint, e.g. `http://127.0.0.1:8001/compute`.
    pub url: String,
    #[serde(default)]
    pub policy: RemotePolicy,
}

#[derive(Deserialize)]
struct Rewards {
    rewards: Vec<Option<f64>>,
}

/// Scores all `images` (base64) with their `prompts` in one call; one score per image.
pub async fn remote_scores(
    remote: &Remote,
    url: &str,
    prompts: &[&str],
    images: &[&str],
) -> Result<Vec<Option<f64>>, RemoteError> {
    let body = serde_json::json!({"prompt": prompts, "image": images});
    let out: Rewards = remote.post_json(url, &body, None).await?;
    if out.rewards.len() != images.len() {
        return Err(RemoteError::Invalid {
            service: remote.service,
            message: format!("{} rewards for {} images", out.rewards.len(), images.len()),
        });
    }
    Ok(out
        .rewards
        .into_iter()
        .map(|r| r.filter(|v| v.is_finite()))
        .collect())
}
