//! The API documentation: `/openapi.json` groups the operations by meaning and carries request
//! examples, each of which works as it is against `make run`'s default models
//! (`models/default.toml`: fixture detector, real MobileNetV2, fixture aesthetic scorer); `/docs`
//! is Swagger UI served from the binary, with no reference to another host.

mod common;

use std::path::Path;

use common::*;
use psr_reward::config::Config;
use psr_reward::models::manifest::Manifest;
use serde_json::Value;

/// `models/default.toml` as `make run` serves it; the fixture models come from the fixture
/// folder in use (`PSR_FIXTURES_DIR` may move it), the embedder from `.deps/` (`make setup`).
fn make_run_manifest() -> Manifest {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.toml");
    let mut m = Manifest::load(&path).unwrap();
    let fixtures = fixtures_dir();
    if let Some(d) = m.detector.as_mut() {
        d.path = fixtures.join("detector.onnx");
        d.tokenizer = Some(fixtures.join("tokenizer.json"));
    }
    if let Some(a) = m.aesthetic.as_mut() {
        a.path = fixtures.join("aesthetic.onnx");
    }
    let embedder = m.embedder.as_ref().map(|e| m.resolve(&e.path)).unwrap();
    assert!(
        embedder.is_file(),
        "{} missing: run `make setup`",
        embedder.display()
    );
    m
}

/// The request example of `POST path`.
fn example(doc: &Value, path: &str) -> Value {
    let body = &doc["paths"][path]["post"]["requestBody"]["content"]["application/json"];
    assert!(body["example"].is_object(), "{path} has no example");
    body["example"].clone()
}

#[tokio::test]
async fn operations_are_grouped_and_examples_return_real_results() {
    let s = TestServer::start_with(make_run_manifest(), Config::default()).await;
    let doc = s.get_json("/openapi.json").await;

    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["Scoring", "Model stages", "Operations"]);
    for (path, method, tag) in [
        ("/v1/reward", "post", "Scoring"),
        ("/v1/detect", "post", "Model stages"),
        ("/v1/embed", "post", "Model stages"),
        ("/health", "get", "Operations"),
        ("/ready", "get", "Operations"),
        ("/info", "get", "Operations"),
        ("/metrics", "get", "Operations"),
    ] {
        let op = &doc["paths"][path][method];
        assert_eq!(op["tags"], serde_json::json!([tag]), "{path}");
        assert!(
            op["summary"].as_str().is_some_and(|t| t.len() > 10),
            "{path}"
        );
    }

    // The reward example: both squares found and matched with their references.
    let (status, _, body) = s.post("/v1/reward", &example(&doc, "/v1/reward")).await;
    assert_eq!(status, 200, "{body}");
    let result = &body["results"][0];
    let subjects = result["components"]["subject_consistency"]["subjects"]
        .as_array()
        .unwrap();
    assert_eq!(subjects.len(), 2);
    for (subject, name, corners) in [
        (&subjects[0], "red square", [8, 8, 27, 27]),
        (&subjects[1], "blue square", [36, 36, 55, 55]),
    ] {
        assert_eq!(subject["name"], name);
        assert_eq!(subject["detected"], true, "{subject}");
        assert_eq!(subject["box"], serde_json::json!(corners), "{subject}");
        assert!(subject["similarity"].as_f64().unwrap() > 0.99, "{subject}");
    }
    let sc = result["components"]["subject_consistency"]["score"]
        .as_f64()
        .unwrap();
    let aesthetic = result["components"]["aesthetic"]["score"].as_f64().unwrap();
    let reward = result["reward"].as_f64().unwrap();
    assert!(
        (reward - (0.8 * sc + 0.2 * aesthetic)).abs() < 1e-6,
        "{result}"
    );
    assert!(reward > 0.8 && reward <= 1.0, "{result}");

    // The detect example: query 0 (red, top left) and query 11 (blue, bottom right).
    let (status, _, body) = s.post("/v1/detect", &example(&doc, "/v1/detect")).await;
    assert_eq!(status, 200, "{body}");
    let phrases = &body["results"][0]["phrases"];
    for (i, query, x1) in [(0, 0, 8.0), (1, 11, 36.0)] {
        let first = &phrases[i]["detections"][0];
        assert_eq!(first["query"], query, "{body}");
        let b = as_f64s(&first["box"]);
        assert!(
            (b[0] - x1).abs() < 0.5 && (b[2] - (x1 + 20.0)).abs() < 0.5,
            "{b:?}"
        );
    }

    // The embed example: two MobileNetV2 embeddings of different images.
    let (status, _, body) = s.post("/v1/embed", &example(&doc, "/v1/embed")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "mobilenetv2");
    assert_eq!(body["dimensions"], 1280);
    let (a, b) = (
        as_f64s(&body["embeddings"][0]),
        as_f64s(&body["embeddings"][1]),
    );
    assert!(a.iter().chain(&b).all(|x| x.is_finite()));
    assert!(
        cosine(&a, &b) < 0.999,
        "scene and red reference embed alike"
    );
    s.stop().await;
}

#[tokio::test]
async fn docs_page_is_served_from_the_binary() {
    let s = TestServer::start().await;
    // `/docs` redirects to the page; every asset it names is a relative path on this server.
    let page = s.client.get(s.url("/docs")).send().await.unwrap();
    assert_eq!(page.url().path(), "/docs/");
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        let resp = s.client.get(s.url(&format!("/docs/{asset}"))).send().await;
        let resp = resp.unwrap();
        assert_eq!(resp.status(), 200, "{asset}");
        assert!(resp.bytes().await.unwrap().len() > 100, "{asset}");
    }
    let init = s.get_text("/docs/swagger-initializer.js").await;
    assert!(init.contains(r#""url": "/openapi.json""#), "{init}");
    assert!(init.contains(r#""validatorUrl": "none""#), "{init}");
    s.stop().await;
}
