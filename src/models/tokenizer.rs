//! Captions to token ids for text-conditioned detectors, with the `tokenizers` crate loading a
//! Hugging Face `tokenizer.json` unchanged.

use std::path::Path;

/// Why a caption could not be tokenised.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("cannot load tokenizer {path}: {message}")]
    Load { path: String, message: String },
    #[error("cannot tokenize caption: {0}")]
    Encode(String),
    #[error("caption is {tokens} tokens long; the detector takes at most {max}")]
    TooLong { tokens: usize, max: usize },
    #[error("caption is empty")]
    Empty,
    #[error("`{name}` is not a class of this detector (classes: {known})")]
    UnknownClass { name: String, known: String },
}

/// A loaded tokenizer with the detector's length limit.
pub struct CaptionTokenizer {
    inner: tokenizers::Tokenizer,
    max_len: usize,
}

impl CaptionTokenizer {
    /// Loads `tokenizer.json`.
    pub fn load(path: &Path, max_len: usize) -> Result<Self, TokenizeError> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizeError::Load {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Self { inner, max_len })
    }

    /// Token ids of `caption` with special tokens ([CLS] ... [SEP]).
    pub fn encode(&self, caption: &str) -> Result<Vec<i64>, TokenizeError> {
        let enc = self
            .inner
            .encode(caption, true)
            .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        let ids = enc.get_ids();
        if ids.len() > self.max_len {
            return Err(TokenizeError::TooLong {
                tokens: ids.len(),
                max: self.max_len,
            });
        }
        Ok(ids.iter().map(|&i| i64::from(i)).collect())
    }
}

impl CaptionTokenizer {
    /// Token ids of a free-text prompt, truncated to the length limit (CLIP text towers
    /// truncate long prompts rather than refuse them), keeping the closing special token.
    pub fn encode_truncated(&self, text: &str) -> Result<Vec<i64>, TokenizeError> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        let ids = enc.get_ids();
        let mut out: Vec<i64> = ids
            .iter()
            .take(self.max_len)
            .map(|&i| i64::from(i))
            .collect();
        if ids.len() > self.max_len {
            if let (Some(last), Some(&end)) = (out.last_mut(), ids.last()) {
                *last = i64::from(end);
            }
        }
        Ok(out)
    }

    /// One caption naming several categories, as Grounding DINO is usually prompted
    /// ("cat . crab ."), with the token columns of each category.
    pub fn encode_joint(
        &self,
        categories: &[&str],
    ) -> Result<(Vec<i64>, Vec<std::ops::Range<usize>>), TokenizeError> {
        let mut caption = String::new();
        let mut ranges = Vec::with_capacity(categories.len());
        for c in categories {
            let c = category_caption(c)?;
            let name = c.trim_end_matches('.').trim_end();
            if !caption.is_empty() {
                caption.push(' ');
            }
            let start = caption.len();
            caption.push_str(name);
            ranges.push(start..caption.len());
            caption.push_str(" .");
        }
        let enc = self
            .inner
            .encode(caption.as_str(), true)
            .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        if enc.get_ids().len() > self.max_len {
            return Err(TokenizeError::TooLong {
                tokens: enc.get_ids().len(),
                max: self.max_len,
            });
        }
        let offsets = enc.get_offsets();
        let special = enc.get_special_tokens_mask();
        let spans = ranges
            .iter()
            .map(|r| {
                let inside: Vec<usize> = (0..offsets.len())
                    .filter(|&t| {
                        special[t] == 0
                            && offsets[t].0 >= r.start
                            && offsets[t].1 <= r.end
                            && offsets[t].1 > offsets[t].0
                    })
                    .collect();
                match (inside.first(), inside.last()) {
                    (Some(&a), Some(&b)) => Ok(a..b + 1),
                    _ => Err(TokenizeError::Empty),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((enc.get_ids().iter().map(|&i| i64::from(i)).collect(), spans))
    }
}

/// The caption the PSR scripts give Grounding DINO for one category: lowercased, stripped,
/// with "." appended unless present (GroundingDINO `preprocess_caption`).
pub fn category_caption(category: &str) -> Result<String, TokenizeError> {
    let mut caption = category.trim().to_lowercase();
    if caption.is_empty() {
        return Err(TokenizeError::Empty);
    }
    if !caption.ends_with('.') {
        caption.push('.');
    }
    Ok(caption)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_follow_groundingdino() {
        assert_eq!(category_caption("  Cat ").unwrap(), "cat.");
        assert_eq!(category_caption("red square.").unwrap(), "red square.");
        assert!(matches!(category_caption("  "), Err(TokenizeError::Empty)));
    }
}
