//! `psr-reward eval`: PSRBench scored by the service's own engine, so benchmark numbers and
//! training rewards cannot disagree. Each sample becomes one `/v1/reward` request (the
//! service's request type) answered by the `serve` router in this process, or by running
//! services (`--url`); the answers are journaled for resumption and summarised into the
//! benchmark table, charts and an HTML report.
//!
//! - [`dataset`]: subsets and the entry format; [`results`]: result sets on disk;
//! - [`backend`]: in-process router or HTTP; [`deployment`]: what the service computes;
//! - [`request`]: a sample as a request, and what is kept of the answer;
//! - [`runner`]: scheduling, retries, progress, stop; [`journal`]: resumption;
//! - [`summary`]: the table's numbers; [`report`]: the files under `--out`;
//! - [`cli`]: the command's flags and how it builds the in-process service.

pub mod backend;
pub mod cli;
pub mod dataset;
pub mod deployment;
pub mod journal;
pub mod report;
pub mod request;
pub mod results;
pub mod runner;
pub mod summary;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use backend::Backend;
use dataset::{DatasetError, PathRules, Subset};
use report::ReportFiles;
use results::ResultSet;
use runner::RunSettings;
use summary::Summary;

/// Why an evaluation stops (each names its file, entry or service).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A bad data root, results file or entry.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// Two `--results` share a name.
    #[error("two result sets are named `{0}`: name them with --results NAME=PATH")]
    DuplicateName(String),
    /// The scoring service cannot be used.
    #[error("service: {0}")]
    Service(String),
    /// The journal cannot be reused.
    #[error("journal: {0}")]
    Journal(String),
    /// Reading or writing a file under `--out`.
    #[error("{0}")]
    Io(String),
    /// Stopped (Ctrl-C) before every sample was scored; the journal keeps what was done.
    #[error("interrupted: {done} of {total} samples done and kept in {}; run the same command again to resume", journal.display())]
    Interrupted {
        done: usize,
        total: usize,
        journal: PathBuf,
    },
}

/// What to evaluate and how.
#[derive(Clone)]
pub struct EvalConfig {
    pub data_root: PathBuf,
    /// `(name, path)` of every result set.
    pub results: Vec<(String, PathBuf)>,
    pub subsets: Vec<Subset>,
    pub out: PathBuf,
    /// Ignore (and overwrite) an earlier journal.
    pub fresh: bool,
    pub allow_outside_root: bool,
    pub settings: RunSettings,
}

/// A finished evaluation.
pub struct Evaluation {
    pub summary: Summary,
    pub files: ReportFiles,
    /// Samples scored by this run, and reused from the journal.
    pub scored_now: usize,
    pub reused: usize,
    /// Time spent scoring (reading the journal and files included, report excluded).
    pub scoring_time: Duration,
}

/// Reads every result set, checking the data root and each entry.
pub fn load_sets(config: &EvalConfig) -> Result<Vec<ResultSet>, EvalError> {
    if !config.data_root.is_dir() {
        return Err(DatasetError::file(
            &config.data_root,
            "the data root is not a folder (it holds the benchmark's subjects/ and animals/)",
        )
        .into());
    }
    let rules = PathRules {
        data_root: config.data_root.clone(),
        allow_outside_root: config.allow_outside_root,
    };
    let mut names = HashSet::new();
    let mut sets = Vec::new();
    for (name, path) in &config.results {
        if !names.insert(name.clone()) {
            return Err(EvalError::DuplicateName(name.clone()));
        }
        if !path.exists() {
            return Err(DatasetError::file(path, "no such results file or folder").into());
        }
        sets.push(results::load_set(
            name.clone(),
            path,
            &config.subsets,
            &rules,
        )?);
    }
    Ok(sets)
}

/// Scores every sample on `backend` and writes the report under `config.out`.
pub async fn evaluate(backend: &Backend, config: &EvalConfig) -> Result<Evaluation, EvalError> {
    let sets = load_sets(config)?;
    std::fs::create_dir_all(&config.out)
        .map_err(|e| EvalError::Io(format!("{}: {e}", config.out.display())))?;
    let deployment = deployment::describe(backend, config.settings.mode).await?;
    let journal_path = config.out.join("samples.jsonl");
    let journal = journal::Journal::open(&journal_path, &deployment.fingerprint, config.fresh)?;
    let run = runner::run(backend, &deployment, &sets, &journal, &config.settings).await?;
    if run.interrupted {
        let total = run.outcomes.iter().map(Vec::len).sum();
        let done = run
            .outcomes
            .iter()
            .flatten()
            .filter(|o| **o != runner::Outcome::NotRun)
            .count();
        return Err(EvalError::Interrupted {
            done,
            total,
            journal: journal_path,
        });
    }
    let summary = summary::summarize(
        &sets,
        &run.outcomes,
        &deployment.components,
        config.settings.mode,
    );
    let files = report::write(&config.out, &summary, &sets, &run.outcomes)?;
    Ok(Evaluation {
        summary,
        files,
        scored_now: run.scored_now,
        reused: run.reused,
        scoring_time: run.elapsed,
    })
}
