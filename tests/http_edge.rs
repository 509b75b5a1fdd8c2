//! The HTTP edge: probes, info, metrics, OpenAPI, and JSON errors for every kind of bad input.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_list_every_family_before_the_first_request() {
    let s = TestServer::start().await;
    let text = s.get_text("/metrics").await;
    for family in [
        "psr_reward_requests_total",
        "psr_reward_request_duration_seconds",
        "psr_reward_queue_depth",
        "psr_reward_batch_size",
        "psr_reward_inference_items_total",
        "psr_reward_batch_executions_total",
        "psr_reward_queue_duration_seconds",
        "psr_reward_inference_duration_seconds",
        "psr_reward_batcher_failures_total",
        "psr_reward_worker_restarts_total",
        "psr_reward_model_ready",
        "psr_reward_preprocess_duration_seconds",
        "psr_reward_ready",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }
    for model in ["fixture-detector", "fixture-embedder", "fixture-aesthetic"] {
        for reason in ["overloaded", "timeout", "dropped", "backend"] {
            let line = format!(
                r#"psr_reward_batcher_failures_total{{model="{model}",reason="{reason}"}} 0"#
            );
            assert!(text.contains(&line), "{line} missing");
        }
    }
    assert!(text.contains("psr_reward_ready 1"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_info_and_docs() {
    let s = TestServer::start().await;
    let health = s.client.get(s.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = s.client.get(s.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(ready.headers().contains_key("x-request-id"));

    let info = s.get_json("/info").await;
    assert_eq!(info["name"], "psr-reward");
    let models = info["models"].as_array().unwrap();
    assert_eq!(models.len(), 3);
    for m in models {
        assert_eq!(m["instances"][0]["actual"], "cpu", "{m}");
        assert_eq!(m["instances"][0]["requested"], "cpu", "{m}");
    }
    let detector = &models[0];
    assert_eq!(detector["role"], "detector");
    let inputs: Vec<&str> = detector["signature"]["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    for name in [
        "pixel_values",
        "input_ids",
        "token_type_ids",
        "attention_mask",
        "pixel_mask",
    ] {
        assert!(inputs.contains(&name), "{name} not in {inputs:?}");
    }
    assert_eq!(
        detector["signature"]["outputs"][0]["shape"],
        json!([-1, 900, 256])
    );
    assert_eq!(
        models[1]["signature"]["outputs"][0]["shape"],
        json!([-1, 384])
    );
    assert_eq!(info["limits"]["priority_levels"], 3);

    let api = s.get_json("/openapi.json").await;
    assert!(api["paths"]["/v1/embed"]["post"].is_object());
    assert!(api["paths"]["/v1/detect"]["post"].is_object());
    let docs = s.client.get(s.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger-ui"));

    // The request just made shows in the counters.
    assert!(
        s.metric(r#"psr_reward_requests_total{route="/info",status="200"}"#)
            .await
            >= 1.0
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_draining() {
    let s = TestServer::start().await;
    s.state.start_draining();
    let r = s.client.get(s.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error_type"], "not_ready");
    let (status, _, body) = s
        .post(
            "/v1/embed",
            &json!({"images": [solid_b64(8, 8, [255, 0, 0])]}),
        )
        .await;
    assert_eq!(
        (status, body["error_type"].as_str()),
        (503, Some("not_ready"))
    );
    s.stop().await;
}

/// (path, content type, body, expected status, expected error_type).
type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);

/// Sends raw bytes and returns (status, JSON body).
async fn raw(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut req = s.client.request(method, s.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        ct.as_deref(),
        Some("application/json"),
        "{path}: non-JSON error ({status})"
    );
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_errors_and_the_server_keeps_serving() {
    let mut config = psr_reward::config::Config::default();
    config.limits.max_body_bytes = 256 * 1024;
    config.limits.max_image_bytes = 128 * 1024;
    config.limits.max_items_per_request = 4;
    config.limits.max_image_pixels = 1_000_000;
    let s = TestServer::start_with(default_manifest(), config).await;
    let post = reqwest::Method::POST;
    let json_ct = Some("application/json");
    let red = solid_b64(16, 16, [255, 0, 0]);
    let png_bytes = png(&image::RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3])));
    // Decompression bombs: a few kilobytes that decode to more pixels than allowed.
    let wide = png(&image::RgbImage::new(10_000, 1));
    let bomb = png(&image::RgbImage::new(2_000, 1_000));
    assert!(bomb.len() < 64 * 1024);
    let nested = "[".repeat(10_000) + &"]".repeat(10_000);

    let cases: Vec<Case> = vec![
        (
            "/v1/embed",
            json_ct,
            b"{not json".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "/v1/embed",
            json_ct,
            vec![0xff, 0xfe, b'{'],
            400,
            "invalid_json",
        ),
        // Deep nesting is refused at the first level, without recursion.
        (
            "/v1/embed",
            json_ct,
            nested.into_bytes(),
            422,
            "invalid_request",
        ),
        (
            "/v1/embed",
            None,
            b"{}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "/v1/embed",
            Some("text/plain"),
            b"{}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        ("/v1/embed", json_ct, b"{}".to_vec(), 422, "invalid_request"),
        (
            "/v1/embed",
            json_ct,
            br#"{"images": "x"}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "/v1/embed",
            json_ct,
            br#"{"images": [1]}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "/v1/embed",
            json_ct,
            br#"{"images": [], "extra": 1}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "/v1/embed",
            json_ct,
            br#"{"images": []}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "/v1/embed",
            json_ct,
            json!({"images": vec![red.clone(); 5]})
                .to_string()
                .into_bytes(),
            422,
            "invalid_request",
        ),
        (
            "/v1/embed",
            json_ct,
            json!({"images": ["%%%"]}).to_string().into_bytes(),
            422,
            "invalid_image",
        ),
        (
            "/v1/embed",
            json_ct,
            json!({"images": [b64(b"plain text")]})
                .to_string()
                .into_bytes(),
            422,
            "invalid_image",
        ),
        (
            "/v1/embed",
            json_ct,
            json!({"images": [b64(&png_bytes[..png_bytes.len() / 2])]})
                .to_string()
                .into_bytes(),
            422,
            "invalid_image",
        ),
        (
            "/v1/embed",
            json_ct,
            json!({"images": [b64(&bomb)]}).to_string().into_bytes(),
            413,
            "image_too_large",
        ),
        (
            "/v1/embed",
            json_ct,
            json!({"images": [b64(&wide)]}).to_string().into_bytes(),
            413,
            "image_too_large",
        ),
        (
            "/v1/embed",
            json_ct,
            json!({"images": [b64(&vec![0u8; 150 * 1024])]})
                .to_string()
                .into_bytes(),
            413,
            "image_too_large",
        ),
        (
            "/v1/embed",
            json_ct,
            vec![b' '; 300 * 1024],
            413,
            "payload_too_large",
        ),
        (
            "/v1/embed",
            json_ct,
            json!({"images": [red], "priority": 9})
                .to_string()
                .into_bytes(),
            422,
            "invalid_request",
        ),
        (
            "/v1/embed",
            json_ct,
            json!({"images": [red], "timeout_ms": 0})
                .to_string()
                .into_bytes(),
            422,
            "invalid_request",
        ),
        (
            "/v1/detect",
            json_ct,
            json!({"images": [red], "phrases": []})
                .to_string()
                .into_bytes(),
            422,
            "invalid_request",
        ),
        (
            "/v1/detect",
            json_ct,
            json!({"images": [red], "phrases": ["  "]})
                .to_string()
                .into_bytes(),
            422,
            "invalid_request",
        ),
        (
            "/v1/detect",
            json_ct,
            json!({"images": [red], "phrases": ["red ".repeat(300)]})
                .to_string()
                .into_bytes(),
            422,
            "invalid_request",
        ),
        (
            "/v1/detect",
            json_ct,
            json!({"images": [red], "phrases": ["red"], "box_threshold": 2.0})
                .to_string()
                .into_bytes(),
            422,
            "invalid_request",
        ),
        ("/v2/nothing", json_ct, b"{}".to_vec(), 404, "not_found"),
    ];
    for (path, ct, body, status, kind) in cases {
        let label = String::from_utf8_lossy(&body[..body.len().min(40)]).to_string();
        let (got, json) = raw(&s, post.clone(), path, ct, body).await;
        assert_eq!(
            (got, json["error_type"].as_str()),
            (status, Some(kind)),
            "{path} {label}: {json}"
        );
        assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let (got, json) = raw(&s, reqwest::Method::GET, "/v1/embed", None, Vec::new()).await;
    assert_eq!(
        (got, json["error_type"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (got, json) = raw(&s, reqwest::Method::DELETE, "/health", None, Vec::new()).await;
    assert_eq!(
        (got, json["error_type"].as_str()),
        (405, Some("method_not_allowed"))
    );

    // Still serving real work.
    let (status, _, body) = s
        .post(
            "/v1/embed",
            &json!({"images": [solid_b64(16, 16, [255, 0, 0])]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dimensions"], 384);
    s.stop().await;
}
