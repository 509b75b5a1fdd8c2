//! `[grpc]`: the gRPC listener. Off by default: a deployment that only speaks HTTP opens no
//! second port; `enabled = true` (or `--grpc-port` / `PSR_GRPC_PORT`) turns it on.

use serde::{Deserialize, Serialize};

/// Where the gRPC API listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Serve the gRPC API (proto/psr_reward/v1/reward.proto) on its own port.
    pub enabled: bool,
    /// Address to bind; unset: `server.host`.
    pub host: Option<String>,
    /// Port to listen on (plaintext HTTP/2; `[tls]` covers the HTTP listener only).
    pub port: u16,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: None,
            port: 50051,
        }
    }
}

impl GrpcConfig {
    /// The `host:port` to bind, `server_host` when `host` is unset.
    pub fn address(&self, server_host: &str) -> String {
        format!(
            "{}:{}",
            self.host.as_deref().unwrap_or(server_host),
            self.port
        )
    }
}
