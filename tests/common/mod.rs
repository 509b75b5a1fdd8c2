//! Shared harness of the integration tests: the real server on a loopback port, the real
//! ONNX Runtime, and the generated fixture models.
#![allow(dead_code)]

pub mod grpc;
pub mod judge;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use base64::Engine;
use psr_reward::config::Config;
use psr_reward::cpu_pool::CpuPool;
use psr_reward::metrics::Metrics;
use psr_reward::models::manifest::Manifest;
use psr_reward::models::Models;
use psr_reward::server::{self, AppState};

/// Folder of the generated fixtures (`make fixtures`).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("PSR_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generated"))
}

/// The process-wide ONNX Runtime environment (ONNX Runtime allows one per process).
pub fn ort_env() -> &'static ort::environment::Environment {
    static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        let lib = std::env::var_os("PSR_ORT_LIBRARY")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/libonnxruntime.so")
            });
        psr_reward::runtime::load_environment(Some(&lib))
            .unwrap_or_else(|e| panic!("{e} (run `make setup`)"))
    })
}

/// The default manifest (fixture models), with paths checked.
pub fn default_manifest() -> Manifest {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fixtures.toml");
    let mut m = Manifest::load(&path).unwrap();
    let fixtures = fixtures_dir();
    assert!(
        fixtures.join("detector.onnx").is_file(),
        "fixture models missing in {}: run `make fixtures`",
        fixtures.display()
    );
    // Point the manifest at the fixture folder in use (PSR_FIXTURES_DIR may move it).
    if let Some(d) = m.detector.as_mut() {
        d.path = fixtures.join("detector.onnx");
        d.tokenizer = Some(fixtures.join("tokenizer.json"));
    }
    if let Some(e) = m.embedder.as_mut() {
        e.path = fixtures.join("embedder.onnx");
    }
    if let Some(a) = m.aesthetic.as_mut() {
        a.path = fixtures.join("aesthetic.onnx");
    }
    m
}

/// A running server.
pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts the default model set.
    pub async fn start() -> Self {
        Self::start_with(default_manifest(), Config::default()).await
    }

    /// Starts `manifest` with `config`, waits for warm-up, listens on 127.0.0.1:0.
    pub async fn start_with(manifest: Manifest, config: Config) -> Self {
        let metrics = Arc::new(Metrics::new());
        let levels = config.limits.priority_levels;
        let m2 = metrics.clone();
        let models =
            tokio::task::spawn_blocking(move || Models::load(&manifest, ort_env(), &m2, levels))
                .await
                .unwrap()
                .unwrap();
        Self::start_models(models, config, metrics).await
    }

    /// Serves already-built models (e.g. with an injected fault).
    pub async fn start_models(models: Models, config: Config, metrics: Arc<Metrics>) -> Self {
        let cpu = CpuPool::new(2).unwrap();
        let state = AppState::new(config, metrics.clone(), cpu).unwrap();
        let models = Arc::new(models);
        state.set_models(models.clone()).unwrap();
        models.warm_up().await.unwrap();
        state.set_warmed();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(
            listener,
            state.clone(),
            async move {
                let _ = stopped.await;
            },
            std::time::Duration::from_secs(5),
        ));
        Self {
            base,
            client: reqwest::Client::new(),
            state,
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs JSON and returns (status, headers, body as JSON).
    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let resp = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let json = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, headers, json)
    }

    /// GETs `path` and parses the body as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// GETs `path` and returns the body as text.
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// One line of `/metrics` by prefix, as a number.
    pub async fn metric(&self, line_prefix: &str) -> f64 {
        let text = self.get_text("/metrics").await;
        text.lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("metric {line_prefix} not found"))
    }

    /// Stops serving and the model lanes.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        if let Some(m) = self.state.loaded_models() {
            let m = m.clone();
            tokio::task::spawn_blocking(move || m.shutdown())
                .await
                .unwrap();
        }
    }
}

/// PNG bytes of an RGB image.
pub fn png(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// Base64 of bytes.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A black `w`×`h` image with solid rectangles `(x0, y0, x1, y1, rgb)` (exclusive ends).
pub fn scene(w: u32, h: u32, rects: &[(u32, u32, u32, u32, [u8; 3])]) -> image::RgbImage {
    let mut img = image::RgbImage::new(w, h);
    for &(x0, y0, x1, y1, c) in rects {
        for y in y0..y1 {
            for x in x0..x1 {
                img.put_pixel(x, y, image::Rgb(c));
            }
        }
    }
    img
}

/// A solid image, base64 PNG.
pub fn solid_b64(w: u32, h: u32, c: [u8; 3]) -> String {
    b64(&png(&image::RgbImage::from_pixel(w, h, image::Rgb(c))))
}

pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

pub fn as_f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}
