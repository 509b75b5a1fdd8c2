//! The resume journal: `samples.jsonl` under `--out`, one line per scored sample, appended
//! as each finishes, after a header naming the deployment's fingerprint. A rerun reuses
//! every line whose inputs (entry fields and file contents) are unchanged, and refuses a
//! journal written by other models, judge, templates or mode. A line cut short by a kill
//! is dropped; every whole line before it survives.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::request::Scores;
use super::EvalError;

/// The journal's format version.
const FORMAT: u64 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    psr_reward_eval_journal: u64,
    fingerprint: Value,
}

/// One scored sample.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub set: String,
    pub subset: String,
    pub index: usize,
    /// blake3 of the entry's fields and its files' bytes.
    pub input: String,
    pub scores: Scores,
}

/// (set, subset, index).
pub type Key = (String, String, usize);

/// The open journal: what earlier runs scored, and the file new lines go to.
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    earlier: HashMap<Key, Record>,
}

impl Journal {
    /// Opens `path`: a new journal (also with `fresh`), or an earlier one whose fingerprint
    /// must equal `fingerprint`.
    pub fn open(path: &Path, fingerprint: &Value, fresh: bool) -> Result<Self, EvalError> {
        let io = |e: std::io::Error| EvalError::Io(format!("{}: {e}", path.display()));
        if fresh || !path.exists() {
            let mut file = File::create(path).map_err(io)?;
            let header = Header {
                psr_reward_eval_journal: FORMAT,
                fingerprint: fingerprint.clone(),
            };
            let line = serde_json::to_string(&header).map_err(|e| EvalError::Io(e.to_string()))?;
            writeln!(file, "{line}").map_err(io)?;
            return Ok(Self {
                path: path.to_path_buf(),
                file: Mutex::new(file),
                earlier: HashMap::new(),
            });
        }
        let (earlier, good_len) = read(path, fingerprint)?;
        let file = OpenOptions::new().write(true).open(path).map_err(io)?;
        // Drop a last line cut short (a kill in the middle of a write).
        file.set_len(good_len).map_err(io)?;
        let mut file = file;
        file.seek(std::io::SeekFrom::End(0)).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            earlier,
        })
    }

    /// The earlier result of `key`, if its inputs are still `input`.
    pub fn earlier(&self, key: &Key, input: &str) -> Option<&Record> {
        self.earlier.get(key).filter(|r| r.input == input)
    }

    /// How many results earlier runs left.
    pub fn earlier_count(&self) -> usize {
        self.earlier.len()
    }

    /// Appends one result as a whole line.
    pub fn append(&self, record: &Record) -> Result<(), EvalError> {
        let mut line = serde_json::to_string(record).map_err(|e| EvalError::Io(e.to_string()))?;
        line.push('\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(line.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| EvalError::Io(format!("{}: {e}", self.path.display())))
    }

    /// Makes the journal durable (at the end of a run).
    pub fn sync(&self) -> Result<(), EvalError> {
        let file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.sync_all()
            .map_err(|e| EvalError::Io(format!("{}: {e}", self.path.display())))
    }
}

/// The records of an earlier journal and the length of its whole lines.
fn read(path: &Path, fingerprint: &Value) -> Result<(HashMap<Key, Record>, u64), EvalError> {
    let io = |e: std::io::Error| EvalError::Io(format!("{}: {e}", path.display()));
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut line = String::new();
    let mut good_len = 0u64;
    let mut n = 0usize;
    let mut earlier = HashMap::new();
    let mut header_seen = false;
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(io)?;
        if read == 0 {
            break;
        }
        n += 1;
        if !line.ends_with('\n') {
            break; // cut short: dropped
        }
        good_len += read as u64;
        if !header_seen {
            let header: Header = serde_json::from_str(&line).map_err(|_| {
                EvalError::Journal(format!(
                    "{} is not an evaluation journal; pass --fresh to overwrite it or choose another --out",
                    path.display()
                ))
            })?;
            if header.psr_reward_eval_journal != FORMAT || &header.fingerprint != fingerprint {
                return Err(EvalError::Journal(format!(
                    "{} was written with a different {}; its results cannot be reused. Pass --fresh to score again, or choose another --out",
                    path.display(),
                    differences(&header.fingerprint, fingerprint)
                )));
            }
            header_seen = true;
            continue;
        }
        let record: Record = serde_json::from_str(&line).map_err(|e| {
            EvalError::Journal(format!(
                "{}: line {n} is not a result ({e}); pass --fresh to start over",
                path.display()
            ))
        })?;
        earlier.insert(
            (record.set.clone(), record.subset.clone(), record.index),
            record,
        );
    }
    if !header_seen {
        return Err(EvalError::Journal(format!(
            "{} has no header line; pass --fresh to start over",
            path.display()
        )));
    }
    Ok((earlier, good_len))
}

/// The fingerprint's parts that differ, named for the user (`models, mode`).
fn differences(old: &Value, new: &Value) -> String {
    let keys: Vec<&str> = match (old.as_object(), new.as_object()) {
        (Some(o), Some(n)) => n
            .iter()
            .filter(|(k, v)| o.get(k.as_str()) != Some(v))
            .map(|(k, _)| k.as_str())
            .chain(o.keys().filter(|k| !n.contains_key(*k)).map(String::as_str))
            .collect(),
        _ => vec![],
    };
    if keys.is_empty() {
        "format".to_string()
    } else {
        format!("configuration ({})", keys.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(i: usize) -> Record {
        Record {
            set: "PSR".into(),
            subset: "Action".into(),
            index: i,
            input: format!("h{i}"),
            scores: serde_json::from_value(json!({"errors": {}})).unwrap(),
        }
    }

    #[test]
    fn a_line_cut_short_is_dropped_and_the_rest_reused() {
        let dir = std::env::temp_dir().join(format!("psr-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("samples.jsonl");
        let fp = json!({"mode": "psr", "models": [1]});
        let j = Journal::open(&path, &fp, true).unwrap();
        j.append(&record(0)).unwrap();
        j.append(&record(1)).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"set\": \"PSR\", \"subs").unwrap();
        drop(f);
        let j = Journal::open(&path, &fp, false).unwrap();
        assert_eq!(j.earlier_count(), 2);
        let key = ("PSR".to_string(), "Action".to_string(), 1);
        assert!(j.earlier(&key, "h1").is_some());
        assert!(j.earlier(&key, "changed").is_none());
        j.append(&record(2)).unwrap();
        drop(j);
        let j = Journal::open(&path, &fp, false).unwrap();
        assert_eq!(j.earlier_count(), 3);
        drop(j);
        let other = json!({"mode": "robust", "models": [1]});
        let e = Journal::open(&path, &other, false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("different configuration (mode)"), "{e}");
        assert!(e.contains("--fresh"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
