//! Shared pieces of the benchmarks: the service and its Python peers as child processes, raw
//! onnxruntime in Python, metrics scraping, percentiles, JPEG encoding, generated scenes.
#![allow(dead_code)]

use std::io::Cursor;

use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `PSR_ORT_LIBRARY`, else the library `make setup` installs.
pub fn ort_library() -> PathBuf {
    std::env::var_os("PSR_ORT_LIBRARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/libonnxruntime.so"))
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// JPEG bytes of an image at `quality`.
pub fn jpeg(img: &image::RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut out), quality);
    img.write_with_encoder(enc).expect("jpeg encode");
    out
}

/// A server (the release service, or a Python peer) in a child process; SIGTERM on drop.
pub struct Service {
    child: Child,
    pub base: String,
}

impl Service {
    /// Starts `psr-reward serve` on `manifest` and waits until `/ready` answers 200.
    /// `PSR_*` variables of the benchmark's own environment (e.g. `PSR_CPU_THREADS`) pass on.
    pub async fn start(manifest: &Path) -> Self {
        Self::start_with_config(manifest, None).await
    }

    /// The child's process id (e.g. to read its RSS from `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// As [`Service::start`], with a config file (`PSR_CONFIG`) when given: a benchmark that
    /// needs other limits than the defaults writes one.
    pub async fn start_with_config(manifest: &Path, config: Option<&Path>) -> Self {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_psr-reward"));
        if let Some(config) = config {
            command.env("PSR_CONFIG", config);
        }
        command
            .arg("serve")
            .env("PORT", port.to_string())
            .env("PSR_HOST", "127.0.0.1")
            .env("PSR_MODELS", manifest)
            .env("PSR_ORT_LIBRARY", ort_library())
            .env("RUST_LOG", "warn");
        Self::spawn(command, port, "/ready").await
    }

    /// A Python peer server (`benches/peers/<script>`) serving `manifest`'s models, started
    /// with [`peer_python`] and ready once `/health` answers 200.
    pub async fn peer(script: &str, manifest: &Path) -> Self {
        let port = free_port();
        let mut command = Command::new(peer_python());
        command
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("benches/peers")
                    .join(script),
            )
            .arg("--manifest")
            .arg(manifest)
            .args(["--port", &port.to_string()]);
        Self::spawn(command, port, "/health").await
    }

    async fn spawn(mut command: Command, port: u16, ready_path: &str) -> Self {
        let child = command.stdout(Stdio::null()).spawn().expect("start server");
        let svc = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        let url = format!("{}{ready_path}", svc.base);
        while !matches!(client.get(&url).send().await, Ok(r) if r.status() == 200) {
            assert!(Instant::now() < deadline, "server never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        svc
    }
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

/// The Python that runs the peers: `PSR_BENCH_PYTHON`, else the project's `.venv` (with
/// `make bench-env`'s FastAPI and uvicorn).
pub fn peer_python() -> PathBuf {
    std::env::var_os("PSR_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// Raw onnxruntime through its Python binding (`benches/peers/raw_ort.py`): images/s of
/// `model` per batch size, `seconds` each.
pub fn raw_python_throughput(model: &Path, batches: &[usize], seconds: f64) -> Vec<(usize, f64)> {
    let list: Vec<String> = batches.iter().map(usize::to_string).collect();
    let out = Command::new(peer_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/raw_ort.py"))
        .arg("--model")
        .arg(model)
        .args([
            "--batches",
            &list.join(","),
            "--seconds",
            &seconds.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run raw_ort.py");
    assert!(out.status.success(), "raw_ort.py failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("raw_ort.py line");
            (
                v["batch"].as_u64().expect("batch") as usize,
                v["images_per_s"].as_f64().expect("rate"),
            )
        })
        .collect()
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The service's `/metrics` text.
pub async fn metrics_text(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the first `/metrics` line starting with `name` (0 when absent).
pub async fn metric(client: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = metrics_text(client, base).await;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// True when started by `cargo bench` (which passes `--bench`); `cargo test --all-targets`
/// also starts bench targets, and then they only say how to run them.
pub fn invoked_by_cargo_bench(name: &str) -> bool {
    let yes = std::env::args().any(|a| a == "--bench");
    if !yes {
        eprintln!("{name} benchmark: run it with `cargo bench --bench {name} -- ...`");
    }
    yes
}

/// A seeded generator of small numbers.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n)) as u32
    }
}

/// A textured scene with solid red and blue shapes (the fixture detector's categories).
pub fn scene(w: u32, h: u32, seed: u64, shapes: &[[u8; 3]]) -> image::RgbImage {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = ((x * 7 + y * 3 + seed as u32) % 90) as u8;
        image::Rgb([v, v / 2 + 30, 90 - v])
    });
    for (k, &c) in shapes.iter().enumerate() {
        // Each shape in its own half, so shapes of different colours never overlap.
        let (x0, y0) = (k as u32 * w / 2 + rng.next(w / 4), rng.next(h / 2));
        let (sw, sh) = (w / 8 + rng.next(w / 8), h / 8 + rng.next(h / 4));
        for y in y0..(y0 + sh).min(h) {
            for x in x0..(x0 + sw).min(w) {
                img.put_pixel(x, y, image::Rgb(c));
            }
        }
    }
    img
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub const RED: [u8; 3] = [255, 0, 0];
pub const BLUE: [u8; 3] = [0, 0, 255];

/// Distinct, photo-like 512x512 JPEGs (quality 90): smooth gradients plus seeded blobs, as
/// the serving and preprocessing benches send.
pub fn photo_jpegs(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut state =
                0x9E37_79B9_7F4A_7C15u64 ^ (i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let mut rnd = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 1000) as f32 / 1000.0
            };
            let blobs: Vec<(f32, f32, f32, [f32; 3])> = (0..6)
                .map(|_| {
                    (
                        rnd() * 512.0,
                        rnd() * 512.0,
                        20.0 + rnd() * 120.0,
                        [rnd(), rnd(), rnd()],
                    )
                })
                .collect();
            let img = image::RgbImage::from_fn(512, 512, |x, y| {
                let (xf, yf) = (x as f32, y as f32);
                let mut c = [
                    xf / 512.0,
                    yf / 512.0,
                    0.5 * (1.0 + ((xf + yf) / 40.0 + i as f32).sin()),
                ];
                for (bx, by, r, col) in &blobs {
                    let d2 = (xf - bx).powi(2) + (yf - by).powi(2);
                    let w = (-d2 / (r * r)).exp();
                    for k in 0..3 {
                        c[k] = c[k] * (1.0 - w) + col[k] * w;
                    }
                }
                image::Rgb(c.map(|v| (v.clamp(0.0, 1.0) * 255.0) as u8))
            });
            jpeg(&img, 90)
        })
        .collect()
}
