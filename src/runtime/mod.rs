//! ONNX Runtime: loading the shared library, choosing execution providers, building sessions
//! and describing their signatures.

mod environment;
mod provider;
mod session;

pub use environment::{load_environment, RuntimeError};
pub use provider::{FallbackPolicy, Provider, ProviderChoice};
pub use session::{build_session, describe, SessionOptions, Signature, TensorSignature};
