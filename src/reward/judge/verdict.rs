//! What a judge's answer means in the request's mode, and how it is reported.
//!
//! `psr`: exactly the scripts. The first `[Score]:` number as `extract_score` reads it, even
//! outside 0..10 (flagged `out_of_range`, kept as the scripts keep it); no match: the
//! scripts' 5 (`substituted`); a match `float()` rejects, or an answer with no text: the
//! scripts drop the sample, so the result has no score, `dropped: true` and the reason in
//! `errors` (an evaluation excludes it from the mean and counts it).
//!
//! `robust`: the Markdown-tolerant reading; no number is `parsed: false` with no score, and
//! a number outside 0..10 is `out_of_range` with no score, never normalised above 1.

use serde::Serialize;

use super::parse::{psr_score, robust_score, PsrParse};
use crate::reward::Mode;

/// The scripts' score for an answer without a match.
pub const PSR_NO_MATCH_SCORE: f64 = 5.0;

/// The judge's scale.
const RANGE: std::ops::RangeInclusive<f64> = 0.0..=10.0;

/// The reading of one answer in one mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// The 0..10 score read (or substituted); `None` when there is none.
    pub raw: Option<f64>,
    /// A score was read from the answer (not substituted).
    pub parsed: bool,
    /// The scripts' 5 stands in for a missing match (psr mode).
    pub substituted: bool,
    /// The score read is outside 0..10.
    pub out_of_range: bool,
    /// The scripts would drop this sample from the mean (psr mode).
    pub dropped: bool,
    /// Whether `raw` becomes the component's score.
    pub scored: bool,
    /// Why there is no score, or what was substituted.
    pub error: Option<String>,
}

impl Assessment {
    /// Whether the answer gave no score of its own (for the parse-failure counter).
    pub fn failed_to_parse(&self) -> bool {
        !self.parsed
    }
}

/// Reads `answer` (`None`: the response had no text) in `mode`.
pub fn assess(answer: Option<&str>, mode: Mode) -> Assessment {
    match mode {
        Mode::Psr => assess_psr(answer),
        Mode::Robust => assess_robust(answer),
    }
}

fn none(dropped: bool, error: String) -> Assessment {
    Assessment {
        raw: None,
        parsed: false,
        substituted: false,
        out_of_range: false,
        dropped,
        scored: false,
        error: Some(error),
    }
}

fn assess_psr(answer: Option<&str>) -> Assessment {
    let Some(answer) = answer else {
        return none(
            true,
            "the judge's answer has no text: the PSR scripts drop this sample".to_string(),
        );
    };
    match psr_score(answer) {
        PsrParse::Score(v) if v.is_finite() => Assessment {
            raw: Some(v),
            parsed: true,
            substituted: false,
            out_of_range: !RANGE.contains(&v),
            dropped: false,
            scored: true,
            error: None,
        },
        PsrParse::Score(_) => none(
            false,
            "the judge's score overflows a float (the PSR scripts' mean would be infinite)"
                .to_string(),
        ),
        PsrParse::NotANumber(text) => none(
            true,
            format!("judge score '{text}' is not a number: the PSR scripts drop this sample"),
        ),
        PsrParse::NoMatch => Assessment {
            raw: Some(PSR_NO_MATCH_SCORE),
            parsed: false,
            substituted: true,
            out_of_range: false,
            dropped: false,
            scored: true,
            error: Some(
                "the judge's answer has no [Score]: <number> as the PSR scripts read it \
                 (5 substituted, psr mode)"
                    .to_string(),
            ),
        },
    }
}

fn assess_robust(answer: Option<&str>) -> Assessment {
    match answer.and_then(robust_score) {
        Some(v) if RANGE.contains(&v) => Assessment {
            raw: Some(v),
            parsed: true,
            substituted: false,
            out_of_range: false,
            dropped: false,
            scored: true,
            error: None,
        },
        Some(v) => Assessment {
            raw: Some(v),
            parsed: true,
            substituted: false,
            out_of_range: true,
            dropped: false,
            scored: false,
            error: Some(format!(
                "judge score {v} is outside 0..10: robust mode gives it no score"
            )),
        },
        None => none(
            false,
            "the judge's answer has no parseable [Score]".to_string(),
        ),
    }
}

/// Whether an answer is worth keeping in the cache: it gives a score in some mode (an
/// answer with none deserves another try).
pub fn worth_caching(answer: Option<&str>) -> bool {
    answer.is_some_and(|a| matches!(psr_score(a), PsrParse::Score(_)) || robust_score(a).is_some())
}

/// One judgement: the assessment of the judge's answer and the template it answered.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub assessment: Assessment,
    /// The task whose template was used (`general` for none).
    pub template: &'static str,
    /// The template's short hash (see `/info`).
    pub template_hash: String,
    /// The start of the answer, kept when it gave no usable score (for debugging).
    pub answer: Option<String>,
}

/// Semantic alignment as reported.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SaComponent {
    /// The normalised score; null when there is none (psr: a dropped sample; robust: no
    /// parseable or an out-of-range score).
    pub score: Option<f64>,
    /// The judge's 0..10 score as read (5 when substituted in psr mode).
    pub raw: Option<f64>,
    /// A score was read from the answer.
    pub parsed: bool,
    /// The scripts' 5 was used because the answer had no match (psr mode only).
    pub substituted: bool,
    /// The score read is outside 0..10 (kept in psr mode as the scripts keep it; no score
    /// in robust mode).
    pub out_of_range: bool,
    /// The PSR scripts drop this sample from the mean (psr mode: a score `float()` rejects,
    /// or no text); evaluations exclude it and count it.
    pub dropped: bool,
    /// The task whose instruction template was used.
    pub template: String,
    /// The template's short content hash, as `/info` lists it.
    pub template_hash: String,
    /// The start of the judge's answer when it gave no usable score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

impl Judgement {
    /// The reported component (scored through `norm`) and the error to report, if any.
    pub fn report(&self, norm: impl Fn(f64) -> f64) -> (SaComponent, Option<String>) {
        let a = &self.assessment;
        let component = SaComponent {
            score: a.raw.filter(|_| a.scored).map(norm),
            raw: a.raw,
            parsed: a.parsed,
            substituted: a.substituted,
            out_of_range: a.out_of_range,
            dropped: a.dropped,
            template: self.template.to_string(),
            template_hash: self.template_hash.clone(),
            answer: self.answer.clone(),
        };
        (component, a.error.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triple(a: &Assessment) -> (Option<f64>, bool, bool) {
        (a.raw.filter(|_| a.scored), a.out_of_range, a.dropped)
    }

    #[test]
    fn psr_mode_is_the_scripts() {
        let psr = |t: &str| assess(Some(t), Mode::Psr);
        assert_eq!(triple(&psr("[Score]: 12")), (Some(12.0), true, false));
        assert_eq!(triple(&psr("**[Score]:** 6")), (Some(5.0), false, false));
        assert!(psr("**[Score]:** 6").substituted);
        assert_eq!(triple(&psr("[Score]: 10.0.")), (None, false, true));
        assert_eq!(
            psr("[Score]: 10.0.").error.as_deref(),
            Some("judge score '10.0.' is not a number: the PSR scripts drop this sample")
        );
        assert_eq!(triple(&assess(None, Mode::Psr)), (None, false, true));
        assert_eq!(
            triple(&psr(&format!("[Score]: {}", "9".repeat(400)))),
            (None, false, false)
        );
    }

    #[test]
    fn robust_mode_flags_out_of_range_and_never_scores_it() {
        let robust = |t: &str| assess(Some(t), Mode::Robust);
        assert_eq!(triple(&robust("[Score]: 12")), (None, true, false));
        assert_eq!(robust("[Score]: 12").raw, Some(12.0));
        assert_eq!(triple(&robust("[Score]: -2")), (None, true, false));
        assert_eq!(triple(&robust("**[Score]:** 6")), (Some(6.0), false, false));
        assert_eq!(triple(&robust("[Score]: 10")), (Some(10.0), false, false));
        assert_eq!(triple(&robust("nothing")), (None, false, false));
        assert!(!robust("nothing").parsed);
    }

    #[test]
    fn only_answers_with_a_score_are_cached() {
        assert!(worth_caching(Some("[Score]: 8")));
        assert!(worth_caching(Some("**[Score]:** 6")));
        assert!(worth_caching(Some("[Score]: 10.0.")));
        assert!(!worth_caching(Some("I cannot help with that.")));
        assert!(!worth_caching(None));
    }
}
