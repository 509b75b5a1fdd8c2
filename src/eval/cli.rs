//! The `psr-reward eval` command: its flags, the in-process service it builds (the same
//! config, manifest, models and router as `serve`), Ctrl-C, and what it prints.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use super::backend::Backend;
use super::dataset::Subset;
use super::runner::{RunSettings, Stop};
use super::{evaluate, EvalConfig};
use crate::config::Config;
use crate::cpu_pool::CpuPool;
use crate::metrics::Metrics;
use crate::models::manifest::Manifest;
use crate::models::Models;
use crate::reward::Mode;
use crate::server::AppState;

/// `psr-reward eval`: score a PSRBench result set (or several, side by side).
#[derive(Args, Clone, Debug)]
pub struct EvalArgs {
    /// The benchmark's folder: `input_path` entries are relative to it.
    #[arg(long)]
    pub data_root: PathBuf,
    /// A result set: a folder of `<Subset>.json` files with `result_path`, a file named after
    /// its subset, or one JSON / JSONL file whose entries name their `subset`. Repeat as
    /// `NAME=PATH` to compare sets.
    #[arg(long, required = true)]
    pub results: Vec<String>,
    /// Subsets to evaluate (comma-separated; default all seven).
    #[arg(long, value_delimiter = ',')]
    pub subsets: Vec<String>,
    /// Config file (the `serve` TOML: [judge], [rewards], [limits], ...), in process.
    #[arg(long, env = "PSR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Model manifest, in process.
    #[arg(long, env = "PSR_MODELS")]
    pub models: Option<PathBuf>,
    /// Path of libonnxruntime.so, in process.
    #[arg(long, env = "PSR_ORT_LIBRARY")]
    pub onnxruntime_library: Option<PathBuf>,
    /// Preprocessing threads in process (0 = one per core).
    #[arg(long)]
    pub cpu_threads: Option<usize>,
    /// Score with running services instead (repeat for several; taken in turn).
    #[arg(long)]
    pub url: Vec<String>,
    /// API key for `--url` services that ask for one (`Authorization: Bearer`).
    #[arg(long, env = "PSR_EVAL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Report folder (also holds the resume journal `samples.jsonl`).
    #[arg(long, default_value = "psrbench-report")]
    pub out: PathBuf,
    /// Samples in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Score everything again, ignoring an earlier journal under `--out`.
    #[arg(long)]
    pub fresh: bool,
    /// Keep every quirk of the PSR scripts (`mode: psr`); `false` uses the robust options.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub psr_compat: bool,
    /// Accept absolute or `..` reference paths that leave the data root.
    #[arg(long)]
    pub allow_outside_root: bool,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

impl EvalArgs {
    fn subsets(&self) -> anyhow::Result<Vec<Subset>> {
        if self.subsets.is_empty() {
            return Ok(Subset::ALL.to_vec());
        }
        let mut out = Vec::new();
        for s in &self.subsets {
            let subset = Subset::parse(s).with_context(|| {
                format!(
                    "--subsets: unknown subset `{s}` (known: {})",
                    Subset::ALL.map(Subset::name).join(", ")
                )
            })?;
            if !out.contains(&subset) {
                out.push(subset);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The evaluation this command asks for, stopped by `stop`.
    pub fn eval_config(&self, stop: Stop) -> anyhow::Result<EvalConfig> {
        Ok(EvalConfig {
            data_root: self.data_root.clone(),
            results: self
                .results
                .iter()
                .map(|r| super::results::parse_results_arg(r))
                .collect(),
            subsets: self.subsets()?,
            out: self.out.clone(),
            fresh: self.fresh,
            allow_outside_root: self.allow_outside_root,
            settings: RunSettings {
                concurrency: self.concurrency.max(1),
                mode: if self.psr_compat {
                    Mode::Psr
                } else {
                    Mode::Robust
                },
                progress: !self.no_progress,
                stop,
            },
        })
    }

    fn service_config(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(m) = &self.models {
            c.models.manifest = m.clone();
        }
        if let Some(l) = &self.onnxruntime_library {
            c.runtime.onnxruntime_library = Some(l.clone());
        }
        if let Some(t) = self.cpu_threads {
            c.server.cpu_threads = t;
        }
        // Nothing outside this process reaches the in-process router.
        c.auth = Default::default();
        c.validate()?;
        Ok(c)
    }
}

/// Runs the command.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("eval")
        .build()?;
    runtime.block_on(async move {
        let stop = Stop::default();
        let config = args.eval_config(stop.clone())?;
        // Check the inputs before loading any model.
        super::load_sets(&config)?;
        let backend = if args.url.is_empty() {
            Backend::in_process(in_process_state(&args).await?)
        } else {
            Backend::remote(args.url.clone(), args.api_key.clone()).map_err(anyhow::Error::msg)?
        };
        tokio::spawn(watch_ctrl_c(stop));
        let result = evaluate(&backend, &config).await;
        if let Some(state) = backend.state() {
            if let Some(models) = state.loaded_models().cloned() {
                tokio::task::spawn_blocking(move || models.shutdown()).await?;
            }
        }
        let e = result?;
        println!("{}", super::report::table::markdown(&e.summary));
        let secs = e.scoring_time.as_secs_f64();
        println!(
            "scored {} samples in {secs:.1} s ({:.2} samples/s); {} reused from the journal",
            e.scored_now,
            e.scored_now as f64 / secs.max(1e-9),
            e.reused
        );
        println!(
            "report: {} (table: {}, charts: {}, {})",
            e.files.html.display(),
            e.files.table_md.display(),
            e.files.radar_png.display(),
            e.files.distributions_png.display()
        );
        Ok(())
    })
}

/// First Ctrl-C: finish the samples in flight, start no more. Second: quit now (every
/// journal line already written is whole).
async fn watch_ctrl_c(stop: Stop) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!("stopping: finishing the samples in flight (Ctrl-C again to quit now)");
    stop.stop();
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}

/// The service `serve` would run, with models loaded and warmed up.
async fn in_process_state(args: &EvalArgs) -> anyhow::Result<AppState> {
    let config = args.service_config()?;
    let metrics = Arc::new(Metrics::new());
    let cpu = CpuPool::new(config.server.cpu_threads)?;
    let state = AppState::new(config.clone(), metrics.clone(), cpu)?;
    let models = tokio::task::spawn_blocking(move || -> anyhow::Result<Models> {
        let manifest = Manifest::load(&config.models.manifest)?;
        let env = crate::runtime::load_environment(config.runtime.onnxruntime_library.as_deref())?;
        Ok(Models::load(
            &manifest,
            &env,
            &metrics,
            config.limits.priority_levels,
        )?)
    })
    .await??;
    let models = Arc::new(models);
    state.set_models(models.clone())?;
    models.warm_up().await?;
    state.set_warmed();
    Ok(state)
}
