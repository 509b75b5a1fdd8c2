//! Building ONNX Runtime sessions with the requested provider, and describing their I/O.

use std::path::{Path, PathBuf};

use ort::session::Session;
use serde::Serialize;

use super::{FallbackPolicy, Provider, ProviderChoice, RuntimeError};

/// How to build one session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub path: PathBuf,
    pub provider: Provider,
    pub device_id: i32,
    pub fallback: FallbackPolicy,
    /// Threads ONNX Runtime uses inside one operator (0 = its default, one per core).
    pub intra_threads: usize,
}

/// One input or output of a model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TensorSignature {
    pub name: String,
    /// Element type as ONNX Runtime reports it (`Float32`, `Int64`, ...).
    pub dtype: String,
    /// Dimensions; `-1` is dynamic.
    pub shape: Vec<i64>,
}

/// A model's inputs and outputs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Signature {
    pub inputs: Vec<TensorSignature>,
    pub outputs: Vec<TensorSignature>,
}

/// Builds a session on the requested provider, applying the fallback policy, and reports the
/// provider it really runs on.
pub fn build_session(
    env: &ort::environment::Environment,
    opts: &SessionOptions,
) -> Result<(Session, ProviderChoice), RuntimeError> {
    let path = opts.path.as_path();
    if !path.is_file() {
        return Err(session_error(path, "file not found"));
    }
    let attempt = match opts.provider {
        Provider::Cpu => None,
        requested => Some(build_with_provider(env, opts, requested)),
    };
    match attempt {
        Some(Ok(session)) => Ok((
            session,
            ProviderChoice {
                requested: opts.provider,
                actual: opts.provider,
                device_id: Some(opts.device_id),
                fallback_reason: None,
            },
        )),
        Some(Err(message)) if opts.fallback == FallbackPolicy::Cpu => {
            tracing::warn!(
                model = %path.display(),
                provider = %opts.provider,
                reason = %message,
                "EXECUTION PROVIDER UNAVAILABLE: falling back to CPU"
            );
            let session = build_cpu(env, opts)?;
            Ok((
                session,
                ProviderChoice {
                    requested: opts.provider,
                    actual: Provider::Cpu,
                    device_id: None,
                    fallback_reason: Some(message),
                },
            ))
        }
        Some(Err(message)) => Err(RuntimeError::Provider {
            provider: opts.provider.to_string(),
            path: path.to_path_buf(),
            message,
        }),
        None => Ok((
            build_cpu(env, opts)?,
            ProviderChoice {
                requested: Provider::Cpu,
                actual: Provider::Cpu,
                device_id: None,
                fallback_reason: None,
            },
        )),
    }
}

fn base_builder(
    env: &ort::environment::Environment,
    opts: &SessionOptions,
) -> Result<ort::session::builder::SessionBuilder, String> {
    let mut b = Session::builder(env).map_err(|e| e.to_string())?;
    if opts.intra_threads > 0 {
        b = b
            .with_intra_threads(opts.intra_threads)
            .map_err(|e| e.to_string())?;
    }
    // Spinning intra-op threads would burn the cores the CPU pool needs for decoding.
    b.with_config_entry("session.intra_op.allow_spinning", "0")
        .map_err(|e| e.to_string())
}

fn build_cpu(
    env: &ort::environment::Environment,
    opts: &SessionOptions,
) -> Result<Session, RuntimeError> {
    let mut b = base_builder(env, opts).map_err(|m| session_error(&opts.path, &m))?;
    b.commit_from_file(&opts.path)
        .map_err(|e| session_error(&opts.path, &e.to_string()))
}

/// Registers `provider` with `error_on_failure`, so a CPU-only library cannot silently
/// swallow the request (ort's default is to log and continue on CPU).
fn build_with_provider(
    env: &ort::environment::Environment,
    opts: &SessionOptions,
    provider: Provider,
) -> Result<Session, String> {
    let dispatch = provider_dispatch(provider, opts.device_id)?;
    let mut b = base_builder(env, opts)?
        .with_execution_providers([dispatch])
        .map_err(|e| e.to_string())?;
    b.commit_from_file(&opts.path).map_err(|e| e.to_string())
}

#[cfg(feature = "cuda")]
fn provider_dispatch(
    provider: Provider,
    device_id: i32,
) -> Result<ort::ep::ExecutionProviderDispatch, String> {
    use ort::ep::ExecutionProvider;
    match provider {
        Provider::Cuda => {
            if !ort::ep::CUDA::is_available().unwrap_or(false) {
                return Err("the loaded ONNX Runtime library has no CUDA execution provider (install onnxruntime-gpu)".into());
            }
            Ok(ort::ep::CUDA::default()
                .with_device_id(device_id)
                .build()
                .error_on_failure())
        }
        Provider::Tensorrt => tensorrt_dispatch(device_id),
        Provider::Cpu => Err("cpu needs no registration".into()),
    }
}

#[cfg(all(feature = "cuda", feature = "tensorrt"))]
fn tensorrt_dispatch(device_id: i32) -> Result<ort::ep::ExecutionProviderDispatch, String> {
    use ort::ep::ExecutionProvider;
    if !ort::ep::TensorRT::is_available().unwrap_or(false) {
        return Err("the loaded ONNX Runtime library has no TensorRT execution provider".into());
    }
    Ok(ort::ep::TensorRT::default()
        .with_device_id(device_id)
        .build()
        .error_on_failure())
}

#[cfg(all(feature = "cuda", not(feature = "tensorrt")))]
fn tensorrt_dispatch(_device_id: i32) -> Result<ort::ep::ExecutionProviderDispatch, String> {
    Err("this binary was built without the `tensorrt` feature".into())
}

#[cfg(not(feature = "cuda"))]
fn provider_dispatch(
    provider: Provider,
    _device_id: i32,
) -> Result<ort::ep::ExecutionProviderDispatch, String> {
    Err(format!(
        "this binary was built without GPU support; rebuild with `--features cuda` to use `{provider}`"
    ))
}

fn session_error(path: &Path, message: &str) -> RuntimeError {
    RuntimeError::Session {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The session's inputs and outputs, for `/info` and for adapter validation.
pub fn describe(session: &Session) -> Signature {
    let convert = |outlets: &[ort::value::Outlet]| {
        outlets
            .iter()
            .map(|o| TensorSignature {
                name: o.name().to_string(),
                dtype: o
                    .dtype()
                    .tensor_type()
                    .map_or_else(|| "non-tensor".to_string(), |t| format!("{t:?}")),
                shape: o
                    .dtype()
                    .tensor_shape()
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default(),
            })
            .collect()
    };
    Signature {
        inputs: convert(session.inputs()),
        outputs: convert(session.outputs()),
    }
}
