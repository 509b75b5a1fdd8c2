//! The PSRBench table as Markdown (subsets down, metrics across, result sets side by side)
//! and as CSV (one row per set and subset, full precision, for spreadsheets).

use std::fmt::Write;

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

/// Whether a table column has any component computed (alignment: either kind).
fn computed(summary: &Summary, component: &str) -> bool {
    let c = &summary.components;
    match component {
        "subject_consistency" => c.subject_consistency,
        "aesthetic" => c.aesthetic,
        _ => c.semantic_alignment || c.position,
    }
}

fn cell(v: Option<f64>, computed: bool) -> String {
    match (v, computed) {
        (Some(v), _) => format!("{v:.3}"),
        (None, true) => "–".to_string(),
        (None, false) => "n/c".to_string(),
    }
}

/// The Markdown report table, its notes, counts and the samples left out.
pub fn markdown(summary: &Summary) -> String {
    let mut out = String::new();
    let sets = &summary.sets;
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
    row(&mut out, &header);
    row(&mut out, &vec!["---".to_string(); header.len()]);
    for subset in subset_names(sets) {
        let mut cells = vec![subset.clone()];
        for (_, component, value, _) in COLUMNS {
            for set in sets {
                let v = set
                    .subsets
                    .iter()
                    .find(|s| s.subset == subset)
                    .and_then(value);
                cells.push(cell(v, computed(summary, component)));
            }
        }
        row(&mut out, &cells);
    }
    let mut cells = vec!["**Overall**".to_string()];
    for (_, component, _, overall) in COLUMNS {
        for set in sets {
            cells.push(format!(
                "**{}**",
                cell(overall(&set.overall), computed(summary, component))
            ));
        }
    }
    row(&mut out, &cells);

    let _ = writeln!(out, "\n## Counts\n");
    row(
        &mut out,
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
    row(&mut out, &vec!["---".to_string(); 10]);
    for set in sets {
        for s in &set.subsets {
            row(
                &mut out,
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
    if !summary.problems.is_empty() {
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
    out
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
