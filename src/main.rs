//! `psr-reward` command line: `serve` runs the service; `models check` checks exported models
//! against their adapters (src/models/check/); `eval` scores PSRBench (src/eval/).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use psr_reward::config::Config;
use psr_reward::cpu_pool::CpuPool;
use psr_reward::metrics::Metrics;
use psr_reward::models::check;
use psr_reward::models::manifest::Manifest;
use psr_reward::models::Models;
use psr_reward::runtime::load_environment;
use psr_reward::server::{self, AppState};

#[derive(Parser)]
#[command(
    name = "psr-reward",
    version,
    about = "Batched reward service for personalised image generation RL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the HTTP service.
    Serve(Overrides),
    /// Inspect model manifests.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Score PSRBench results with the service's engine and write the report.
    Eval(Box<psr_reward::eval::cli::EvalArgs>),
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Check a manifest's models (or one .onnx file) against their adapters: signature,
    /// a real forward pass, timing per batch size, providers and batch safety. Exits 1 on
    /// any problem.
    Check(CheckArgs),
}

/// `models check` arguments.
#[derive(Args, Clone)]
struct CheckArgs {
    /// A model manifest (TOML) or a single .onnx file (then give `--as`); defaults to the
    /// configured manifest.
    target: Option<PathBuf>,
    /// The adapter a single .onnx file is checked against: detector (Grounding DINO HF
    /// export), embedder, aesthetic or preference.
    #[arg(long = "as", value_name = "ADAPTER")]
    adapter: Option<check::Adapter>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    overrides: Overrides,
}

/// Settings that override the config file; each has an environment twin.
#[derive(Args, Clone)]
struct Overrides {
    /// TOML config file.
    #[arg(long, env = "PSR_CONFIG")]
    config: Option<PathBuf>,
    /// Address to bind.
    #[arg(long, env = "PSR_HOST")]
    host: Option<String>,
    /// Port to listen on.
    #[arg(long, env = "PORT")]
    port: Option<u16>,
    /// Model manifest.
    #[arg(long, env = "PSR_MODELS")]
    models: Option<PathBuf>,
    /// Path of libonnxruntime.so.
    #[arg(long, env = "PSR_ORT_LIBRARY")]
    onnxruntime_library: Option<PathBuf>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "PSR_JSON_LOGS")]
    json_logs: Option<bool>,
    /// Seconds in-flight requests get after SIGTERM.
    #[arg(long, env = "PSR_SHUTDOWN_GRACE_SECS")]
    shutdown_grace_secs: Option<u64>,
    /// Preprocessing threads (0 = one per core).
    #[arg(long, env = "PSR_CPU_THREADS")]
    cpu_threads: Option<usize>,
    /// Largest request body in bytes.
    #[arg(long, env = "PSR_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Serve the gRPC API on this port (turns `[grpc]` on).
    #[arg(long, env = "PSR_GRPC_PORT")]
    grpc_port: Option<u16>,
}

impl Overrides {
    fn resolve(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = &self.host {
            c.server.host = v.clone();
        }
        if let Some(v) = self.port {
            c.server.port = v;
        }
        if let Some(v) = &self.models {
            c.models.manifest = v.clone();
        }
        if let Some(v) = &self.onnxruntime_library {
            c.runtime.onnxruntime_library = Some(v.clone());
        }
        if let Some(v) = self.json_logs {
            c.server.json_logs = v;
        }
        if let Some(v) = self.shutdown_grace_secs {
            c.server.shutdown_grace_secs = v;
        }
        if let Some(v) = self.cpu_threads {
            c.server.cpu_threads = v;
        }
        if let Some(v) = self.max_body_bytes {
            c.limits.max_body_bytes = v;
        }
        if let Some(v) = self.grpc_port {
            c.grpc.enabled = true;
            c.grpc.port = v;
        }
        c.validate()?;
        Ok(c)
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(o) => o.resolve().and_then(serve),
        Command::Models {
            command: ModelsCommand::Check(a),
        } => a.overrides.resolve().and_then(|c| check_models(c, &a)),
        Command::Eval(args) => psr_reward::eval::cli::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_models(config: &Config, metrics: &Metrics) -> anyhow::Result<Models> {
    let manifest = Manifest::load(&config.models.manifest)?;
    let env = load_environment(config.runtime.onnxruntime_library.as_deref())?;
    let models = Models::load(&manifest, &env, metrics, config.limits.priority_levels)?;
    for info in models.infos() {
        for (i, p) in info.instances.iter().enumerate() {
            tracing::info!(model = %info.name, role = info.role, instance = i, requested = %p.requested, provider = %p.actual, fallback = ?p.fallback_reason, "model loaded");
        }
    }
    Ok(models)
}

/// The models `models check` looks at: the target file with its `--as` adapter, or every
/// model of the target (or configured) manifest.
fn check_targets(config: &Config, args: &CheckArgs) -> anyhow::Result<Vec<check::Target>> {
    let path = args.target.as_ref().unwrap_or(&config.models.manifest);
    let is_onnx = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    match (is_onnx, args.adapter) {
        (true, Some(adapter)) => Ok(vec![check::target_from_file(path, adapter)?]),
        (true, None) => anyhow::bail!(
            "{}: a single .onnx file needs --as detector|embedder|aesthetic|preference",
            path.display()
        ),
        (false, Some(_)) => anyhow::bail!("--as applies to a single .onnx file, not a manifest"),
        (false, None) => Ok(check::targets_from_manifest(&Manifest::load(path)?)?),
    }
}

fn check_models(config: Config, args: &CheckArgs) -> anyhow::Result<()> {
    // Logs go to stderr so stdout is only the report.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,ort=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let env = load_environment(config.runtime.onnxruntime_library.as_deref())?;
    let targets = check_targets(&config, args)?;
    let reports: Vec<check::ModelReport> = targets
        .iter()
        .map(|t| check::check_target(&env, t))
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", check::render_text(&reports));
    }
    let failed = reports.iter().filter(|r| !r.ok()).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {} model(s) failed the check", reports.len());
    }
    Ok(())
}

fn serve(config: Config) -> anyhow::Result<()> {
    init_tracing(config.server.json_logs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()?;
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let cpu = CpuPool::new(config.server.cpu_threads)?;
        let grace = Duration::from_secs(config.server.shutdown_grace_secs);
        let addr = format!("{}:{}", config.server.host, config.server.port);
        let state = AppState::new(config.clone(), metrics.clone(), cpu)?;
        // Listen first so probes see /health 200 and /ready 503 while models load.
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let listener = server::tls::MaybeTls::new(listener, config.tls.as_ref())?;
        tracing::info!(%addr, tls = listener.is_tls(), "listening; loading models");
        let grpc_listener = match config.grpc.enabled {
            true => {
                let grpc_addr = config.grpc.address(&config.server.host);
                let l = tokio::net::TcpListener::bind(&grpc_addr)
                    .await
                    .with_context(|| format!("cannot listen on {grpc_addr} (grpc)"))?;
                tracing::info!(addr = %grpc_addr, "gRPC listening (plaintext HTTP/2)");
                Some(l)
            }
            false => None,
        };

        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
        let loader_state = state.clone();
        tokio::spawn(async move {
            let loaded = tokio::task::spawn_blocking(move || load_models(&config, &metrics)).await;
            let result = match loaded {
                Ok(Ok(models)) => {
                    let models = Arc::new(models);
                    match loader_state.set_models(models.clone()) {
                        Ok(()) => models.warm_up().await.map_err(anyhow::Error::from),
                        Err(e) => Err(e.into()),
                    }
                }
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::anyhow!("model loading panicked: {e}")),
            };
            match result {
                Ok(()) => {
                    loader_state.set_warmed();
                    tracing::info!("models warmed up; ready");
                }
                Err(e) => {
                    let _ = failed_tx.send(e);
                }
            }
        });

        // One signal stops both listeners.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            server::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let http = server::serve(listener, state.clone(), stopped(), grace);
        let grpc = async {
            match grpc_listener {
                Some(l) => server::grpc::serve(l, state.clone(), stopped(), grace).await,
                None => Ok(()),
            }
        };
        tokio::select! {
            served = async { tokio::try_join!(http, grpc) } => { served?; }
            Ok(err) = failed_rx => return Err(err.context("cannot start models")),
        }
        if let Some(models) = state.loaded_models() {
            let models = models.clone();
            tokio::task::spawn_blocking(move || models.shutdown()).await?;
        }
        tracing::info!("shut down cleanly");
        Ok(())
    })
}
