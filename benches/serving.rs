//! Serving benchmark: the service (HTTP, base64, decode, resize, batching) against the raw
//! `ort` session on the same preprocessed batches, at several numbers of concurrent callers.
//!
//! `cargo bench --bench serving -- --model tests/fixtures/generated/vits16.onnx --label vits16`
//! (see benches/README.md). Requests are distinct 512x512 JPEG (quality 90) images, one per
//! request, so no cache can help. The load generator runs in this process on one thread; the
//! service is the release binary in a child process.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use psr_reward::batcher::BatchModel;
use psr_reward::imaging::resize::{Filter, Resizer};
use psr_reward::imaging::{PooledTensor, Preprocess, ResizeRule, TensorPool, IMAGENET};
use psr_reward::models::{ImageModel, OutputKind};
use psr_reward::runtime::{
    build_session, load_environment, FallbackPolicy, Provider, SessionOptions,
};

struct Args {
    model: PathBuf,
    label: String,
    concurrency: Vec<usize>,
    seconds: f64,
    images: usize,
    max_batch: usize,
    delay_ms: u64,
    raw_batches: Vec<usize>,
    peer: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        model: PathBuf::from("tests/fixtures/generated/vits16.onnx"),
        label: "vits16".into(),
        concurrency: vec![1, 4, 8, 16, 64],
        seconds: 10.0,
        images: 128,
        max_batch: 32,
        delay_ms: 0,
        raw_batches: vec![1, 2, 4, 8, 16, 32],
        peer: true,
    };
    let mut it = std::env::args().skip(1);
    let list = |s: String| {
        s.split(',')
            .map(|x| x.parse().expect("number list"))
            .collect()
    };
    while let Some(k) = it.next() {
        let mut v = || it.next().expect("flag value");
        match k.as_str() {
            "--model" => a.model = PathBuf::from(v()),
            "--label" => a.label = v(),
            "--concurrency" => a.concurrency = list(v()),
            "--seconds" => a.seconds = v().parse().expect("seconds"),
            "--images" => a.images = v().parse().expect("images"),
            "--max-batch" => a.max_batch = v().parse().expect("max batch"),
            "--delay-ms" => a.delay_ms = v().parse().expect("delay"),
            "--raw-batches" => a.raw_batches = list(v()),
            "--no-peer" => a.peer = false,
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Raw session throughput (images/s) per batch size, on the service's own preprocessing.
fn raw_throughput(args: &Args, jpegs: &[Vec<u8>]) -> Vec<(usize, f64)> {
    let env = load_environment(Some(&common::ort_library())).expect("ort");
    let opts = SessionOptions {
        path: args.model.clone(),
        provider: Provider::Cpu,
        device_id: 0,
        fallback: FallbackPolicy::Fail,
        intra_threads: 0,
    };
    let (session, _) = build_session(&env, &opts).expect("session");
    let metrics = psr_reward::metrics::Metrics::new();
    let mut model = ImageModel::new(
        session,
        ("pixel_values".into(), "embeddings".into()),
        Default::default(),
        OutputKind::Embedding,
        metrics.invalid_outputs("raw"),
    );
    let pre = Preprocess::new(
        ResizeRule::ShortSideCenterCrop {
            resize: 256,
            crop: 224,
        },
        Filter::Bicubic,
        IMAGENET,
    );
    let pool = TensorPool::new();
    let mut resizer = Resizer::new();
    let mut scratch = Vec::new();
    let tensors: Vec<PooledTensor> = jpegs
        .iter()
        .map(|j| {
            let img = image::load_from_memory(j).expect("decode").into_rgb8();
            pre.run(&img, &mut resizer, &mut scratch, &pool)
                .expect("preprocess")
        })
        .collect();
    let mut out = Vec::new();
    for &b in &args.raw_batches {
        let batch: Vec<PooledTensor> = (0..b)
            .map(|i| {
                PooledTensor::unpooled(
                    tensors[i % tensors.len()].shape(),
                    tensors[i % tensors.len()].data().to_vec(),
                )
            })
            .collect();
        model.run(&batch).expect("warm-up run");
        let started = Instant::now();
        let mut done = 0usize;
        while started.elapsed().as_secs_f64() < args.seconds.min(8.0) {
            model.run(&batch).expect("run");
            done += b;
        }
        let rate = done as f64 / started.elapsed().as_secs_f64();
        eprintln!("raw batch {b}: {rate:.1} images/s");
        out.push((b, rate));
    }
    out
}

/// A manifest serving only the benchmarked embedder.
fn write_manifest(args: &Args) -> PathBuf {
    let manifest = format!(
        r#"[embedder]
name = "bench-embedder"
path = "{}"
output = "embeddings"
preprocess = {{ resize = {{ rule = "center_crop", short_side = 256, crop = 224 }}, filter = "bicubic", normalize = "imagenet" }}
runtime = {{ provider = "cpu", instances = 1, intra_threads = 0 }}
batching = {{ max_batch_size = {}, max_queue_delay_ms = {}, queue_capacity = 4096 }}
"#,
        std::fs::canonicalize(&args.model)
            .expect("model path")
            .display(),
        args.max_batch,
        args.delay_ms
    );
    let path = std::env::temp_dir().join(format!("psr-bench-{}.toml", std::process::id()));
    std::fs::write(&path, manifest).expect("write manifest");
    path
}

struct Level {
    callers: usize,
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
    mean_batch: f64,
    errors: usize,
}

/// The service's executed items and batches so far (`None` for a peer, which has no metrics).
async fn batch_counts(client: &reqwest::Client, base: &str, metrics: bool) -> Option<(f64, f64)> {
    let items = r#"psr_reward_inference_items_total{model="bench-embedder"}"#;
    let batches = r#"psr_reward_batch_executions_total{model="bench-embedder"}"#;
    if !metrics {
        return None;
    }
    Some((
        common::metric(client, base, items).await,
        common::metric(client, base, batches).await,
    ))
}

/// `callers` callers posting `/v1/embed` back to back for `seconds`; `metrics` when `base` is
/// the service (then the level's mean executed batch is read from `/metrics`).
async fn load(
    base: &str,
    bodies: Arc<Vec<bytes::Bytes>>,
    callers: usize,
    seconds: f64,
    metrics: bool,
) -> Level {
    let client = reqwest::Client::new();
    let before = batch_counts(&client, base, metrics).await;
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let (client, bodies, url) =
                (client.clone(), bodies.clone(), format!("{base}/v1/embed"));
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                let mut k = c;
                while Instant::now() < until {
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(bodies[k % bodies.len()].clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                        }
                        _ => errors += 1,
                    }
                    k += callers;
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("task");
        lat.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = batch_counts(&client, base, metrics).await;
    lat.sort_by(f64::total_cmp);
    Level {
        callers,
        throughput: lat.len() as f64 / elapsed,
        p50_ms: common::percentile(&lat, 0.5),
        p99_ms: common::percentile(&lat, 0.99),
        mean_batch: match (before, after) {
            (Some((i0, b0)), Some((i1, b1))) if b1 > b0 => (i1 - i0) / (b1 - b0),
            _ => f64::NAN,
        },
        errors,
    }
}

/// Every caller count's level against the server at `base` (1 s warm-up before each).
async fn levels(
    base: &str,
    bodies: &Arc<Vec<bytes::Bytes>>,
    args: &Args,
    metrics: bool,
) -> Vec<Level> {
    let mut out = Vec::new();
    for &c in &args.concurrency {
        load(base, bodies.clone(), c, 1.0, metrics).await;
        let level = load(base, bodies.clone(), c, args.seconds, metrics).await;
        eprintln!("{base}: {c} callers: {:.1} images/s", level.throughput);
        out.push(level);
    }
    out
}

/// Throughput at batch size `b` on a measured curve, interpolated linearly between sizes.
fn rate_at(curve: &[(usize, f64)], b: f64) -> f64 {
    let below = curve.iter().rev().find(|(rb, _)| *rb as f64 <= b);
    let above = curve.iter().find(|(rb, _)| *rb as f64 >= b);
    match (below, above) {
        (Some(&(b0, r0)), Some(&(b1, r1))) if b1 > b0 => {
            r0 + (r1 - r0) * (b - b0 as f64) / (b1 - b0) as f64
        }
        (Some(&(_, r)), _) | (None, Some(&(_, r))) => r,
        (None, None) => f64::NAN,
    }
}

fn best(curve: &[(usize, f64)]) -> f64 {
    curve.iter().map(|&(_, r)| r).fold(f64::NAN, f64::max)
}

fn print_raw(rust: &[(usize, f64)], python: &[(usize, f64)]) {
    println!("Raw onnxruntime on the same ONNX file, no decode, no HTTP (images/s):\n");
    println!("| batch | Rust `ort` (the service's adapter, its preprocessed tensors) | Python `onnxruntime` (raw) |");
    println!("|---:|---:|---:|");
    for (b, r) in rust {
        let py = python.iter().find(|(pb, _)| pb == b).map(|&(_, r)| r);
        println!(
            "| {b} | {r:.1} | {} |",
            py.map_or("-".into(), |r| format!("{r:.1}"))
        );
    }
}

fn print_levels(args: &Args, service: &[Level], peer: &[Level], raw: &[(usize, f64)]) {
    println!("\nServing `POST /v1/embed`, one distinct 512x512 JPEG q90 per request (psr-reward: max_batch_size {}, max_queue_delay_ms {}; peer: benches/peers/embed_peer.py, FastAPI + Pillow + onnxruntime, a request each):\n", args.max_batch, args.delay_ms);
    println!("| callers | psr-reward images/s | p50 ms | p99 ms | mean batch | errors | peer images/s | peer p50 ms | peer p99 ms | peer errors | vs peer | vs raw at the executed batch | vs best raw |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, l) in service.iter().enumerate() {
        let p = peer.get(i);
        let cell = |f: fn(&Level) -> f64| p.map_or("-".into(), |p| format!("{:.1}", f(p)));
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.2} | {} | {} | {} | {} | {} | {} | {:.2}x | {:.2}x |",
            l.callers,
            l.throughput,
            l.p50_ms,
            l.p99_ms,
            l.mean_batch,
            l.errors,
            cell(|p| p.throughput),
            cell(|p| p.p50_ms),
            cell(|p| p.p99_ms),
            p.map_or("-".into(), |p| p.errors.to_string()),
            p.map_or("-".into(), |p| format!("{:.2}x", l.throughput / p.throughput)),
            l.throughput / rate_at(raw, l.mean_batch),
            l.throughput / best(raw),
        );
    }
    if let (Some(one), Some((_, r1))) = (
        service.iter().find(|l| l.callers == 1),
        raw.iter().find(|(b, _)| *b == 1),
    ) {
        println!("\nAt 1 caller: psr-reward p50 {:.1} ms vs raw batch-1 inference {:.1} ms: {:.1} ms added per request.", one.p50_ms, 1e3 / r1, one.p50_ms - 1e3 / r1);
    }
}

fn main() {
    if !common::invoked_by_cargo_bench("serving") {
        return;
    }
    let args = parse_args();
    eprintln!("generating {} distinct 512x512 JPEGs", args.images);
    let jpegs = common::photo_jpegs(args.images);
    let rust_raw = raw_throughput(&args, &jpegs);
    let python_raw =
        common::raw_python_throughput(&args.model, &args.raw_batches, args.seconds.min(8.0));
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
        jpegs
            .iter()
            .map(|j| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(j);
                bytes::Bytes::from(format!(r#"{{"images":["{b64}"]}}"#))
            })
            .collect(),
    );
    let manifest = write_manifest(&args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (service, peer) = rt.block_on(async {
        let peer = if args.peer {
            let server = common::Service::peer("embed_peer.py", &manifest).await;
            levels(&server.base, &bodies, &args, false).await
        } else {
            Vec::new()
        };
        let server = common::Service::start(&manifest).await;
        (levels(&server.base, &bodies, &args, true).await, peer)
    });
    println!("\n### {} ({})\n", args.label, args.model.display());
    print_raw(&rust_raw, &python_raw);
    print_levels(&args, &service, &peer, &python_raw);
}
