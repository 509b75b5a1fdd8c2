//! Reward benchmark: `POST /v1/reward` with 2-subject items (subject consistency) from many
//! concurrent callers, with a cold reference cache (every request brings references never seen)
//! and a warm one (the references of a GRPO group, seen before), and where the time goes; then
//! generated images of four aspect ratios (four detector input shapes) under each detector
//! batching rule, the cost of `psr` mode's equal-shape batching.
//!
//! `cargo bench --bench reward -- --manifest models/default.toml --callers 16 --requests 320`

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use common::{b64, scene, BLUE, RED};

struct Args {
    manifest: PathBuf,
    callers: usize,
    requests: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        manifest: PathBuf::from("models/default.toml"),
        callers: 16,
        requests: 320,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().expect("flag value");
        match k.as_str() {
            "--manifest" => a.manifest = PathBuf::from(v()),
            "--callers" => a.callers = v().parse().expect("callers"),
            "--requests" => a.requests = v().parse().expect("requests"),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Request bodies: distinct generated images; references distinct per request (`cold`) or
/// shared by all (`warm`).
fn bodies(n: usize, cold: bool) -> Vec<bytes::Bytes> {
    let shared = (
        b64(&common::jpeg(&scene(256, 256, 7, &[RED]), 90)),
        b64(&common::jpeg(&scene(256, 256, 8, &[BLUE]), 90)),
    );
    (0..n)
        .map(|i| {
            let generated = b64(&common::jpeg(&scene(512, 512, 1000 + i as u64, &[RED, BLUE]), 90));
            let (r1, r2) = if cold {
                (
                    b64(&common::jpeg(&scene(256, 256, 50_000 + 2 * i as u64, &[RED]), 90)),
                    b64(&common::jpeg(&scene(256, 256, 50_001 + 2 * i as u64, &[BLUE]), 90)),
                )
            } else {
                shared.clone()
            };
            let body = serde_json::json!({"items": [{"image": generated, "prompt": "a red thing and a blue thing",
                "subjects": [{"name": "red", "reference": r1}, {"name": "blue", "reference": r2}]}]});
            bytes::Bytes::from(body.to_string())
        })
        .collect()
}

/// Warm-reference bodies whose generated images take four aspect ratios, under `batching`.
fn mixed_bodies(n: usize, batching: &str) -> Vec<bytes::Bytes> {
    const SIZES: [(u32, u32); 4] = [(512, 512), (512, 384), (384, 512), (640, 384)];
    let refs = (
        b64(&common::jpeg(&scene(256, 256, 7, &[RED]), 90)),
        b64(&common::jpeg(&scene(256, 256, 8, &[BLUE]), 90)),
    );
    (0..n)
        .map(|i| {
            let (w, h) = SIZES[i % SIZES.len()];
            let img = common::jpeg(&scene(w, h, 1000 + i as u64, &[RED, BLUE]), 90);
            let body = serde_json::json!({"options": {"batching": batching}, "items": [{
                "image": b64(&img), "prompt": "a red thing and a blue thing",
                "subjects": [{"name": "red", "reference": refs.0}, {"name": "blue", "reference": refs.1}]}]});
            bytes::Bytes::from(body.to_string())
        })
        .collect()
}

struct Run {
    rewards_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    decode_ms: f64,
    detection_ms: f64,
    embedding_ms: f64,
    hits: f64,
    misses: f64,
    errors: usize,
    /// Detector items per detector batch execution during the run.
    detector_batch: f64,
    padded: f64,
}

async fn run(base: &str, bodies: Arc<Vec<bytes::Bytes>>, callers: usize) -> Run {
    let client = reqwest::Client::new();
    let (h0, m0) = (
        common::metric(&client, base, "psr_reward_reference_cache_hits_total").await,
        common::metric(&client, base, "psr_reward_reference_cache_misses_total").await,
    );
    let detector = |name: &str| format!("{name}{{model=\"fixture-detector\"}}");
    let (items0, batches0, padded0) = (
        common::metric(&client, base, &detector("psr_reward_inference_items_total")).await,
        common::metric(
            &client,
            base,
            &detector("psr_reward_batch_executions_total"),
        )
        .await,
        common::metric(
            &client,
            base,
            &detector("psr_reward_detector_padded_items_total"),
        )
        .await,
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let (client, bodies, url) =
                (client.clone(), bodies.clone(), format!("{base}/v1/reward"));
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut errors = 0;
                for k in (c..bodies.len()).step_by(callers) {
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(bodies[k].clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            let v: serde_json::Value = r.json().await.expect("json");
                            let ms = |f: &str| v["timing"][f].as_f64().unwrap_or(0.0);
                            out.push((
                                t.elapsed().as_secs_f64() * 1e3,
                                ms("decode_ms"),
                                ms("detection_ms"),
                                ms("embedding_ms"),
                            ));
                        }
                        _ => errors += 1,
                    }
                }
                (out, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (o, e) = t.await.expect("task");
        all.extend(o);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = all.iter().map(|r| r.0).collect();
    lat.sort_by(f64::total_cmp);
    let mean = |f: fn(&(f64, f64, f64, f64)) -> f64| {
        all.iter().map(f).sum::<f64>() / all.len().max(1) as f64
    };
    Run {
        rewards_per_s: all.len() as f64 / elapsed,
        p50_ms: common::percentile(&lat, 0.5),
        p99_ms: common::percentile(&lat, 0.99),
        decode_ms: mean(|r| r.1),
        detection_ms: mean(|r| r.2),
        embedding_ms: mean(|r| r.3),
        hits: common::metric(&client, base, "psr_reward_reference_cache_hits_total").await - h0,
        misses: common::metric(&client, base, "psr_reward_reference_cache_misses_total").await - m0,
        errors,
        detector_batch: (common::metric(
            &client,
            base,
            &detector("psr_reward_inference_items_total"),
        )
        .await
            - items0)
            / (common::metric(
                &client,
                base,
                &detector("psr_reward_batch_executions_total"),
            )
            .await
                - batches0)
                .max(1.0),
        padded: common::metric(
            &client,
            base,
            &detector("psr_reward_detector_padded_items_total"),
        )
        .await
            - padded0,
    }
}

fn main() {
    if !common::invoked_by_cargo_bench("reward") {
        return;
    }
    let args = parse_args();
    eprintln!(
        "generating {} cold and {} warm request bodies",
        args.requests, args.requests
    );
    let cold = Arc::new(bodies(args.requests, true));
    let warm = Arc::new(bodies(args.requests, false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let equal = Arc::new(mixed_bodies(args.requests, "equal_shapes"));
    let padded = Arc::new(mixed_bodies(args.requests, "padded"));
    let (cold_run, warm_run, equal_run, padded_run) = rt.block_on(async {
        let svc = common::Service::start(&args.manifest).await;
        // Warm-up with one request of each kind outside the measurement.
        run(&svc.base, Arc::new(vec![cold[0].clone()]), 1).await;
        let cold_run = run(&svc.base, cold.clone(), args.callers).await;
        run(&svc.base, Arc::new(vec![warm[0].clone()]), 1).await; // puts the shared references in the cache
        let warm_run = run(&svc.base, warm.clone(), args.callers).await;
        // Mixed sizes: each rule's references warmed first (they are cached per rule).
        run(&svc.base, Arc::new(vec![equal[0].clone()]), 1).await;
        let equal_run = run(&svc.base, equal.clone(), args.callers).await;
        run(&svc.base, Arc::new(vec![padded[0].clone()]), 1).await;
        let padded_run = run(&svc.base, padded.clone(), args.callers).await;
        (cold_run, warm_run, equal_run, padded_run)
    });
    println!(
        "\n### Rewards ({}, {} callers, {} requests of one 2-subject item each)\n",
        args.manifest.display(),
        args.callers,
        args.requests
    );
    println!("| workload | rewards/s | p50 ms | p99 ms | cache hits | misses | errors | decode ms | detection ms | embedding ms | detector batch | padded items |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, r) in [
        ("cold (new references)", &cold_run),
        ("warm (GRPO group)", &warm_run),
        ("warm, 4 aspect ratios, `equal_shapes` (psr)", &equal_run),
        ("warm, 4 aspect ratios, `padded` (robust)", &padded_run),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {} |",
            r.rewards_per_s,
            r.p50_ms,
            r.p99_ms,
            r.hits,
            r.misses,
            r.errors,
            r.decode_ms,
            r.detection_ms,
            r.embedding_ms,
            r.detector_batch,
            r.padded
        );
    }
    println!("\nThe stage columns are per-request means of the response's `timing` (decode = parse, base64 and image decode on the CPU pool; detection and embedding include queueing behind other callers).");
}
