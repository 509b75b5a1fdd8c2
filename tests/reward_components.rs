//! Semantic alignment through a scripted OpenAI-compatible judge on a loopback socket, the
//! in-process and remote aesthetic scorers, position alignment, and their combination.

mod common;

use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::judge::{chat, Shared};
use common::*;
use psr_reward::config::Config;
use psr_reward::reward::{FailurePolicy, JudgeConfig, RemotePolicy, RemoteScorerConfig};
use serde_json::{json, Value};

/// Remote aesthetic scorer (Flow-Factory convention): reward = prompt length / 10.
async fn compute(State(log): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    log.lock().unwrap().last_body = body.clone();
    let rewards: Vec<f64> = body["prompt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().len() as f64 / 10.0)
        .collect();
    Json(json!({ "rewards": rewards }))
}

async fn spawn_remote(log: Shared) -> String {
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/compute", post(compute))
        .with_state(log);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn key_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("psr-judge-key-{}", std::process::id()));
    std::fs::write(&path, "test-secret\n").unwrap();
    path
}

fn judge_config(base: &str) -> JudgeConfig {
    JudgeConfig {
        base_url: format!("{base}/v1"),
        model: "Qwen/Qwen2.5-VL-7B-Instruct".into(),
        api_key_env: None,
        api_key_file: Some(key_file()),
        temperature: 0.2,
        max_tokens: None,
        cache_entries: 64,
        policy: RemotePolicy {
            max_concurrency: 4,
            timeout_ms: 500,
            retries: 1,
            backoff_ms: 10,
            breaker_failures: 3,
            breaker_cooldown_ms: 60_000,
            ca_file: None,
        },
        templates: Default::default(),
    }
}

async fn server_with_judge(policy: FailurePolicy) -> (TestServer, Shared, String) {
    let log = Shared::default();
    let base = spawn_remote(log.clone()).await;
    let mut config = Config {
        judge: Some(judge_config(&base)),
        ..Config::default()
    };
    config.rewards.failure_policy = policy;
    (
        TestServer::start_with(default_manifest(), config).await,
        log,
        base,
    )
}

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];

/// A solid red image and reference: subject consistency 1, aesthetic raw 10 (pure chroma).
fn red_item(prompt: &str) -> Value {
    let red = solid_b64(400, 400, RED);
    json!({"image": red, "prompt": prompt, "task": "attribute", "subjects": [{"name": "red", "reference": red}]})
}

fn paper_weights() -> Value {
    json!({"subject_consistency": 0.4, "semantic_alignment": 0.4, "aesthetic": 0.2})
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|x| (x - b).abs() < 1e-4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_scores_combine_with_the_paper_weights() {
    let (s, log, _) = server_with_judge(FailurePolicy::Null).await;
    let (status, _, out) = s
        .post(
            "/v1/reward",
            &json!({"items": [red_item("WELL a red square")], "rewards": paper_weights()}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let r = &out["results"][0];
    let sa = &r["components"]["semantic_alignment"];
    assert_eq!(
        (
            sa["raw"].as_f64(),
            sa["parsed"].as_bool(),
            sa["template"].as_str()
        ),
        (Some(8.0), Some(true), Some("attribute"))
    );
    assert!(close(&sa["score"], 0.8));
    assert!(close(&r["components"]["aesthetic"]["raw"], 10.0), "{r}");
    assert!(
        close(&r["components"]["subject_consistency"]["score"], 1.0),
        "{r}"
    );
    // 0.4 * 1.0 + 0.4 * 0.8 + 0.2 * 1.0
    assert!(close(&r["reward"], 0.92), "{r}");
    assert!(r["errors"].as_object().unwrap().is_empty(), "{r}");
    // The request the judge got: the real protocol, image first, then the instruction.
    let (sent, auth) = {
        let l = log.lock().unwrap();
        (l.last_body.clone(), l.last_auth.clone())
    };
    assert_eq!(sent["model"], "Qwen/Qwen2.5-VL-7B-Instruct");
    assert_eq!(sent["temperature"], 0.2);
    let content = &sent["messages"][0]["content"];
    assert!(content[0]["image_url"]["url"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,iVBOR"));
    assert!(content[1]["text"]
        .as_str()
        .unwrap()
        .contains("[attribute description]: WELL a red square"));
    assert_eq!(auth.as_deref(), Some("Bearer test-secret"));
    // The same (image, prompt, task) again is served from the cache.
    let calls = log.lock().unwrap().calls;
    let (status, _, again) = s
        .post(
            "/v1/reward",
            &json!({"items": [red_item("WELL a red square")], "rewards": paper_weights()}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(log.lock().unwrap().calls, calls);
    assert_eq!(again["results"][0]["reward"], r["reward"]);
    assert_eq!(s.metric("psr_reward_judge_cache_hits_total").await, 1.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markdown_parses_garbage_is_reported_and_psr_substitutes_five() {
    let (s, _, _) = server_with_judge(FailurePolicy::Null).await;
    let body = |prompt: &str, mode: &str| json!({"mode": mode, "items": [red_item(prompt)], "rewards": paper_weights()});
    // Robust mode reads through the Markdown; the scripts' regex does not match it (5).
    let (_, _, md) = s
        .post("/v1/reward", &body("MARKDOWN red hat", "robust"))
        .await;
    assert_eq!(
        md["results"][0]["components"]["semantic_alignment"]["raw"],
        7.0
    );
    let (_, _, md) = s.post("/v1/reward", &body("MARKDOWN red hat", "psr")).await;
    let sa = &md["results"][0]["components"]["semantic_alignment"];
    assert_eq!(
        (sa["raw"].as_f64(), sa["substituted"].as_bool()),
        (Some(5.0), Some(true)),
        "{sa}"
    );
    let (_, _, robust) = s
        .post("/v1/reward", &body("GARBAGE red hat", "robust"))
        .await;
    let r = &robust["results"][0];
    assert_eq!(r["components"]["semantic_alignment"]["parsed"], false);
    assert_eq!(r["components"]["semantic_alignment"]["score"], Value::Null);
    assert!(r["errors"]["semantic_alignment"]
        .as_str()
        .unwrap()
        .contains("[Score]"));
    assert_eq!(r["reward"], Value::Null, "null policy: no partial reward");
    assert!(close(&r["components"]["subject_consistency"]["score"], 1.0));
    let (_, _, psr) = s.post("/v1/reward", &body("GARBAGE blue hat", "psr")).await;
    let r = &psr["results"][0];
    let sa = &r["components"]["semantic_alignment"];
    assert_eq!(
        (
            sa["substituted"].as_bool(),
            sa["raw"].as_f64(),
            sa["parsed"].as_bool()
        ),
        (Some(true), Some(5.0), Some(false))
    );
    assert!(close(&r["reward"], 0.4 + 0.4 * 0.5 + 0.2));
    assert!(r["errors"]["semantic_alignment"]
        .as_str()
        .unwrap()
        .contains("substituted"));
    assert_eq!(s.metric("psr_reward_judge_parse_failures_total").await, 2.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_outages_never_fail_subject_consistency() {
    let (s, log, _) = server_with_judge(FailurePolicy::Renormalize).await;
    let body = |prompt: &str| json!({"items": [red_item(prompt)], "rewards": paper_weights()});
    // Slow: 500 ms per attempt, one retry.
    let (status, _, slow) = s.post("/v1/reward", &body("SLOW")).await;
    assert_eq!(status, 200, "{slow}");
    let r = &slow["results"][0];
    assert!(
        r["errors"]["semantic_alignment"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{r}"
    );
    assert!(close(&r["components"]["subject_consistency"]["score"], 1.0));
    // Renormalised: (0.4 * 1 + 0.2 * 1) * 1.0 / 0.6
    assert!(close(&r["reward"], 1.0), "{r}");
    // A transient 503 is retried and succeeds.
    let (_, _, flaky) = s.post("/v1/reward", &body("FLAKY")).await;
    assert_eq!(
        flaky["results"][0]["components"]["semantic_alignment"]["raw"], 8.0,
        "{flaky}"
    );
    assert!(
        s.metric(r#"psr_reward_remote_retries_total{service="judge"}"#)
            .await
            >= 2.0
    );
    // Persistent 500s open the breaker (3 failed calls); then calls fail fast.
    for k in 0..3 {
        let (_, _, out) = s.post("/v1/reward", &body(&format!("E500 {k}"))).await;
        assert!(
            out["results"][0]["errors"]["semantic_alignment"]
                .as_str()
                .unwrap()
                .contains("500"),
            "{out}"
        );
    }
    let before = log.lock().unwrap().calls;
    let (_, _, fast) = s.post("/v1/reward", &body("WELL after the outage")).await;
    let err = fast["results"][0]["errors"]["semantic_alignment"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("circuit breaker open"), "{err}");
    assert_eq!(
        log.lock().unwrap().calls,
        before,
        "an open breaker must not call the judge"
    );
    assert_eq!(
        s.metric(r#"psr_reward_remote_breaker_state{service="judge"}"#)
            .await,
        1.0
    );
    let ready = s.get_json("/ready").await;
    assert_eq!(ready["judge"], "open", "{ready}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_deadline_bounds_the_judge() {
    let log = Shared::default();
    let base = spawn_remote(log.clone()).await;
    let mut judge = judge_config(&base);
    judge.policy.timeout_ms = 10_000;
    let config = Config {
        judge: Some(judge),
        ..Config::default()
    };
    let s = TestServer::start_with(default_manifest(), config).await;
    // The judge answers after 3 s and its policy would wait 10 s; the request allows 1.5 s.
    let started = std::time::Instant::now();
    let body = json!({"items": [red_item("SLOW")], "rewards": paper_weights(), "timeout_ms": 1500});
    let (status, _, out) = s.post("/v1/reward", &body).await;
    assert_eq!(status, 200, "{out}");
    let r = &out["results"][0];
    assert!(
        r["errors"]["semantic_alignment"]
            .as_str()
            .unwrap()
            .contains("deadline"),
        "{r}"
    );
    assert!(
        close(&r["components"]["subject_consistency"]["score"], 1.0),
        "{r}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(2800),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_a_component_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = Config {
        judge: Some(judge_config(&format!("http://127.0.0.1:{port}"))),
        ..Config::default()
    };
    let s = TestServer::start_with(default_manifest(), config).await;
    let (status, _, out) = s
        .post(
            "/v1/reward",
            &json!({"items": [red_item("WELL")], "rewards": paper_weights()}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let r = &out["results"][0];
    assert!(
        r["errors"]["semantic_alignment"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{r}"
    );
    assert!(close(&r["components"]["subject_consistency"]["score"], 1.0));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_aesthetic_scorer_and_position() {
    let log = Shared::default();
    let base = spawn_remote(log.clone()).await;
    let mut manifest = default_manifest();
    manifest.aesthetic = None;
    let config = Config {
        aesthetic_remote: Some(RemoteScorerConfig {
            url: format!("{base}/compute"),
            policy: RemotePolicy::default(),
        }),
        ..Config::default()
    };
    let s = TestServer::start_with(manifest, config).await;
    let scene = b64(&png(&scene(
        400,
        400,
        &[(40, 30, 120, 100, RED), (250, 40, 350, 110, BLUE)],
    )));
    let reference = |c| b64(&png(&common::scene(400, 400, &[(100, 100, 200, 200, c)])));
    let item = |prompt: &str| {
        json!({"image": scene, "prompt": prompt, "subjects": [
        {"name": "red", "reference": reference(RED)}, {"name": "blue", "reference": reference(BLUE)}]})
    };
    let prompts = [
        "a red square to the left of a blue square",
        "a red square under a blue square",
        "a red and a blue square",
    ];
    let body = json!({"items": prompts.iter().map(|p| item(p)).collect::<Vec<_>>(), "rewards": {"aesthetic": 0.5, "position": 0.5}});
    let (status, _, out) = s.post("/v1/reward", &body).await;
    assert_eq!(status, 200, "{out}");
    let sent = log.lock().unwrap().last_body.clone();
    assert_eq!(sent["prompt"].as_array().unwrap().len(), 3);
    assert!(sent["image"][0].as_str().unwrap().starts_with("iVBOR"));
    let results = out["results"].as_array().unwrap();
    // Remote raw = prompt length / 10, normalised by 0.1.
    for (r, p) in results.iter().zip(prompts) {
        let raw = p.len() as f64 / 10.0;
        assert!(close(&r["components"]["aesthetic"]["raw"], raw), "{r}");
        assert_eq!(r["components"]["aesthetic"]["source"], "remote");
        assert!(
            r["components"].get("subject_consistency").is_none(),
            "not requested"
        );
    }
    // Red's centre (80, 65) is left of blue's (300, 75), not under it: 1, then 0.
    assert_eq!(results[0]["components"]["position"]["score"], 1.0);
    assert_eq!(
        results[0]["components"]["position"]["relation"],
        "to the left of"
    );
    assert!(close(
        &results[0]["reward"],
        0.5 * 1.0 + 0.5 * prompts[0].len() as f64 / 100.0
    ));
    assert_eq!(results[1]["components"]["position"]["score"], 0.0);
    // No relation phrase: no score, the reason given, and (null policy) no reward.
    assert_eq!(results[2]["components"]["position"]["score"], Value::Null);
    assert!(results[2]["errors"]["position"]
        .as_str()
        .unwrap()
        .contains("no relation"));
    assert_eq!(results[2]["reward"], Value::Null);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_and_weight_validation() {
    let (s, _, _) = server_with_judge(FailurePolicy::Null).await;
    let item = red_item("WELL");
    let long = red_item(&"x".repeat(2001));
    let cases = [
        (
            json!({"items": [item], "rewards": {"beauty": 1.0}}),
            "rewards.beauty",
        ),
        (
            json!({"items": [item], "rewards": {"aesthetic": -0.5}}),
            "rewards.aesthetic",
        ),
        (
            json!({"items": [item], "rewards": {"aesthetic": 0.0, "semantic_alignment": 0.0}}),
            "rewards",
        ),
        (
            json!({"items": [item], "rewards": {"position": 1.0}}),
            "rewards.position",
        ),
        (json!({"items": [long]}), "items[0].prompt"),
        (
            json!({"items": [{"image": solid_b64(8, 8, RED), "task": "painting", "subjects": [{"name": "red", "reference": solid_b64(8, 8, RED)}]}]}),
            "items[0].task",
        ),
    ];
    for (body, field) in cases {
        let (status, _, out) = s.post("/v1/reward", &body).await;
        assert_eq!(status, 422, "{field}: {out}");
        assert!(
            out["error"].as_str().unwrap().contains(field),
            "{field}: {out}"
        );
    }
    // Default weights: the configured 0.4 / 0.4 / 0.2 of the served components.
    let (status, _, out) = s
        .post("/v1/reward", &json!({"items": [red_item("WELL")]}))
        .await;
    assert_eq!(status, 200, "{out}");
    assert!(close(&out["results"][0]["reward"], 0.92), "{out}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clip_style_preference_model_scores_image_against_prompt() {
    let mut manifest = default_manifest();
    manifest.preference = Some(
        toml::from_str(&format!(
            r#"
name = "fixture-preference"
path = "{}"
tokenizer = "{}"
preprocess = {{ resize = {{ rule = "center_crop", short_side = 224, crop = 224 }}, filter = "bicubic", normalize = "clip" }}
"#,
            fixtures_dir().join("clip_pref.onnx").display(),
            fixtures_dir().join("tokenizer.json").display()
        ))
        .unwrap(),
    );
    let s = TestServer::start_with(manifest, Config::default()).await;
    let red = solid_b64(300, 224, RED);
    let item = |prompt: &str| json!({"image": red, "prompt": prompt, "subjects": [{"name": "red", "reference": red}]});
    // Red image: 100 * cos with the prompt's colour words (fixture design), batched together.
    let body = json!({"items": [item("a red cat"), item("a yellow cat"), item("a cat")], "rewards": {"aesthetic": 1.0}});
    let (status, _, out) = s.post("/v1/reward", &body).await;
    assert_eq!(status, 200, "{out}");
    let raws: Vec<f64> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["components"]["aesthetic"]["raw"].as_f64().unwrap())
        .collect();
    let want = [100.0, 100.0 / 2f64.sqrt(), 0.0];
    for (got, want) in raws.iter().zip(want) {
        assert!((got - want).abs() < 1e-3, "{raws:?}");
    }
    assert_eq!(
        out["results"][0]["components"]["aesthetic"]["source"],
        "preference"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_answering_garbage_degrades_only_semantic_alignment() {
    let (s, _, _) = server_with_judge(FailurePolicy::Null).await;
    for garbage in ["NOTJSON", "NOCHOICES"] {
        let (status, _, out) = s
            .post(
                "/v1/reward",
                &json!({"items": [red_item(&format!("{garbage} a red square"))], "rewards": paper_weights()}),
            )
            .await;
        assert_eq!(status, 200, "{out}");
        let r = &out["results"][0];
        // No score (the component absent, or present with a null score and its flags).
        let sa = &r["components"]["semantic_alignment"];
        assert!(sa.is_null() || sa["score"].is_null(), "{r}");
        assert!(r["errors"]["semantic_alignment"].is_string(), "{r}");
        assert!(
            close(&r["components"]["subject_consistency"]["score"], 1.0),
            "{r}"
        );
        assert_eq!(
            r["reward"],
            Value::Null,
            "policy null: no reward with a hole"
        );
    }
    s.stop().await;
}
