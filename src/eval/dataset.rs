//! PSRBench samples: the seven subsets and the entry format the PSR scripts read
//! (`instruction`, `input_path` relative to the data root, `category1..4`, `result_path`),
//! checked entry by entry so a bad file is reported by name and position, never a panic.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

/// The seven PSRBench subsets (psr-reference.md, "PSRBench"), in the paper's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subset {
    Attribute,
    Action,
    Background,
    Position,
    Complex,
    Three,
    Four,
}

impl Subset {
    /// Every subset, in the paper's order.
    pub const ALL: [Subset; 7] = [
        Subset::Attribute,
        Subset::Action,
        Subset::Background,
        Subset::Position,
        Subset::Complex,
        Subset::Three,
        Subset::Four,
    ];

    /// The name as the benchmark's files spell it (`Attribute.json`).
    pub fn name(self) -> &'static str {
        match self {
            Subset::Attribute => "Attribute",
            Subset::Action => "Action",
            Subset::Background => "Background",
            Subset::Position => "Position",
            Subset::Complex => "Complex",
            Subset::Three => "Three",
            Subset::Four => "Four",
        }
    }

    /// The `/v1/reward` task, which picks the judge's instruction template.
    pub fn task(self) -> &'static str {
        match self {
            Subset::Attribute => "attribute",
            Subset::Action => "action",
            Subset::Background => "background",
            Subset::Position => "position",
            Subset::Complex => "complex",
            Subset::Three => "three",
            Subset::Four => "four",
        }
    }

    /// The subset a name means, case-insensitively (`attribute`, `Attribute`).
    pub fn parse(name: &str) -> Option<Subset> {
        Subset::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Position is scored by box geometry (`position-alignment.py`); the others by the judge.
    pub fn alignment(self) -> Alignment {
        if self == Subset::Position {
            Alignment::Position
        } else {
            Alignment::Semantic
        }
    }
}

impl fmt::Display for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which alignment component a subset reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// The VLM judge (`semantic_alignment`).
    Semantic,
    /// Box geometry against the instruction's relation (`position`).
    Position,
}

impl Alignment {
    /// The `/v1/reward` component name.
    pub fn component(self) -> &'static str {
        match self {
            Alignment::Semantic => "semantic_alignment",
            Alignment::Position => "position",
        }
    }
}

/// One subject of a sample: its detector category and its reference image.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub category: String,
    /// The path as the entry writes it (shown in the report).
    pub written: String,
    /// Where the file is read from (joined with the data root).
    pub path: PathBuf,
}

/// One PSRBench sample of one result set.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub subset: Subset,
    /// Position among the subset's entries, in file order (aligns result sets).
    pub index: usize,
    pub instruction: String,
    pub references: Vec<Reference>,
    /// The generated image; `None` when the entry has no `result_path`.
    pub result_path: Option<PathBuf>,
}

impl Sample {
    /// `Attribute/3`: how reports and errors name the sample.
    pub fn id(&self) -> String {
        format!("{}/{}", self.subset, self.index)
    }
}

/// Where a bad entry is: its file and position.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), entry.map(|i| format!(": entry {i}")).unwrap_or_default())]
pub struct DatasetError {
    pub file: PathBuf,
    /// Zero-based position of the entry in its file, when one entry is at fault.
    pub entry: Option<usize>,
    pub message: String,
}

impl DatasetError {
    /// An error about a whole file.
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            entry: None,
            message: message.into(),
        }
    }
}

/// How entry paths are resolved.
#[derive(Debug, Clone)]
pub struct PathRules {
    /// Where `input_path` entries are resolved (the benchmark's folder).
    pub data_root: PathBuf,
    /// Accept absolute or `..` reference paths (they leave the data root).
    pub allow_outside_root: bool,
}

/// Parses one entry (`file` and `entry` only name it in errors). `subset` is the file's
/// subset, or `None` when the entry must name its own (`"subset": "Action"`).
pub fn parse_entry(
    value: &Value,
    subset: Option<Subset>,
    rules: &PathRules,
    file: &Path,
    entry: usize,
) -> Result<(Subset, SampleFields), DatasetError> {
    let err = |message: String| DatasetError {
        file: file.to_path_buf(),
        entry: Some(entry),
        message,
    };
    let obj = value
        .as_object()
        .ok_or_else(|| err(format!("expected an object, found {}", kind(value))))?;
    let subset = match subset {
        Some(s) => s,
        None => {
            let name = obj.get("subset").and_then(Value::as_str).ok_or_else(|| {
                err("no `subset` (a results file that is not named after its subset must name one per entry)".into())
            })?;
            Subset::parse(name).ok_or_else(|| {
                err(format!(
                    "unknown subset `{name}` (known: {})",
                    Subset::ALL.map(Subset::name).join(", ")
                ))
            })?
        }
    };
    let instruction = obj
        .get("instruction")
        .and_then(Value::as_str)
        .ok_or_else(|| err("no `instruction` string".into()))?
        .to_string();
    let paths = obj
        .get("input_path")
        .or_else(|| obj.get("input_paths"))
        .ok_or_else(|| err("no `input_path` (or `input_paths`) list".into()))?
        .as_array()
        .ok_or_else(|| err("`input_path` must be a list of paths".into()))?;
    if paths.is_empty() || paths.len() > 4 {
        return Err(err(format!(
            "`input_path` holds {} paths; PSRBench samples have 1 to 4 subjects",
            paths.len()
        )));
    }
    let mut references = Vec::with_capacity(paths.len());
    for (i, p) in paths.iter().enumerate() {
        let written = p
            .as_str()
            .ok_or_else(|| err(format!("input_path[{i}] is not a string")))?;
        let key = format!("category{}", i + 1);
        let category = obj
            .get(&key)
            .and_then(Value::as_str)
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| err(format!("no `{key}` for input_path[{i}] (`{written}`)")))?;
        let path = resolve_reference(written, rules)
            .map_err(|m| err(format!("input_path[{i}] `{written}`: {m}")))?;
        references.push(Reference {
            category: category.to_string(),
            written: written.to_string(),
            path,
        });
    }
    let result_path = match obj.get("result_path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(PathBuf::from(s)),
        Some(other) => {
            return Err(err(format!(
                "`result_path` must be a string, found {}",
                kind(other)
            )))
        }
    };
    Ok((
        subset,
        SampleFields {
            instruction,
            references,
            result_path,
        },
    ))
}

/// An entry's fields, before it is numbered within its subset.
#[derive(Debug, Clone)]
pub struct SampleFields {
    pub instruction: String,
    pub references: Vec<Reference>,
    pub result_path: Option<PathBuf>,
}

/// Joins a reference path with the data root, refusing (unless allowed) absolute paths and
/// `..` components: a benchmark file should not make the evaluation read arbitrary files.
/// The check is lexical (symbolic links inside the data root are followed).
fn resolve_reference(written: &str, rules: &PathRules) -> Result<PathBuf, String> {
    let p = Path::new(written);
    if written.trim().is_empty() {
        return Err("empty path".into());
    }
    let escapes = p.is_absolute()
        || p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)));
    if escapes && !rules.allow_outside_root {
        return Err(format!(
            "leaves the data root {} (absolute or `..`); pass --allow-outside-root to accept it",
            rules.data_root.display()
        ));
    }
    Ok(rules.data_root.join(p))
}

/// A JSON value's kind, for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(allow: bool) -> PathRules {
        PathRules {
            data_root: PathBuf::from("/bench"),
            allow_outside_root: allow,
        }
    }

    fn parse(v: Value, allow: bool) -> Result<(Subset, SampleFields), DatasetError> {
        parse_entry(
            &v,
            Some(Subset::Action),
            &rules(allow),
            Path::new("Action.json"),
            4,
        )
    }

    #[test]
    fn both_spellings_of_input_path_are_read() {
        for key in ["input_path", "input_paths"] {
            let (s, f) = parse(
                json!({"instruction": "a cat", key: ["subjects/cat.png"], "category1": "cat", "result_path": "out/0.png"}),
                false,
            )
            .unwrap();
            assert_eq!(s, Subset::Action);
            assert_eq!(
                f.references[0].path,
                PathBuf::from("/bench/subjects/cat.png")
            );
            assert_eq!(f.result_path, Some(PathBuf::from("out/0.png")));
        }
    }

    #[test]
    fn a_missing_category_names_the_file_entry_and_path() {
        let e = parse(
            json!({"instruction": "x", "input_path": ["a.png", "b.png"], "category1": "cat"}),
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Action.json: entry 4: no `category2` for input_path[1] (`b.png`)"
        );
    }

    #[test]
    fn paths_leaving_the_data_root_are_refused_unless_allowed() {
        for p in ["../etc/passwd", "/etc/passwd", "subjects/../../x.png"] {
            let v = json!({"instruction": "x", "input_path": [p], "category1": "cat"});
            let e = parse(v.clone(), false).unwrap_err().to_string();
            assert!(e.contains("leaves the data root /bench"), "{e}");
            assert!(e.contains("--allow-outside-root"), "{e}");
            assert!(parse(v, true).is_ok());
        }
    }

    #[test]
    fn subsets_parse_case_insensitively() {
        assert_eq!(Subset::parse("four"), Some(Subset::Four));
        assert_eq!(Subset::parse(" Position "), Some(Subset::Position));
        assert_eq!(Subset::parse("five"), None);
        assert_eq!(Subset::Position.alignment().component(), "position");
        assert_eq!(Subset::Three.alignment().component(), "semantic_alignment");
    }
}
