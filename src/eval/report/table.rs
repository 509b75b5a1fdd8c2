//! The PSRBench table as Markdown (subsets down, metrics across, result sets side by side)
//! and as CSV (one row per set and subset, full precision, for spreadsheets).

use std::fmt::Write;

use crate::eval::dataset::Subset;
use crate::eval::summary::{subset_names, Summary};

/// The three metric columns: (label, component, value of a subset, value overall).
type Column = (
    &'static str,
    &'static str,
    fn(&crate::eval::summary::SubsetSummary) -> Option<f64>,
    fn(&crate::eval::summary::Overall) -> Option<f64>,
);

const COLUMNS: [Column; 3] = [
    (
        "SC",
        "subject_consistency",
        |s| s.subject_consistency.mean,
        |o| o.subject_consistency,
    ),
    (
        "Alignment",
        "alignment",
        |s| s.alignment.mean,
        |o| o.alignment,
    ),
    (
        "Aesthetic",
        "aesthetic",
        |s| s.aesthetic.mean,
        |o| o.aesthetic,
    ),
];

/// Whether `component` is computed for `subset` (`None`: for any subset, the overall row).
/// Alignment is the judge for every subset but Position, which is box geometry.
fn computed(summary: &Summary, component: &str, subset: Option<&str>) -> bool {
    let c = &summary.components;
    match (component, subset) {
        ("subject_consistency", _) => c.subject_consistency,
        ("aesthetic", _) => c.aesthetic,
        (_, None) => c.semantic_alignment || c.position,
        (_, Some(s)) if Subset::parse(s) == Some(Subset::Position) => c.position,
        (_, Some(_)) => c.semantic_alignment,
    }
}

/// A mean as the table shows it: `–` when computed but no sample has it, `n/c` when the
/// deployment does not compute it.
fn cell(v: Option<f64>, computed: bool) -> String {
    match (v, computed) {
        (Some(v), _) => format!("{v:.3}"),
        (None, true) => "–".to_string(),
        (None, false) => "n/c".to_string(),
    }
}

/// The Markdown report: the table with its notes, the counts and the samples left out.
pub fn markdown(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# PSRBench results\n");
    let _ = writeln!(
        out,
        "Mode: `{}`. SC = subject consistency (mean cosine over subjects); Alignment = semantic alignment by the judge (0..10 / 10) for every subset but Position, which is position alignment; Aesthetic as normalised by the service (raw / 10 by default). Overall = mean of the subset means.\n",
        serde_json::to_value(summary.mode).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    );
    for (component, why) in &summary.components.missing {
        let _ = writeln!(out, "- not computed (`n/c`): {component}: {why}");
    }
    if !summary.components.missing.is_empty() {
        out.push('\n');
    }
    means_table(&mut out, summary);
    counts_table(&mut out, summary);
    problems_list(&mut out, summary);
    out
}

/// Subsets down, metrics across (one column per result set), then the overall row.
fn means_table(out: &mut String, summary: &Summary) {
    let sets = &summary.sets;
    let several = sets.len() > 1;
    let mut header = vec!["Subset".to_string()];
    for (label, ..) in COLUMNS {
        for set in sets {
            header.push(if several {
                format!("{label} · {}", set.name)
            } else {
                label.to_string()
            });
        }
    }
    row(out, &header);
    row(out, &vec!["---".to_string(); header.len()]);
    for subset in subset_names(sets) {
        let mut cells = vec![subset.clone()];
        for (_, component, value, _) in COLUMNS {
            let on = computed(summary, component, Some(&subset));
            for set in sets {
                let v = set
                    .subsets
                    .iter()
                    .find(|s| s.subset == subset)
                    .and_then(value);
                cells.push(cell(v, on));
            }
        }
        row(out, &cells);
    }
    let mut cells = vec!["**Overall**".to_string()];
    for (_, component, _, overall) in COLUMNS {
        let on = computed(summary, component, None);
        for set in sets {
            cells.push(format!("**{}**", cell(overall(&set.overall), on)));
        }
    }
    row(out, &cells);
}

/// Per set and subset, every count a reader needs to trust the means.
fn counts_table(out: &mut String, summary: &Summary) {
    let _ = writeln!(out, "\n## Counts\n");
    row(
        out,
        &[
            "Set",
            "Subset",
            "Samples",
            "Scored",
            "Missing image",
            "Unreadable image",
            "Missing reference",
            "Failed",
            "Alignment dropped",
            "Judge 5 substituted",
        ]
        .map(String::from),
    );
    row(out, &vec!["---".to_string(); 10]);
    for set in &summary.sets {
        for s in &set.subsets {
            row(
                out,
                &[
                    set.name.clone(),
                    s.subset.clone(),
                    s.samples.to_string(),
                    s.scored.to_string(),
                    s.missing_image.to_string(),
                    s.unreadable_image.to_string(),
                    s.missing_reference.to_string(),
                    s.failed.to_string(),
                    s.alignment_dropped.to_string(),
                    s.alignment_substituted.to_string(),
                ],
            );
        }
    }
}

/// The samples left out of the means, with why.
fn problems_list(out: &mut String, summary: &Summary) {
    if summary.problems.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## Samples left out of the means\n");
    for p in &summary.problems {
        let path = p
            .result_path
            .as_deref()
            .map(|p| format!(" (`{p}`)"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "- {} {}{path}: {}: {}",
            p.set, p.sample, p.kind, p.detail
        );
    }
}

fn row(out: &mut String, cells: &[String]) {
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

/// One CSV row per set and subset, then each set's overall row.
pub fn csv(summary: &Summary) -> String {
    let mut out = String::from(
        "set,subset,samples,scored,missing_image,unreadable_image,missing_reference,failed,subject_consistency,alignment_metric,alignment,alignment_n,alignment_dropped,alignment_substituted,aesthetic\n",
    );
    let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for set in &summary.sets {
        for s in &set.subsets {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                quote(&set.name),
                s.subset,
                s.samples,
                s.scored,
                s.missing_image,
                s.unreadable_image,
                s.missing_reference,
                s.failed,
                num(s.subject_consistency.mean),
                s.alignment_metric,
                num(s.alignment.mean),
                s.alignment.values.len(),
                s.alignment_dropped,
                s.alignment_substituted,
                num(s.aesthetic.mean),
            );
        }
        let o = &set.overall;
        let _ = writeln!(
            out,
            "{},Overall,,,,,,,{},,{},,,,{}",
            quote(&set.name),
            num(o.subject_consistency),
            num(o.alignment),
            num(o.aesthetic)
        );
    }
    out
}

/// A CSV field, quoted when it needs to be (RFC 4180).
fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::eval::request::Components;
    use crate::eval::summary::{Metric, Overall, SetSummary, SubsetSummary};

    fn subset(name: &str, alignment: &[f64]) -> SubsetSummary {
        let metric = |values: &[f64]| Metric {
            mean: (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64),
            values: values.to_vec(),
        };
        SubsetSummary {
            subset: name.into(),
            samples: 1,
            scored: 1,
            missing_image: 0,
            unreadable_image: 0,
            missing_reference: 0,
            failed: 0,
            subject_consistency: metric(&[0.5]),
            alignment_metric: "position",
            alignment: metric(alignment),
            alignment_dropped: 0,
            alignment_substituted: 0,
            aesthetic: metric(&[]),
        }
    }

    #[test]
    fn alignment_without_a_judge_is_not_computed_for_the_judged_subsets_only() {
        let summary = Summary {
            mode: crate::reward::Mode::Psr,
            components: Components {
                subject_consistency: true,
                semantic_alignment: false,
                position: true,
                aesthetic: false,
                missing: BTreeMap::from([("semantic_alignment".into(), "no judge".into())]),
            },
            sets: vec![SetSummary {
                name: "a".into(),
                source: "a".into(),
                subsets: vec![subset("Attribute", &[]), subset("Position", &[])],
                overall: Overall {
                    subject_consistency: Some(0.5),
                    alignment: None,
                    aesthetic: None,
                },
            }],
            problems: vec![],
        };
        let md = markdown(&summary);
        // Attribute: no judge -> n/c; Position: computed but no relation phrase -> –.
        assert!(md.contains("| Attribute | 0.500 | n/c | n/c |"), "{md}");
        assert!(md.contains("| Position | 0.500 | – | n/c |"), "{md}");
        assert!(md.contains("not computed (`n/c`): semantic_alignment: no judge"));
    }
}
