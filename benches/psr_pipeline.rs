//! PSR pipeline benchmark: psr-reward's subject-consistency reward against the Python server
//! trainers run today (benches/peers/psr_peer.py: the PSR scripts' computation behind FastAPI,
//! every detection and embedding at batch size 1, no cache), on GRPO groups of 6 generated images
//! sharing their prompt's two references, from 1 to 64 callers. Both serve the same manifest and
//! answer the same requests; the bench checks that they give the same rewards.
//!
//! `cargo bench --bench psr_pipeline -- --manifest models/default.toml` (see benches/README.md).

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use common::{b64, scene, BLUE, RED};

/// Images per GRPO group (Flow-GRPO's group size in the PSR paper).
const GROUP: usize = 6;

struct Args {
    manifest: PathBuf,
    callers: Vec<usize>,
    peer: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        manifest: PathBuf::from("models/default.toml"),
        callers: vec![1, 4, 16, 64],
        peer: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().expect("flag value");
        match k.as_str() {
            "--manifest" => a.manifest = PathBuf::from(v()),
            "--callers" => {
                a.callers = v()
                    .split(',')
                    .map(|x| x.parse().expect("callers"))
                    .collect()
            }
            "--no-peer" => a.peer = false,
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Enough requests that every caller sends several: whole groups, at least 8 of them.
fn groups_for(callers: usize) -> usize {
    (callers / 2).max(8)
}

/// One request per generated image, group after group; each group brings two references never
/// seen before (seeded by `level`), shared by its six images, as a trainer's step sends them.
fn bodies(groups: usize, level: u64, detection: &str) -> Vec<bytes::Bytes> {
    let mut out = Vec::with_capacity(groups * GROUP);
    for g in 0..groups as u64 {
        let seed = level * 100_000 + g * 100;
        let refs = (
            b64(&common::jpeg(&scene(256, 256, seed + 1, &[RED]), 90)),
            b64(&common::jpeg(&scene(256, 256, seed + 2, &[BLUE]), 90)),
        );
        for i in 0..GROUP as u64 {
            let image = b64(&common::jpeg(
                &scene(512, 512, seed + 10 + i, &[RED, BLUE]),
                90,
            ));
            let body = serde_json::json!({
                "mode": "psr",
                "rewards": {"subject_consistency": 1.0},
                "options": {"detection": detection},
                "items": [{"image": image, "prompt": "a red thing and a blue thing",
                    "subjects": [{"name": "red", "reference": refs.0},
                                 {"name": "blue", "reference": refs.1}]}]});
            out.push(bytes::Bytes::from(body.to_string()));
        }
    }
    out
}

struct Level {
    rewards_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    /// Each request's reward, by request index (`NaN` where it failed).
    rewards: Vec<f64>,
}

/// The reward of an answer: the peer's `reward`, the service's subject-consistency raw value.
fn reward_of(v: &serde_json::Value) -> f64 {
    let r = &v["results"][0];
    r["components"]["subject_consistency"]["raw"]
        .as_f64()
        .or_else(|| r["reward"].as_f64())
        .unwrap_or(f64::NAN)
}

/// `callers` callers working through `bodies` in order, each taking the next unsent request.
async fn run(base: &str, bodies: Arc<Vec<bytes::Bytes>>, callers: usize) -> Level {
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (client, bodies, next) = (client.clone(), bodies.clone(), next.clone());
            let url = format!("{base}/v1/reward");
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = bodies.get(k) else { break };
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    let reward = match r {
                        Ok(r) if r.status() == 200 => r
                            .json::<serde_json::Value>()
                            .await
                            .map_or(f64::NAN, |v| reward_of(&v)),
                        _ => f64::NAN,
                    };
                    out.push((k, t.elapsed().as_secs_f64() * 1e3, reward));
                }
                out
            })
        })
        .collect();
    let mut rewards = vec![f64::NAN; bodies.len()];
    let mut lat = Vec::new();
    for t in tasks {
        for (k, ms, reward) in t.await.expect("task") {
            rewards[k] = reward;
            if reward.is_finite() {
                lat.push(ms);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Level {
        rewards_per_s: lat.len() as f64 / elapsed,
        p50_ms: common::percentile(&lat, 0.5),
        p99_ms: common::percentile(&lat, 0.99),
        errors: rewards.iter().filter(|r| !r.is_finite()).count(),
        rewards,
    }
}

/// Model passes (items run through any model) the service has made so far.
async fn model_passes(client: &reqwest::Client, base: &str) -> f64 {
    common::metrics_text(client, base)
        .await
        .lines()
        .filter(|l| l.starts_with("psr_reward_inference_items_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A service level and the model passes it made per reward item.
async fn service_run(base: &str, bodies: Arc<Vec<bytes::Bytes>>, callers: usize) -> (Level, f64) {
    let client = reqwest::Client::new();
    let before = model_passes(&client, base).await;
    let n = bodies.len() as f64;
    let level = run(base, bodies, callers).await;
    (level, (model_passes(&client, base).await - before) / n)
}

fn max_difference(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

struct Row {
    callers: usize,
    per_category: (Level, f64),
    joint: (Level, f64),
    peer: Option<Level>,
}

fn print_rows(args: &Args, rows: &[Row]) {
    println!(
        "\n### PSR subject consistency, GRPO groups of {GROUP} sharing two references ({})\n",
        args.manifest.display()
    );
    println!("| callers | requests | psr-reward rewards/s | p50 ms | p99 ms | passes / item | `joint` rewards/s | `joint` passes / item | peer rewards/s | peer p50 ms | peer p99 ms | vs peer | errors (ours / joint / peer) | max reward difference to the peer |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for r in rows {
        let (ours, passes) = &r.per_category;
        let (joint, joint_passes) = &r.joint;
        let peer = r.peer.as_ref();
        let cell = |f: fn(&Level) -> f64| peer.map_or("-".into(), |p| format!("{:.1}", f(p)));
        println!(
            "| {} | {} | {:.1} | {:.0} | {:.0} | {:.2} | {:.1} | {:.2} | {} | {} | {} | {} | {} / {} / {} | {} |",
            r.callers,
            ours.rewards.len(),
            ours.rewards_per_s,
            ours.p50_ms,
            ours.p99_ms,
            passes,
            joint.rewards_per_s,
            joint_passes,
            cell(|p| p.rewards_per_s),
            cell(|p| p.p50_ms),
            cell(|p| p.p99_ms),
            peer.map_or("-".into(), |p| format!("{:.2}x", ours.rewards_per_s / p.rewards_per_s)),
            ours.errors,
            joint.errors,
            peer.map_or("-".into(), |p| p.errors.to_string()),
            peer.map_or("-".into(), |p| format!("{:.1e}", max_difference(&ours.rewards, &p.rewards))),
        );
    }
}

fn main() {
    if !common::invoked_by_cargo_bench("psr_pipeline") {
        return;
    }
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let rows = rt.block_on(async {
        let warmup = Arc::new(bodies(1, 999, "per_category"));
        let peer = match args.peer {
            true => Some(common::Service::peer("psr_peer.py", &args.manifest).await),
            false => None,
        };
        let service = common::Service::start(&args.manifest).await;
        if let Some(p) = &peer {
            run(&p.base, warmup.clone(), 1).await;
        }
        run(&service.base, warmup, 1).await;
        let mut rows = Vec::new();
        for (i, &callers) in args.callers.iter().enumerate() {
            let level = i as u64 + 1;
            let groups = groups_for(callers);
            let per_category = Arc::new(bodies(groups, level, "per_category"));
            let peer_level = match &peer {
                Some(p) => Some(run(&p.base, per_category.clone(), callers).await),
                None => None,
            };
            let ours = service_run(&service.base, per_category, callers).await;
            // Fresh references for `joint`, so that its references are cold like the others'.
            let joint = Arc::new(bodies(groups, level + 50, "joint"));
            let joint = service_run(&service.base, joint, callers).await;
            eprintln!("{callers} callers: {:.1} rewards/s", ours.0.rewards_per_s);
            rows.push(Row {
                callers,
                per_category: ours,
                joint,
                peer: peer_level,
            });
        }
        rows
    });
    print_rows(&args, &rows);
}
