//! Keys at the door: every request carries `Authorization: Bearer <key>`, checked against the
//! configured API keys (`[auth]`), or is refused with a JSON 401 (`unauthorized`).
//!
//! Keys come from a file (one per line, `#` comments) and/or an environment variable (keys
//! separated by commas or whitespace). Only their BLAKE3 digests are kept; a presented key is
//! hashed and compared with every digest in constant time (`blake3::Hash` equality), without
//! stopping at the first match, so timing tells nothing about which or how many bytes matched.
//! The file is reloaded on SIGHUP and when its content changes (polled: a Kubernetes Secret
//! update swaps a symlink, which no inode watch on the file itself sees); a reload that fails
//! keeps the previous keys. Keys are never logged, nor shown in `/info`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{FromFnLayer, Next};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::state::AppState;

/// Shortest accepted key: anything shorter is guessable.
pub const MIN_KEY_CHARS: usize = 16;

/// Routes open without a key unless `auth.protect_operational` is set: probes, Prometheus and
/// the API description (which carry no data).
pub const OPERATIONAL_PATHS: [&str; 5] =
    ["/health", "/ready", "/metrics", "/openapi.json", "/docs"];

/// `[auth]`: where the API keys come from. No source configured: no key is asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// File with one key per line (blank lines and `#` comments ignored); reloaded on SIGHUP
    /// and when its content changes.
    pub keys_file: Option<PathBuf>,
    /// Name of an environment variable holding keys separated by commas or whitespace.
    pub keys_env: Option<String>,
    /// Whether the operational routes (/health, /ready, /metrics, /openapi.json, /docs) need
    /// a key too (then give the probes and Prometheus one).
    pub protect_operational: bool,
    /// How often the key file is checked for changes.
    pub reload_interval_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            keys_file: None,
            keys_env: None,
            protect_operational: false,
            reload_interval_ms: 2000,
        }
    }
}

impl AuthConfig {
    /// Whether any key source is configured.
    pub fn enabled(&self) -> bool {
        self.keys_file.is_some() || self.keys_env.is_some()
    }
}

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The key file could not be read.
    #[error("cannot read API key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The named environment variable is not set (or not UTF-8).
    #[error("API key environment variable {0} is not set")]
    Env(String),
    /// A key is too short; the line is named, never the key.
    #[error("API key {source_name} entry {entry} is shorter than {MIN_KEY_CHARS} characters")]
    TooShort { source_name: String, entry: usize },
    /// Keys are required but none is configured: the service would refuse everything.
    #[error("[auth] is configured but no API key was found in {0}")]
    NoKeys(String),
}

/// What `/info` says about authentication: the sources and the key count, never a key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuthInfo {
    #[schema(value_type = Option<String>)]
    pub keys_file: Option<PathBuf>,
    pub keys_env: Option<String>,
    pub keys: usize,
    pub protect_operational: bool,
}

/// The loaded keys, as digests, and the file content they came from.
struct KeySet {
    digests: Vec<blake3::Hash>,
    file_digest: Option<blake3::Hash>,
}

/// The API keys of the running service, swapped whole on reload.
pub struct ApiKeys {
    config: AuthConfig,
    current: RwLock<Arc<KeySet>>,
}

impl ApiKeys {
    /// Loads the configured keys; `None` when `[auth]` names no source.
    pub fn from_config(config: &AuthConfig) -> Result<Option<Arc<Self>>, AuthError> {
        if !config.enabled() {
            return Ok(None);
        }
        let set = load(config)?;
        Ok(Some(Arc::new(Self {
            config: config.clone(),
            current: RwLock::new(Arc::new(set)),
        })))
    }

    /// Whether `presented` is one of the keys. Every digest is compared, in constant time.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let digest = blake3::hash(presented);
        let set = self.snapshot();
        set.digests
            .iter()
            .fold(false, |found, key| found | (*key == digest))
    }

    /// Re-reads the key sources; `Ok(true)` when the keys changed. On error the previous keys
    /// stay in force.
    pub fn reload(&self) -> Result<bool, AuthError> {
        let set = load(&self.config)?;
        let old = self.snapshot();
        if set.file_digest == old.file_digest && set.digests == old.digests {
            return Ok(false);
        }
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
        Ok(true)
    }

    /// Number of keys now accepted.
    pub fn len(&self) -> usize {
        self.snapshot().digests.len()
    }

    /// Whether no key is loaded (never after a successful start).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `path` is open without a key.
    pub fn is_public(&self, path: &str) -> bool {
        // The playground's files hold no data, and a browser cannot send a key to load a page.
        super::routes::playground::PATHS.contains(&path)
            || !self.config.protect_operational
                && OPERATIONAL_PATHS
                    .iter()
                    .any(|p| path == *p || (*p == "/docs" && path.starts_with("/docs/")))
    }

    /// Whether the operational routes and RPCs (health, reflection) need a key too.
    pub fn protects_operational(&self) -> bool {
        self.config.protect_operational
    }

    /// The `/info` description (sources and count, never a key).
    pub fn info(&self) -> AuthInfo {
        AuthInfo {
            keys_file: self.config.keys_file.clone(),
            keys_env: self.config.keys_env.clone(),
            keys: self.len(),
            protect_operational: self.config.protect_operational,
        }
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Keys of a file's text: one per line, trimmed; blank lines and `#` comments skipped.
pub fn parse_file_keys(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Keys of an environment variable's value: separated by commas or whitespace.
pub fn parse_env_keys(value: &str) -> Vec<&str> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|k| !k.is_empty())
        .collect()
}

fn digests(keys: &[&str], source_name: &str) -> Result<Vec<blake3::Hash>, AuthError> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            if k.chars().count() < MIN_KEY_CHARS {
                Err(AuthError::TooShort {
                    source_name: source_name.to_string(),
                    entry: i + 1,
                })
            } else {
                Ok(blake3::hash(k.as_bytes()))
            }
        })
        .collect()
}

fn read_file(path: &Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads every configured source into one key set.
fn load(config: &AuthConfig) -> Result<KeySet, AuthError> {
    let mut all = Vec::new();
    let mut file_digest = None;
    let mut sources = Vec::new();
    if let Some(path) = &config.keys_file {
        let text = read_file(path)?;
        file_digest = Some(blake3::hash(text.as_bytes()));
        let name = path.display().to_string();
        all.extend(digests(&parse_file_keys(&text), &name)?);
        sources.push(name);
    }
    if let Some(var) = &config.keys_env {
        let value = std::env::var(var).map_err(|_| AuthError::Env(var.clone()))?;
        all.extend(digests(&parse_env_keys(&value), var)?);
        sources.push(format!("${var}"));
    }
    if all.is_empty() {
        return Err(AuthError::NoKeys(sources.join(" and ")));
    }
    all.sort_unstable_by_key(|d| *d.as_bytes());
    all.dedup();
    Ok(KeySet {
        digests: all,
        file_digest,
    })
}

/// The layer [`layer`] returns: the key check, or a pass-through.
pub type AuthLayer = tower::util::Either<
    FromFnLayer<fn_type::Check, Arc<ApiKeys>, (State<Arc<ApiKeys>>, Request)>,
    tower::layer::util::Identity,
>;

/// The router layer that asks for a key; a pass-through when no key is configured.
pub fn layer(state: &AppState) -> AuthLayer {
    tower::util::option_layer(state.api_keys().map(|keys| {
        axum::middleware::from_fn_with_state(keys.clone(), require_key as fn_type::Check)
    }))
}

/// The middleware function's type, spelled once.
mod fn_type {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;

    /// `require_key` as a function pointer (its future boxed), so the layer type can be named.
    pub type Check = fn(
        State<Arc<ApiKeys>>,
        Request,
        Next,
    ) -> Pin<Box<dyn Future<Output = Response> + Send + 'static>>;
}

/// Passes requests with an accepted key (or to a public route); answers 401 otherwise.
fn require_key(
    State(keys): State<Arc<ApiKeys>>,
    req: Request,
    next: Next,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send + 'static>> {
    Box::pin(async move {
        if keys.is_public(req.uri().path()) || presented_key(&req).is_some_and(|k| keys.accepts(k))
        {
            next.run(req).await
        } else {
            unauthorized()
        }
    })
}

/// The bearer token of the request, if it has one.
fn presented_key(req: &Request) -> Option<&[u8]> {
    bearer_token(req.headers())
}

/// The token of an `Authorization: Bearer <token>` header (HTTP header or gRPC metadata).
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

/// The 401 answer, with the challenge RFC 6750 asks for.
fn unauthorized() -> Response {
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid API key is required: send `Authorization: Bearer <key>`",
    )
    .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// The running reload task; dropping it stops the task.
pub struct Reloader(tokio::task::JoinHandle<()>);

impl Drop for Reloader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reloads the keys on SIGHUP and whenever the key file's content changes, until dropped.
pub fn spawn_reloader(keys: Arc<ApiKeys>) -> Reloader {
    let interval = Duration::from_millis(keys.config.reload_interval_ms.max(50));
    // Registered before the task starts: once `serve` runs, SIGHUP reloads and never kills.
    let mut hangup = hangup_stream();
    Reloader(tokio::spawn(async move {
        loop {
            let by_signal = tokio::select! {
                () = tokio::time::sleep(interval) => false,
                () = next_hangup(&mut hangup) => true,
            };
            if !by_signal && keys.config.keys_file.is_none() {
                continue;
            }
            match keys.reload() {
                Ok(true) => tracing::info!(keys = keys.len(), "API keys reloaded"),
                Ok(false) if by_signal => {
                    tracing::info!(keys = keys.len(), "SIGHUP: API keys unchanged")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "API keys not reloaded; the previous keys stay in force")
                }
            }
        }
    }))
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_stream() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(not(unix))]
fn hangup_stream() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(h: &mut Hangup) {
    match h {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_parse_and_validate() {
        for text in [
            include_str!("../../deploy/base/config/config.toml"),
            include_str!("../../docker/config.toml"),
        ] {
            let c: crate::config::Config = toml::from_str(text).unwrap();
            c.validate().unwrap();
        }
        let c: crate::config::Config =
            toml::from_str(include_str!("../../deploy/base/config/config.toml")).unwrap();
        assert!(c.auth.enabled() && !c.auth.protect_operational);
    }

    #[test]
    fn file_and_env_parsing() {
        assert_eq!(
            parse_file_keys("# comment\n  key-one-0123456789  \n\nkey-two-0123456789\n"),
            ["key-one-0123456789", "key-two-0123456789"]
        );
        assert_eq!(parse_env_keys(" a,b  c,,"), ["a", "b", "c"]);
    }

    #[test]
    fn short_key_is_refused_without_showing_it() {
        let dir = std::env::temp_dir().join(format!("psr-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, "long-enough-key-0001\nshortkey\n").unwrap();
        let config = AuthConfig {
            keys_file: Some(path.clone()),
            ..AuthConfig::default()
        };
        let err = ApiKeys::from_config(&config).err().unwrap().to_string();
        assert!(err.contains("entry 2"), "{err}");
        assert!(!err.contains("shortkey"), "{err}");
        std::fs::write(&path, "# nothing\n").unwrap();
        let err = ApiKeys::from_config(&config).err().unwrap();
        assert!(matches!(err, AuthError::NoKeys(_)), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn accepts_exactly_the_configured_keys() {
        let config = AuthConfig {
            keys_env: Some("PSR_AUTH_UNIT_TEST_KEYS".into()),
            ..AuthConfig::default()
        };
        // SAFETY: this test alone reads or writes this variable.
        unsafe {
            std::env::set_var(
                "PSR_AUTH_UNIT_TEST_KEYS",
                "first-key-0123456789, second-key-0123456789",
            )
        };
        let keys = ApiKeys::from_config(&config).unwrap().unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.accepts(b"first-key-0123456789"));
        assert!(keys.accepts(b"second-key-0123456789"));
        assert!(!keys.accepts(b"first-key-012345678"));
        assert!(!keys.accepts(b""));
        assert!(keys.is_public("/health") && keys.is_public("/docs/index.html"));
        assert!(!keys.is_public("/info") && !keys.is_public("/v1/reward"));
        // The playground's files stay open even when the operational routes are closed.
        let closed = ApiKeys::from_config(&AuthConfig {
            protect_operational: true,
            ..config
        })
        .unwrap()
        .unwrap();
        assert!(!closed.is_public("/health") && !closed.is_public("/metrics"));
        assert!(closed.is_public("/") && closed.is_public("/playground/app.js"));
        assert!(!closed.is_public("/playground/other"));
    }
}
