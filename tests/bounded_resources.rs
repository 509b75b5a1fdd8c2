//! Bounded resources and honest backpressure (issue 8): each finding of the hostile-client
//! review has a regression test here, against the real server on loopback.
//!
//! The memory figures live in `tests/bounded_memory.rs`, a test binary of their own.

mod common;

use std::time::{Duration, Instant};

use common::*;
use psr_reward::config::Config;
use serde_json::{json, Value};

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];

fn two_subject_item(generated: &str, red_ref: &str, blue_ref: &str) -> Value {
    json!({"image": generated, "prompt": "a red and a blue square", "subjects": [
        {"name": "red", "reference": red_ref}, {"name": "blue", "reference": blue_ref}]})
}

fn scene_b64(rects: &[(u32, u32, u32, u32, [u8; 3])]) -> String {
    b64(&png(&scene(64, 64, rects)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_aspect_ratios_are_refused_from_the_header() {
    let s = TestServer::start().await;
    let started = Instant::now();
    let (status, _, out) = s
        .post("/v1/embed", &json!({"images": [solid_b64(1, 8192, RED)]}))
        .await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(status, 422, "{out}");
    assert_eq!(out["error_type"], "invalid_image");
    assert!(
        out["error"].as_str().unwrap().contains("images[0]"),
        "{out}"
    );
    assert!(
        out["error"].as_str().unwrap().contains("aspect ratio"),
        "{out}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detection_request_within_the_limits_is_admitted_on_an_idle_server() {
    let s = TestServer::start().await;
    // 70 images x 8 phrases = 560 detector items: more than the old queue of 512.
    let images: Vec<String> = (0..70).map(|i| solid_b64(16 + i % 3, 16, RED)).collect();
    let phrases = ["red", "blue", "green", "cat", "dog", "crab", "hat", "box"];
    let (status, _, out) = s
        .post("/v1/detect", &json!({"images": images, "phrases": phrases}))
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["results"].as_array().unwrap().len(), 70);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refuses_lanes_too_small_for_the_request_limits() {
    let mut manifest = default_manifest();
    if let Some(d) = manifest.detector.as_mut() {
        d.batching.queue_capacity = 512;
    }
    let metrics = std::sync::Arc::new(psr_reward::metrics::Metrics::new());
    let config = Config::default();
    let levels = config.limits.priority_levels;
    let m2 = metrics.clone();
    let models = tokio::task::spawn_blocking(move || {
        psr_reward::models::Models::load(&manifest, ort_env(), &m2, levels)
    })
    .await
    .unwrap()
    .unwrap();
    let state = psr_reward::server::AppState::new(
        config,
        metrics,
        psr_reward::cpu_pool::CpuPool::new(1).unwrap(),
    )
    .unwrap();
    let models = std::sync::Arc::new(models);
    let err = state.set_models(models.clone()).unwrap_err().to_string();
    assert!(
        err.contains("detector") && err.contains("queue_capacity is 512"),
        "{err}"
    );
    assert!(err.contains("2048"), "{err}");
    tokio::task::spawn_blocking(move || models.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reward_overload_and_deadlines_are_statuses_not_null_rewards() {
    // A queue of 4 detector items cannot take a 3-item request (6 items) next to another.
    let mut manifest = default_manifest();
    if let Some(d) = manifest.detector.as_mut() {
        d.batching.queue_capacity = 4;
    }
    let mut config = Config::default();
    config.limits.max_items_per_request = 1;
    config.limits.max_phrases = 1;
    config.rewards.max_subjects = 2;
    let s = TestServer::start_with(manifest, config).await;
    let generated = scene_b64(&[(4, 4, 20, 20, RED), (30, 30, 50, 50, BLUE)]);
    let item = two_subject_item(
        &generated,
        &scene_b64(&[(0, 0, 9, 9, RED)]),
        &scene_b64(&[(0, 0, 9, 9, BLUE)]),
    );
    // timeout_ms: 1 passes before the detector answers: 504, never 200 with nulls.
    let (status, _, out) = s
        .post(
            "/v1/reward",
            &json!({"items": [item], "timeout_ms": 1, "rewards": {"subject_consistency": 1.0}}),
        )
        .await;
    assert_eq!(status, 504, "{out}");
    assert_eq!(out["error_type"], "timeout");
    // Many concurrent callers on a queue of 4: every answer is 200 or 429 with Retry-After.
    let mut calls = Vec::new();
    for k in 0..12u8 {
        let (client, url) = (s.client.clone(), s.url("/v1/reward"));
        let generated = scene_b64(&[(4, 4, 20, 20 + u32::from(k), RED), (30, 30, 50, 50, BLUE)]);
        let body = json!({"items": [two_subject_item(&generated, &scene_b64(&[(0, 0, 9, 9 + u32::from(k), RED)]), &scene_b64(&[(0, 0, 9, 9, BLUE)]))],
            "rewards": {"subject_consistency": 1.0}});
        calls.push(tokio::spawn(async move {
            let resp = client.post(url).json(&body).send().await.unwrap();
            let status = resp.status().as_u16();
            let retry = resp.headers().get("retry-after").is_some();
            let out: Value = resp.json().await.unwrap();
            (status, retry, out)
        }));
    }
    let mut refused = 0;
    for call in calls {
        let (status, retry, out) = call.await.unwrap();
        match status {
            200 => assert!(out["results"][0]["reward"].is_number(), "{out}"),
            429 => {
                assert!(retry, "429 without Retry-After");
                assert_eq!(out["error_type"], "overloaded");
                refused += 1;
            }
            other => panic!("unexpected {other}: {out}"),
        }
    }
    eprintln!("{refused} of 12 concurrent reward requests refused with 429");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_counted_under_its_own_label() {
    let s = TestServer::start().await;
    let img = solid_b64(32, 32, RED);
    let item = two_subject_item(&img, &img, &img);
    let calls: [(&str, Option<Value>); 8] = [
        ("/health", None),
        ("/ready", None),
        ("/info", None),
        ("/metrics", None),
        ("/openapi.json", None),
        ("/v1/embed", Some(json!({"images": [img]}))),
        (
            "/v1/detect",
            Some(json!({"images": [img], "phrases": ["red"]})),
        ),
        (
            "/v1/reward",
            Some(json!({"items": [item], "rewards": {"subject_consistency": 1.0}})),
        ),
    ];
    for (route, body) in &calls {
        let status = match body {
            Some(b) => s.post(route, b).await.0,
            None => s
                .client
                .get(s.url(route))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        };
        assert_eq!(status, 200, "{route}");
    }
    for (route, _) in &calls {
        let line = format!("psr_reward_requests_total{{route=\"{route}\",status=\"200\"}}");
        assert!(
            s.metric(&line).await >= 1.0,
            "{route} not counted under its label"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pixels_and_the_in_flight_budget_bound_a_request() {
    let mut config = Config::default();
    config.limits.max_image_pixels = 1_000_000;
    config.limits.max_request_pixels = 1_500_000;
    config.limits.max_inflight_bytes = 64 << 20;
    let s = TestServer::start_with(default_manifest(), config).await;
    // Two 1000x1000 images: each within its own limit, 2 Mpx together.
    let big = solid_b64(1000, 1000, RED);
    let (status, _, out) = s.post("/v1/embed", &json!({"images": [big, big]})).await;
    assert_eq!(status, 413, "{out}");
    assert_eq!(out["error_type"], "too_many_pixels");
    // Forty 150x150 images fit the pixel limit; their detector tensors (40 x 800x800x3 f32
    // = 307 MB) can never fit a 64 MB budget: 422 naming the limit, not a 429 forever.
    let small: Vec<String> = (0..40).map(|_| solid_b64(150, 150, RED)).collect();
    let (status, _, out) = s
        .post("/v1/detect", &json!({"images": small, "phrases": ["red"]}))
        .await;
    assert_eq!(status, 422, "{out}");
    assert_eq!(out["error_type"], "request_too_large");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("max_inflight_bytes"),
        "{out}"
    );
    let info = s.get_json("/info").await;
    assert_eq!(info["limits"]["max_inflight_bytes"], 64 << 20);
    assert_eq!(info["reward_limits"]["max_subjects"], 4);
    assert_eq!(info["reward_limits"]["max_prompt_chars"], 2000);
    assert_eq!(
        info["in_flight"]["bytes"], 0,
        "the budget is released after each request"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_in_flight_budget_answers_429_that_a_retry_can_satisfy() {
    let mut config = Config::default();
    // One 800x800 detector tensor (7.7 MB) plus pixels fits; two at once do not.
    config.limits.max_image_pixels = 1_000_000;
    config.limits.max_request_pixels = 1_000_000;
    config.limits.max_inflight_bytes = 12 << 20;
    let s = TestServer::start_with(default_manifest(), config).await;
    let img = solid_b64(400, 400, RED);
    let body = json!({"images": [img], "phrases": ["red"]});
    let mut calls = Vec::new();
    for _ in 0..8 {
        let (client, url, body) = (s.client.clone(), s.url("/v1/detect"), body.clone());
        calls.push(tokio::spawn(async move {
            let resp = client.post(url).json(&body).send().await.unwrap();
            let retry = resp.headers().get("retry-after").is_some();
            (resp.status().as_u16(), retry)
        }));
    }
    let mut statuses = Vec::new();
    for c in calls {
        let (status, retry) = c.await.unwrap();
        assert!(status == 200 || (status == 429 && retry), "{status}");
        statuses.push(status);
    }
    assert!(statuses.contains(&200));
    // Once the others finished, the same request is admitted.
    let (status, _, out) = s.post("/v1/detect", &body).await;
    assert_eq!(status, 200, "{out}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_fields_and_files_get_the_right_errors() {
    let s = TestServer::start().await;
    let img = solid_b64(32, 32, RED);
    let item = two_subject_item(&img, &img, &img);
    let sc = json!({"subject_consistency": 1.0});
    let mut jpeg = Vec::new();
    image::RgbImage::from_fn(256, 256, |x, y| {
        image::Rgb([(x * 7 + y) as u8, ((y * 13) ^ x) as u8, (x * y) as u8])
    })
    .write_to(
        &mut std::io::Cursor::new(&mut jpeg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    let cut = b64(&jpeg[..jpeg.len() / 2]);
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"items": [item], "rewards": sc, "mode": 1}),
            422,
            "invalid_request",
            "mode",
        ),
        (
            json!({"items": [item], "rewards": sc, "mode": {"psr": null}}),
            422,
            "invalid_request",
            "mode",
        ),
        (
            json!({"items": [item], "rewards": sc, "options": {"alpha": 0}}),
            422,
            "invalid_request",
            "options.alpha",
        ),
        (
            json!({"items": [item], "rewards": sc, "options": {"matching": false}}),
            422,
            "invalid_request",
            "options.matching",
        ),
        (
            json!({"items": [item], "rewards": sc, "options": {"detection": ["joint"]}}),
            422,
            "invalid_request",
            "options.detection",
        ),
        (
            json!({"items": [item], "rewards": {"subject_consistency": 1e308}}),
            422,
            "invalid_request",
            "rewards.subject_consistency",
        ),
        (
            json!({"items": [two_subject_item(&cut, &img, &img)], "rewards": sc}),
            422,
            "invalid_image",
            "truncated",
        ),
    ];
    for (body, status, error_type, mentions) in cases {
        let (got, _, out) = s.post("/v1/reward", &body).await;
        assert_eq!(
            (got, out["error_type"].as_str().unwrap_or("")),
            (status, error_type),
            "{body}: {out}"
        );
        assert!(
            out["error"].as_str().unwrap().contains(mentions),
            "{mentions}: {out}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_returning_non_finite_values_fails_only_its_items_with_a_reason() {
    let mut manifest = default_manifest();
    if let Some(e) = manifest.embedder.as_mut() {
        e.path = fixtures_dir().join("degenerate_embedder.onnx");
    }
    let s = TestServer::start_with(manifest, Config::default()).await;
    let grey = solid_b64(64, 64, [128, 128, 128]);
    let red = solid_b64(64, 64, RED);
    // /v1/embed: finite for grey, rejected for a saturated colour (never NaN in JSON).
    let (status, _, out) = s.post("/v1/embed", &json!({"images": [grey]})).await;
    assert_eq!(status, 200, "{out}");
    let (status, _, out) = s.post("/v1/embed", &json!({"images": [grey, red]})).await;
    assert_eq!(status, 500, "{out}");
    assert_eq!(out["error_type"], "invalid_model_output");
    assert!(
        out["error"].as_str().unwrap().contains("images[1]"),
        "{out}"
    );
    // /v1/reward: the grey item scores, the red one is a component error with its reason.
    let item = |img: &str| json!({"image": img, "prompt": "", "subjects": [{"name": "cat", "reference": grey}]});
    let (status, _, out) = s
        .post(
            "/v1/reward",
            &json!({"items": [item(&grey), item(&red)], "rewards": {"subject_consistency": 1.0}}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let results = out["results"].as_array().unwrap();
    assert!(results[0]["reward"].is_number(), "{out}");
    assert_eq!(results[1]["reward"], Value::Null);
    let reason = results[1]["errors"]["subject_consistency"]
        .as_str()
        .unwrap();
    assert!(reason.contains("invalid output (non_finite)"), "{reason}");
    let line =
        "psr_reward_invalid_model_outputs_total{model=\"fixture-embedder\",reason=\"non_finite\"}";
    assert!(s.metric(line).await >= 2.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_new_reference_compute_it_once() {
    let s = TestServer::start().await;
    let red_ref = scene_b64(&[(0, 0, 30, 30, RED)]);
    let blue_ref = scene_b64(&[(0, 0, 30, 31, BLUE)]);
    let mut calls = Vec::new();
    for k in 0..6u32 {
        let generated = scene_b64(&[(2, 2, 20 + k, 20, RED), (34, 34, 60, 60, BLUE)]);
        let body = json!({"items": [two_subject_item(&generated, &red_ref, &blue_ref)],
            "rewards": {"subject_consistency": 1.0}});
        let (client, url) = (s.client.clone(), s.url("/v1/reward"));
        calls.push(tokio::spawn(async move {
            let resp = client.post(url).json(&body).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }));
    }
    let mut similarities = Vec::new();
    for c in calls {
        let (status, out) = c.await.unwrap();
        assert_eq!(status, 200, "{out}");
        similarities.push(
            out["results"][0]["components"]["subject_consistency"]["subjects"][0]["reference_box"]
                .clone(),
        );
    }
    // Two keys (red and blue reference): two misses, whatever the concurrency.
    assert_eq!(
        s.metric("psr_reward_reference_cache_misses_total").await,
        2.0
    );
    assert!(
        similarities.windows(2).all(|w| w[0] == w[1]),
        "{similarities:?}"
    );
    s.stop().await;
}

/// Sends a raw HTTP/1.1 request head and returns the status line's code and the body.
async fn raw_head(s: &TestServer, head: String) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_get_json_errors() {
    let s = TestServer::start().await;
    let long_uri = format!("/health?{}", "a".repeat(10_000));
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    let big = format!("x-big: {}\r\n", "b".repeat(100_000));
    let cases = [
        (
            format!("GET {long_uri} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
            414,
            "uri_too_long",
        ),
        (
            format!("GET /health HTTP/1.1\r\nhost: x\r\n{many}connection: close\r\n\r\n"),
            431,
            "headers_too_large",
        ),
        (
            format!("GET /health HTTP/1.1\r\nhost: x\r\n{big}connection: close\r\n\r\n"),
            431,
            "headers_too_large",
        ),
    ];
    for (head, status, error_type) in cases {
        let (got, body) = raw_head(&s, head).await;
        assert_eq!(got, status, "{body}");
        let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
        assert_eq!(json["error_type"], error_type);
    }
    // The server keeps serving.
    let (status, _) = raw_head(
        &s,
        "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_times_out_and_refusals_close_their_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = Config::default();
    config.limits.max_concurrent_requests = 1;
    config.limits.body_timeout_ms = 700;
    let s = TestServer::start_with(default_manifest(), config).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    // A slow-loris client: headers of a 100 kB body, then nothing. It holds the one slot.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /v1/embed HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{\"images\"")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let body = json!({"images": [solid_b64(16, 16, RED)]});
    let resp = s
        .client
        .post(s.url("/v1/embed"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    // Refused before its body was read: the answer says the connection closes.
    assert_eq!(
        resp.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    // The slow client gets 408 once limits.body_timeout_ms passes, and the slot is free.
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let (status, _, out) = s.post("/v1/embed", &body).await;
    assert_eq!(status, 200, "{out}");
    s.stop().await;
}
