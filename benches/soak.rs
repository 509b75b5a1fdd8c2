//! Overload soak: the release service under ten times the load it can serve, then back.
//!
//! `cargo bench --bench soak` (see benches/README.md, "Overload soak"). The service runs as a
//! child process on a loopback port with the fixture models and deliberately small admission
//! limits (a config file in a temp dir), so that overload is reachable on two cores. Three
//! phases of `POST /v1/reward` (one two-subject item, references shared as in a GRPO group):
//! 0. `--callers` callers back to back for `--warmup-secs` (allocator and ONNX Runtime arenas
//!    grow to their working size; reported, not compared);
//! 1. the same load for `--baseline-secs`: the sustainable throughput;
//! 2. `--factor` times as many callers, no think time (a refused caller retries at once,
//!    ignoring `Retry-After`), for `--overload-secs`;
//! 3. the phase-1 load again for `--recovery-secs`.
//!
//! Every request has a client timeout, every phase an end time and a request cap, and every
//! outcome is recorded: the status (200, 429, 503, any other), no answer (client timeout or a
//! body cut short) or a connection error. The child's RSS (`VmRSS`) is sampled every 500 ms.
//! The run fails (exit 1) when any request got anything but 200, 429 or 503, when a 200 holds
//! no reward, when a 429/503 lacks `Retry-After`, or when the server counted a different
//! number of answered requests than the client received.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{b64, scene, BLUE, RED};

struct Args {
    manifest: PathBuf,
    callers: usize,
    factor: usize,
    warmup_secs: f64,
    baseline_secs: f64,
    overload_secs: f64,
    recovery_secs: f64,
    max_concurrent: usize,
    max_inflight_mib: u64,
    timeout_secs: u64,
    max_requests: usize,
    bodies: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        manifest: PathBuf::from("models/fixtures.toml"),
        callers: 8,
        factor: 10,
        warmup_secs: 5.0,
        baseline_secs: 10.0,
        overload_secs: 30.0,
        recovery_secs: 10.0,
        max_concurrent: 16,
        max_inflight_mib: 512,
        timeout_secs: 30,
        max_requests: 1_000_000,
        bodies: 128,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().expect("flag value");
        match k.as_str() {
            "--manifest" => a.manifest = PathBuf::from(v()),
            "--callers" => a.callers = v().parse().expect("callers"),
            "--factor" => a.factor = v().parse().expect("factor"),
            "--warmup-secs" => a.warmup_secs = v().parse().expect("seconds"),
            "--baseline-secs" => a.baseline_secs = v().parse().expect("seconds"),
            "--overload-secs" => a.overload_secs = v().parse().expect("seconds"),
            "--recovery-secs" => a.recovery_secs = v().parse().expect("seconds"),
            "--max-concurrent" => a.max_concurrent = v().parse().expect("max concurrent"),
            "--max-inflight-mib" => a.max_inflight_mib = v().parse().expect("MiB"),
            "--timeout-secs" => a.timeout_secs = v().parse().expect("seconds"),
            "--max-requests" => a.max_requests = v().parse().expect("requests"),
            "--bodies" => a.bodies = v().parse().expect("bodies"),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// The service's config: small admission limits so two cores can be overloaded, and a server
/// deadline (20 s) below the client timeout so a slow request is answered 504, not dropped.
fn write_config(args: &Args, dir: &Path) -> PathBuf {
    let config = format!(
        r#"[limits]
max_concurrent_requests = {}
max_inflight_bytes = {}
max_image_pixels = 1048576
max_request_pixels = 4194304
default_timeout_ms = 20000
"#,
        args.max_concurrent,
        args.max_inflight_mib << 20,
    );
    let path = dir.join("soak-config.toml");
    std::fs::write(&path, config).expect("write config");
    path
}

/// `n` reward bodies: one two-subject item each, a distinct 512x512 generated image, the same
/// two 256x256 references in all (a GRPO group's).
fn bodies(n: usize) -> Vec<bytes::Bytes> {
    let r1 = b64(&common::jpeg(&scene(256, 256, 7, &[RED]), 90));
    let r2 = b64(&common::jpeg(&scene(256, 256, 8, &[BLUE]), 90));
    (0..n)
        .map(|i| {
            let generated = b64(&common::jpeg(
                &scene(512, 512, 1000 + i as u64, &[RED, BLUE]),
                90,
            ));
            let body = serde_json::json!({"items": [{"image": generated,
                "prompt": "a red thing and a blue thing",
                "subjects": [{"name": "red", "reference": r1}, {"name": "blue", "reference": r2}]}]});
            bytes::Bytes::from(body.to_string())
        })
        .collect()
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// 200 with a numeric reward.
    Ok,
    /// 429 or 503 with `Retry-After`; `gate` says which limit refused it.
    Refused { status: u16, gate: &'static str },
    /// 429 or 503 without `Retry-After` (a failure: a trainer cannot back off honestly).
    RefusedNoRetryAfter(u16),
    /// 200 whose first result holds no reward (a failure: a hidden hole).
    OkWithoutReward,
    /// Any other status (a failure).
    Other(u16),
    /// The client timeout passed, or the body was cut short (a failure).
    NoAnswer(String),
    /// The connection failed (a failure).
    Connection(String),
}

impl Outcome {
    fn is_failure(&self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::Refused { .. })
    }
}

/// One request: when it started (seconds since the soak began), how long it took, its outcome.
struct Record {
    at: f64,
    ms: f64,
    outcome: Outcome,
}

/// Which admission gate a 429/503 names, from its message.
fn gate(status: u16, body: &serde_json::Value) -> &'static str {
    let message = body["error"].as_str().unwrap_or("");
    if status == 503 {
        "not ready"
    } else if message.contains("max_concurrent_requests") {
        "request slots"
    } else if message.contains("max_inflight_bytes") {
        "byte budget"
    } else {
        "model lane"
    }
}

/// The innermost error of a chain (e.g. "Broken pipe (os error 32)"), short enough to count.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Sends one body and classifies the answer.
async fn one(client: &reqwest::Client, url: &str, body: bytes::Bytes) -> Outcome {
    let r = match client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Outcome::NoAnswer(format!("timeout: {e}")),
        Err(e) => return Outcome::Connection(root_cause(&e)),
    };
    let status = r.status().as_u16();
    let retry_after = r.headers().contains_key("retry-after");
    let text = match r.bytes().await {
        Ok(b) => b,
        Err(e) => return Outcome::NoAnswer(format!("body: {}", root_cause(&e))),
    };
    let body: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
    match status {
        200 if body["results"][0]["reward"].is_number() => Outcome::Ok,
        200 => Outcome::OkWithoutReward,
        429 | 503 if retry_after => Outcome::Refused {
            status,
            gate: gate(status, &body),
        },
        429 | 503 => Outcome::RefusedNoRetryAfter(status),
        s => Outcome::Other(s),
    }
}

/// One phase's load: `callers` back to back until `seconds` pass or `cap` requests are sent.
async fn phase(
    client: &reqwest::Client,
    url: &str,
    bodies: &Arc<Vec<bytes::Bytes>>,
    callers: usize,
    seconds: f64,
    cap: usize,
    t0: Instant,
) -> (Vec<Record>, f64) {
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let sent = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let (client, bodies, url, sent) = (
                client.clone(),
                bodies.clone(),
                url.to_string(),
                sent.clone(),
            );
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut k = c;
                while Instant::now() < until && sent.fetch_add(1, Ordering::Relaxed) < cap {
                    let t = Instant::now();
                    let outcome = one(&client, &url, bodies[k % bodies.len()].clone()).await;
                    out.push(Record {
                        at: t.duration_since(t0).as_secs_f64(),
                        ms: t.elapsed().as_secs_f64() * 1e3,
                        outcome,
                    });
                    k += callers;
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("caller task"));
    }
    (all, started.elapsed().as_secs_f64())
}

/// `VmRSS` of `pid` in MiB (None once the process is gone).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// `psr_reward_requests_total` of `/v1/reward` by status, from `/metrics`.
async fn served(client: &reqwest::Client, base: &str) -> BTreeMap<String, f64> {
    let text = common::metrics_text(client, base).await;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if !line.starts_with("psr_reward_requests_total{")
            || !line.contains(r#"route="/v1/reward""#)
        {
            continue;
        }
        let status = line
            .split(r#"status=""#)
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("?")
            .to_string();
        let v: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(status).or_insert(0.0) += v;
    }
    out
}

/// A phase's figures.
struct Summary {
    name: &'static str,
    callers: usize,
    seconds: f64,
    records: Vec<Record>,
    rss: Vec<f64>,
}

impl Summary {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.records.iter().filter(|r| f(&r.outcome)).count()
    }

    fn ok_per_s(&self) -> f64 {
        self.count(|o| *o == Outcome::Ok) as f64 / self.seconds
    }

    fn latency(&self, f: impl Fn(&Outcome) -> bool, p: f64) -> f64 {
        let mut ms: Vec<f64> = self
            .records
            .iter()
            .filter(|r| f(&r.outcome))
            .map(|r| r.ms)
            .collect();
        ms.sort_by(f64::total_cmp);
        common::percentile(&ms, p)
    }
}

fn main() {
    if !common::invoked_by_cargo_bench("soak") {
        return;
    }
    let args = parse_args();
    let dir = std::env::temp_dir().join(format!("psr-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = write_config(&args, &dir);
    eprintln!("generating {} request bodies", args.bodies);
    let bodies = Arc::new(bodies(args.bodies));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let failed = rt.block_on(soak(&args, &config, bodies));
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        std::process::exit(1);
    }
}

/// Runs the three phases against a fresh service and prints the report; true on a failure.
async fn soak(args: &Args, config: &Path, bodies: Arc<Vec<bytes::Bytes>>) -> bool {
    let svc = common::Service::start_with_config(&args.manifest, Some(config)).await;
    let (base, pid) = (svc.base.clone(), svc.pid());
    let url = format!("{base}/v1/reward");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .build()
        .expect("client");
    // The shared references in the cache before anything is measured.
    let first = one(&client, &url, bodies[0].clone()).await;
    assert_eq!(first, Outcome::Ok, "first request");
    let idle_rss = rss_mib(pid).unwrap_or(f64::NAN);
    let before = served(&client, &base).await;

    // RSS sampler: every 500 ms, tagged with the phase running then.
    let current = Arc::new(AtomicUsize::new(0));
    let samples: Arc<Mutex<Vec<(f64, usize, f64)>>> = Arc::default();
    let t0 = Instant::now();
    let sampler = {
        let (current, samples) = (current.clone(), samples.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let Some(mib) = rss_mib(pid) else { break };
                let phase = current.load(Ordering::Relaxed);
                samples
                    .lock()
                    .expect("samples")
                    .push((t0.elapsed().as_secs_f64(), phase, mib));
            }
        })
    };

    let plan = [
        ("0 warm-up", args.callers, args.warmup_secs),
        ("1 capacity", args.callers, args.baseline_secs),
        ("2 overload", args.callers * args.factor, args.overload_secs),
        ("3 recovery", args.callers, args.recovery_secs),
    ];
    let mut phases = Vec::new();
    for (i, &(name, callers, seconds)) in plan.iter().enumerate() {
        current.store(i, Ordering::Relaxed);
        eprintln!("phase {name}: {callers} callers for {seconds} s");
        let (records, elapsed) = phase(
            &client,
            &url,
            &bodies,
            callers,
            seconds,
            args.max_requests,
            t0,
        )
        .await;
        phases.push(Summary {
            name,
            callers,
            seconds: elapsed,
            records,
            rss: Vec::new(),
        });
    }
    current.store(plan.len(), Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(600)).await;
    sampler.abort();
    let after = served(&client, &base).await;
    let alive = rss_mib(pid).is_some();
    drop(svc);

    let samples = samples.lock().expect("samples").clone();
    for &(_, p, mib) in &samples {
        if let Some(s) = phases.get_mut(p) {
            s.rss.push(mib);
        }
    }
    report(args, &phases, &samples, idle_rss, &before, &after, alive)
}

/// Prints the report and returns true when a request failed or the counts disagree.
fn report(
    args: &Args,
    phases: &[Summary],
    samples: &[(f64, usize, f64)],
    idle_rss: f64,
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    alive: bool,
) -> bool {
    let ok = |o: &Outcome| *o == Outcome::Ok;
    let refused = |o: &Outcome| matches!(o, Outcome::Refused { .. });
    let with_status =
        |s: u16| move |o: &Outcome| matches!(o, Outcome::Refused { status, .. } if *status == s);
    let min_max = |v: &[f64]| {
        (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    println!(
        "\n### Overload soak ({}, max_concurrent_requests {}, max_inflight_bytes {} MiB, client timeout {} s)\n",
        args.manifest.display(),
        args.max_concurrent,
        args.max_inflight_mib,
        args.timeout_secs
    );
    println!("| phase | callers | s | requests | 200 | 429 | 503 | failures | 200/s | p50 ms (200) | p99 ms (200) | p50 ms (429) | p99 ms (429) | RSS min MiB | RSS max MiB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in phases {
        let (lo, hi) = min_max(&p.rss);
        println!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0} |",
            p.name,
            p.callers,
            p.seconds,
            p.records.len(),
            p.count(ok),
            p.count(with_status(429)),
            p.count(with_status(503)),
            p.count(Outcome::is_failure),
            p.ok_per_s(),
            p.latency(ok, 0.5),
            p.latency(ok, 0.99),
            p.latency(refused, 0.5),
            p.latency(refused, 0.99),
            lo,
            hi
        );
    }

    println!("\nRefusals by the gate that refused them:\n");
    for p in phases {
        let mut gates: BTreeMap<(u16, &str), usize> = BTreeMap::new();
        for r in &p.records {
            if let Outcome::Refused { status, gate } = r.outcome {
                *gates.entry((status, gate)).or_default() += 1;
            }
        }
        let list: Vec<String> = gates
            .iter()
            .map(|((s, g), n)| format!("{s} {g}: {n}"))
            .collect();
        println!(
            "- phase {}: {}",
            p.name,
            if list.is_empty() {
                "none".into()
            } else {
                list.join(", ")
            }
        );
    }

    let failures: Vec<&Record> = phases
        .iter()
        .flat_map(|p| &p.records)
        .filter(|r| r.outcome.is_failure())
        .collect();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for r in &failures {
        *kinds.entry(format!("{:?}", r.outcome)).or_default() += 1;
    }
    println!(
        "\nFailures (another status, no answer, connection error, 200 without reward, refusal without Retry-After): {}",
        failures.len()
    );
    for (k, n) in &kinds {
        println!("- {n} x {k}");
    }
    if !failures.is_empty() {
        let at: Vec<f64> = failures.iter().map(|r| r.at).collect();
        let (lo, hi) = min_max(&at);
        let mut ms: Vec<f64> = failures.iter().map(|r| r.ms).collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "  between {lo:.1} s and {hi:.1} s after the soak began; p50 {:.0} ms after sending",
            common::percentile(&ms, 0.5)
        );
    }

    // Every answer the server counted reached the client, and no other.
    let delta =
        |s: &str| after.get(s).copied().unwrap_or(0.0) - before.get(s).copied().unwrap_or(0.0);
    let answered = |o: &Outcome| !matches!(o, Outcome::NoAnswer(_) | Outcome::Connection(_));
    let count_all =
        |f: &dyn Fn(&Outcome) -> bool| -> usize { phases.iter().map(|p| p.count(f)).sum() };
    let (client_total, client_answered, client_ok) =
        (count_all(&|_| true), count_all(&answered), count_all(&ok));
    let server_total: f64 = after.keys().map(|k| delta(k)).sum();
    let server_ok = delta("200");
    let counts_agree = server_ok as usize == client_ok && server_total as usize == client_answered;
    println!(
        "\nServer-side `psr_reward_requests_total{{route=\"/v1/reward\"}}` over the soak: {} answered, {} of them 200. Client: {} sent, {} answered, {} got 200 -> {}; {} requests got no HTTP answer.",
        server_total,
        server_ok,
        client_total,
        client_answered,
        client_ok,
        if counts_agree { "every answer the server gave reached the client" } else { "MISMATCH" },
        client_total - client_answered
    );

    let (base_tp, rec_tp) = (phases[1].ok_per_s(), phases[3].ok_per_s());
    let recovered = rec_tp >= 0.9 * base_tp;
    println!(
        "Recovery: phase 3 {:.1} rewards/s = {:.0}% of phase 1 ({:.1}/s) -> {}",
        rec_tp,
        100.0 * rec_tp / base_tp,
        base_tp,
        if recovered {
            "recovered (>= 90%)"
        } else {
            "NOT recovered (< 90%)"
        }
    );
    let all: Vec<f64> = samples.iter().map(|s| s.2).collect();
    let (lo, hi) = min_max(&all);
    println!(
        "RSS: {:.0} MiB idle after warm-up; {:.0}..{:.0} MiB over the soak ({} samples every 500 ms); the service {} after it",
        idle_rss,
        lo,
        hi,
        all.len(),
        if alive { "was still running" } else { "HAD EXITED" }
    );
    let series: Vec<String> = samples
        .iter()
        .step_by(4)
        .map(|(t, _, mib)| format!("{t:.0}s {mib:.0}"))
        .collect();
    println!("RSS every 2 s (MiB): {}", series.join(", "));
    !failures.is_empty() || !counts_agree || !alive
}
