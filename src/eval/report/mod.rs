//! The report under `--out`: `table.md` and `table.csv` (the PSRBench table), `summary.json`
//! (every number and count, and the samples left out), `radar.png` and
//! `distributions.png`, and `report.html` to look at. `samples.jsonl` (the per-sample
//! results) is the resume journal, written as the run goes.

pub mod charts;
pub mod html;
pub mod table;
mod thumbs;

use std::path::{Path, PathBuf};

use super::results::ResultSet;
use super::runner::Outcome;
use super::summary::Summary;
use super::EvalError;

/// The files of a report.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub table_md: PathBuf,
    pub table_csv: PathBuf,
    pub summary_json: PathBuf,
    pub radar_png: PathBuf,
    pub distributions_png: PathBuf,
    pub html: PathBuf,
}

impl ReportFiles {
    /// Where each file goes under `out`.
    pub fn under(out: &Path) -> Self {
        Self {
            table_md: out.join("table.md"),
            table_csv: out.join("table.csv"),
            summary_json: out.join("summary.json"),
            radar_png: out.join("radar.png"),
            distributions_png: out.join("distributions.png"),
            html: out.join("report.html"),
        }
    }
}

/// Writes every report file under `out`.
pub fn write(
    out: &Path,
    summary: &Summary,
    sets: &[ResultSet],
    outcomes: &[Vec<Outcome>],
) -> Result<ReportFiles, EvalError> {
    let files = ReportFiles::under(out);
    let put = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|e| EvalError::Io(format!("{}: {e}", path.display())))
    };
    put(&files.table_md, &table::markdown(summary))?;
    put(&files.table_csv, &table::csv(summary))?;
    let json = serde_json::to_string_pretty(summary).map_err(|e| EvalError::Io(e.to_string()))?;
    put(&files.summary_json, &json)?;
    charts::radar(summary, &files.radar_png).map_err(|e| EvalError::Io(e.to_string()))?;
    charts::distributions(summary, &files.distributions_png)
        .map_err(|e| EvalError::Io(e.to_string()))?;
    put(&files.html, &html::page(summary, sets, outcomes))?;
    Ok(files)
}
