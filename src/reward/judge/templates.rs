//! The judge's instruction templates: this project's built-in one per task, or the user's
//! own from configuration (a file or inline text), so that the paper's prompts can be
//! supplied without the project shipping them.
//!
//! A template is sent verbatim, whitespace included, with its one placeholder replaced by
//! the item's prompt: `{instruction}`, or `{}` as in the PSR scripts' `str.format` templates
//! (so those paste unchanged). Nothing else in the text is interpreted. Each template is
//! named by a short content hash, reported in `/info` and in every result.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The tasks with their own instruction (PSRBench subsets), and the general one.
pub const TASK_TEMPLATES: [&str; 7] = [
    "attribute",
    "action",
    "background",
    "complex",
    "three",
    "four",
    "general",
];

/// The placeholders a template may use for the instruction (exactly one occurrence).
pub const PLACEHOLDERS: [&str; 2] = ["{instruction}", "{}"];

/// Where a configured template comes from: exactly one of `file` and `text`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSource {
    /// A UTF-8 file read once at start-up (relative to the working directory).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// The template itself.
    #[serde(default)]
    pub text: Option<String>,
}

impl TemplateSource {
    /// Checks what needs no file: a known task, one source, an inline text's placeholder.
    pub fn check(&self, task: &str) -> Result<(), String> {
        if !TASK_TEMPLATES.contains(&task) {
            return Err(format!(
                "unknown task; expected one of {}",
                TASK_TEMPLATES.join(", ")
            ));
        }
        match (&self.file, &self.text) {
            (Some(_), None) => Ok(()),
            (None, Some(text)) => placeholder_at(text).map(|_| ()),
            _ => Err("set exactly one of `file` and `text`".to_string()),
        }
    }

    /// The template text and a description of its origin.
    fn load(&self, task: &str) -> Result<(String, String), String> {
        self.check(task)?;
        match (&self.file, &self.text) {
            (Some(path), _) => std::fs::read_to_string(path)
                .map(|text| (text, format!("file:{}", path.display())))
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            (None, Some(text)) => Ok((text.clone(), "inline".to_string())),
            (None, None) => Err("set exactly one of `file` and `text`".to_string()),
        }
    }
}

/// The byte range of the one placeholder in `text`, or why there is not exactly one.
fn placeholder_at(text: &str) -> Result<(usize, usize), String> {
    let found: Vec<(usize, usize)> = PLACEHOLDERS
        .iter()
        .flat_map(|p| text.match_indices(p).map(|(at, m)| (at, at + m.len())))
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err("the template has no `{instruction}` (or `{}`) placeholder".to_string()),
        _ => Err(format!(
            "the template has {} placeholders; it must have exactly one `{{instruction}}` or `{{}}`",
            found.len()
        )),
    }
}

/// One resolved template.
#[derive(Debug, Clone)]
pub struct Template {
    /// The text as sent, placeholder included.
    pub text: String,
    /// First 12 hex digits of the text's BLAKE3 hash.
    pub hash: String,
    /// `builtin`, `inline` or `file:<path>`.
    pub source: String,
    placeholder: (usize, usize),
}

impl Template {
    fn new(text: String, source: String) -> Result<Self, String> {
        let placeholder = placeholder_at(&text)?;
        Ok(Self {
            hash: short_hash(&text),
            text,
            source,
            placeholder,
        })
    }

    /// The text with the placeholder replaced by `instruction` (verbatim, like Python's
    /// `str.format`, which does not re-read its argument).
    pub fn render(&self, instruction: &str) -> String {
        let (start, end) = self.placeholder;
        [&self.text[..start], instruction, &self.text[end..]].concat()
    }
}

/// The template of `task`: the configured one, else the built-in one.
fn resolve(configured: Option<&TemplateSource>, task: &str) -> Result<Template, String> {
    let (text, source) = match configured {
        Some(s) => s.load(task)?,
        None => (builtin(task), "builtin".to_string()),
    };
    Template::new(text, source)
}

/// The short content hash that names a template.
pub fn short_hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex()[..12].to_string()
}

/// What `/info` says about one active template.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TemplateInfo {
    pub hash: String,
    pub source: String,
}

/// The active template of every task.
#[derive(Debug, Clone)]
pub struct Templates {
    /// Every task but `general`.
    by_task: BTreeMap<&'static str, Template>,
    general: Template,
}

impl Templates {
    /// The built-in templates, replaced by the configured ones (files are read here).
    pub fn load(configured: &BTreeMap<String, TemplateSource>) -> Result<Self, String> {
        if let Some(task) = configured
            .keys()
            .find(|t| !TASK_TEMPLATES.contains(&t.as_str()))
        {
            return Err(format!("judge.templates.{task}: unknown task"));
        }
        let resolve = |task: &str| {
            resolve(configured.get(task), task).map_err(|e| format!("judge.templates.{task}: {e}"))
        };
        let mut by_task = BTreeMap::new();
        for task in TASK_TEMPLATES.into_iter().filter(|t| *t != "general") {
            by_task.insert(task, resolve(task)?);
        }
        Ok(Self {
            by_task,
            general: resolve("general")?,
        })
    }

    /// The template for an item's task: its own, or `general` for none and for tasks
    /// without one (`position`).
    pub fn for_task(&self, task: Option<&str>) -> (&'static str, &Template) {
        match task.and_then(|t| self.by_task.get_key_value(t)) {
            Some((name, t)) => (name, t),
            None => ("general", &self.general),
        }
    }

    /// Hash and source of each task's template.
    pub fn info(&self) -> BTreeMap<String, TemplateInfo> {
        self.by_task
            .iter()
            .chain([(&"general", &self.general)])
            .map(|(task, t)| {
                let info = TemplateInfo {
                    hash: t.hash.clone(),
                    source: t.source.clone(),
                };
                (task.to_string(), info)
            })
            .collect()
    }
}

/// This project's instruction for `task`. The wording is ours; the structure and output
/// form follow the PSR scripts: a role, a 0..10 scale with 10 = perfect, focus on one aspect
/// only, stringent judging, analysis first, then `[Thought]: ... [Score]: ...`, the whole
/// instruction in the description slot.
pub fn builtin(task: &str) -> String {
    let (aspect, label) = match task {
        "attribute" => ("whether the attributes of each subject in the image (colour, material, shape, texture, clothing) match the attribute description", "attribute description"),
        "action" => ("whether the actions and poses of the subjects in the image match the action description", "action description"),
        "background" => ("whether the background and scene of the image match the background description", "background description"),
        "complex" | "three" | "four" => ("whether the content of the image (every subject, its attributes, actions, relations and the scene) matches the description", "description"),
        _ => ("whether the image matches the description", "description"),
    };
    format!(
        "You are a strict evaluator. Judge {aspect}.\n\
         Rule 1: Give a score from 0 to 10, where 10 means a complete match and lower scores mean a weaker match.\n\
         Rule 2: Consider only this aspect; ignore image quality and everything the description does not mention.\n\
         Rule 3: Be stringent: any clear mismatch must lower the score.\n\
         Rule 4: First write a detailed analysis, then the final score. Your answer must have the form [Thought]: ... [Score]: ...\n\
         [{label}]: {{instruction}}\n\
         [Thought]:\n\
         [Score]:"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_follow_the_reference_structure() {
        let t = Templates::load(&BTreeMap::new()).unwrap();
        for task in TASK_TEMPLATES {
            let (name, template) = t.for_task(Some(task));
            assert_eq!(name, task);
            assert_eq!(template.source, "builtin");
            let text = template.render("a cat in a red hat");
            assert!(text.contains("0 to 10"), "{task}");
            assert!(text.contains("[Thought]: ... [Score]: ..."), "{task}");
            assert!(text.contains("a cat in a red hat"), "{task}");
        }
        let (_, attr) = t.for_task(Some("attribute"));
        assert!(attr.render("x").contains("[attribute description]: x"));
        assert_eq!(t.for_task(Some("position")).0, "general");
        assert_eq!(t.for_task(None).0, "general");
        // complex, three and four share one text, hence one hash.
        assert_eq!(
            t.for_task(Some("three")).1.hash,
            t.for_task(Some("four")).1.hash
        );
        assert_ne!(
            t.for_task(Some("three")).1.hash,
            t.for_task(Some("action")).1.hash
        );
    }

    #[test]
    fn configured_templates_are_verbatim_with_one_placeholder() {
        let inline = |text: &str| TemplateSource {
            file: None,
            text: Some(text.to_string()),
        };
        let psr_style = "\n        [description]: {}\n        [Score]:\n        ";
        let t =
            Templates::load(&BTreeMap::from([("four".to_string(), inline(psr_style))])).unwrap();
        let (_, four) = t.for_task(Some("four"));
        assert_eq!(
            four.render("two {} cats"),
            "\n        [description]: two {} cats\n        [Score]:\n        "
        );
        assert_eq!(four.hash, short_hash(psr_style));
        assert_eq!(four.hash.len(), 12);
        assert_eq!(four.source, "inline");
        let err = |m: BTreeMap<String, TemplateSource>| Templates::load(&m).unwrap_err();
        assert!(err(BTreeMap::from([("four".into(), inline("no slot"))]))
            .contains("no `{instruction}`"));
        assert!(err(BTreeMap::from([(
            "four".into(),
            inline("{} and {instruction}")
        )]))
        .contains("2 placeholders"));
        assert!(err(BTreeMap::from([("fourr".into(), inline("{}"))])).contains("unknown task"));
        let both = TemplateSource {
            file: Some("x".into()),
            text: Some("{}".into()),
        };
        assert!(err(BTreeMap::from([("four".into(), both)])).contains("exactly one"));
        let missing = TemplateSource {
            file: Some("/nonexistent/psr-template.txt".into()),
            text: None,
        };
        assert!(err(BTreeMap::from([("four".into(), missing)])).contains("cannot read"));
    }
}
