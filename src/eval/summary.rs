//! The benchmark table's numbers: per result set and subset, the mean of each metric over
//! the samples that have it, with every count a reader needs to trust the mean (samples,
//! scored, excluded by reason, failed, judge answers dropped or substituted).
//!
//! Means follow the PSR scripts: subject consistency and aesthetic over every scored
//! sample; semantic alignment over the samples the judge scored (a `dropped` answer is left
//! out and counted, a substituted 5 is kept and counted, as the scripts do); position over
//! the samples whose instruction names a relation. Samples whose images are missing or
//! unreadable are left out of every mean and listed (the scripts silently drop them).
//! "Overall" is the mean of the subset means.

use serde::Serialize;

use super::dataset::{Alignment, Subset};
use super::request::Components;
use super::results::ResultSet;
use super::runner::Outcome;

/// One metric over one subset.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metric {
    /// Mean of `values`; `None` when no sample has a value (or it is not computed).
    pub mean: Option<f64>,
    /// The samples' values, in sample order (for the distribution charts).
    pub values: Vec<f64>,
}

impl Metric {
    fn of(values: Vec<f64>) -> Self {
        let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
        Self { mean, values }
    }
}

/// One subset of one result set.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubsetSummary {
    pub subset: String,
    pub samples: usize,
    pub scored: usize,
    pub missing_image: usize,
    pub unreadable_image: usize,
    pub missing_reference: usize,
    pub failed: usize,
    pub subject_consistency: Metric,
    /// `semantic_alignment` or `position`.
    pub alignment_metric: &'static str,
    pub alignment: Metric,
    /// Scored samples with no alignment score (judge answer dropped, no relation phrase).
    pub alignment_dropped: usize,
    /// Judge answers without a `[Score]` for which the scripts' 5 was used (psr mode).
    pub alignment_substituted: usize,
    pub aesthetic: Metric,
}

/// Means of the subset means.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Overall {
    pub subject_consistency: Option<f64>,
    pub alignment: Option<f64>,
    pub aesthetic: Option<f64>,
}

/// One result set.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SetSummary {
    pub name: String,
    pub source: String,
    pub subsets: Vec<SubsetSummary>,
    pub overall: Overall,
}

/// The subset names present in any of `sets`, in the paper's order (tables and charts
/// list them the same way).
pub fn subset_names(sets: &[SetSummary]) -> Vec<String> {
    Subset::ALL
        .iter()
        .map(|s| s.name().to_string())
        .filter(|n| {
            sets.iter()
                .any(|set| set.subsets.iter().any(|s| &s.subset == n))
        })
        .collect()
}

/// A sample left out or not scored, for the report's list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    pub set: String,
    pub sample: String,
    pub result_path: Option<String>,
    /// `missing image`, `unreadable image`, `missing reference`, `failed`.
    pub kind: String,
    pub detail: String,
}

/// Everything the report shows as numbers (`summary.json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// `psr` or `robust`.
    pub mode: crate::reward::Mode,
    pub components: Components,
    pub sets: Vec<SetSummary>,
    pub problems: Vec<Problem>,
}

/// Summarises the outcomes of `sets` (aligned with each set's samples).
pub fn summarize(
    sets: &[ResultSet],
    outcomes: &[Vec<Outcome>],
    components: &Components,
    mode: crate::reward::Mode,
) -> Summary {
    let mut problems = Vec::new();
    let summaries = sets
        .iter()
        .zip(outcomes)
        .map(|(set, outs)| {
            let subsets: Vec<SubsetSummary> = Subset::ALL
                .into_iter()
                .filter(|s| set.samples.iter().any(|x| x.subset == *s))
                .map(|subset| summarize_subset(set, outs, subset, &mut problems))
                .collect();
            let overall = |f: fn(&SubsetSummary) -> Option<f64>| {
                let means: Vec<f64> = subsets.iter().filter_map(f).collect();
                Metric::of(means).mean
            };
            SetSummary {
                name: set.name.clone(),
                source: set.source.display().to_string(),
                overall: Overall {
                    subject_consistency: overall(|s| s.subject_consistency.mean),
                    alignment: overall(|s| s.alignment.mean),
                    aesthetic: overall(|s| s.aesthetic.mean),
                },
                subsets,
            }
        })
        .collect();
    Summary {
        mode,
        components: components.clone(),
        sets: summaries,
        problems,
    }
}

fn summarize_subset(
    set: &ResultSet,
    outs: &[Outcome],
    subset: Subset,
    problems: &mut Vec<Problem>,
) -> SubsetSummary {
    let alignment = subset.alignment();
    let mut s = SubsetSummary {
        subset: subset.name().to_string(),
        samples: 0,
        scored: 0,
        missing_image: 0,
        unreadable_image: 0,
        missing_reference: 0,
        failed: 0,
        subject_consistency: Metric::of(vec![]),
        alignment_metric: alignment.component(),
        alignment: Metric::of(vec![]),
        alignment_dropped: 0,
        alignment_substituted: 0,
        aesthetic: Metric::of(vec![]),
    };
    let (mut sc, mut al, mut ae) = (vec![], vec![], vec![]);
    for (sample, out) in set.samples.iter().zip(outs) {
        if sample.subset != subset {
            continue;
        }
        s.samples += 1;
        let mut problem = |kind: &str, detail: &str| {
            problems.push(Problem {
                set: set.name.clone(),
                sample: sample.id(),
                result_path: sample.result_path.as_ref().map(|p| p.display().to_string()),
                kind: kind.to_string(),
                detail: detail.to_string(),
            })
        };
        match out {
            Outcome::Scored { scores, .. } => {
                s.scored += 1;
                if let Some(c) = &scores.subject_consistency {
                    sc.push(c.score);
                }
                if let Some(a) = &scores.aesthetic {
                    ae.push(a.score);
                }
                match scores.alignment(alignment) {
                    Some(v) => al.push(v),
                    None if has_alignment(scores, alignment) => s.alignment_dropped += 1,
                    None => {}
                }
                if alignment == Alignment::Semantic
                    && scores
                        .semantic_alignment
                        .as_ref()
                        .is_some_and(|a| a.substituted)
                {
                    s.alignment_substituted += 1;
                }
            }
            Outcome::Excluded(e) => {
                match e {
                    super::runner::Exclusion::MissingImage(_) => s.missing_image += 1,
                    super::runner::Exclusion::UnreadableImage(_) => s.unreadable_image += 1,
                    super::runner::Exclusion::MissingReference(_) => s.missing_reference += 1,
                }
                problem(e.label(), e.detail());
            }
            Outcome::Failed(m) => {
                s.failed += 1;
                problem("failed", m);
            }
            Outcome::NotRun => {}
        }
    }
    s.subject_consistency = Metric::of(sc);
    s.alignment = Metric::of(al);
    s.aesthetic = Metric::of(ae);
    s
}

/// Whether the sample's alignment component came back (with or without a score).
fn has_alignment(scores: &super::request::Scores, alignment: Alignment) -> bool {
    match alignment {
        Alignment::Semantic => scores.semantic_alignment.is_some(),
        Alignment::Position => scores.position.is_some(),
    }
}
