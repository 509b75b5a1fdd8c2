//! Memory bounded by what the input decodes to (issue 8): hostile thin images answered fast
//! with a bounded RSS. The only test of this binary, so the process's RSS is this server's.

mod common;

use std::time::{Duration, Instant};

use common::*;
use psr_reward::config::Config;
use serde_json::{json, Value};

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];

/// Resident set size of this process, in bytes (Linux `/proc/self/statm`).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn two_subject_item(generated: &str, red_ref: &str, blue_ref: &str) -> Value {
    json!({"image": generated, "prompt": "a red and a blue square", "subjects": [
        {"name": "red", "reference": red_ref}, {"name": "blue", "reference": blue_ref}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_thin_images_answer_fast_with_bounded_memory() {
    // Aspect ratios up to 10000:1 admitted, so the windowed resize itself is exercised.
    let mut config = Config::default();
    config.limits.max_aspect_ratio = 10_000.0;
    let s = TestServer::start_with(default_manifest(), config).await;
    let warm = solid_b64(64, 64, RED);
    // Thin detector boxes (a 1-pixel-wide subject) cropped and embedded under the centre crop.
    let thin = |x: u32| {
        b64(&png(&scene(
            512,
            512,
            &[(x, 10, x + 1, 500, RED), (300, 300, 302, 302, BLUE)],
        )))
    };
    let sc = json!({"subject_consistency": 1.0});
    // Warm every path first: ONNX Runtime sizes its arenas on the first batches of a shape
    // (a one-time cost bounded by the batch size, not growth per request).
    for x in [20, 40, 60] {
        let img = thin(x);
        let (status, _, out) = s
            .post(
                "/v1/reward",
                &json!({"items": [two_subject_item(&img, &img, &img)], "rewards": sc}),
            )
            .await;
        assert_eq!(status, 200, "{out}");
        let (status, _, _) = s.post("/v1/embed", &json!({"images": [warm]})).await;
        assert_eq!(status, 200);
    }
    let baseline = rss_bytes();
    let strips = [(1, 8192), (8192, 1), (2, 8000), (8000, 2)];
    for (w, h) in strips {
        let img = solid_b64(w, h, BLUE);
        let started = Instant::now();
        let (status, _, out) = s.post("/v1/embed", &json!({"images": [img]})).await;
        assert_eq!(status, 200, "{w}x{h}: {out}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{w}x{h} took {:?}",
            started.elapsed()
        );
        // The aesthetic scorer's centre crop of the same strip.
        let started = Instant::now();
        let (status, _, out) = s
            .post(
                "/v1/reward",
                &json!({"items": [two_subject_item(&img, &warm, &warm)], "rewards": {"aesthetic": 1.0}}),
            )
            .await;
        assert_eq!(status, 200, "{w}x{h}: {out}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{w}x{h} aesthetic took {:?}",
            started.elapsed()
        );
    }
    let thin = thin(100);
    let started = Instant::now();
    let (status, _, out) = s
        .post("/v1/reward", &json!({"items": [two_subject_item(&thin, &thin, &thin)], "rewards": {"subject_consistency": 1.0}}))
        .await;

    assert_eq!(status, 200, "{out}");
    // Real work (two 800x800 detections and their embeddings) on a shared debug build:
    // bounded, not timed to the millisecond.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "thin boxes took {:?}",
        started.elapsed()
    );
    let grown = rss_bytes().saturating_sub(baseline);
    eprintln!("RSS growth over the warm baseline: {} MB", grown >> 20);
    assert!(
        grown < 150 << 20,
        "RSS grew by {} MB over the warm baseline",
        grown >> 20
    );
    s.stop().await;
}
