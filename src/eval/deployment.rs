//! What the scoring service computes and with what, read from its `/info` the same way in
//! process and over HTTP: the components it serves (the report says which it does not),
//! the longest deadline it accepts, and a fingerprint of everything that shapes a score
//! (models and their files, judge model and templates, normalisation, mode), which the resume journal
//! compares before it reuses a single result.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::backend::Backend;
use super::request::Components;
use super::EvalError;
use crate::reward::Mode;

/// The scoring service as the evaluation sees it.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub components: Components,
    /// `timeout_ms` of every request: the service's `limits.max_timeout_ms` (judges are slow).
    pub timeout_ms: u64,
    /// What must not change between a run and its resumption.
    pub fingerprint: Value,
}

/// How long a service may take to become ready.
const READY_WAIT: Duration = Duration::from_secs(300);

/// Reads every target's `/info` (waiting for `/ready`) and checks they agree.
pub async fn describe(backend: &Backend, mode: Mode) -> Result<Deployment, EvalError> {
    let targets = backend.targets();
    let mut first: Option<(Deployment, String)> = None;
    for (i, name) in targets.iter().enumerate() {
        wait_ready(backend, i, name).await?;
        let reply = backend
            .get(i, "/info")
            .await
            .map_err(|e| EvalError::Service(format!("{name}/info: {e}")))?;
        let info: Value = serde_json::from_slice(&reply.body).map_err(|e| {
            EvalError::Service(format!("{name}/info: not the service's JSON ({e})"))
        })?;
        let d = from_info(&info, mode);
        match &first {
            None => first = Some((d, name.clone())),
            Some((f, fname)) if f.fingerprint != d.fingerprint => {
                return Err(EvalError::Service(format!(
                    "{name} and {fname} do not run the same models, judge or templates; evaluate them separately"
                )))
            }
            Some(_) => {}
        }
    }
    first
        .map(|(d, _)| d)
        .ok_or_else(|| EvalError::Service("no service to evaluate with".into()))
}

async fn wait_ready(backend: &Backend, target: usize, name: &str) -> Result<(), EvalError> {
    let start = Instant::now();
    loop {
        let last = match backend.get(target, "/ready").await {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => format!("/ready answers {}", r.status),
            Err(e) => e,
        };
        if start.elapsed() > READY_WAIT {
            return Err(EvalError::Service(format!(
                "{name} is not ready after {} s: {last}",
                READY_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Components, deadline and fingerprint from one `/info` document.
fn from_info(info: &Value, mode: Mode) -> Deployment {
    let models = info["models"].as_array().cloned().unwrap_or_default();
    let has_role = |role: &str| models.iter().any(|m| m["role"] == role);
    let remote = info["remote"].as_array().cloned().unwrap_or_default();
    let remote_of = |service: &str| remote.iter().find(|r| r["service"] == service).cloned();
    let judge = remote_of("judge");
    let aesthetic_remote = remote_of("aesthetic_remote");

    let detects = has_role("detector") && has_role("embedder");
    let mut missing = BTreeMap::new();
    if !detects {
        for c in ["subject_consistency", "position"] {
            missing.insert(
                c.to_string(),
                "no detector and embedder in the model manifest".to_string(),
            );
        }
    }
    if judge.is_none() {
        missing.insert(
            "semantic_alignment".to_string(),
            "no judge is configured ([judge])".to_string(),
        );
    }
    let aesthetic = has_role("aesthetic") || has_role("preference") || aesthetic_remote.is_some();
    if !aesthetic {
        missing.insert(
            "aesthetic".to_string(),
            "no aesthetic model in the manifest and no [aesthetic_remote]".to_string(),
        );
    }
    let components = Components {
        subject_consistency: detects,
        semantic_alignment: judge.is_some(),
        position: detects,
        aesthetic,
        missing,
    };
    let timeout_ms = info["limits"]["max_timeout_ms"]
        .as_u64()
        .unwrap_or(60_000)
        .clamp(1, 3_600_000);

    let model_prints: Vec<Value> = models
        .iter()
        .map(|m| {
            json!({
                "name": m["name"], "role": m["role"], "path": m["path"],
                "signature": m["signature"], "preprocess": m["preprocess"],
                "file_blake3": m["path"].as_str().and_then(file_hash),
            })
        })
        .collect();
    let fingerprint = json!({
        "service_version": info["version"],
        "mode": mode,
        "models": model_prints,
        "judge": judge.map(|j| json!({"model": j["model"], "templates": j["templates"]})),
        "aesthetic_remote": aesthetic_remote.map(|a| a["url"].clone()),
        "normalization": info["rewards"]["normalization"],
    });
    Deployment {
        components,
        timeout_ms,
        fingerprint,
    }
}

/// The blake3 of a model file this machine can read (in process, or a service on this
/// host); `None` otherwise (a remote service's files are known by path and signature only).
fn file_hash(path: &str) -> Option<String> {
    let mut file = std::fs::File::open(Path::new(path)).ok()?;
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    Some(hasher.finalize().to_hex().to_string())
}
