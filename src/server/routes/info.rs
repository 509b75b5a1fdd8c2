//! `GET /info`: version, models (signatures, batching, the provider each instance really runs
//! on) and limits.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::LimitsConfig;
use crate::models::ModelInfo;
use crate::reward::judge::TemplateInfo;
use crate::server::state::AppState;

/// What the service is and runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Info {
    pub name: &'static str,
    pub version: &'static str,
    pub ready: bool,
    /// Threads of the preprocessing pool.
    pub cpu_threads: usize,
    #[schema(value_type = Vec<Object>)]
    pub models: Vec<ModelInfo>,
    #[schema(value_type = Object)]
    pub limits: LimitsConfig,
    /// The reward request limits a client can check before uploading.
    pub reward_limits: RewardLimits,
    /// What a reward request starts from: default weights, each component's
    /// normalisation, the failure policy (an evaluation's resume fingerprint includes them).
    pub rewards: RewardDefaults,
    /// What the admission gates hold now (see `limits.max_concurrent_requests` and
    /// `limits.max_inflight_bytes`).
    pub in_flight: InFlight,
    /// The remote services: URL, model, breaker state (never the API key).
    pub remote: Vec<RemoteInfo>,
    /// API keys at the door: their sources and count (never a key); null when none is asked.
    pub auth: Option<crate::server::auth::AuthInfo>,
}

/// `[rewards]` limits on one item (`rewards.max_subjects`, `rewards.max_prompt_chars`).
#[derive(Debug, Serialize, ToSchema)]
pub struct RewardLimits {
    pub max_subjects: usize,
    pub max_prompt_chars: usize,
}

/// `[rewards]` defaults of every reward request.
#[derive(Debug, Serialize, ToSchema)]
pub struct RewardDefaults {
    pub weights: BTreeMap<String, f64>,
    #[schema(value_type = Object)]
    pub normalization: BTreeMap<String, crate::reward::Normalization>,
    pub failure_policy: crate::reward::FailurePolicy,
}

/// Use of the admission gates at the moment of the call.
#[derive(Debug, Serialize, ToSchema)]
pub struct InFlight {
    pub requests: usize,
    pub bytes: u64,
}

/// One remote service.
#[derive(Debug, Serialize, ToSchema)]
pub struct RemoteInfo {
    pub service: &'static str,
    pub url: String,
    pub model: Option<String>,
    pub breaker: &'static str,
    /// The judge's active instruction template of each task: short content hash and
    /// source (`builtin`, `inline`, `file:<path>`), as named in every semantic-alignment
    /// result; absent for other services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templates: Option<BTreeMap<String, TemplateInfo>>,
}

/// Describes the service.
#[utoipa::path(get, path = "/info", tag = crate::server::docs::OPERATIONS,
    summary = "What the service runs: version, models, limits, remote services",
    description = "The served models with their ONNX signatures, batching settings and the \
execution provider each instance really runs on; the request limits; the remote services \
(URL, model, breaker state, and the judge's template hashes; never an API key).",
    responses((status = 200, description = "The service description", body = Info)))]
pub async fn info(State(state): State<AppState>) -> Json<Info> {
    Json(describe(&state))
}

/// The `/info` document (also the gRPC `Info` answer's `info_json`).
pub fn describe(state: &AppState) -> Info {
    Info {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        ready: state.is_ready(),
        cpu_threads: state.cpu().threads(),
        models: state.loaded_models().map(|m| m.infos()).unwrap_or_default(),
        limits: state.config().limits.clone(),
        reward_limits: RewardLimits {
            max_subjects: state.config().rewards.max_subjects,
            max_prompt_chars: state.config().rewards.max_prompt_chars,
        },
        rewards: RewardDefaults {
            weights: state.config().rewards.weights.clone(),
            normalization: state.config().rewards.normalization.clone(),
            failure_policy: state.config().rewards.failure_policy,
        },
        in_flight: InFlight {
            requests: state.admission().requests_in_flight(),
            bytes: state.admission().bytes_in_use(),
        },
        remote: remote_info(state),
        auth: state.api_keys().map(|k| k.info()),
    }
}

fn remote_info(state: &AppState) -> Vec<RemoteInfo> {
    let mut out = Vec::new();
    if let Some(j) = state.judge() {
        let (url, model) = j.describe();
        out.push(RemoteInfo {
            service: "judge",
            url,
            model: Some(model),
            breaker: j.health(),
            templates: Some(j.templates()),
        });
    }
    if let (Some(r), Some(c)) = (
        state.aesthetic_remote(),
        state.config().aesthetic_remote.as_ref(),
    ) {
        out.push(RemoteInfo {
            service: "aesthetic_remote",
            url: c.url.clone(),
            model: None,
            breaker: r.breaker_state(),
            templates: None,
        });
    }
    out
}
