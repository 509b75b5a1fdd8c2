//! Cross-caller batching end to end over HTTP: own results under concurrency, admission
//! control, deadlines, disconnects and fault isolation.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use psr_reward::batcher::{BackendError, BatchModel, Batcher, LaneConfig, ModelFactory};
use psr_reward::config::Config;
use psr_reward::imaging::PooledTensor;
use psr_reward::metrics::Metrics;
use psr_reward::models::manifest::Manifest;
use psr_reward::models::{ImageLane, ImageModel, ImageOutput, ModelInfo, Models, OutputKind};
use psr_reward::runtime::{build_session, FallbackPolicy, Provider, SessionOptions};
use serde_json::json;

const EMBEDDER: &str = "fixture-embedder";

/// The fixture embedder alone (these tests batch embeddings only), with a small lane.
fn manifest_with(delay_ms: u64, max_batch: usize, capacity: usize) -> Manifest {
    let mut m = default_manifest();
    m.detector = None;
    m.aesthetic = None;
    let b = &mut m.embedder.as_mut().unwrap().batching;
    b.max_queue_delay_ms = delay_ms;
    b.max_batch_size = max_batch;
    b.queue_capacity = capacity;
    m
}

/// Request limits a lane of `capacity` items can always admit (start-up checks it).
fn limits_for(capacity: usize) -> Config {
    let mut c = Config::default();
    c.limits.max_items_per_request = capacity.min(256);
    c
}

fn metric_name(family: &str) -> String {
    format!(r#"{family}{{model="{EMBEDDER}"}}"#)
}

fn failures(reason: &str) -> String {
    format!(r#"psr_reward_batcher_failures_total{{model="{EMBEDDER}",reason="{reason}"}}"#)
}

/// Polls a metric until it reaches `want` (the batcher updates some counters after replying).
async fn wait_metric(s: &TestServer, name: &str, want: f64) {
    for _ in 0..500 {
        if s.metric(name).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} never reached {want} (now {})", s.metric(name).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_get_their_own_results_from_shared_batches() {
    let s = Arc::new(TestServer::start_with(manifest_with(20, 32, 1024), limits_for(1024)).await);
    let items_before = s
        .metric(&metric_name("psr_reward_inference_items_total"))
        .await;
    let batches_before = s
        .metric(&metric_name("psr_reward_batch_executions_total"))
        .await;
    let callers = 24u8;
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let c = [i * 10, 255 - i * 10, i.wrapping_mul(37)];
                let (status, _, body) = s
                    .post("/v1/embed", &json!({"images": [solid_b64(64, 48, c)]}))
                    .await;
                assert_eq!(status, 200, "{body}");
                let e = as_f64s(&body["embeddings"][0]);
                // Features 0, 64 and 128 are this caller's mean r, g, b.
                for (k, &v) in c.iter().enumerate() {
                    let want = f64::from(v) / 255.0;
                    assert!(
                        (e[k * 64] - want).abs() < 1e-5,
                        "caller {i} got another caller's result"
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let items = s
        .metric(&metric_name("psr_reward_inference_items_total"))
        .await
        - items_before;
    let batches = s
        .metric(&metric_name("psr_reward_batch_executions_total"))
        .await
        - batches_before;
    assert_eq!(items, f64::from(callers));
    assert!(
        items / batches > 1.0,
        "mean batch size {} must exceed 1",
        items / batches
    );
    Arc::try_unwrap(s).ok().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_429_with_retry_after_and_keeps_accepted_work() {
    // Items wait up to 1.5 s for a batch of 64: four of them fill the queue of 4.
    let s = Arc::new(TestServer::start_with(manifest_with(1500, 64, 4), limits_for(4)).await);
    let accepted: Vec<_> = (0..4u8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.post(
                    "/v1/embed",
                    &json!({"images": [solid_b64(32, 32, [i, 0, 0])]}),
                )
                .await
            })
        })
        .collect();
    wait_metric(&s, &metric_name("psr_reward_queue_depth"), 4.0).await;
    let (status, headers, body) = s
        .post(
            "/v1/embed",
            &json!({"images": [solid_b64(32, 32, [9, 9, 9])]}),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error_type"], "overloaded");
    assert_eq!(headers["retry-after"], "1");
    for t in accepted {
        let (status, _, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(s.metric(&failures("overloaded")).await, 1.0);
    Arc::try_unwrap(s).ok().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_items_get_504_and_never_reach_the_model() {
    let s = TestServer::start_with(manifest_with(400, 64, 64), limits_for(64)).await;
    let items = metric_name("psr_reward_inference_items_total");
    let before = s.metric(&items).await;
    let (status, _, body) = s
        .post(
            "/v1/embed",
            &json!({"images": [solid_b64(32, 32, [1, 2, 3])], "timeout_ms": 50}),
        )
        .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error_type"], "timeout");
    // The batcher purges the item when its batch would leave (400 ms) and counts it.
    wait_metric(&s, &failures("timeout"), 1.0).await;
    assert_eq!(
        s.metric(&items).await,
        before,
        "an expired item reached the model"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_disconnect_are_dropped_before_inference() {
    let s = TestServer::start_with(manifest_with(500, 64, 64), limits_for(64)).await;
    let items = metric_name("psr_reward_inference_items_total");
    let before = s.metric(&items).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let r = impatient
        .post(s.url("/v1/embed"))
        .json(&json!({"images": [solid_b64(32, 32, [5, 5, 5])]}))
        .send()
        .await;
    assert!(r.is_err(), "the client should have given up");
    wait_metric(&s, &failures("dropped"), 1.0).await;
    assert_eq!(s.metric(&items).await, before);
    s.stop().await;
}

/// The real fixture embedder, but panicking on black images and failing on white ones:
/// an injected fault that passes validation and fails inside the model run.
struct Faulty(ImageModel);

impl BatchModel for Faulty {
    type Input = PooledTensor;
    type Output = ImageOutput;

    fn run(&mut self, batch: &[PooledTensor]) -> Result<Vec<ImageOutput>, BackendError> {
        for item in batch {
            let [_, h, w] = item.shape();
            let (red, green) = (item.data()[0], item.data()[h * w]);
            if red < -2.1 {
                panic!("injected panic on a black image");
            }
            if red > 2.2 && green > 2.2 {
                return Err(BackendError(
                    "injected runtime failure on a white image".into(),
                ));
            }
        }
        self.0.run(batch)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_fails_only_its_requests_and_the_model_recovers() {
    let manifest = default_manifest();
    let spec = manifest.embedder.clone().unwrap();
    let metrics = Arc::new(Metrics::new());
    let opts = SessionOptions {
        path: spec.path.clone(),
        provider: Provider::Cpu,
        device_id: 0,
        fallback: FallbackPolicy::Fail,
        intra_threads: 1,
    };
    let (input, output) = (spec.input.clone(), spec.output.clone());
    let check = metrics.invalid_outputs(EMBEDDER);
    // While set, rebuilding the instance fails (a device that is gone, a file that moved).
    let rebuild_fails = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fails = rebuild_fails.clone();
    let factory: ModelFactory<PooledTensor, ImageOutput> = Arc::new(move |_| {
        if fails.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(BackendError("injected rebuild failure".into()));
        }
        let (session, _) =
            build_session(ort_env(), &opts).map_err(|e| BackendError(e.to_string()))?;
        Ok(Box::new(Faulty(ImageModel::new(
            session,
            (input.clone(), output.clone()),
            Default::default(),
            OutputKind::Embedding,
            check.clone(),
        ))) as _)
    });
    let config = LaneConfig {
        max_batch_size: 8,
        max_queue_delay: Duration::ZERO,
        queue_capacity: 64,
        priority_levels: 3,
        instances: 1,
    };
    let batcher = Batcher::start(EMBEDDER, config, factory, metrics.lane(EMBEDDER)).unwrap();
    let info = ModelInfo {
        name: EMBEDDER.into(),
        role: "embedder",
        path: spec.path.display().to_string(),
        instances: Vec::new(),
        signature: None,
        batching: spec.batching.clone(),
        preprocess: String::new(),
        max_batch_size: 8,
        batch_cap: 8,
        batch_curve: Vec::new(),
    };
    let lane = ImageLane::new(batcher, spec.preprocess.build(), info);
    let models = Models {
        detector: None,
        embedder: Some(lane),
        aesthetic: None,
        preference: None,
    };
    let s = TestServer::start_models(models, limits_for(64), metrics).await;

    rebuild_fails.store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, _, body) = s
        .post(
            "/v1/embed",
            &json!({"images": [solid_b64(32, 32, [0, 0, 0])]}),
        )
        .await;
    assert_eq!(
        (status, body["error_type"].as_str()),
        (500, Some("backend")),
        "{body}"
    );
    assert!(body["error"].as_str().unwrap().contains("injected panic"));
    // The rebuild after that panic fails: no live instance, and /ready says so.
    let ready = s.client.get(s.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let reason: serde_json::Value = ready.json().await.unwrap();
    assert!(
        reason["error"].as_str().unwrap().contains(EMBEDDER),
        "{reason}"
    );
    assert_eq!(s.metric(&metric_name("psr_reward_model_ready")).await, 0.0);
    // Rebuilds succeed again: the lane recovers on its own (backoff up to 5 s).
    rebuild_fails.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut recovered = false;
    for _ in 0..100 {
        if s.client.get(s.url("/ready")).send().await.unwrap().status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "/ready never recovered");
    assert_eq!(s.metric(&metric_name("psr_reward_model_ready")).await, 1.0);
    let (status, _, body) = s
        .post(
            "/v1/embed",
            &json!({"images": [solid_b64(32, 32, [255, 255, 255])]}),
        )
        .await;
    assert_eq!(
        (status, body["error_type"].as_str()),
        (500, Some("backend")),
        "{body}"
    );
    let (status, _, body) = s
        .post(
            "/v1/embed",
            &json!({"images": [solid_b64(32, 32, [255, 0, 0])]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!((as_f64s(&body["embeddings"][0])[0] - 1.0).abs() < 1e-5);
    assert_eq!(
        s.metric(&metric_name("psr_reward_worker_restarts_total"))
            .await,
        1.0
    );
    assert_eq!(s.metric(&failures("backend")).await, 2.0);
    // The detector is not configured here: its route says so in JSON.
    let (status, _, body) = s
        .post(
            "/v1/detect",
            &json!({"images": [solid_b64(8, 8, [1, 1, 1])], "phrases": ["red"]}),
        )
        .await;
    assert_eq!(
        (status, body["error_type"].as_str()),
        (404, Some("model_not_loaded"))
    );
    s.stop().await;
}
