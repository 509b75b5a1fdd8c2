//! Execution providers: what a model asks for, and what it really got.

use serde::{Deserialize, Serialize};

/// An execution provider a model may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Cpu,
    Cuda,
    Tensorrt,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::Tensorrt => "tensorrt",
        })
    }
}

/// What to do when the requested provider cannot be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FallbackPolicy {
    /// Refuse to start: a GPU deployment silently running on CPU is worse than no deployment.
    #[default]
    Fail,
    /// Run on CPU and say so loudly (logs, `/info`).
    Cpu,
}

/// The provider a session really runs on, with the reason when it differs from the request.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderChoice {
    pub requested: Provider,
    pub actual: Provider,
    pub device_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}
