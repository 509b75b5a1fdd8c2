//! A scripted OpenAI-compatible judge for the integration tests: the real chat-completions
//! protocol over a loopback socket, answering by keyword in the instruction it receives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// What the scripted judge saw.
#[derive(Default)]
pub struct JudgeLog {
    pub calls: usize,
    pub per_prompt: HashMap<String, usize>,
    pub last_body: Value,
    pub last_auth: Option<String>,
}

/// The log, shared with the handler.
pub type Shared = Arc<Mutex<JudgeLog>>;

/// Reply shapes chosen by `SHAPE=<name>` in the instruction: the answer's text, or `None`
/// for a null `content` (what a refusing server may send).
pub const SHAPES: [(&str, Option<&str>); 21] = [
    ("score8", Some("[Thought]: the hat is red.\n[Score]: 8")),
    ("decimal", Some("[Thought]: nearly.\n[Score]: 7.5")),
    ("slash", Some("[Thought]: good.\n[Score]: 9/10")),
    ("spaces", Some("[Thought]: weak.\n[Score]:   4")),
    ("fenced", Some("```\n[Thought]: partly.\n[Score]: 5.5\n```")),
    (
        "first_of_two",
        Some("[Thought]: at first [Score]: 3, then\n[Score]: 9"),
    ),
    ("bold", Some("**[Thought]:** mostly.\n**[Score]:** 6")),
    ("trailing_dot", Some("[Thought]: perfect.\n[Score]: 10.0.")),
    ("twelve", Some("[Thought]: beyond perfect.\n[Score]: 12")),
    ("negative", Some("[Thought]: awful.\n[Score]: -2")),
    (
        "no_score",
        Some("[Thought]: the image shows a red square, as asked."),
    ),
    ("arabic_indic", Some("[Thought]: good.\n[Score]: \u{668}")),
    (
        "arabic_decimal",
        Some("[Thought]: good.\n[Score]: \u{667}.\u{665}"),
    ),
    ("next_line", Some("[Thought]: good.\n[Score]:\n7")),
    ("unbracketed", Some("[Thought]: good.\nScore: 7")),
    (
        "echo_first",
        Some("[Thought]:\n[Score]:\n[Thought]: it matches.\n[Score]: 6"),
    ),
    ("empty", Some("")),
    (
        "refusal",
        Some("I'm sorry, but I can't help with evaluating this image."),
    ),
    ("null_content", None),
    ("fullwidth", Some("[Thought]: good.\n[Score]: \u{ff18}")),
    (
        "sub_scores",
        Some("[Thought]: colour score: 3, pose score: 9.\n[Score]: 7"),
    ),
];

/// The reply shape named in `text`, if any.
fn shape(text: &str) -> Option<Option<&'static str>> {
    let at = text.find("SHAPE=")? + "SHAPE=".len();
    let name: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    SHAPES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

fn completion(content: Option<&str>) -> axum::response::Response {
    Json(
        json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0,
        "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}),
    )
    .into_response()
}

/// `POST /v1/chat/completions`: a `SHAPE=` reply, or by keyword in the instruction: WELL
/// (8, the default), MARKDOWN, GARBAGE, SLOW (3 s), E500, FLAKY (503 on the first attempt).
pub async fn chat(
    State(log): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    let text = body["messages"][0]["content"][1]["text"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let attempt = {
        let mut l = log.lock().unwrap();
        l.calls += 1;
        l.last_body = body.clone();
        l.last_auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string());
        let n = l.per_prompt.entry(text.clone()).or_default();
        *n += 1;
        *n
    };
    if let Some(reply) = shape(&text) {
        return completion(reply);
    }
    let key = [
        "WELL",
        "MARKDOWN",
        "GARBAGE",
        "SLOW",
        "E500",
        "FLAKY",
        "NOTJSON",
        "NOCHOICES",
    ]
    .into_iter()
    .find(|k| text.contains(k))
    .unwrap_or("WELL");
    let answer = match key {
        "MARKDOWN" => "```\n**[Thought]:** the hat is red.\n**[Score]:** 7\n```".to_string(),
        "GARBAGE" => "The image looks lovely, I would rate it highly.".to_string(),
        "SLOW" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "[Score]: 9".to_string()
        }
        "E500" => return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        // A broken server: 200 with an HTML page, or JSON without `choices`.
        "NOTJSON" => return (StatusCode::OK, "<html>oops</html>").into_response(),
        "NOCHOICES" => return Json(json!({"object": "error"})).into_response(),
        "FLAKY" if attempt == 1 => {
            return (StatusCode::SERVICE_UNAVAILABLE, "warming up").into_response()
        }
        _ => "[Thought]: everything matches.\n[Score]: 8".to_string(),
    };
    completion(Some(&answer))
}

/// Serves the scripted judge alone on a loopback port; returns its base URL.
pub async fn spawn_judge(log: Shared) -> String {
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(log);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}
