//! The gRPC API end to end: the real gRPC router on a loopback port over the state of a real
//! HTTP server (fixture models), called with a tonic client: results equal the HTTP routes'
//! for the same images, streaming, cancellation of a stream's queued work, and the copy-paste
//! guard's overrides and findings.

mod common;
mod copy_paste;

use common::grpc::*;
use common::*;
use copy_paste::scenes;
use psr_reward::config::Config;
use psr_reward::server::grpc::pb;
use serde_json::{json, Value};

fn close(a: f64, b: &Value) -> bool {
    (a - b.as_f64().unwrap()).abs() < 1e-9
}

/// Asserts that a gRPC item reward says what the HTTP route's JSON says.
fn assert_same(g: &pb::ItemReward, h: &Value) {
    assert!(close(g.reward.unwrap(), &h["reward"]), "{g:?} vs {h}");
    let c = g.components.as_ref().unwrap();
    let sc = c.subject_consistency.as_ref().unwrap();
    let hsc = &h["components"]["subject_consistency"];
    assert!(
        close(sc.score, &hsc["score"]) && close(sc.raw, &hsc["raw"]),
        "{h}"
    );
    for (s, hs) in sc.subjects.iter().zip(hsc["subjects"].as_array().unwrap()) {
        assert_eq!(s.name, hs["name"]);
        assert!(close(s.similarity, &hs["similarity"]));
        assert_eq!(s.detected, hs["detected"]);
        let b = s.r#box.as_ref().unwrap();
        assert_eq!(json!([b.x1, b.y1, b.x2, b.y2]), hs["box"]);
        assert_eq!(s.reference, hs["reference"]);
    }
    let a = c.aesthetic.as_ref().unwrap();
    let ha = &h["components"]["aesthetic"];
    assert!(close(a.score, &ha["score"]) && close(a.raw, &ha["raw"]));
    assert_eq!(a.source, ha["source"]);
    let p = c.position.as_ref().unwrap();
    let hp = &h["components"]["position"];
    assert!(close(p.score.unwrap(), &hp["score"]) && close(p.raw.unwrap(), &hp["raw"]));
    assert_eq!(p.relation.as_deref(), hp["relation"].as_str());
    assert_eq!(g.errors.len(), h["errors"].as_object().unwrap().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_results_equal_the_http_routes() {
    let s = TestServer::start().await;
    let g = GrpcServer::start(&s.state).await;
    let mut client = g.client();

    let reply = client
        .reward(pb::RewardRequest {
            items: vec![grpc_item(0), grpc_item(40)],
            rewards: weights(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (status, _, http) = s
        .post(
            "/v1/reward",
            &json!({"items": [http_item(0), http_item(40)], "rewards": {"subject_consistency": 0.4, "aesthetic": 0.2, "position": 0.4}}),
        )
        .await;
    assert_eq!(status, 200, "{http}");
    assert_eq!(reply.results.len(), 2);
    for (g, h) in reply
        .results
        .iter()
        .zip(http["results"].as_array().unwrap())
    {
        assert_same(g, h);
    }
    let options = reply.options.unwrap();
    assert_eq!(options.clamp_boxes, Some(false));
    assert_eq!(options.matching(), pb::Matching::Psr);
    assert_eq!(options.batching(), pb::DetectorBatching::EqualShapes);
    assert_eq!(http["options"]["batching"], "equal_shapes");

    // Detect and embed: the same numbers as the HTTP routes.
    let (scene, red, _) = images(0);
    let detect = client
        .detect(pb::DetectRequest {
            images: vec![scene.clone()],
            phrases: vec!["red".into(), "blue".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (status, _, hd) = s
        .post(
            "/v1/detect",
            &json!({"images": [b64(&scene)], "phrases": ["red", "blue"]}),
        )
        .await;
    assert_eq!(status, 200, "{hd}");
    assert_eq!(detect.model, hd["model"]);
    let phrases = &detect.results[0].phrases;
    assert_eq!(phrases.len(), 2);
    for (p, hp) in phrases
        .iter()
        .zip(hd["results"][0]["phrases"].as_array().unwrap())
    {
        assert_eq!(p.caption, hp["caption"]);
        let hdet = hp["detections"].as_array().unwrap();
        assert!(!hdet.is_empty());
        assert_eq!(p.detections.len(), hdet.len());
        let b = p.detections[0].r#box.as_ref().unwrap();
        // JSON carries the f32 in its shortest form: read it back as f32.
        let hb: Vec<f32> = as_f64s(&hdet[0]["box"]).iter().map(|v| *v as f32).collect();
        assert_eq!([b.x1, b.y1, b.x2, b.y2].to_vec(), hb);
    }
    let embed = client
        .embed(pb::EmbedRequest {
            images: vec![red.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (status, _, he) = s.post("/v1/embed", &json!({"images": [b64(&red)]})).await;
    assert_eq!(status, 200, "{he}");
    let values = &embed.embeddings[0].values;
    let http_values: Vec<f32> = as_f64s(&he["embeddings"][0])
        .iter()
        .map(|v| *v as f32)
        .collect();
    assert_eq!(values, &http_values);
    assert_eq!(embed.dimensions as usize, values.len());

    let info = client.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert!(info.ready);
    assert_eq!(info.models.len(), 3);
    let limits = info.limits.unwrap();
    assert_eq!(
        limits.max_items_per_request as usize,
        Config::default().limits.max_items_per_request
    );
    let doc: Value = serde_json::from_str(&info.info_json).unwrap();
    assert_eq!(doc["name"], "psr-reward");

    // One count per RPC under its method, beside the HTTP routes.
    let reward_ok =
        r#"psr_reward_requests_total{route="/psr_reward.v1.RewardService/Reward",status="OK"}"#;
    assert_eq!(s.metric(reward_ok).await, 1.0);
    g.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_sends_every_item_once_in_completion_order() {
    let s = TestServer::start().await;
    let g = GrpcServer::start(&s.state).await;
    let mut client = g.client();
    let shifts = [0, 10, 20, 30, 40, 50];
    let items: Vec<_> = shifts.iter().map(|&k| grpc_item(k)).collect();
    let unary = client
        .reward(pb::RewardRequest {
            items: items.clone(),
            rewards: weights(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = client
        .stream_rewards(pb::StreamRewardsRequest {
            items,
            rewards: weights(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    let mut last_elapsed = 0.0;
    while let Some(msg) = stream.message().await.unwrap() {
        assert!(msg.elapsed_ms >= last_elapsed, "not in completion order");
        last_elapsed = msg.elapsed_ms;
        let i = msg.index as usize;
        let (got, want) = (msg.result.unwrap(), &unary.results[i]);
        assert!(
            (got.reward.unwrap() - want.reward.unwrap()).abs() < 1e-6,
            "item {i}"
        );
        let sc = |r: &pb::ItemReward| {
            r.components
                .as_ref()
                .unwrap()
                .subject_consistency
                .clone()
                .unwrap()
        };
        assert!((sc(&got).raw - sc(want).raw).abs() < 1e-6);
        assert_eq!(sc(&got).subjects[0].r#box, sc(want).subjects[0].r#box);
        assert_eq!(msg.options, unary.options);
        seen.push(i);
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..shifts.len()).collect::<Vec<_>>(),
        "every item exactly once"
    );
    let ok = r#"psr_reward_requests_total{route="/psr_reward.v1.RewardService/StreamRewards",status="OK"}"#;
    assert_eq!(s.metric(ok).await, 1.0);
    g.stop().await;
    s.stop().await;
}

/// The fixture models with an embedder that waits `delay_ms` for company.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_stream_drops_its_queued_work() {
    let s = TestServer::start_with(slow_embedder(1500), Config::default()).await;
    let g = GrpcServer::start(&s.state).await;
    let items_before = s.metric(EMBEDDER_ITEMS).await;
    let stream = g
        .client()
        .stream_rewards(pb::StreamRewardsRequest {
            items: vec![grpc_item(0), grpc_item(20), grpc_item(40)],
            rewards: weights(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The crops wait in the embedder's queue for company; then the client goes.
    let queued = wait_metric(&s, EMBEDDER_QUEUE, |v| v > 0.0).await;
    drop(stream);
    wait_metric(&s, EMBEDDER_DROPPED, |v| v >= queued).await;
    assert_eq!(
        s.metric(EMBEDDER_ITEMS).await,
        items_before,
        "dropped work reached the model"
    );
    let cancelled = r#"psr_reward_requests_total{route="/psr_reward.v1.RewardService/StreamRewards",status="CANCELLED"}"#;
    wait_metric(&s, cancelled, |v| v == 1.0).await;
    g.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_paste_overrides_and_findings_equal_the_http_routes() {
    let s = TestServer::start().await;
    let g = GrpcServer::start(&s.state).await;
    let mut client = g.client();
    let (reference_img, b) = scenes::drawn_top_left(&scenes::textured_red(0.0));
    let reference = png(&reference_img);
    // The reference's crop pasted elsewhere in another image: the guard's case.
    let crop = image::imageops::crop_imm(&reference_img, b[0], b[1], b[2] - b[0], b[3] - b[1]);
    let mut pasted_img = image::RgbImage::new(400, 400);
    image::imageops::replace(&mut pasted_img, &*crop, 210, 230);
    let pasted = png(&pasted_img);
    let request = |threshold: f64| pb::RewardRequest {
        items: vec![pb::RewardItem {
            image: pasted.clone(),
            subjects: vec![pb::Subject {
                name: "red".into(),
                reference: Some(pb::subject::Reference::ReferenceImage(reference.clone())),
            }],
            ..Default::default()
        }],
        rewards: [("subject_consistency".to_string(), 1.0)].into(),
        copy_paste: Some(pb::CopyPasteOptions {
            threshold: Some(threshold),
            penalty: Some(0.2),
        }),
        ..Default::default()
    };
    let http_body = |threshold: f64| {
        json!({"rewards": {"subject_consistency": 1.0},
            "copy_paste": {"threshold": threshold, "penalty": 0.2},
            "items": [{"image": b64(&pasted), "subjects": [{"name": "red", "reference": b64(&reference)}]}]})
    };

    let reply = client.reward(request(0.9)).await.unwrap().into_inner();
    let (status, _, http) = s.post("/v1/reward", &http_body(0.9)).await;
    assert_eq!(status, 200, "{http}");
    let (got, want) = (&reply.results[0], &http["results"][0]);
    assert_eq!(
        got.copy_paste_penalty,
        Some(0.2),
        "psr mode applies the asked penalty"
    );
    assert_eq!(want["copy_paste_penalty"], 0.2);
    assert!(close(got.reward.unwrap(), &want["reward"]));
    let subject = &got
        .components
        .as_ref()
        .unwrap()
        .subject_consistency
        .as_ref()
        .unwrap()
        .subjects[0];
    let finding = subject.copy_paste.as_ref().unwrap();
    let want_finding = &want["components"]["subject_consistency"]["subjects"][0]["copy_paste"];
    assert!(finding.suspected, "{finding:?}");
    assert_eq!(want_finding["suspected"], true);
    assert!(finding.score.unwrap() > 0.95, "{finding:?}");
    assert!(close(finding.score.unwrap(), &want_finding["score"]));

    // An override out of range is the HTTP route's error, as INVALID_ARGUMENT.
    let status = client.reward(request(2.0)).await.unwrap_err();
    let (http_status, _, http) = s.post("/v1/reward", &http_body(2.0)).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(http_status, 422, "{http}");
    assert_eq!(error_type(&status), http["error_type"].as_str().unwrap());
    assert!(
        status.message().contains("copy_paste.threshold"),
        "{status:?}"
    );
    g.stop().await;
    s.stop().await;
}
