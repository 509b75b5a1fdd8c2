//! `POST /v1/reward`, subject consistency: boxes, fallbacks, matching options, joint detection,
//! the reference cache and bad input, on the fixture models.

mod common;

use common::*;
use psr_reward::config::Config;
use serde_json::{json, Value};

fn shape_scene(w: u32, h: u32, rects: &[(u32, u32, u32, u32, [u8; 3])]) -> String {
    b64(&png(&scene(w, h, rects)))
}

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];

fn subjects(v: &Value) -> &Vec<Value> {
    v["components"]["subject_consistency"]["subjects"]
        .as_array()
        .unwrap()
}

async fn reward(s: &TestServer, body: Value) -> Value {
    let (status, _, out) = s.post("/v1/reward", &body).await;
    assert_eq!(status, 200, "{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subjects_boxes_and_scores() {
    let s = TestServer::start().await;
    let generated = shape_scene(
        400,
        400,
        &[(40, 30, 120, 100, RED), (250, 250, 350, 350, BLUE)],
    );
    // 400x400 images are resized exactly 2x for the detector, so box edges are exact pixels.
    let red_ref = shape_scene(400, 400, &[(20, 20, 80, 90, RED)]);
    let blue_ref = shape_scene(400, 400, &[(300, 300, 380, 360, BLUE)]);
    let out = reward(
        &s,
        json!({"rewards": {"subject_consistency": 1.0}, "items": [{"image": generated, "prompt": "a red and a blue square", "subjects": [
            {"name": "red", "reference": red_ref}, {"name": "blue", "reference": blue_ref}]}]}),
    )
    .await;
    let r = &out["results"][0];
    let subs = subjects(r);
    assert_eq!(subs[0]["box"], json!([40, 30, 120, 100]));
    // The scripts' float32 arithmetic: cx = 0.125, w = 0.15 (0.15000000596f32) on a width of
    // 400 gives x1 = 50 - 0.5 * 60.000004 = 19.999998, and int() truncates it to 19.
    assert_eq!(subs[0]["reference_box"], json!([19, 20, 80, 90]));
    assert_eq!(subs[1]["box"], json!([250, 250, 350, 350]));
    assert_eq!(subs[1]["reference_box"], json!([300, 300, 380, 360]));
    for sub in subs {
        assert_eq!(sub["detected"], true);
        assert_eq!(sub["fallback"], Value::Null);
        // Solid crops of the same colour embed identically.
        assert!(
            (sub["similarity"].as_f64().unwrap() - 1.0).abs() < 1e-5,
            "{sub}"
        );
        assert_eq!(sub["reference"].as_str().unwrap().len(), 32);
    }
    let score = r["components"]["subject_consistency"]["score"]
        .as_f64()
        .unwrap();
    assert_eq!(r["reward"].as_f64().unwrap(), score);
    assert_eq!(out["options"]["matching"], "psr");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_same_category_rule_and_rgba() {
    let s = TestServer::start().await;
    let red_ref = shape_scene(100, 100, &[(10, 10, 60, 60, RED)]);
    // Only one red shape: subject 2 of a same-category pair falls back to the whole image.
    let one_red = shape_scene(400, 400, &[(40, 30, 120, 100, RED)]);
    let out = reward(
        &s,
        json!({"items": [{"image": one_red, "subjects": [
        {"name": "red", "reference": red_ref}, {"name": "red", "reference": red_ref}]}]}),
    )
    .await;
    let subs = subjects(&out["results"][0]);
    assert_eq!(subs[0]["box"], json!([40, 30, 120, 100]));
    assert_eq!(
        (subs[1]["detected"].as_bool(), subs[1]["fallback"].as_str()),
        (Some(false), Some("not_detected"))
    );
    assert!(subs[1]["similarity"].as_f64().unwrap() < 0.99);
    // Two red shapes: boxes 0 and 1 in query order (top-left region first).
    let two_red = shape_scene(
        400,
        400,
        &[(250, 250, 350, 350, RED), (40, 30, 120, 100, RED)],
    );
    let out = reward(
        &s,
        json!({"items": [{"image": two_red, "subjects": [
        {"name": "red", "reference": red_ref}, {"name": "red", "reference": red_ref}]}]}),
    )
    .await;
    let subs = subjects(&out["results"][0]);
    assert_eq!(subs[0]["box"], json!([40, 30, 120, 100]));
    assert_eq!(subs[1]["box"], json!([250, 250, 350, 350]));
    // RGBA generated image: psr mode skips detection; robust mode composites and detects.
    let mut rgba = image::RgbaImage::from_pixel(400, 400, image::Rgba([0, 0, 0, 255]));
    for y in 30..100 {
        for x in 40..120 {
            rgba.put_pixel(x, y, image::Rgba([255, 0, 0, 255]));
        }
    }
    let mut bytes = Vec::new();
    rgba.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    let body = |mode: &str| json!({"mode": mode, "items": [{"image": b64(&bytes), "subjects": [{"name": "red", "reference": red_ref}]}]});
    let psr = reward(&s, body("psr")).await;
    assert_eq!(subjects(&psr["results"][0])[0]["fallback"], "non_rgb");
    assert_eq!(subjects(&psr["results"][0])[0]["fallback_mode"], "RGBA");
    assert_eq!(
        subjects(&psr["results"][0])[0]["reference_fallback_mode"],
        json!(null)
    );
    let robust = reward(&s, body("robust")).await;
    assert_eq!(
        subjects(&robust["results"][0])[0]["box"],
        json!([40, 30, 120, 100])
    );
    // A colour absent from the generated image.
    let out = reward(&s, json!({"items": [{"image": shape_scene(64, 64, &[]), "subjects": [{"name": "green", "reference": red_ref}]}]})).await;
    let sub = &subjects(&out["results"][0])[0];
    assert_eq!(
        (sub["fallback"].as_str(), sub["reference_fallback"].as_str()),
        (Some("not_detected"), Some("not_detected"))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignment_matches_instances_by_similarity() {
    let s = TestServer::start().await;
    // Two red shapes; the second, like the reference, has a darker right half (still red to
    // the detector: squared distance (55/255)^2 < 0.1), so its crop embeds closer.
    const DARK: [u8; 3] = [200, 0, 0];
    let generated = shape_scene(
        400,
        400,
        &[
            (40, 30, 120, 100, RED),
            (250, 250, 300, 350, RED),
            (300, 250, 350, 350, DARK),
        ],
    );
    let reference = shape_scene(
        400,
        400,
        &[(100, 100, 150, 200, RED), (150, 100, 200, 200, DARK)],
    );
    let body = |matching: &str| json!({"options": {"matching": matching}, "items": [{"image": generated, "subjects": [{"name": "red", "reference": reference}]}]});
    let psr = reward(&s, body("psr")).await;
    assert_eq!(
        subjects(&psr["results"][0])[0]["box"],
        json!([40, 30, 120, 100])
    );
    let assigned = reward(&s, body("assignment")).await;
    let chosen = &subjects(&assigned["results"][0])[0];
    // The second shape (its dark right edge blends below the colour threshold when resized,
    // so the box ends one pixel short).
    assert_eq!(chosen["box"], json!([250, 250, 349, 350]));
    let sim = |v: &Value| {
        subjects(&v["results"][0])[0]["similarity"]
            .as_f64()
            .unwrap()
    };
    assert!(
        sim(&assigned) > sim(&psr),
        "assignment must pick the more similar instance"
    );
    assert_eq!(assigned["options"]["matching"], "assignment");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joint_detection_picks_the_same_boxes_in_one_pass() {
    let s = TestServer::start().await;
    let generated = shape_scene(
        400,
        400,
        &[(40, 30, 120, 100, RED), (250, 250, 350, 350, BLUE)],
    );
    let red_ref = shape_scene(100, 100, &[(10, 10, 60, 60, RED)]);
    let blue_ref = shape_scene(100, 100, &[(10, 10, 60, 60, BLUE)]);
    let items = json!([{"image": generated, "subjects": [{"name": "red", "reference": red_ref}, {"name": "blue", "reference": blue_ref}]}]);
    let per = reward(&s, json!({"items": items})).await;
    let executions = r#"psr_reward_inference_items_total{model="fixture-detector"}"#;
    let before = s.metric(executions).await;
    let joint = reward(
        &s,
        json!({"items": items, "options": {"detection": "joint"}}),
    )
    .await;
    // References are cached now: the joint request runs exactly one detector item.
    assert_eq!(s.metric(executions).await - before, 1.0);
    for k in 0..2 {
        assert_eq!(
            subjects(&per["results"][0])[k]["box"],
            subjects(&joint["results"][0])[k]["box"]
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_cache_hits_named_refs_and_eviction() {
    let mut config = Config::default();
    // Room for two entries of the 384-d fixture embedder (1.5 KiB of embedding and the
    // copy-paste guard's 3 KiB thumbnail each), not three.
    config.rewards.reference_cache_bytes = 10_000;
    let s = TestServer::start_with(default_manifest(), config).await;
    let generated = shape_scene(400, 400, &[(40, 30, 120, 100, RED)]);
    let red_ref = shape_scene(100, 100, &[(10, 10, 60, 60, RED)]);
    let hits = "psr_reward_reference_cache_hits_total";
    let misses = "psr_reward_reference_cache_misses_total";
    let det_items = r#"psr_reward_inference_items_total{model="fixture-detector"}"#;
    let body = json!({"items": [{"image": generated, "subjects": [{"name": "red", "reference": red_ref}]}]});
    let first = reward(&s, body.clone()).await;
    assert_eq!((s.metric(hits).await, s.metric(misses).await), (0.0, 1.0));
    let d0 = s.metric(det_items).await;
    let second = reward(&s, body).await;
    assert_eq!(s.metric(hits).await, 1.0);
    // Only the generated image was detected the second time.
    assert_eq!(s.metric(det_items).await - d0, 1.0);
    assert_eq!(first["results"][0], second["results"][0]);
    let hash = subjects(&first["results"][0])[0]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    let by_ref = reward(&s, json!({"items": [{"image": generated, "subjects": [{"name": "red", "reference": {"ref": hash}}]}]})).await;
    assert_eq!(by_ref["results"][0], first["results"][0]);
    // Two other references push the first one out.
    for c in [[0, 255, 0], [0, 0, 255]] {
        let other = shape_scene(100, 100, &[(10, 10, 60, 60, c)]);
        reward(&s, json!({"items": [{"image": generated, "subjects": [{"name": "red", "reference": other}]}]})).await;
    }
    assert!(s.metric("psr_reward_reference_cache_evictions_total").await >= 1.0);
    let (status, _, err) = s
        .post("/v1/reward", &json!({"items": [{"image": generated, "subjects": [{"name": "red", "reference": {"ref": hash}}]}]}))
        .await;
    assert_eq!(
        (status, err["error_type"].as_str()),
        (422, Some("unknown_reference")),
        "{err}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reward_requests_are_422_naming_the_field() {
    let s = TestServer::start().await;
    let img = shape_scene(32, 32, &[]);
    let sub = json!({"name": "red", "reference": img});
    let item = |subjects: Value| json!({"image": img, "subjects": subjects});
    let cases = vec![
        (json!({"items": []}), "items"),
        (json!({"items": [item(json!([]))]}), "items[0].subjects"),
        (
            json!({"items": [item(json!([sub, sub, sub, sub, sub]))]}),
            "items[0].subjects",
        ),
        (
            json!({"items": [item(json!([{"name": " ", "reference": img}]))]}),
            "items[0].subjects[0].name",
        ),
        (
            json!({"items": [item(json!([{"name": "red"}]))]}),
            "reference",
        ),
        (
            json!({"items": [item(json!([{"name": "red ".repeat(300), "reference": img}]))]}),
            "items[0].subjects[0].name",
        ),
        (
            json!({"items": [item(json!([sub]))], "rewards": {"beauty": 1.0}}),
            "rewards.beauty",
        ),
        (
            json!({"items": [item(json!([sub]))], "rewards": {"semantic_alignment": 0.4}}),
            "rewards.semantic_alignment",
        ),
        (
            json!({"items": [item(json!([sub]))], "rewards": {"subject_consistency": -1.0}}),
            "rewards.subject_consistency",
        ),
        (
            json!({"items": [item(json!([sub]))], "rewards": {"subject_consistency": 0.0}}),
            "rewards",
        ),
        (
            json!({"items": [{"image": img, "subjects": [sub], "task": "dance"}]}),
            "items[0].task",
        ),
        (
            json!({"items": [item(json!([sub]))], "mode": "fast"}),
            "mode",
        ),
        (
            json!({"items": [item(json!([{"name": "red", "reference": "@@@"}]))]}),
            "items[0].subjects[0].reference",
        ),
    ];
    for (body, field) in cases {
        let (status, _, out) = s.post("/v1/reward", &body).await;
        assert_eq!(status, 422, "{field}: {out}");
        let msg = out["error"].as_str().unwrap();
        assert!(
            msg.contains(field) || msg.contains("reference"),
            "{field} not named in {msg}"
        );
    }
    // Grey and palette references are accepted (treated as non-RGB in psr mode).
    let grey = image::GrayImage::from_pixel(40, 40, image::Luma([90]));
    let mut bytes = Vec::new();
    grey.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    let out = reward(
        &s,
        json!({"items": [item(json!([{"name": "red", "reference": b64(&bytes)}]))]}),
    )
    .await;
    assert_eq!(
        subjects(&out["results"][0])[0]["reference_fallback"],
        "non_rgb"
    );
    assert_eq!(
        subjects(&out["results"][0])[0]["reference_fallback_mode"],
        "L"
    );
    // A 1x1 image is scored (whole-image fallback), not refused.
    let tiny = shape_scene(1, 1, &[]);
    let out = reward(
        &s,
        json!({"items": [{"image": tiny, "subjects": [{"name": "red", "reference": tiny}]}]}),
    )
    .await;
    assert!(out["results"][0]["reward"].as_f64().is_some());
    s.stop().await;
}
