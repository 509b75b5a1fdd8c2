//! Reading the judge's score out of its answer, two ways.
//!
//! [`psr_score`] is the PSR scripts' `extract_score` to the character: the first match of
//! `re.search(r"\[Score\]:\s*([\d.]+)", text)` with Python's Unicode `\s` and `\d`, then
//! `float()` (which also reads Unicode decimal digits). [`robust_score`] tolerates the
//! Markdown and phrasing judges like to add around the score.

/// What the scripts' `extract_score` makes of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum PsrParse {
    /// The regex matched and `float()` read the number.
    Score(f64),
    /// No match: the scripts return 5.
    NoMatch,
    /// The regex matched text `float()` rejects (`"10.0."`, `"."`): the scripts' bare
    /// `except` drops the sample from the mean. Holds the matched text.
    NotANumber(String),
}

/// Unicode decimal digits (general category Nd) as runs `(first code point, length)`; every
/// run is whole sets of ten starting at a zero, so a digit's value is its offset modulo 10.
/// The set of Python 3.12 and 3.13 (Unicode 15.0 / 15.1), which CPython's `re` (`\d`) and
/// `float()` both use. Generated from `unicodedata`; Unicode 16 (Python 3.14) adds a few
/// scripts that are not here.
const DECIMAL_RUNS: [(u32, u32); 64] = [
    (0x30, 10),
    (0x660, 10),
    (0x6f0, 10),
    (0x7c0, 10),
    (0x966, 10),
    (0x9e6, 10),
    (0xa66, 10),
    (0xae6, 10),
    (0xb66, 10),
    (0xbe6, 10),
    (0xc66, 10),
    (0xce6, 10),
    (0xd66, 10),
    (0xde6, 10),
    (0xe50, 10),
    (0xed0, 10),
    (0xf20, 10),
    (0x1040, 10),
    (0x1090, 10),
    (0x17e0, 10),
    (0x1810, 10),
    (0x1946, 10),
    (0x19d0, 10),
    (0x1a80, 10),
    (0x1a90, 10),
    (0x1b50, 10),
    (0x1bb0, 10),
    (0x1c40, 10),
    (0x1c50, 10),
    (0xa620, 10),
    (0xa8d0, 10),
    (0xa900, 10),
    (0xa9d0, 10),
    (0xa9f0, 10),
    (0xaa50, 10),
    (0xabf0, 10),
    (0xff10, 10),
    (0x104a0, 10),
    (0x10d30, 10),
    (0x11066, 10),
    (0x110f0, 10),
    (0x11136, 10),
    (0x111d0, 10),
    (0x112f0, 10),
    (0x11450, 10),
    (0x114d0, 10),
    (0x11650, 10),
    (0x116c0, 10),
    (0x11730, 10),
    (0x118e0, 10),
    (0x11950, 10),
    (0x11c50, 10),
    (0x11d50, 10),
    (0x11da0, 10),
    (0x11f50, 10),
    (0x16a60, 10),
    (0x16ac0, 10),
    (0x16b50, 10),
    (0x1d7ce, 50),
    (0x1e140, 10),
    (0x1e2f0, 10),
    (0x1e4f0, 10),
    (0x1e950, 10),
    (0x1fbf0, 10),
];

/// The value of a Unicode decimal digit (Python's `\d`, `unicodedata.decimal`), else `None`.
pub fn decimal_value(c: char) -> Option<u32> {
    let cp = u32::from(c);
    let i = DECIMAL_RUNS.partition_point(|&(start, _)| start <= cp);
    let (start, len) = *DECIMAL_RUNS.get(i.checked_sub(1)?)?;
    (cp < start + len).then_some((cp - start) % 10)
}

/// Python's `\s` on `str` (= `str.isspace()`): Unicode White_Space plus the four
/// information separators U+001C..U+001F, which Python counts as space and Rust does not.
pub fn python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `float()` of a string of decimal digits and dots: the digits mapped to ASCII,
/// then at most one dot and at least one digit, else `None` (Python's `ValueError`).
fn python_float(number: &str) -> Option<f64> {
    let ascii: String = number
        .chars()
        .map(|c| match decimal_value(c) {
            Some(d) => char::from_digit(d, 10).unwrap_or('?'),
            None => c,
        })
        .collect();
    let dots = ascii.matches('.').count();
    let digits = ascii.len() - dots;
    if dots > 1 || digits == 0 {
        return None;
    }
    ascii.parse::<f64>().ok()
}

/// `[\d.]+` at the start of `text`: the matched prefix (possibly empty).
fn digits_and_dots(text: &str) -> &str {
    let end = text
        .char_indices()
        .find(|&(_, c)| !(c == '.' || decimal_value(c).is_some()))
        .map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// The scripts' `extract_score`: the leftmost `[Score]:` followed by Python whitespace and
/// at least one digit or dot, then `float()` of that run.
pub fn psr_score(answer: &str) -> PsrParse {
    const LABEL: &str = "[Score]:";
    for (at, _) in answer.match_indices(LABEL) {
        let rest = answer[at + LABEL.len()..].trim_start_matches(python_space);
        let number = digits_and_dots(rest);
        if number.is_empty() {
            continue;
        }
        return match python_float(number) {
            Some(v) => PsrParse::Score(v),
            None => PsrParse::NotANumber(number.to_string()),
        };
    }
    PsrParse::NoMatch
}

/// The Markdown-tolerant reading: emphasis and code marks (`*`, `` ` ``, `_`) removed, then
/// the first `[Score]:` label (any case, ASCII or full-width colon) followed by an
/// optionally signed number with Unicode digits, or failing that the first bare `Score:`
/// (so a sub-score in the analysis, "colour score: 3", never beats the final `[Score]`).
/// One trailing sentence dot is ignored (`10.0.` is 10); a label followed by no number is
/// skipped; a malformed number (`8.5.1`) is `None`. The sign is kept so that out-of-range
/// scores can be reported as such.
pub fn robust_score(answer: &str) -> Option<f64> {
    let clean: String = answer
        .chars()
        .filter(|c| !matches!(c, '*' | '`' | '_'))
        .collect();
    // ASCII case folding keeps byte offsets, so positions in `lower` index `clean`.
    let lower = clean.to_ascii_lowercase();
    match labelled_number(&clean, &lower, "[score]") {
        Some(v) => v,
        None => labelled_number(&clean, &lower, "score").flatten(),
    }
}

/// The number after the first `label` + colon that has one: `None` when no label has a
/// number, `Some(None)` when the first number is malformed.
fn labelled_number(clean: &str, lower: &str, label: &str) -> Option<Option<f64>> {
    for (at, _) in lower.match_indices(label) {
        let Some(rest) = after_label(&clean[at + label.len()..]) else {
            continue;
        };
        let rest = rest.trim_start_matches(python_space);
        let (sign, rest) = match rest.strip_prefix(['-', '+']) {
            Some(r) => (if rest.starts_with('-') { -1.0 } else { 1.0 }, r),
            None => (1.0, rest),
        };
        let number = digits_and_dots(rest);
        if number.is_empty() {
            continue;
        }
        let number = number.strip_suffix('.').unwrap_or(number);
        return Some(python_float(number).map(|v| sign * v));
    }
    None
}

/// After the word `score`: an optional `]` and a colon (`:` or `：`), returning the rest.
fn after_label(text: &str) -> Option<&str> {
    let text = text.strip_prefix(']').unwrap_or(text);
    text.strip_prefix(':').or_else(|| text.strip_prefix('：'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psr_parse_is_the_scripts_regex_then_float() {
        use PsrParse::*;
        assert_eq!(psr_score("[Thought]: fine.\n[Score]: 8"), Score(8.0));
        assert_eq!(psr_score("[Score]:7.5/10"), Score(7.5));
        assert_eq!(psr_score("[Score]:\n  4"), Score(4.0));
        assert_eq!(psr_score("[Score]:\u{a0}\u{1f}9"), Score(9.0));
        assert_eq!(psr_score("[Score]: 3 and later [Score]: 9"), Score(3.0));
        assert_eq!(psr_score("[Score]: high, so [Score]: 9"), Score(9.0));
        assert_eq!(psr_score("[Score]: 8."), Score(8.0));
        assert_eq!(psr_score("[Score]: .5"), Score(0.5));
        assert_eq!(psr_score("[Score]: ٧.٥"), Score(7.5));
        assert_eq!(psr_score("[Score]: 𝟗"), Score(9.0));
        assert_eq!(psr_score("**[Score]:** 6"), NoMatch);
        assert_eq!(psr_score("[Score]: -2"), NoMatch);
        assert_eq!(psr_score("Score: 7"), NoMatch);
        assert_eq!(psr_score("[score]: 7"), NoMatch);
        assert_eq!(psr_score("[Score]: ²"), NoMatch);
        assert_eq!(psr_score(""), NoMatch);
        assert_eq!(psr_score("[Score]: 10.0."), NotANumber("10.0.".into()));
        assert_eq!(psr_score("[Score]: ."), NotANumber(".".into()));
    }

    #[test]
    fn robust_parse_reads_through_markdown() {
        assert_eq!(robust_score("**[Score]:** 6"), Some(6.0));
        assert_eq!(robust_score("```\n[Score]: `5.5`\n```"), Some(5.5));
        assert_eq!(robust_score("Final score: 7"), Some(7.0));
        assert_eq!(
            robust_score("colour score: 3, pose score: 9.\n[Score]: 7"),
            Some(7.0)
        );
        assert_eq!(robust_score("[SCORE]: 4 then score: 9"), Some(4.0));
        assert_eq!(robust_score("[Score]：8"), Some(8.0));
        assert_eq!(robust_score("[Score]: 10.0."), Some(10.0));
        assert_eq!(robust_score("[Score]: -2"), Some(-2.0));
        assert_eq!(robust_score("[Score]: ٨"), Some(8.0));
        assert_eq!(robust_score("[Score]:\n7"), Some(7.0));
        assert_eq!(robust_score("[Score]: 8.5.1"), None);
        assert_eq!(robust_score("[Score]: high"), None);
        assert_eq!(robust_score("I cannot help with that."), None);
        assert_eq!(robust_score("İİİ SCORE: 4"), Some(4.0));
    }

    #[test]
    fn decimal_digits_follow_unicode() {
        assert_eq!(decimal_value('7'), Some(7));
        assert_eq!(decimal_value('٣'), Some(3));
        assert_eq!(decimal_value('８'), Some(8));
        assert_eq!(decimal_value('\u{1d7ff}'), Some(9)); // last of the 50 math digits
        assert_eq!(decimal_value('\u{1d7cd}'), None);
        assert_eq!(decimal_value('/'), None);
        assert_eq!(decimal_value('²'), None);
        assert_eq!(decimal_value('Ⅷ'), None);
        let runs: u32 = DECIMAL_RUNS.iter().map(|r| r.1).sum();
        assert_eq!(runs, 680);
        assert!(DECIMAL_RUNS.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0));
    }
}
