//! Semantic alignment against a scripted judge on a loopback socket: every reply shape read
//! in `psr` mode exactly as the PSR scripts' `extract_score` reads it and in `robust` mode
//! tolerantly, judge templates from configuration reaching the judge verbatim, and the
//! judge cache keyed by the template text.

mod common;

use std::collections::BTreeMap;

use common::judge::{spawn_judge, Shared, SHAPES};
use common::*;
use psr_reward::config::Config;
use psr_reward::reward::judge::TemplateSource;
use psr_reward::reward::{JudgeConfig, RemotePolicy};
use serde_json::{json, Value};

fn judge_config(base: &str, templates: BTreeMap<String, TemplateSource>) -> JudgeConfig {
    JudgeConfig {
        base_url: format!("{base}/v1"),
        model: "Qwen/Qwen2.5-VL-7B-Instruct".into(),
        api_key_env: None,
        api_key_file: None,
        temperature: 0.2,
        max_tokens: None,
        cache_entries: 256,
        policy: RemotePolicy {
            retries: 0,
            ..RemotePolicy::default()
        },
        templates,
    }
}

async fn server(templates: BTreeMap<String, TemplateSource>) -> (TestServer, Shared) {
    let log = Shared::default();
    let base = spawn_judge(log.clone()).await;
    let config = Config {
        judge: Some(judge_config(&base, templates)),
        ..Config::default()
    };
    (
        TestServer::start_with(default_manifest(), config).await,
        log,
    )
}

fn item(prompt: &str, task: &str) -> Value {
    let img = solid_b64(32, 32, [200, 40, 40]);
    json!({"image": img, "prompt": prompt, "task": task, "subjects": [{"name": "red", "reference": img}]})
}

/// What one shape must give: (raw, scored, parsed, substituted, out_of_range, dropped,
/// error substring or "" for none).
type Expect = (Option<f64>, bool, bool, bool, bool, bool, &'static str);

const SUB: &str = "5 substituted, psr mode";
const NONE: &str = "no parseable [Score]";

/// The scripts' column (`psr`) and ours (`robust`) for every shape, by name.
fn expected(shape: &str) -> (Expect, Expect) {
    let ok = |v: f64| (Some(v), true, true, false, false, false, "");
    let substituted = (Some(5.0), true, false, true, false, false, SUB);
    let unparsed = (None, false, false, false, false, false, NONE);
    match shape {
        "score8" => (ok(8.0), ok(8.0)),
        "decimal" => (ok(7.5), ok(7.5)),
        "slash" => (ok(9.0), ok(9.0)),
        "spaces" => (ok(4.0), ok(4.0)),
        "fenced" => (ok(5.5), ok(5.5)),
        "first_of_two" => (ok(3.0), ok(3.0)),
        "echo_first" => (ok(6.0), ok(6.0)),
        "arabic_indic" => (ok(8.0), ok(8.0)),
        "arabic_decimal" => (ok(7.5), ok(7.5)),
        "fullwidth" => (ok(8.0), ok(8.0)),
        "next_line" => (ok(7.0), ok(7.0)),
        "sub_scores" => (ok(7.0), ok(7.0)),
        "bold" => (substituted, ok(6.0)),
        "unbracketed" => (substituted, ok(7.0)),
        "trailing_dot" => (
            (
                None,
                false,
                false,
                false,
                false,
                true,
                "judge score '10.0.' is not a number: the PSR scripts drop this sample",
            ),
            ok(10.0),
        ),
        "twelve" => (
            (Some(12.0), true, true, false, true, false, ""),
            (
                Some(12.0),
                false,
                true,
                false,
                true,
                false,
                "judge score 12 is outside 0..10: robust mode gives it no score",
            ),
        ),
        "negative" => (
            substituted,
            (
                Some(-2.0),
                false,
                true,
                false,
                true,
                false,
                "judge score -2 is outside 0..10",
            ),
        ),
        "no_score" | "empty" | "refusal" => (substituted, unparsed),
        "null_content" => (
            (
                None,
                false,
                false,
                false,
                false,
                true,
                "the judge's answer has no text: the PSR scripts drop this sample",
            ),
            unparsed,
        ),
        other => panic!("no expectation for shape {other}"),
    }
}

fn check(mode: &str, shape: &str, result: &Value, want: Expect) {
    let (raw, scored, parsed, substituted, out_of_range, dropped, error) = want;
    let sa = &result["components"]["semantic_alignment"];
    let ctx = format!("{mode} {shape}: {result}");
    assert_eq!(sa["raw"].as_f64(), raw, "raw, {ctx}");
    // The default normalisation, raw * 0.1 + 0, computed the same way.
    let score = raw.filter(|_| scored).map(|r| r * 0.1 + 0.0);
    assert_eq!(sa["score"].as_f64(), score, "score, {ctx}");
    assert_eq!(result["reward"].as_f64(), score, "reward, {ctx}");
    assert_eq!(sa["parsed"], parsed, "parsed, {ctx}");
    assert_eq!(sa["substituted"], substituted, "substituted, {ctx}");
    assert_eq!(sa["out_of_range"], out_of_range, "out_of_range, {ctx}");
    assert_eq!(sa["dropped"], dropped, "dropped, {ctx}");
    assert_eq!(sa["template"], "attribute", "{ctx}");
    let err = result["errors"]["semantic_alignment"].as_str();
    if error.is_empty() {
        assert_eq!(err, None, "error, {ctx}");
    } else {
        assert!(err.is_some_and(|e| e.contains(error)), "error, {ctx}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reply_shape_in_both_modes() {
    let (s, log) = server(BTreeMap::new()).await;
    let info = s.get_json("/info").await;
    let judge = info["remote"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "judge")
        .unwrap()
        .clone();
    let attribute_hash = judge["templates"]["attribute"]["hash"].as_str().unwrap();
    assert_eq!(attribute_hash.len(), 12, "{judge}");
    assert_eq!(judge["templates"]["attribute"]["source"], "builtin");
    assert_eq!(judge["templates"].as_object().unwrap().len(), 7, "{judge}");
    let items: Vec<Value> = SHAPES
        .iter()
        .map(|(name, _)| item(&format!("SHAPE={name} a red square"), "attribute"))
        .collect();
    for mode in ["psr", "robust"] {
        let body = json!({"mode": mode, "items": items, "rewards": {"semantic_alignment": 1.0}});
        let (status, _, out) = s.post("/v1/reward", &body).await;
        assert_eq!(status, 200, "{out}");
        for (k, (name, _)) in SHAPES.iter().enumerate() {
            let r = &out["results"][k];
            let (psr, robust) = expected(name);
            check(mode, name, r, if mode == "psr" { psr } else { robust });
            assert_eq!(
                r["components"]["semantic_alignment"]["template_hash"], attribute_hash,
                "{r}"
            );
        }
    }
    // Fresh answers without a score of their own in psr mode: bold, trailing_dot, negative,
    // no_score, unbracketed, empty, refusal, null_content (8). In robust mode only the four
    // answers no mode can read were asked again (the others came from the cache) and failed.
    assert_eq!(
        s.metric("psr_reward_judge_parse_failures_total").await,
        12.0
    );
    assert_eq!(
        s.metric("psr_reward_judge_cache_hits_total").await,
        (SHAPES.len() - 4) as f64
    );
    assert_eq!(log.lock().unwrap().calls, SHAPES.len() + 4);
    // The request as the scripts make it: one user message, image first, then the text;
    // temperature 0.2, the configured model, no max_tokens.
    let sent = log.lock().unwrap().last_body.clone();
    assert_eq!(sent["model"], "Qwen/Qwen2.5-VL-7B-Instruct");
    assert_eq!(sent["temperature"], 0.2);
    assert!(sent.get("max_tokens").is_none(), "{sent}");
    assert_eq!(sent["messages"].as_array().unwrap().len(), 1);
    assert_eq!(sent["messages"][0]["role"], "user");
    let content = sent["messages"][0]["content"].as_array().unwrap();
    assert_eq!(content.len(), 2);
    assert_eq!(content[0]["type"], "image_url");
    assert!(content[0]["image_url"]["url"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    assert_eq!(content[1]["type"], "text");
    s.stop().await;
}

/// A template as the PSR scripts write theirs: a Python triple-quoted string with its
/// indentation, a `…`, and `{}` for `str.format`.
const PSR_STYLE: &str = "\n        Your role is to judge whether the test image matches.\n        Answer as [Thought]: … [Score]: …\n        [description]: {}\n        [Thought]:\n        [Score]:\n        ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_file_reaches_the_judge_verbatim() {
    let path = std::env::temp_dir().join(format!("psr-judge-template-{}.txt", std::process::id()));
    std::fs::write(&path, PSR_STYLE).unwrap();
    let templates = BTreeMap::from([(
        "four".to_string(),
        TemplateSource {
            file: Some(path.clone()),
            text: None,
        },
    )]);
    let (s, log) = server(templates).await;
    let prompt = "SHAPE=score8 four {} cats";
    let (status, _, out) = s
        .post(
            "/v1/reward",
            &json!({"items": [item(prompt, "four")], "rewards": {"semantic_alignment": 1.0}}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let sent = log.lock().unwrap().last_body.clone();
    assert_eq!(
        sent["messages"][0]["content"][1]["text"].as_str().unwrap(),
        PSR_STYLE.replace("{}", prompt)
    );
    let hash = blake3::hash(PSR_STYLE.as_bytes()).to_hex()[..12].to_string();
    let sa = &out["results"][0]["components"]["semantic_alignment"];
    assert_eq!(
        (sa["raw"].as_f64(), &sa["template"], &sa["template_hash"]),
        (Some(8.0), &json!("four"), &json!(hash)),
        "{sa}"
    );
    let info = s.get_json("/info").await;
    let templates = &info["remote"][0]["templates"];
    assert_eq!(templates["four"]["hash"], hash, "{info}");
    assert_eq!(
        templates["four"]["source"],
        format!("file:{}", path.display())
    );
    assert_eq!(templates["three"]["source"], "builtin");
    s.stop().await;
    std::fs::remove_file(&path).ok();
}

/// The same image and prompt under the tasks `complex`, then `three`.
async fn ask_complex_then_three(s: &TestServer) {
    for task in ["complex", "three"] {
        let body = json!({"items": [item("SHAPE=score8 three dogs", task)], "rewards": {"semantic_alignment": 1.0}});
        let (status, _, out) = s.post("/v1/reward", &body).await;
        assert_eq!(status, 200, "{out}");
        assert_eq!(
            out["results"][0]["components"]["semantic_alignment"]["raw"],
            8.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_keyed_by_template_text() {
    // `complex` and `three` share one built-in text: the second task is a cache hit.
    let (shared, log) = server(BTreeMap::new()).await;
    ask_complex_then_three(&shared).await;
    assert_eq!(log.lock().unwrap().calls, 1);
    assert_eq!(
        shared.metric("psr_reward_judge_cache_hits_total").await,
        1.0
    );
    shared.stop().await;
    // A changed `three` template is a different question: a miss.
    let changed = BTreeMap::from([(
        "three".to_string(),
        TemplateSource {
            file: None,
            text: Some("Judge the three subjects: {instruction}\n[Score]:".into()),
        },
    )]);
    let (s, log) = server(changed).await;
    ask_complex_then_three(&s).await;
    assert_eq!(log.lock().unwrap().calls, 2);
    assert_eq!(s.metric("psr_reward_judge_cache_hits_total").await, 0.0);
    assert_eq!(
        log.lock().unwrap().last_body["messages"][0]["content"][1]["text"],
        "Judge the three subjects: SHAPE=score8 three dogs\n[Score]:"
    );
    s.stop().await;
}
