//! `report.html`: one self-contained page (thumbnails as data URIs, a few lines of inline
//! script, no network) where a person looks rather than reads. Per sample: the references
//! and each result set's generated image as thumbnails with the detected boxes drawn over
//! them, the per-subject similarities, the judge's score and reasoning, or why the sample
//! was left out; sortable by any score (worst first finds failures) and filterable by
//! subset. Once every image of a sample has loaded the script marks it `data-rendered`,
//! and the body's `data-rendered` counts them (what the browser test checks).

use std::collections::HashMap;
use std::fmt::Write;

use super::thumbs::{Thumb, Thumbs};
use crate::eval::dataset::{Alignment, Sample, Subset};
use crate::eval::request::{SaScores, ScScores, Scores, SubjectScores};
use crate::eval::results::ResultSet;
use crate::eval::runner::Outcome;
use crate::eval::summary::Summary;

/// Box colours per subject (none of the colours the fixture scenes use).
pub const BOX_COLOURS: [&str; 4] = ["#ff00ff", "#00ffff", "#ff8000", "#ffffff"];

const STYLE: &str = "body{font-family:sans-serif;margin:16px;background:#f4f4f4;color:#222}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}\
th:first-child,td:first-child{text-align:left}.controls{margin:12px 0;position:sticky;top:0;background:#f4f4f4;padding:6px 0}\
.sample{background:#fff;border:1px solid #ccc;border-radius:6px;margin:10px 0;padding:8px}\
.head{margin-bottom:6px}.row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}\
.set{border-left:4px solid #888;padding-left:8px;min-width:260px}\
figure{margin:0;font-size:12px}.thumb{position:relative;width:200px;background:#000}\
.thumb img{width:100%;height:100%;display:block}.thumb svg{position:absolute;left:0;top:0;width:100%;height:100%}\
.thumb rect{fill:none;stroke-width:1.5%}.missing{width:200px;height:120px;background:#fdd;display:flex;align-items:center;justify-content:center;text-align:center;font-size:12px}\
.score{font-weight:bold}.bad{color:#b00}details{max-width:420px;font-size:12px;white-space:pre-wrap}ul{margin:4px 0;padding-left:18px;font-size:13px}";

const SCRIPT: &str = r#"
for (const img of document.querySelectorAll('img[data-img]')) img.src = IMAGES[img.dataset.img];
function markRendered() {
  let n = 0;
  for (const s of document.querySelectorAll('.sample')) {
    const imgs = [...s.querySelectorAll('img')];
    if (imgs.every(i => i.complete && i.naturalWidth > 0)) { s.dataset.rendered = '1'; n++; }
  }
  document.body.dataset.rendered = String(n);
}
window.addEventListener('load', markRendered);
const list = document.getElementById('samples');
function apply() {
  const key = document.getElementById('sort').value;
  const up = document.getElementById('dir').value === 'asc';
  const subset = document.getElementById('subset').value;
  const items = [...list.children];
  const val = el => { const v = parseFloat(el.getAttribute('data-' + key)); return isNaN(v) ? null : v; };
  items.sort((a, b) => {
    const x = val(a), y = val(b);
    if (x === null && y === null) return a.dataset.order - b.dataset.order;
    if (x === null) return 1; if (y === null) return -1;
    return up ? x - y : y - x;
  });
  for (const el of items) { list.appendChild(el); el.style.display = (!subset || el.dataset.subset === subset) ? '' : 'none'; }
}
for (const id of ['sort', 'dir', 'subset']) document.getElementById(id).addEventListener('change', apply);
"#;

/// HTML-escapes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.3}"))
}

/// The whole page.
pub fn page(summary: &Summary, sets: &[ResultSet], outcomes: &[Vec<Outcome>]) -> String {
    let mut thumbs = Thumbs::default();
    let mut body = String::new();
    let reference_set = &sets[0];
    let lookup = Lookup::new(sets, outcomes);
    for (k, sample) in reference_set.samples.iter().enumerate() {
        body.push_str(&sample_card(k, sample, sets, &lookup, &mut thumbs));
    }
    let mut out = String::with_capacity(body.len() + 4096);
    let _ = write!(
        out,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>PSRBench report</title><style>{STYLE}</style></head><body data-samples=\"{}\">",
        reference_set.samples.len()
    );
    out.push_str("<h1>PSRBench report</h1>");
    out.push_str(&summary_table(summary));
    out.push_str(&controls(summary, sets));
    let _ = write!(out, "<div id=samples>{body}</div><script>const IMAGES = {{");
    for (id, uri) in &thumbs.uris {
        let _ = write!(out, "\"{id}\":\"{uri}\",");
    }
    let _ = write!(out, "}};{SCRIPT}</script></body></html>");
    out
}

fn summary_table(summary: &Summary) -> String {
    let mut t = String::from("<table><tr><th>Subset</th>");
    for set in &summary.sets {
        let _ = write!(
            t,
            "<th>SC · {0}</th><th>Alignment · {0}</th><th>Aesthetic · {0}</th>",
            esc(&set.name)
        );
    }
    t.push_str("</tr>");
    let first = &summary.sets[0];
    for (i, s) in first.subsets.iter().enumerate() {
        let _ = write!(t, "<tr><td>{}</td>", esc(&s.subset));
        for set in &summary.sets {
            let x = set.subsets.get(i);
            let _ = write!(
                t,
                "<td>{}</td><td>{}</td><td>{}</td>",
                num(x.and_then(|x| x.subject_consistency.mean)),
                num(x.and_then(|x| x.alignment.mean)),
                num(x.and_then(|x| x.aesthetic.mean))
            );
        }
        t.push_str("</tr>");
    }
    t.push_str("<tr><td><b>Overall</b></td>");
    for set in &summary.sets {
        let o = &set.overall;
        let _ = write!(
            t,
            "<td><b>{}</b></td><td><b>{}</b></td><td><b>{}</b></td>",
            num(o.subject_consistency),
            num(o.alignment),
            num(o.aesthetic)
        );
    }
    t.push_str("</tr></table>");
    for (c, why) in &summary.components.missing {
        let _ = write!(t, "<p>Not computed: {}: {}</p>", esc(c), esc(why));
    }
    t
}

fn controls(summary: &Summary, sets: &[ResultSet]) -> String {
    let mut c = String::from(
        "<div class=controls>Sort by <select id=sort><option value=order>benchmark order</option>",
    );
    for (i, set) in sets.iter().enumerate() {
        for (key, label) in [("sc", "SC"), ("al", "Alignment"), ("ae", "Aesthetic")] {
            let _ = write!(
                c,
                "<option value={key}-{i}>{label} · {}</option>",
                esc(&set.name)
            );
        }
    }
    c.push_str("</select> <select id=dir><option value=asc>worst first</option><option value=desc>best first</option></select> Subset <select id=subset><option value=\"\">all</option>");
    for s in &summary.sets[0].subsets {
        let _ = write!(c, "<option>{}</option>", esc(&s.subset));
    }
    c.push_str("</select></div>");
    c
}

/// A thumbnail with `boxes` (`[x1, y1, x2, y2]` in original pixels) drawn over it.
fn thumb_html(t: &Thumb, alt: &str, boxes: &[(usize, [i64; 4])]) -> String {
    let mut s = format!(
        "<div class=thumb style=\"aspect-ratio:{} / {}\"><img data-img=\"{}\" alt=\"{}\"><svg viewBox=\"0 0 {} {}\" preserveAspectRatio=\"none\">",
        t.width, t.height, t.id, esc(alt), t.width, t.height
    );
    for (k, b) in boxes {
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" stroke=\"{}\" vector-effect=\"non-scaling-stroke\" style=\"stroke-width:3px\"/>",
            b[0],
            b[1],
            (b[2] - b[0]).max(0),
            (b[3] - b[1]).max(0),
            BOX_COLOURS[k % BOX_COLOURS.len()]
        );
    }
    s.push_str("</svg></div>");
    s
}

fn missing(text: &str) -> String {
    format!("<div class=missing>{}</div>", esc(text))
}

/// Finds a sample's entry and outcome in each set by (subset, index): sets are compared
/// sample by sample even when they hold different subsets.
struct Lookup<'a> {
    sets: Vec<SetIndex<'a>>,
}

/// One set's samples and outcomes by (subset, index).
type SetIndex<'a> = HashMap<(Subset, usize), (&'a Sample, &'a Outcome)>;

impl<'a> Lookup<'a> {
    fn new(sets: &'a [ResultSet], outcomes: &'a [Vec<Outcome>]) -> Self {
        Self {
            sets: sets
                .iter()
                .zip(outcomes)
                .map(|(set, outs)| {
                    set.samples
                        .iter()
                        .zip(outs)
                        .map(|(s, o)| ((s.subset, s.index), (s, o)))
                        .collect()
                })
                .collect(),
        }
    }

    fn get(&self, set: usize, sample: &Sample) -> Option<(&'a Sample, &'a Outcome)> {
        self.sets
            .get(set)?
            .get(&(sample.subset, sample.index))
            .copied()
    }
}

fn sample_card(
    k: usize,
    sample: &Sample,
    sets: &[ResultSet],
    lookup: &Lookup<'_>,
    thumbs: &mut Thumbs,
) -> String {
    let scored = |i: usize| match lookup.get(i, sample) {
        Some((_, Outcome::Scored { scores, .. })) => Some(scores.as_ref()),
        _ => None,
    };
    let alignment = sample.subset.alignment();
    let mut attrs = String::new();
    for i in 0..sets.len() {
        if let Some(s) = scored(i) {
            let al = s.alignment(alignment);
            let sc = s.subject_consistency.as_ref().map(|c| c.score);
            let ae = s.aesthetic.as_ref().map(|a| a.score);
            for (key, v) in [("sc", sc), ("al", al), ("ae", ae)] {
                if let Some(v) = v {
                    let _ = write!(attrs, " data-{key}-{i}=\"{v}\"");
                }
            }
        }
    }
    let mut c = format!(
        "<div class=sample data-subset=\"{}\" data-order=\"{k}\"{attrs}><div class=head><b>{}</b> {}</div><div class=row>",
        sample.subset,
        esc(&sample.id()),
        esc(&sample.instruction)
    );
    // References, with the boxes found in them (the same for every set).
    let ref_subjects: Option<&Vec<SubjectScores>> = (0..sets.len())
        .find_map(scored)
        .and_then(|s| s.subject_consistency.as_ref().map(|c| &c.subjects));
    for (j, r) in sample.references.iter().enumerate() {
        let caption = format!("{} · {}", r.category, r.written);
        let boxes: Vec<(usize, [i64; 4])> = ref_subjects
            .and_then(|s| s.get(j))
            .and_then(|s| s.reference_box)
            .map(|b| vec![(j, b)])
            .unwrap_or_default();
        let t = thumbs.get(&r.path);
        let img = match &t {
            Some(t) => thumb_html(t, &caption, &boxes),
            None => missing("reference cannot be read"),
        };
        let _ = write!(
            c,
            "<figure>{img}<figcaption>reference: {}</figcaption></figure>",
            esc(&caption)
        );
    }
    for (i, set) in sets.iter().enumerate() {
        let _ = write!(c, "<div class=set><b>{}</b>", esc(&set.name));
        match lookup.get(i, sample) {
            Some((s, Outcome::Scored { scores, .. })) => {
                c.push_str(&scored_block(
                    s.result_path.as_deref(),
                    scores,
                    alignment,
                    thumbs,
                ));
            }
            Some((_, Outcome::Excluded(e))) => {
                let _ = write!(
                    c,
                    "{}<div class=bad>{}: {}</div>",
                    missing(e.label()),
                    e.label(),
                    esc(e.detail())
                );
            }
            Some((_, Outcome::Failed(m))) => {
                let _ = write!(
                    c,
                    "{}<div class=bad>failed: {}</div>",
                    missing("not scored"),
                    esc(m)
                );
            }
            Some((_, Outcome::NotRun)) | None => c.push_str(&missing("not run")),
        }
        c.push_str("</div>");
    }
    c.push_str("</div></div>");
    c
}

/// A scored sample of one set: the generated image with its boxes, then each component.
fn scored_block(
    path: Option<&std::path::Path>,
    scores: &Scores,
    alignment: Alignment,
    thumbs: &mut Thumbs,
) -> String {
    let subjects = scores
        .subject_consistency
        .as_ref()
        .map(|s| s.subjects.as_slice())
        .unwrap_or_default();
    let boxes: Vec<(usize, [i64; 4])> = subjects
        .iter()
        .enumerate()
        .filter_map(|(j, s)| s.bbox.map(|b| (j, b)))
        .collect();
    let mut c = match path.and_then(|p| thumbs.get(p)) {
        Some(t) => thumb_html(&t, "generated image", &boxes),
        None => missing("image cannot be shown"),
    };
    if let Some(sc) = &scores.subject_consistency {
        subjects_html(&mut c, sc);
    }
    match alignment {
        Alignment::Semantic => {
            if let Some(sa) = &scores.semantic_alignment {
                judge_html(&mut c, sa);
            }
        }
        Alignment::Position => {
            if let Some(p) = &scores.position {
                let _ = write!(
                    c,
                    "<div>Position <span class=score>{}</span> {} {}</div>",
                    num(p.score),
                    esc(p.relation.as_deref().unwrap_or("no relation")),
                    esc(p.reason.as_deref().unwrap_or(""))
                );
            }
        }
    }
    if let Some(a) = &scores.aesthetic {
        let _ = write!(
            c,
            "<div>Aesthetic <span class=score>{:.3}</span></div>",
            a.score
        );
    }
    for (k, e) in &scores.errors {
        let _ = write!(c, "<div class=bad>{}: {}</div>", esc(k), esc(e));
    }
    c
}

/// Subject consistency and, per subject (in its box's colour), its similarity and whether
/// its box was detected or the whole image was used (with the fallback's reason).
fn subjects_html(c: &mut String, sc: &ScScores) {
    let _ = write!(
        c,
        "<div>SC <span class=score>{:.3}</span></div><ul>",
        sc.score
    );
    for (j, s) in sc.subjects.iter().enumerate() {
        let how = match (s.detected, s.fallback) {
            (true, _) => "detected".to_string(),
            (false, Some(f)) => format!(
                "whole image ({})",
                serde_json::to_value(f)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
            (false, None) => "whole image".to_string(),
        };
        let _ = write!(
            c,
            "<li><span style=\"color:{}\">■</span> {} {:.3} · {how}</li>",
            BOX_COLOURS[j % BOX_COLOURS.len()],
            esc(&s.name),
            s.similarity
        );
    }
    c.push_str("</ul>");
}

/// The judge's normalised and raw score, how the scripts treated the answer, and the
/// answer itself (folded).
fn judge_html(c: &mut String, sa: &SaScores) {
    let flags: Vec<&str> = [
        (sa.substituted, "5 substituted"),
        (sa.dropped, "dropped"),
        (sa.out_of_range, "out of range"),
    ]
    .into_iter()
    .filter_map(|(on, label)| on.then_some(label))
    .collect();
    let _ = write!(
        c,
        "<div>Judge <span class=score>{}</span> (raw {}) {}</div>",
        num(sa.score),
        sa.raw.map_or("–".to_string(), |r| r.to_string()),
        esc(&flags.join(", "))
    );
    if let Some(a) = &sa.answer {
        let _ = write!(
            c,
            "<details><summary>reasoning</summary>{}</details>",
            esc(a)
        );
    }
}
