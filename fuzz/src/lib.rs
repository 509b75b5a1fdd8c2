//! Shared harness of the fuzz targets: the real service router over the generated fixture
//! models and the real ONNX Runtime, driven in-process (no socket), and the checks every
//! answer must pass.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use psr_reward::config::Config;
use psr_reward::cpu_pool::CpuPool;
use psr_reward::metrics::Metrics;
use psr_reward::models::manifest::Manifest;
use psr_reward::models::Models;
use psr_reward::server::{self, AppState};
use tower::ServiceExt;

/// The repository root (this crate lives in `fuzz/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Folder of the generated fixtures (`make fixtures`).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("PSR_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/fixtures/generated"))
}

/// The image decoding limits of the default configuration, as the service derives them.
pub fn default_decode_limits() -> psr_reward::imaging::DecodeLimits {
    let cpu = CpuPool::new(1).expect("cpu pool");
    AppState::new(Config::default(), Arc::new(Metrics::new()), cpu)
        .expect("state")
        .decode_limits()
}

/// The service with the fixture model set, built once per fuzzing process.
pub struct Service {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    /// The ONNX Runtime environment, kept for the process's life.
    _env: Box<dyn std::any::Any + Send + Sync>,
    /// The request limits in force (the service defaults).
    pub config: Config,
}

/// The process-wide service (ONNX Runtime allows one environment per process).
pub fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(start_service)
}

fn start_service() -> Service {
    let lib = std::env::var_os("PSR_ORT_LIBRARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".deps/libonnxruntime.so"));
    let env = psr_reward::runtime::load_environment(Some(&lib))
        .unwrap_or_else(|e| panic!("{e} (run `make setup`)"));
    let mut manifest = Manifest::load(&repo_root().join("models/fixtures.toml"))
        .unwrap_or_else(|e| panic!("fixture manifest: {e}"));
    let fixtures = fixtures_dir();
    if let Some(d) = manifest.detector.as_mut() {
        d.path = fixtures.join("detector.onnx");
        d.tokenizer = Some(fixtures.join("tokenizer.json"));
    }
    if let Some(e) = manifest.embedder.as_mut() {
        e.path = fixtures.join("embedder.onnx");
    }
    if let Some(a) = manifest.aesthetic.as_mut() {
        a.path = fixtures.join("aesthetic.onnx");
    }
    let config = Config::default();
    let metrics = Arc::new(Metrics::new());
    let models = Models::load(&manifest, &env, &metrics, config.limits.priority_levels)
        .unwrap_or_else(|e| panic!("fixture models (run `make fixtures`): {e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cpu = CpuPool::new(1).expect("cpu pool");
    let state = AppState::new(config.clone(), metrics, cpu).expect("state");
    let models = Arc::new(models);
    state
        .set_models(models.clone())
        .unwrap_or_else(|e| panic!("fixture models vs. limits: {e}"));
    runtime
        .block_on(models.warm_up())
        .unwrap_or_else(|e| panic!("warm-up: {e}"));
    state.set_warmed();
    let router = runtime.block_on(async { server::router(state) });
    Service {
        runtime,
        router,
        _env: Box::new(env),
        config,
    }
}

impl Service {
    /// POSTs `body` as JSON to `path` in-process; returns the status and body bytes.
    pub fn post(&self, path: &str, body: &[u8]) -> (StatusCode, Vec<u8>) {
        let req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_vec()))
            .expect("request");
        self.runtime.block_on(async {
            let resp = self.router.clone().oneshot(req).await.expect("infallible");
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .expect("response body");
            (status, bytes.to_vec())
        })
    }
}

/// Sends `body` to `route` and checks the service's contract for any input: a JSON answer,
/// errors as `{"error","error_type"}`, no 500 (a panic or an internal error on a bad input).
/// Returns the parsed answer for route-specific checks.
pub fn post_and_check(route: &str, body: &[u8]) -> (StatusCode, serde_json::Value) {
    let (status, bytes) = service().post(route, body);
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{route}: {status} with a non-JSON body ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    if status.is_success() {
        assert_eq!(status, StatusCode::OK, "{route}: {json}");
        assert!(json.is_object(), "{route}: 200 with {json}");
    } else {
        assert!(
            json["error"].is_string() && json["error_type"].is_string(),
            "{route}: {status} without error/error_type: {json}"
        );
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{route}: 500 for a client input: {json}"
        );
    }
    (status, json)
}

/// Number of entries of `key` in a request body that parses as a JSON object, if any.
pub fn request_len(body: &[u8], key: &str) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get(key)?.as_array().map(Vec::len)
}

/// Builders of request bodies from fuzzer bytes: mostly well-typed JSON with real little PNGs
/// (so inputs reach the models and the reward engine), with any field sometimes replaced by an
/// arbitrary JSON value.
pub mod gen {
    use arbitrary::{Result, Unstructured};
    use base64::Engine;
    use serde_json::{json, Map, Value};

    /// Colour words the fixture detector finds, and a few it does not.
    pub const NAMES: [&str; 10] = [
        "red",
        "green",
        "blue",
        "yellow",
        "cyan",
        "magenta",
        "red square",
        "dog",
        "",
        " . ",
    ];

    /// An arbitrary JSON value (depth-limited).
    pub fn any(u: &mut Unstructured, depth: u32) -> Result<Value> {
        let pick = if depth == 0 {
            u.int_in_range(0..=4)?
        } else {
            u.int_in_range(0..=6)?
        };
        Ok(match pick {
            0 => Value::Null,
            1 => Value::Bool(u.arbitrary()?),
            2 => json!(u.arbitrary::<i64>()?),
            3 => serde_json::Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
            4 => Value::String(u.arbitrary()?),
            5 => {
                let n = u.int_in_range(0..=3)?;
                Value::Array((0..n).map(|_| any(u, depth - 1)).collect::<Result<_>>()?)
            }
            _ => {
                let mut m = Map::new();
                for _ in 0..u.int_in_range(0..=3)? {
                    m.insert(u.arbitrary()?, any(u, depth - 1)?);
                }
                Value::Object(m)
            }
        })
    }

    /// `good` most of the time, an arbitrary value sometimes.
    pub fn or_any(u: &mut Unstructured, good: Value) -> Result<Value> {
        Ok(if u.ratio(1, 8)? { any(u, 2)? } else { good })
    }

    /// Inserts `key` with probability 1/2.
    pub fn maybe(
        u: &mut Unstructured,
        m: &mut Map<String, Value>,
        key: &str,
        v: Value,
    ) -> Result<()> {
        if u.arbitrary()? {
            let v = or_any(u, v)?;
            m.insert(key.to_string(), v);
        }
        Ok(())
    }

    /// A PNG of a solid background with one coloured rectangle; sides may be thin or long.
    pub fn png(u: &mut Unstructured) -> Result<Vec<u8>> {
        let side = |u: &mut Unstructured| -> Result<u32> {
            Ok(match u.int_in_range(0..=9)? {
                0 => u.int_in_range(1..=4)?,
                1 => u.int_in_range(1000..=9000)?,
                _ => u.int_in_range(8..=96)?,
            })
        };
        let (mut w, mut h) = (side(u)?, side(u)?);
        // Keep the raw pixels small (the decoder limits are fuzzed by `decode_image`).
        while u64::from(w) * u64::from(h) > 1 << 20 {
            if w > h {
                w /= 2
            } else {
                h /= 2
            }
        }
        let bg: [u8; 3] = u.arbitrary()?;
        let fg: [u8; 3] = u.arbitrary()?;
        let (x0, y0) = (u.int_in_range(0..=w - 1)?, u.int_in_range(0..=h - 1)?);
        let (x1, y1) = (u.int_in_range(x0..=w)?, u.int_in_range(y0..=h)?);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let inside = (x0..x1).contains(&x) && (y0..y1).contains(&y);
            image::Rgb(if inside { fg } else { bg })
        });
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("png encode");
        Ok(out)
    }

    /// A base64 image string: a real PNG (bare or as a data URL), arbitrary bytes, or text.
    pub fn image_b64(u: &mut Unstructured) -> Result<Value> {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        Ok(Value::String(match u.int_in_range(0..=9)? {
            0 => b64(&u.arbitrary::<Vec<u8>>()?),
            1 => u.arbitrary()?,
            2 => format!("data:image/png;base64,{}", b64(&png(u)?)),
            3 => {
                // A real PNG with a few bytes changed.
                let mut p = png(u)?;
                for _ in 0..u.int_in_range(1..=4)? {
                    let i = u.choose_index(p.len())?;
                    p[i] = u.arbitrary()?;
                }
                b64(&p)
            }
            _ => b64(&png(u)?),
        }))
    }

    /// A name from [`NAMES`] or an arbitrary string.
    pub fn name(u: &mut Unstructured) -> Result<Value> {
        Ok(Value::String(if u.ratio(3, 4)? {
            u.choose(&NAMES)?.to_string()
        } else {
            u.arbitrary()?
        }))
    }

    /// A list of `1..=max` values from `f` (sometimes none, sometimes one too many).
    pub fn list(
        u: &mut Unstructured,
        max: usize,
        mut f: impl FnMut(&mut Unstructured) -> Result<Value>,
    ) -> Result<Value> {
        let n = u.int_in_range(0..=max + 1)?;
        Ok(Value::Array((0..n).map(|_| f(u)).collect::<Result<_>>()?))
    }

    fn common(u: &mut Unstructured, m: &mut Map<String, Value>) -> Result<()> {
        let timeout = match u.int_in_range(0..=3)? {
            0 => json!(u.arbitrary::<u64>()?),
            1 => json!(u.int_in_range(0..=5)?),
            _ => json!(u.int_in_range(1000..=60_000)?),
        };
        maybe(u, m, "timeout_ms", timeout)?;
        let priority = json!(u.int_in_range(0..=4)?);
        maybe(u, m, "priority", priority)
    }

    /// A `/v1/embed` body.
    pub fn embed(u: &mut Unstructured) -> Result<Value> {
        let mut m = Map::new();
        let images = list(u, 3, image_b64)?;
        m.insert("images".into(), or_any(u, images)?);
        common(u, &mut m)?;
        Ok(Value::Object(m))
    }

    /// A `/v1/detect` body.
    pub fn detect(u: &mut Unstructured) -> Result<Value> {
        let mut m = Map::new();
        let images = list(u, 2, image_b64)?;
        m.insert("images".into(), or_any(u, images)?);
        let phrases = list(u, 3, name)?;
        m.insert("phrases".into(), or_any(u, phrases)?);
        let thr = json!(u.int_in_range(-2..=12)? as f64 / 10.0);
        maybe(u, &mut m, "box_threshold", thr)?;
        common(u, &mut m)?;
        Ok(Value::Object(m))
    }

    fn subject(u: &mut Unstructured) -> Result<Value> {
        let reference = if u.ratio(1, 5)? {
            json!({ "ref": any(u, 0)? })
        } else {
            image_b64(u)?
        };
        let name = name(u)?;
        Ok(json!({ "name": name, "reference": or_any(u, reference)? }))
    }

    fn item(u: &mut Unstructured) -> Result<Value> {
        let mut m = Map::new();
        m.insert("image".into(), image_b64(u)?);
        let subjects = list(u, 3, subject)?;
        m.insert("subjects".into(), or_any(u, subjects)?);
        let prompt = Value::String(u.arbitrary()?);
        maybe(u, &mut m, "prompt", prompt)?;
        let task = *u.choose(&["position", "attribute", "four", "nope"])?;
        maybe(u, &mut m, "task", json!(task))?;
        Ok(Value::Object(m))
    }

    /// A `/v1/reward` body.
    pub fn reward(u: &mut Unstructured) -> Result<Value> {
        let mut m = Map::new();
        let items = list(u, 2, item)?;
        m.insert("items".into(), or_any(u, items)?);
        let mut weights = Map::new();
        for _ in 0..u.int_in_range(0..=3)? {
            let c = *u.choose(&[
                "subject_consistency",
                "position",
                "aesthetic",
                "semantic_alignment",
                "other",
            ])?;
            let w = match u.int_in_range(0..=3)? {
                0 => json!(u.arbitrary::<f64>()?),
                1 => json!(0.0),
                _ => json!(u.int_in_range(0..=10)? as f64 / 10.0),
            };
            weights.insert(c.into(), w);
        }
        maybe(u, &mut m, "rewards", Value::Object(weights))?;
        let mode = *u.choose(&["psr", "robust", "other"])?;
        maybe(u, &mut m, "mode", json!(mode))?;
        let mut options = Map::new();
        for (k, vals) in [
            ("alpha", &["skip_detection", "composite_white", "x"][..]),
            ("matching", &["psr", "assignment", "x"][..]),
            ("detection", &["per_category", "joint", "x"][..]),
        ] {
            let v = json!(*u.choose(vals)?);
            maybe(u, &mut options, k, v)?;
        }
        let clamp = json!(u.arbitrary::<bool>()?);
        maybe(u, &mut options, "clamp_boxes", clamp)?;
        maybe(u, &mut m, "options", Value::Object(options))?;
        common(u, &mut m)?;
        Ok(Value::Object(m))
    }
}

/// The request body for a route target: the raw fuzz input when its first byte is even (any
/// bytes, valid JSON or not), else a body built by `build` from the rest.
pub fn body(
    data: &[u8],
    build: impl FnOnce(&mut arbitrary::Unstructured) -> arbitrary::Result<serde_json::Value>,
) -> Option<Vec<u8>> {
    let (&first, rest) = data.split_first()?;
    if first % 2 == 0 {
        return Some(rest.to_vec());
    }
    let mut u = arbitrary::Unstructured::new(rest);
    let value = build(&mut u).ok()?;
    Some(serde_json::to_vec(&value).expect("serialise"))
}
