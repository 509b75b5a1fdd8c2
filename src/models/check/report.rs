//! The one-screen text report of `models check`.

use std::fmt::Write;

use crate::runtime::TensorSignature;

use super::ModelReport;

fn tensors(ts: &[TensorSignature]) -> String {
    let parts: Vec<String> = ts
        .iter()
        .map(|t| format!("{} {} {:?}", t.name, t.dtype.to_lowercase(), t.shape))
        .collect();
    parts.join(", ")
}

fn model_block(out: &mut String, m: &ModelReport) -> std::fmt::Result {
    let verdict = if m.ok() { "OK" } else { "FAILED" };
    writeln!(out, "{} ({}, {}): {verdict}", m.name, m.role, m.adapter)?;
    writeln!(out, "  file       {}", m.path)?;
    for (i, p) in m.instances.iter().enumerate() {
        let fallback = p
            .fallback_reason
            .as_deref()
            .map_or(String::new(), |r| format!(" (fell back: {r})"));
        writeln!(
            out,
            "  instance {i} {} (requested {}){fallback}",
            p.actual, p.requested
        )?;
    }
    if let Some(sig) = &m.signature {
        writeln!(out, "  inputs     {}", tensors(&sig.inputs))?;
        writeln!(out, "  outputs    {}", tensors(&sig.outputs))?;
    }
    if !m.timings.is_empty() {
        let parts: Vec<String> = m
            .timings
            .iter()
            .map(|t| {
                format!(
                    "b{} {:.1} ms ({:.1}/item)",
                    t.batch_size, t.ms, t.ms_per_item
                )
            })
            .collect();
        writeln!(
            out,
            "  forward    {}x{}: {}",
            m.input_size[0],
            m.input_size[1],
            parts.join(", ")
        )?;
    }
    match &m.batch_safety {
        Some(s) => writeln!(
            out,
            "  batch-safe {} (max abs diff {:.2e} on \"{}\", alone vs position 1 of 2)",
            if s.safe { "yes" } else { "NO" },
            s.max_abs_diff,
            s.output
        )?,
        None if m.ok() => writeln!(out, "  batch-safe not checked (max_batch_size = 1)")?,
        None => {}
    }
    for p in &m.problems {
        writeln!(out, "  error: {p}")?;
    }
    Ok(())
}

/// Renders every model's block and a closing summary line.
pub fn render_text(reports: &[ModelReport]) -> String {
    let mut out = String::new();
    for m in reports {
        // Writing into a String cannot fail.
        let _ = model_block(&mut out, m);
    }
    let failed = reports.iter().filter(|m| !m.ok()).count();
    let _ = match failed {
        0 => writeln!(out, "{} model(s) checked: all OK", reports.len()),
        n => writeln!(out, "{} model(s) checked: {n} FAILED", reports.len()),
    };
    out
}
