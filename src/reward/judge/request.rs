//! The chat completion as the PSR scripts make it, where it matters for the answer: one
//! user message with the image first (a data URL) and then the instruction, the configured
//! model and temperature (0.2), and `max_tokens` only when configured (the scripts send
//! none). The answer is the first choice's `content`.

use serde::Deserialize;

/// The request body for one judgement.
pub fn chat_body(
    model: &str,
    temperature: f64,
    max_tokens: Option<u32>,
    data_url: &str,
    text: &str,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url}},
            {"type": "text", "text": text},
        ]}],
        "temperature": temperature,
    });
    if let (Some(n), Some(map)) = (max_tokens, body.as_object_mut()) {
        map.insert("max_tokens".into(), n.into());
    }
    body
}

/// The part of a chat-completion response the judge reads.
#[derive(Deserialize)]
pub struct ChatResponse {
    #[serde(default)]
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

impl ChatResponse {
    /// `choices[0].message.content`; `None` when there is no choice or the content is null
    /// (where the scripts' `re.search` raises and the sample is dropped).
    pub fn answer(self) -> Option<String> {
        self.choices.into_iter().next()?.message.content
    }
}

/// The cache key of a judgement: everything the judge's answer depends on (the image's
/// content hash, the model, the template text and the prompt), not the task's name, so
/// a changed template or model is a miss and tasks sharing a text share answers.
pub fn cache_key(image_hash: &str, model: &str, template: &str, prompt: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for part in [image_hash, model, template, prompt] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_one_user_message_image_first() {
        let b = chat_body("m", 0.2, None, "data:image/png;base64,AA", "judge this");
        assert_eq!(b["model"], "m");
        assert_eq!(b["temperature"], 0.2);
        assert!(b.get("max_tokens").is_none());
        assert_eq!(b["messages"].as_array().map(Vec::len), Some(1));
        let content = &b["messages"][0]["content"];
        assert_eq!(content[0]["image_url"]["url"], "data:image/png;base64,AA");
        assert_eq!(content[1]["text"], "judge this");
        assert_eq!(chat_body("m", 0.2, Some(64), "u", "t")["max_tokens"], 64);
    }

    #[test]
    fn key_changes_with_template_and_model_only_when_they_do() {
        let k = cache_key("img", "qwen", "T {}", "a cat");
        assert_eq!(k, cache_key("img", "qwen", "T {}", "a cat"));
        assert_ne!(k, cache_key("img", "qwen", "T2 {}", "a cat"));
        assert_ne!(k, cache_key("img", "qwen-32b", "T {}", "a cat"));
        assert_ne!(k, cache_key("img", "qwen", "T {}", "a dog"));
        assert_ne!(k, cache_key("img2", "qwen", "T {}", "a cat"));
        // Length prefixes: moving text between fields is another key.
        assert_ne!(k, cache_key("img", "qwen", "T {}a", " cat"));
    }

    #[test]
    fn answer_is_the_first_choices_content() {
        let parse = |v: serde_json::Value| serde_json::from_value::<ChatResponse>(v).unwrap();
        let one = serde_json::json!({"choices": [{"message": {"content": "[Score]: 8"}}, {"message": {"content": "x"}}]});
        assert_eq!(parse(one).answer().as_deref(), Some("[Score]: 8"));
        let null =
            serde_json::json!({"choices": [{"message": {"content": null, "refusal": "no"}}]});
        assert_eq!(parse(null).answer(), None);
        assert_eq!(parse(serde_json::json!({"choices": []})).answer(), None);
    }
}
