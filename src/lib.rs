//! psr-reward: a batched reward service for multi-subject personalised image generation.
//!
//! The crate is split by responsibility, the way text-embeddings-inference splits router / core /
//! backends:
//! - [`config`]: the typed configuration (TOML file, CLI flags, env vars) and its validation;
//! - [`imaging`]: bounded image decoding and Pillow-exact preprocessing into model tensors;
//! - [`runtime`]: the ONNX Runtime environment, execution-provider choice and session signatures;
//! - [`models`]: model manifests and the adapters that turn model inputs/outputs into typed values;
//! - [`batcher`]: per-model queues that merge work from all callers into model batches;
//! - [`explain`]: reward explanations (annotated image, crops), drawn with [`fonts`];
//! - [`server`]: the HTTP edge (axum), where library errors become JSON responses;
//! - [`metrics`]: the Prometheus families, all registered at start-up;
//! - [`cpu_pool`]: the bounded thread pool for parsing, decoding and preprocessing.

pub mod batcher;
pub mod config;
pub mod cpu_pool;
pub mod eval;
pub mod explain;
pub mod fonts;
pub mod imaging;
pub mod metrics;
pub mod models;
pub mod reward;
pub mod runtime;
pub mod server;
