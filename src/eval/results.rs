//! Result sets: what `--results [NAME=]PATH` names. A folder holding the benchmark's
//! `<Subset>.json` files with `result_path` added (the PSR README's workflow), a file named
//! after one subset (`Action.json`), or one JSON list / JSONL file whose entries name their
//! `subset`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::dataset::{kind, parse_entry, DatasetError, PathRules, Sample, Subset};

/// A named set of generated images (one model's outputs) and its samples.
#[derive(Debug, Clone)]
pub struct ResultSet {
    /// Shown in tables and charts (`PSR`, `OmniGen2`).
    pub name: String,
    /// What `--results` named.
    pub source: PathBuf,
    /// The samples of the selected subsets, subset by subset in the paper's order.
    pub samples: Vec<Sample>,
}

/// Splits `NAME=PATH` (a name without `/`); a bare path is named after its file stem.
pub fn parse_results_arg(arg: &str) -> (String, PathBuf) {
    if let Some((name, path)) = arg.split_once('=') {
        if !name.is_empty() && !name.contains('/') && !path.is_empty() {
            return (name.to_string(), PathBuf::from(path));
        }
    }
    let path = PathBuf::from(arg);
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| arg.to_string());
    (name, path)
}

/// Loads one result set, keeping the `subsets` asked for. Generated-image paths are used
/// as written (relative ones from the current directory), as the PSR scripts open them.
pub fn load_set(
    name: String,
    source: &Path,
    subsets: &[Subset],
    rules: &PathRules,
) -> Result<ResultSet, DatasetError> {
    let mut samples = Vec::new();
    if source.is_dir() {
        for &subset in subsets {
            let file = source.join(format!("{}.json", subset.name()));
            if !file.is_file() {
                return Err(DatasetError::file(
                    &file,
                    format!(
                        "missing: a results folder holds one <Subset>.json per subset asked for (pass --subsets to evaluate fewer than {})",
                        subsets.len()
                    ),
                ));
            }
            let entries = read_entries(&file)?;
            for (i, v) in entries.iter().enumerate() {
                let (s, fields) = parse_entry(v, Some(subset), rules, &file, i)?;
                push(&mut samples, s, fields);
            }
        }
    } else {
        let named = source
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(Subset::parse);
        let entries = read_entries(source)?;
        for (i, v) in entries.iter().enumerate() {
            let (s, fields) = parse_entry(v, named, rules, source, i)?;
            if subsets.contains(&s) {
                push(&mut samples, s, fields);
            }
        }
    }
    samples.sort_by_key(|s| (s.subset, s.index));
    if samples.is_empty() {
        return Err(DatasetError::file(
            source,
            "no samples of the subsets asked for",
        ));
    }
    Ok(ResultSet {
        name,
        source: source.to_path_buf(),
        samples,
    })
}

/// Numbers the entry within its subset (file order) and adds it.
fn push(samples: &mut Vec<Sample>, subset: Subset, f: super::dataset::SampleFields) {
    let index = samples.iter().filter(|s| s.subset == subset).count();
    samples.push(Sample {
        subset,
        index,
        instruction: f.instruction,
        references: f.references,
        result_path: f.result_path,
    });
}

/// The entries of a JSON list or a JSONL file (one entry a line; blank lines skipped).
fn read_entries(file: &Path) -> Result<Vec<Value>, DatasetError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| DatasetError::file(file, format!("cannot read: {e}")))?;
    let jsonl = file.extension().is_some_and(|e| e == "jsonl");
    if jsonl {
        return text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l).map_err(|e| {
                    DatasetError::file(file, format!("line {}: malformed JSON: {e}", n + 1))
                })
            })
            .collect();
    }
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| DatasetError::file(file, format!("malformed JSON: {e}")))?;
    match value {
        Value::Array(entries) => Ok(entries),
        other => Err(DatasetError::file(
            file,
            format!("expected a list of entries, found {}", kind(&other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_args_take_an_optional_name() {
        assert_eq!(
            parse_results_arg("PSR=out/psr"),
            ("PSR".to_string(), PathBuf::from("out/psr"))
        );
        assert_eq!(
            parse_results_arg("runs/omnigen2.jsonl"),
            ("omnigen2".to_string(), PathBuf::from("runs/omnigen2.jsonl"))
        );
        assert_eq!(
            parse_results_arg("a/b=c"),
            ("b=c".to_string(), PathBuf::from("a/b=c"))
        );
    }
}
