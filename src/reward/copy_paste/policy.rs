//! When a subject counts as pasted, and what that costs the reward: the deployment's
//! `[rewards.copy_paste]`, a request's `copy_paste` overrides, and the mode's default.

use serde::{Deserialize, Serialize};

use super::CopyPaste;
use crate::reward::Mode;

/// `[rewards.copy_paste]`: the guard's threshold and penalty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CopyPasteConfig {
    /// Score at or above which a subject is suspected of being pasted (chosen on the
    /// generated evaluation set, see the README).
    pub threshold: f64,
    /// In `mode: "robust"`, subtracted from the reward times the share of suspected subjects.
    /// `mode: "psr"` applies none unless the request asks (the paper's numbers stay the same).
    pub penalty: f64,
}

impl Default for CopyPasteConfig {
    fn default() -> Self {
        Self {
            threshold: 0.75,
            penalty: 0.5,
        }
    }
}

/// A request's `copy_paste`: overrides of the configured threshold and penalty, in any mode.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyPasteOverrides {
    pub threshold: Option<f64>,
    pub penalty: Option<f64>,
}

/// Largest penalty accepted (as the largest weight: rewards stay finite).
const MAX_PENALTY: f64 = 1e6;

/// The threshold and penalty in force for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CopyPastePolicy {
    pub threshold: f64,
    pub penalty: f64,
}

impl CopyPasteConfig {
    /// Why a threshold or penalty (configured or requested) is out of range, naming `field`.
    pub fn check(threshold: f64, penalty: f64, field: &str) -> Result<(), String> {
        if !(-1.0..=1.0).contains(&threshold) {
            return Err(format!(
                "{field}.threshold must be in [-1, 1] (SSIM's range)"
            ));
        }
        if !(0.0..=MAX_PENALTY).contains(&penalty) {
            return Err(format!("{field}.penalty must be in [0, {MAX_PENALTY:e}]"));
        }
        Ok(())
    }

    /// The policy of a request in `mode` with its overrides; an out-of-range override is an
    /// error naming `copy_paste.<field>`.
    pub fn resolve(&self, mode: Mode, o: CopyPasteOverrides) -> Result<CopyPastePolicy, String> {
        let mode_penalty = match mode {
            Mode::Psr => 0.0,
            Mode::Robust => self.penalty,
        };
        let policy = CopyPastePolicy {
            threshold: o.threshold.unwrap_or(self.threshold),
            penalty: o.penalty.unwrap_or(mode_penalty),
        };
        Self::check(policy.threshold, policy.penalty, "copy_paste")?;
        Ok(policy)
    }
}

impl CopyPastePolicy {
    /// The reported finding for a subject's score.
    pub fn verdict(&self, score: Option<f64>) -> CopyPaste {
        CopyPaste {
            score,
            suspected: score.is_some_and(|s| s >= self.threshold),
        }
    }

    /// What is subtracted from an item's reward: the penalty times the share of its subjects
    /// suspected of being pasted.
    pub fn penalty(&self, suspected: usize, subjects: usize) -> f64 {
        if subjects == 0 {
            return 0.0;
        }
        self.penalty * suspected as f64 / subjects as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psr_mode_applies_no_penalty_unless_asked() {
        let c = CopyPasteConfig::default();
        let none = CopyPasteOverrides::default();
        assert_eq!(c.resolve(Mode::Psr, none).unwrap().penalty, 0.0);
        assert_eq!(c.resolve(Mode::Robust, none).unwrap().penalty, 0.5);
        let asked = CopyPasteOverrides {
            threshold: Some(0.9),
            penalty: Some(0.2),
        };
        let p = c.resolve(Mode::Psr, asked).unwrap();
        assert_eq!((p.threshold, p.penalty), (0.9, 0.2));
        assert_eq!(p.penalty(1, 4), 0.05);
        assert!(p.verdict(Some(0.9)).suspected);
        assert!(!p.verdict(Some(0.89)).suspected);
        assert!(!p.verdict(None).suspected);
        let bad = CopyPasteOverrides {
            threshold: Some(1.5),
            penalty: None,
        };
        assert!(c
            .resolve(Mode::Psr, bad)
            .unwrap_err()
            .contains("copy_paste.threshold"));
    }
}
