//! Batching must not change a reward (issue 19): `psr` mode never pads a detector item into a
//! batch of larger images or longer captions unless the manifest marks the detector's padding
//! neutral, `robust` mode may, and the same request gives the same reward alone and under
//! concurrent mixed load. Observed through `psr_reward_detector_padded_items_total`, which the
//! detector's batch assembly counts, so a psr item that were ever padded would fail here.

mod common;

use common::*;
use futures_util::future::join_all;
use psr_reward::models::manifest::Manifest;
use serde_json::{json, Value};

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const PADDED: &str = "psr_reward_detector_padded_items_total{model=\"fixture-detector\"}";

/// The fixture models with a detector lane that waits long enough to gather every
/// concurrent request into its batches.
fn gathering_manifest(padding_neutral: bool) -> Manifest {
    let mut m = default_manifest();
    let d = m.detector.as_mut().unwrap();
    d.batching.max_queue_delay_ms = 300;
    d.batching.max_batch_size = 32;
    d.padding_neutral = padding_neutral;
    m
}

/// A two-subject item whose generated image is `w`×`h` (its own aspect ratio: its own
/// detector input shape) with both squares, against references of other shapes.
fn item(w: u32, h: u32) -> Value {
    let generated = scene(
        w,
        h,
        &[
            (10, 10, 60, 60, RED),
            (w - 70, h - 70, w - 10, h - 10, BLUE),
        ],
    );
    json!({"image": b64(&png(&generated)), "subjects": [
        {"name": "red", "reference": b64(&png(&scene(90, 70, &[(5, 5, 60, 50, RED)])))},
        {"name": "blue", "reference": b64(&png(&scene(70, 120, &[(10, 20, 50, 90, BLUE)])))}]})
}

fn body(mode: &str, items: Vec<Value>) -> Value {
    json!({"mode": mode, "rewards": {"subject_consistency": 1.0}, "items": items})
}

/// Sends every body at once; the rewards of each, in order.
async fn concurrently(s: &TestServer, bodies: &[Value]) -> Vec<Vec<f64>> {
    let answers = join_all(bodies.iter().map(|b| s.post("/v1/reward", b))).await;
    answers
        .into_iter()
        .map(|(status, _, out)| {
            assert_eq!(status, 200, "{out}");
            out["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["reward"].as_f64().unwrap())
                .collect()
        })
        .collect()
}

const SIZES: [(u32, u32); 4] = [(200, 200), (240, 200), (200, 260), (300, 180)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psr_requests_are_never_padded_and_robust_requests_are() {
    let s = TestServer::start_with(gathering_manifest(false), Default::default()).await;
    let psr: Vec<Value> = SIZES
        .iter()
        .map(|&(w, h)| body("psr", vec![item(w, h)]))
        .collect();
    let before = s.metric(PADDED).await;
    let rewards = concurrently(&s, &psr).await;
    assert_eq!(s.metric(PADDED).await, before, "a psr item was padded");
    assert!(rewards.iter().flatten().all(|r| *r > 0.99), "{rewards:?}");

    // The same load in robust mode shares padded batches: the counter can move.
    let robust: Vec<Value> = SIZES
        .iter()
        .map(|&(w, h)| body("robust", vec![item(w, h)]))
        .collect();
    concurrently(&s, &robust).await;
    let padded = s.metric(PADDED).await - before;
    assert!(
        padded >= 3.0,
        "robust items of four shapes in one gathering window: {padded} padded"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detector_marked_padding_neutral_pads_psr_requests_too() {
    let s = TestServer::start_with(gathering_manifest(true), Default::default()).await;
    let psr: Vec<Value> = SIZES
        .iter()
        .map(|&(w, h)| body("psr", vec![item(w, h)]))
        .collect();
    concurrently(&s, &psr).await;
    assert!(s.metric(PADDED).await >= 3.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reward_alone_equals_the_same_reward_under_concurrent_mixed_load() {
    let s = TestServer::start_with(gathering_manifest(false), Default::default()).await;
    let probe = body("psr", vec![item(220, 200)]);
    let alone = concurrently(&s, std::slice::from_ref(&probe)).await[0][0];

    // The probe again, among psr and robust requests of other shapes and a psr request of
    // the probe's own shape (which may share its batch, unpadded).
    let mut load = vec![
        probe.clone(),
        body("psr", vec![item(220, 200), item(200, 200)]),
    ];
    load.extend(SIZES.iter().map(|&(w, h)| body("robust", vec![item(w, h)])));
    load.extend(SIZES.iter().map(|&(w, h)| body("psr", vec![item(w, h)])));
    let before = s.metric(PADDED).await;
    let loaded = concurrently(&s, &load).await[0][0];
    assert!(
        s.metric(PADDED).await > before,
        "the load did pad its robust items"
    );
    assert!(
        (alone - loaded).abs() < 1e-6,
        "alone {alone}, under load {loaded}"
    );
    s.stop().await;
}

/// The tiny real-architecture Grounding DINO (tests/fixtures/real_arch), gathering concurrent
/// requests into one window. Its input is a fixed 800x800 (images are squashed), so only
/// captions can be padded; on this export that moves logits by up to 11 (README, issue 19).
fn real_arch_manifest() -> Manifest {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real_arch");
    let mut m = Manifest::load(&dir.join("manifest.toml")).unwrap();
    let d = m.detector.as_mut().unwrap();
    d.batching.max_queue_delay_ms = 300;
    d.batching.max_batch_size = 16;
    m
}

fn real_arch_item(seed: u32, names: [&str; 2]) -> Value {
    let shade = |k: u32| {
        [
            (37 * k % 255) as u8,
            (91 * k % 255) as u8,
            (53 * k % 255) as u8,
        ]
    };
    let generated = scene(
        320,
        240,
        &[
            (20, 20, 140, 160, shade(seed)),
            (180, 60, 300, 220, shade(seed + 7)),
        ],
    );
    let reference = |k: u32| b64(&png(&scene(96, 96, &[(8, 8, 88, 88, shade(k))])));
    json!({"image": b64(&png(&generated)), "subjects": [
        {"name": names[0], "reference": reference(seed)},
        {"name": names[1], "reference": reference(seed + 7)}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_real_architecture_a_psr_reward_is_the_same_alone_and_under_load() {
    let s = TestServer::start_with(real_arch_manifest(), Default::default()).await;
    let padded = "psr_reward_detector_padded_items_total{model=\"grounding-dino-tiny-random\"}";
    let probe = |mode: &str| body(mode, vec![real_arch_item(1, ["cat", "dog"])]);
    let alone = concurrently(&s, &[probe("psr"), probe("robust")]).await;

    // Again, among requests whose captions are longer ("red sports car.") or equal.
    let mut load = vec![probe("psr"), probe("robust")];
    for seed in 2..6 {
        load.push(body(
            "robust",
            vec![real_arch_item(seed, ["red sports car", "cat"])],
        ));
        load.push(body(
            "psr",
            vec![real_arch_item(seed, ["red sports car", "dog"])],
        ));
    }
    let before = s.metric(padded).await;
    let loaded = concurrently(&s, &load).await;
    let padded_now = s.metric(padded).await - before;
    assert!(
        padded_now > 0.0,
        "the robust load must have padded captions"
    );
    let (psr_alone, psr_loaded) = (alone[0][0], loaded[0][0]);
    assert!(
        (psr_alone - psr_loaded).abs() < 1e-6,
        "psr: alone {psr_alone}, under load {psr_loaded}"
    );
    eprintln!(
        "real-arch probe: psr alone {psr_alone} under load {psr_loaded}; robust alone {} under load {} ({padded_now} items padded)",
        alone[1][0], loaded[1][0]
    );
    s.stop().await;
}
