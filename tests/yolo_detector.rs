//! The closed-set YOLO adapter (Ultralytics export layout) on the fixture `yolo.onnx`:
//! letterboxing, un-letterboxed boxes, class names, NMS output order, and one detector pass
//! per image in the reward.

mod common;

use common::*;
use psr_reward::config::Config;
use psr_reward::models::manifest::{DetectorSpec, Manifest};
use serde_json::{json, Value};

fn yolo_manifest() -> Manifest {
    let mut m = default_manifest();
    let spec: DetectorSpec = toml::from_str(&format!(
        r#"
name = "fixture-yolo"
kind = "yolo"
path = "{}"
classes = ["red", "green", "blue", "yellow", "cyan", "magenta"]
box_threshold = 0.25
iou_threshold = 0.45
preprocess = {{ resize = {{ rule = "letterbox", size = 640, fill = 114 }}, filter = "bilinear", normalize = "unit" }}
batching = {{ max_batch_size = 8, max_queue_delay_ms = 0, queue_capacity = 4096 }}
"#,
        fixtures_dir().join("yolo.onnx").display()
    ))
    .unwrap();
    m.detector = Some(spec);
    m
}

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yolo_boxes_are_mapped_back_through_the_letterbox() {
    let s = TestServer::start_with(yolo_manifest(), Config::default()).await;
    // 320x160 -> gain 2 -> 640x320, padded by 160 rows at the top.
    let img = b64(&png(&scene(
        320,
        160,
        &[(20, 15, 60, 50, RED), (200, 100, 300, 150, BLUE)],
    )));
    let (status, _, out) = s
        .post(
            "/v1/detect",
            &json!({"images": [img], "phrases": ["red", "Blue", "green"]}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let phrases = out["results"][0]["phrases"].as_array().unwrap();
    let boxes = |p: &Value| -> Vec<Vec<f64>> {
        p["detections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| as_f64s(&d["box"]))
            .collect()
    };
    assert_eq!(boxes(&phrases[0]), vec![vec![20.0, 15.0, 60.0, 50.0]]);
    assert_eq!(boxes(&phrases[1]), vec![vec![200.0, 100.0, 300.0, 150.0]]);
    assert!(boxes(&phrases[2]).is_empty());
    assert!((phrases[0]["detections"][0]["score"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    // A category the detector does not know is refused, naming the phrase.
    let (status, _, err) = s
        .post(
            "/v1/detect",
            &json!({"images": [img], "phrases": ["red", "cat"]}),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("phrases[1]"),
        "{err}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yolo_reward_detects_each_image_once() {
    let s = TestServer::start_with(yolo_manifest(), Config::default()).await;
    let generated = b64(&png(&scene(
        320,
        320,
        &[(20, 15, 60, 50, RED), (200, 200, 300, 300, BLUE)],
    )));
    let red_ref = b64(&png(&scene(320, 320, &[(100, 100, 150, 140, RED)])));
    let blue_ref = b64(&png(&scene(320, 320, &[(10, 200, 90, 300, BLUE)])));
    let items = r#"psr_reward_inference_items_total{model="fixture-yolo"}"#;
    let before = s.metric(items).await;
    let (status, _, out) = s
        .post(
            "/v1/reward",
            &json!({"items": [{"image": generated, "subjects": [
            {"name": "red", "reference": red_ref}, {"name": "blue", "reference": blue_ref}]}]}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    // One pass for the generated image (both classes), one per reference.
    assert_eq!(s.metric(items).await - before, 3.0);
    let subs = out["results"][0]["components"]["subject_consistency"]["subjects"]
        .as_array()
        .unwrap();
    assert_eq!(subs[0]["box"], json!([20, 15, 60, 50]));
    assert_eq!(subs[0]["reference_box"], json!([100, 100, 150, 140]));
    assert_eq!(subs[1]["box"], json!([200, 200, 300, 300]));
    assert_eq!(subs[1]["reference_box"], json!([10, 200, 90, 300]));
    s.stop().await;
}
