//! Scores every sample of every result set: reads its files, reuses the journal's result
//! when its inputs are unchanged, else sends one `/v1/reward` request (retrying overload),
//! journals the answer, and advances the subset's progress bar. `--concurrency` samples
//! are in flight at once (the service batches them together); a [`Stop`] lets the ones in
//! flight finish and starts no more.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::backend::Backend;
use super::dataset::{Sample, Subset};
use super::deployment::Deployment;
use super::journal::{Journal, Record};
use super::request::{body, read_answer, Answer, Scores};
use super::results::ResultSet;
use super::EvalError;
use crate::reward::Mode;

/// How a sample ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Scored now or reused from the journal.
    Scored { scores: Box<Scores>, reused: bool },
    /// Left out of every mean, with the reason (the report lists these).
    Excluded(Exclusion),
    /// The service could not score it (not journaled: a rerun tries again).
    Failed(String),
    /// Not started: the run was stopped first.
    NotRun,
}

/// Why a sample is left out of the means.
#[derive(Debug, Clone, PartialEq)]
pub enum Exclusion {
    /// No `result_path`, or the file cannot be read.
    MissingImage(String),
    /// The service cannot decode the generated image (or a reference) or refuses its size.
    UnreadableImage(String),
    /// A reference image of the data root cannot be read.
    MissingReference(String),
}

impl Exclusion {
    /// A short label for tables (`missing image`).
    pub fn label(&self) -> &'static str {
        match self {
            Exclusion::MissingImage(_) => "missing image",
            Exclusion::UnreadableImage(_) => "unreadable image",
            Exclusion::MissingReference(_) => "missing reference",
        }
    }

    /// The detail.
    pub fn detail(&self) -> &str {
        match self {
            Exclusion::MissingImage(d)
            | Exclusion::UnreadableImage(d)
            | Exclusion::MissingReference(d) => d,
        }
    }
}

/// "Stop starting samples": set by Ctrl-C in the command, by anyone in tests.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Asks the run to stop after the samples in flight.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How to run.
#[derive(Clone)]
pub struct RunSettings {
    pub concurrency: usize,
    pub mode: Mode,
    /// Draw progress bars (they also hide themselves when stderr is not a terminal).
    pub progress: bool,
    pub stop: Stop,
}

/// Every sample's outcome, per set in the order of its samples, and the run's counts.
pub struct RunOutput {
    pub outcomes: Vec<Vec<Outcome>>,
    pub scored_now: usize,
    pub reused: usize,
    pub elapsed: Duration,
    pub interrupted: bool,
}

/// Attempts at one sample while the service is busy or unreachable.
const ATTEMPTS: u32 = 8;

/// Scores every sample of `sets`.
pub async fn run(
    backend: &Backend,
    deployment: &Deployment,
    sets: &[ResultSet],
    journal: &Journal,
    settings: &RunSettings,
) -> Result<RunOutput, EvalError> {
    let start = Instant::now();
    let bars = Bars::new(sets, settings.progress);
    let jobs = sets.iter().enumerate().flat_map(|(s, set)| {
        set.samples
            .iter()
            .enumerate()
            .map(move |(k, sample)| (s, k, set, sample))
    });
    let results: Vec<(usize, usize, Result<Outcome, EvalError>)> = futures_util::stream::iter(jobs)
        .map(|(s, k, set, sample)| {
            let bars = &bars;
            async move {
                let out =
                    score_sample(backend, deployment, &set.name, sample, journal, settings).await;
                bars.advance(&set.name, sample.subset);
                (s, k, out)
            }
        })
        .buffer_unordered(settings.concurrency.max(1))
        .collect()
        .await;
    bars.finish();
    journal.sync()?;
    let mut outcomes: Vec<Vec<Outcome>> = sets
        .iter()
        .map(|set| vec![Outcome::NotRun; set.samples.len()])
        .collect();
    let (mut scored_now, mut reused) = (0, 0);
    for (s, k, out) in results {
        let out = out?;
        if let Outcome::Scored { reused: r, .. } = &out {
            if *r {
                reused += 1;
            } else {
                scored_now += 1;
            }
        }
        outcomes[s][k] = out;
    }
    let interrupted = outcomes.iter().flatten().any(|o| *o == Outcome::NotRun);
    Ok(RunOutput {
        outcomes,
        scored_now,
        reused,
        elapsed: start.elapsed(),
        interrupted,
    })
}

/// One sample: files, journal, request, journal again. Errors are the journal's (I/O).
async fn score_sample(
    backend: &Backend,
    deployment: &Deployment,
    set: &str,
    sample: &Sample,
    journal: &Journal,
    settings: &RunSettings,
) -> Result<Outcome, EvalError> {
    if settings.stop.is_stopped() {
        return Ok(Outcome::NotRun);
    }
    let files = match read_files(sample).await {
        Ok(f) => f,
        Err(exclusion) => return Ok(Outcome::Excluded(exclusion)),
    };
    let key = (
        set.to_string(),
        sample.subset.name().to_string(),
        sample.index,
    );
    let input = input_hash(sample, &files);
    if let Some(r) = journal.earlier(&key, &input) {
        return Ok(Outcome::Scored {
            scores: Box::new(r.scores.clone()),
            reused: true,
        });
    }
    let alignment = sample.subset.alignment();
    if !deployment.components.any_for(alignment) {
        return Ok(Outcome::Failed(
            "this deployment computes none of the subset's components".into(),
        ));
    }
    let body = body(
        sample,
        &files.image,
        &files.references,
        &deployment.components,
        settings.mode,
        deployment.timeout_ms,
    )
    .map_err(|e| EvalError::Io(e.to_string()))?;
    let outcome = match post_with_retries(backend, body, &settings.stop).await {
        Answer::Scored(scores) => match scores.incomplete(&deployment.components, alignment) {
            Some(why) => Outcome::Failed(why),
            None => {
                journal.append(&Record {
                    set: set.to_string(),
                    subset: sample.subset.name().to_string(),
                    index: sample.index,
                    input,
                    scores: (*scores).clone(),
                })?;
                Outcome::Scored {
                    scores,
                    reused: false,
                }
            }
        },
        Answer::BadImage(m) => Outcome::Excluded(Exclusion::UnreadableImage(m)),
        Answer::Busy(m) | Answer::Failed(m) => Outcome::Failed(m),
    };
    Ok(outcome)
}

/// Sends one request, waiting out overload (`Retry-After`, else a doubling backoff) and
/// connection failures, up to [`ATTEMPTS`] times or until a stop.
async fn post_with_retries(backend: &Backend, body: Vec<u8>, stop: &Stop) -> Answer {
    let mut backoff = Duration::from_millis(250);
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 && stop.is_stopped() {
            break;
        }
        let wait = match backend.post("/v1/reward", body.clone()).await {
            Ok(reply) => match read_answer(reply.status, &reply.body) {
                Answer::Busy(m) => {
                    last = m;
                    reply
                        .retry_after
                        .map(Duration::from_secs)
                        .unwrap_or(backoff)
                }
                other => return other,
            },
            Err(e) => {
                last = e;
                backoff
            }
        };
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    Answer::Failed(format!("gave up after {ATTEMPTS} attempts: {last}"))
}

/// A sample's file bytes.
pub struct Files {
    pub image: Vec<u8>,
    pub references: Vec<Vec<u8>>,
}

/// Reads the generated image and the references (off the async threads).
pub async fn read_files(sample: &Sample) -> Result<Files, Exclusion> {
    let image_path = sample.result_path.clone();
    let refs: Vec<_> = sample.references.iter().map(|r| r.path.clone()).collect();
    let read = tokio::task::spawn_blocking(move || {
        let image = match &image_path {
            None => {
                return Err(Exclusion::MissingImage(
                    "the entry has no result_path".into(),
                ))
            }
            Some(p) => read_file(p).map_err(Exclusion::MissingImage)?,
        };
        let references = refs
            .iter()
            .map(|p| read_file(p).map_err(Exclusion::MissingReference))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Files { image, references })
    })
    .await;
    read.unwrap_or_else(|e| Err(Exclusion::MissingImage(format!("reader failed: {e}"))))
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// blake3 of what decides a sample's scores: its fields and its files' bytes.
fn input_hash(sample: &Sample, files: &Files) -> String {
    let mut h = blake3::Hasher::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(sample.subset.name().as_bytes());
    field(sample.instruction.as_bytes());
    for r in &sample.references {
        field(r.category.as_bytes());
        field(r.written.as_bytes());
    }
    field(&files.image);
    for r in &files.references {
        field(r);
    }
    h.finalize().to_hex().to_string()
}

/// One progress bar per (set, subset), with rate and ETA.
struct Bars {
    multi: MultiProgress,
    bars: HashMap<(String, Subset), ProgressBar>,
}

impl Bars {
    fn new(sets: &[ResultSet], show: bool) -> Self {
        let multi = MultiProgress::new();
        if !show {
            multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let style = ProgressStyle::with_template(
            "{prefix:>24} {bar:32} {pos:>4}/{len:<4} {per_sec:>10} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let mut bars = HashMap::new();
        for set in sets {
            for subset in Subset::ALL {
                let n = set.samples.iter().filter(|s| s.subset == subset).count();
                if n == 0 {
                    continue;
                }
                let bar = multi.add(ProgressBar::new(n as u64));
                bar.set_style(style.clone());
                bar.set_prefix(format!("{} · {subset}", set.name));
                bars.insert((set.name.clone(), subset), bar);
            }
        }
        Self { multi, bars }
    }

    fn advance(&self, set: &str, subset: Subset) {
        if let Some(b) = self.bars.get(&(set.to_string(), subset)) {
            b.inc(1);
        }
    }

    fn finish(&self) {
        for b in self.bars.values() {
            b.finish();
        }
        let _ = self.multi.clear();
    }
}
