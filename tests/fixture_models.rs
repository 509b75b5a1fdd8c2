//! Exact, hand-checkable outputs of each fixture model through the real runtime and the real
//! preprocessing (see tests/fixtures/README.md for the designs).

mod common;

use std::time::{Duration, Instant};

use common::*;
use psr_reward::batcher::SubmitOptions;
use psr_reward::imaging::resize::Resizer;
use psr_reward::imaging::TensorPool;
use serde_json::json;

/// 64 copies each of r, g, b, 1-r, 1-g, 1-b: the fixture embedder on a solid colour.
fn solid_embedding(c: [u8; 3]) -> Vec<f64> {
    let f: Vec<f64> = c.iter().map(|&v| f64::from(v) / 255.0).collect();
    [f[0], f[1], f[2], 1.0 - f[0], 1.0 - f[1], 1.0 - f[2]]
        .iter()
        .flat_map(|&v| std::iter::repeat_n(v, 64))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedder_outputs_colour_layouts() {
    let s = TestServer::start().await;
    let colours = [[255, 0, 0], [0, 0, 255], [255, 255, 0], [255, 0, 0]];
    let images: Vec<String> = colours
        .iter()
        .enumerate()
        .map(|(i, &c)| solid_b64(300 + 10 * i as u32, 256, c))
        .collect();
    let (status, headers, body) = s.post("/v1/embed", &json!({ "images": images })).await;
    assert_eq!(status, 200, "{body}");
    for h in [
        "x-total-time",
        "x-queue-time",
        "x-inference-time",
        "x-preprocess-time",
    ] {
        assert!(headers.contains_key(h), "{h} missing");
    }
    assert_eq!(body["model"], "fixture-embedder");
    let e: Vec<Vec<f64>> = body["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(as_f64s)
        .collect();
    for (emb, &c) in e.iter().zip(&colours) {
        let want = solid_embedding(c);
        let max_err = emb
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(max_err < 1e-5, "colour {c:?}: max error {max_err}");
    }
    assert!((cosine(&e[0], &e[3]) - 1.0).abs() < 1e-6);
    assert!((cosine(&e[0], &e[1]) - 1.0 / 3.0).abs() < 1e-6);
    assert!((cosine(&e[0], &e[2]) - 2.0 / 3.0).abs() < 1e-6);
    s.stop().await;
}

/// 400x400 scene: resized exactly 2x to 800x800, so shape edges map to exact pixels.
fn two_shapes() -> String {
    b64(&png(&scene(
        400,
        400,
        &[
            (40, 30, 120, 100, [255, 0, 0]),
            (250, 250, 350, 350, [0, 0, 255]),
        ],
    )))
}

fn boxes(phrase: &serde_json::Value) -> Vec<(u64, Vec<f64>)> {
    phrase["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["query"].as_u64().unwrap(), as_f64s(&d["box"])))
        .collect()
}

fn assert_box(got: &[f64], want: [f64; 4]) {
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-3, "box {got:?} != {want:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detector_finds_named_colours_with_exact_boxes() {
    let s = TestServer::start().await;
    let body = json!({"images": [two_shapes()], "phrases": ["red", "Blue", "green", "red square"]});
    let (status, _, out) = s.post("/v1/detect", &body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["box_threshold"].as_f64(), Some(0.35));
    let img = &out["results"][0];
    assert_eq!(
        (img["width"].as_u64(), img["height"].as_u64()),
        (Some(400), Some(400))
    );
    let p = img["phrases"].as_array().unwrap();
    assert_eq!(p[0]["caption"], "red.");
    assert_eq!(p[1]["caption"], "blue.");
    // red: colour 0, top-left region 0 -> query 0.
    let red = boxes(&p[0]);
    assert_eq!(red.len(), 1);
    assert_eq!(red[0].0, 0);
    assert_box(&red[0].1, [40.0, 30.0, 120.0, 100.0]);
    // blue: colour 2, bottom-right region 3 -> query 11.
    let blue = boxes(&p[1]);
    assert_eq!(blue.len(), 1);
    assert_eq!(blue[0].0, 11);
    assert_box(&blue[0].1, [250.0, 250.0, 350.0, 350.0]);
    assert!(boxes(&p[2]).is_empty(), "green must not be found");
    assert_eq!(boxes(&p[3]).len(), 1);
    let score = p[0]["detections"][0]["score"].as_f64().unwrap();
    assert!((score - 1.0 / (1.0 + (-8.0f64).exp())).abs() < 1e-6);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_colour_twice_gives_two_queries_in_region_order() {
    let s = TestServer::start().await;
    let img = b64(&png(&scene(
        400,
        400,
        &[
            (220, 300, 300, 380, [255, 0, 0]),
            (10, 10, 50, 60, [255, 0, 0]),
        ],
    )));
    let (status, _, out) = s
        .post("/v1/detect", &json!({"images": [img], "phrases": ["red"]}))
        .await;
    assert_eq!(status, 200, "{out}");
    let red = boxes(&out["results"][0]["phrases"][0]);
    assert_eq!(red.iter().map(|d| d.0).collect::<Vec<_>>(), vec![0, 3]);
    assert_box(&red[0].1, [10.0, 10.0, 50.0, 60.0]);
    assert_box(&red[1].1, [220.0, 300.0, 300.0, 380.0]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_of_different_sizes_are_padded_into_one_batch() {
    let s = TestServer::start().await;
    let square = two_shapes();
    // 600x400 -> 1200x800 (exactly 2x): padded with the 800x800 one.
    let wide = b64(&png(&scene(600, 400, &[(420, 40, 560, 120, [0, 0, 255])])));
    let phrases = json!(["red", "blue"]);
    let executions = r#"psr_reward_batch_executions_total{model="fixture-detector"}"#;
    let before = s.metric(executions).await;
    let (status, _, both) = s
        .post(
            "/v1/detect",
            &json!({"images": [square, wide], "phrases": phrases, "batching": "padded"}),
        )
        .await;
    assert_eq!(status, 200, "{both}");
    assert_eq!(
        s.metric(executions).await - before,
        1.0,
        "4 items must leave as one padded batch"
    );
    let (_, _, alone) = s
        .post("/v1/detect", &json!({"images": [wide], "phrases": phrases}))
        .await;
    assert_eq!(both["results"][1], alone["results"][0]);
    // By default (equal shapes) the two sizes never share a batch: at least two executions.
    let before = s.metric(executions).await;
    let (status, _, unpadded) = s
        .post(
            "/v1/detect",
            &json!({"images": [square, wide], "phrases": phrases}),
        )
        .await;
    assert_eq!(status, 200, "{unpadded}");
    assert!(s.metric(executions).await - before >= 2.0);
    assert_eq!(unpadded["results"], both["results"]);
    let blue = boxes(&both["results"][1]["phrases"][1]);
    assert_eq!(blue[0].0, 9); // colour 2, top-right region 1
    assert_box(&blue[0].1, [420.0, 40.0, 560.0, 120.0]);
    assert!(boxes(&both["results"][1]["phrases"][0]).is_empty());
    assert_box(
        &boxes(&both["results"][0]["phrases"][0])[0].1,
        [40.0, 30.0, 120.0, 100.0],
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aesthetic_scores_mean_chroma_times_ten() {
    let s = TestServer::start().await;
    let models = s.state.loaded_models().unwrap().clone();
    let lane = models.aesthetic.as_ref().unwrap();
    let pool = TensorPool::new();
    let mut half = image::RgbImage::from_pixel(224, 224, image::Rgb([255, 255, 255]));
    for y in 0..224 {
        for x in 0..112 {
            half.put_pixel(x, y, image::Rgb([255, 0, 0]));
        }
    }
    let images = [
        image::RgbImage::from_pixel(224, 224, image::Rgb([255, 0, 0])),
        image::RgbImage::from_pixel(300, 224, image::Rgb([128, 128, 128])),
        half,
    ];
    let tensors = images
        .iter()
        .map(|img| {
            lane.preprocess
                .run(img, &mut Resizer::new(), &mut Vec::new(), &pool)
                .unwrap()
        })
        .collect();
    let opts = SubmitOptions {
        priority: 0,
        deadline: Instant::now() + Duration::from_secs(30),
    };
    let mut scores = Vec::new();
    for t in lane.batcher.submit(tensors, opts).unwrap() {
        scores.push(t.await.unwrap().unwrap().output.unwrap());
    }
    let want = [10.0, 0.0, 5.0];
    for (got, want) in scores.iter().zip(want) {
        assert_eq!(got.len(), 1);
        assert!((got[0] - want).abs() < 1e-4, "score {got:?} != {want}");
    }
    s.stop().await;
}
