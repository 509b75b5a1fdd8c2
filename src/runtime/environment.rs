//! The process-wide ONNX Runtime environment, loaded from a shared library at run time.

use std::path::{Path, PathBuf};

/// Why the runtime or a session could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No library path was configured.
    #[error("no ONNX Runtime library configured: set PSR_ORT_LIBRARY (or --onnxruntime-library, or runtime.onnxruntime_library) to libonnxruntime.so; `make run` installs one under .deps/")]
    NoLibrary,
    /// The library file does not exist.
    #[error("ONNX Runtime library not found at {0}: run `make setup` to install it, or point PSR_ORT_LIBRARY at an existing libonnxruntime.so")]
    MissingLibrary(PathBuf),
    /// The library could not be loaded or is too old.
    #[error("cannot load ONNX Runtime from {path}: {message} (this build needs ONNX Runtime >= 1.{min_minor}; `make setup` installs a matching one)")]
    Load {
        path: PathBuf,
        message: String,
        min_minor: u32,
    },
    /// Creating the environment failed.
    #[error("cannot create the ONNX Runtime environment: {0}")]
    Environment(String),
    /// A model file could not be turned into a session.
    #[error("cannot load model {path}: {message}")]
    Session { path: PathBuf, message: String },
    /// The requested execution provider could not be registered and the policy is `fail`.
    #[error("execution provider `{provider}` unavailable for {path}: {message}")]
    Provider {
        provider: String,
        path: PathBuf,
        message: String,
    },
}

/// Loads `libonnxruntime` from `path` and creates the environment all sessions share.
pub fn load_environment(
    path: Option<&Path>,
) -> Result<ort::environment::Environment, RuntimeError> {
    let path = path.ok_or(RuntimeError::NoLibrary)?;
    if !path.is_file() {
        return Err(RuntimeError::MissingLibrary(path.to_path_buf()));
    }
    let builder = ort::init_from(path).map_err(|e| RuntimeError::Load {
        path: path.to_path_buf(),
        message: e.to_string(),
        min_minor: ort::MINOR_VERSION,
    })?;
    builder
        .with_name("psr-reward")
        .with_telemetry(false)
        .build()
        .map_err(|e| RuntimeError::Environment(e.to_string()))
}
