//! Position alignment: does the image place subject 1 relative to subject 2 as the prompt
//! says? Exact to `position-alignment.py` of the PSR scripts (Position subset).
//!
//! - The relation is the first phrase of [`RELATIONS`] found (case-sensitive substring) in the
//!   prompt, read as "subject1 REL subject2"; no phrase means no score (the script drops the
//!   sample).
//! - Boxes are the subjects' kept boxes in the generated image, after `int()`; a subject
//!   without a box scores 0.
//! - dx, dy = centre of box 2 minus centre of box 1 (y grows downward); IoU threshold 0.1.
//!   left of: dx > 0 and |dx| > |dy| -> 1 if IoU < 0.1 else 0.1 / IoU, otherwise 0; right of:
//!   the same with dx < 0. above / on top of: dy > 0 -> 1 if IoU < 0.1 else 0.1 / IoU (no
//!   |dy| > |dx| test); below / under: the same with dy < 0. A zero union scores 0 (the
//!   script's division raises and its handler returns 0).

use serde::Serialize;

/// Relation phrases in the order the script searches them.
pub const RELATIONS: [&str; 8] = [
    "to the left of",
    "to the right of",
    "on the left of",
    "on the right of",
    "above",
    "on top of",
    "below",
    "under",
];

const IOU_THRESHOLD: f64 = 0.1;

/// The position component of one item.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PositionScore {
    /// 0..1; null when the prompt names no relation.
    pub score: Option<f64>,
    /// The relation phrase found in the prompt.
    pub relation: Option<&'static str>,
    /// Why there is no score, or why it is 0 without geometry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// The relation phrase the script would use for `prompt`.
pub fn relation(prompt: &str) -> Option<&'static str> {
    RELATIONS.iter().copied().find(|r| prompt.contains(r))
}

/// Scores a prompt against the two subjects' boxes (`[x1, y1, x2, y2]` after `int()`).
pub fn position_score(
    prompt: &str,
    box1: Option<[i64; 4]>,
    box2: Option<[i64; 4]>,
) -> PositionScore {
    let Some(rel) = relation(prompt) else {
        return PositionScore {
            score: None,
            relation: None,
            reason: Some("the prompt names no relation (to the left/right of, on the left/right of, above, on top of, below, under)"),
        };
    };
    let (Some(a), Some(b)) = (box1, box2) else {
        return PositionScore {
            score: Some(0.0),
            relation: Some(rel),
            reason: Some("a subject was not detected"),
        };
    };
    PositionScore {
        score: Some(geometry_score(rel, a, b)),
        relation: Some(rel),
        reason: None,
    }
}

fn geometry_score(rel: &str, a: [i64; 4], b: [i64; 4]) -> f64 {
    let f = |v: i64| v as f64;
    let centre = |bx: [i64; 4]| ((f(bx[0]) + f(bx[2])) / 2.0, (f(bx[1]) + f(bx[3])) / 2.0);
    let (c1, c2) = (centre(a), centre(b));
    let (dx, dy) = (c2.0 - c1.0, c2.1 - c1.1);
    let overlap = |lo1: i64, hi1: i64, lo2: i64, hi2: i64| (hi1.min(hi2) - lo1.max(lo2)).max(0);
    let inter = f(overlap(a[0], a[2], b[0], b[2]) * overlap(a[1], a[3], b[1], b[3]));
    let area = |bx: [i64; 4]| f((bx[2] - bx[0]) * (bx[3] - bx[1]));
    let union = area(a) + area(b) - inter;
    if union == 0.0 {
        return 0.0;
    }
    let iou = inter / union;
    let soft = if iou < IOU_THRESHOLD {
        1.0
    } else {
        IOU_THRESHOLD / iou
    };
    let horizontal = dx.abs() > dy.abs();
    match rel {
        "to the left of" | "on the left of" if dx > 0.0 && horizontal => soft,
        "to the right of" | "on the right of" if dx < 0.0 && horizontal => soft,
        "above" | "on top of" if dy > 0.0 => soft,
        "below" | "under" if dy < 0.0 => soft,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEFT: [i64; 4] = [0, 100, 100, 200];
    const RIGHT: [i64; 4] = [300, 100, 400, 200];
    const TOP: [i64; 4] = [100, 0, 200, 100];
    const BOTTOM: [i64; 4] = [100, 300, 200, 400];

    fn s(prompt: &str, a: [i64; 4], b: [i64; 4]) -> f64 {
        position_score(prompt, Some(a), Some(b)).score.unwrap()
    }

    #[test]
    fn every_relation_both_directions() {
        for p in ["a cat to the left of a dog", "a cat on the left of a dog"] {
            assert_eq!(s(p, LEFT, RIGHT), 1.0, "{p}");
            assert_eq!(s(p, RIGHT, LEFT), 0.0, "{p}");
        }
        for p in ["a cat to the right of a dog", "a cat on the right of a dog"] {
            assert_eq!(s(p, RIGHT, LEFT), 1.0, "{p}");
            assert_eq!(s(p, LEFT, RIGHT), 0.0, "{p}");
        }
        for p in ["a cat above a dog", "a cat on top of a dog"] {
            assert_eq!(s(p, TOP, BOTTOM), 1.0, "{p}");
            assert_eq!(s(p, BOTTOM, TOP), 0.0, "{p}");
        }
        for p in ["a cat below a dog", "a cat under a dog"] {
            assert_eq!(s(p, BOTTOM, TOP), 1.0, "{p}");
            assert_eq!(s(p, TOP, BOTTOM), 0.0, "{p}");
        }
    }

    #[test]
    fn overlap_above_the_threshold_softens_the_score() {
        // Two 100x100 boxes, the second shifted 60 right: intersection 40x100 = 4000,
        // union 16000, IoU 0.25 -> 0.1 / 0.25 = 0.4.
        let a = [0, 0, 100, 100];
        let b = [60, 0, 160, 100];
        assert!((s("x to the left of y", a, b) - 0.4).abs() < 1e-12);
        // Shifted 95: intersection 500, union 19500, IoU 0.0256 < 0.1 -> 1.
        assert_eq!(s("x to the left of y", a, [95, 0, 195, 100]), 1.0);
    }

    #[test]
    fn left_right_need_a_mostly_horizontal_offset_above_below_do_not() {
        // dx = 50, dy = 200: "left of" fails the |dx| > |dy| test.
        let a = [0, 0, 100, 100];
        let b = [50, 200, 150, 300];
        assert_eq!(s("x to the left of y", a, b), 0.0);
        // dx = 300, dy = 10: "above" only needs dy > 0.
        assert_eq!(s("x above y", a, [300, 10, 400, 110]), 1.0);
    }

    #[test]
    fn first_phrase_in_list_order_wins_and_case_matters() {
        // "above" comes before "under" in the list, whatever the order in the prompt.
        assert_eq!(relation("a cat under a table above a dog"), Some("above"));
        assert_eq!(relation("a cat Above a dog"), None);
        assert_eq!(
            relation("a cat on the left of a dog"),
            Some("on the left of")
        );
    }

    #[test]
    fn no_relation_no_score_and_undetected_subjects_score_zero() {
        let none = position_score("a cat and a dog", Some(LEFT), Some(RIGHT));
        assert_eq!((none.score, none.relation), (None, None));
        assert!(none.reason.is_some());
        let missing = position_score("a cat to the left of a dog", None, Some(RIGHT));
        assert_eq!(missing.score, Some(0.0));
    }

    #[test]
    fn same_category_boxes_and_degenerate_boxes() {
        // Both subjects on one box: dx = dy = 0, IoU 1 -> 0 for every relation.
        for r in RELATIONS {
            assert_eq!(s(&format!("x {r} y"), LEFT, LEFT), 0.0, "{r}");
        }
        // Zero-area boxes: the union is 0 -> 0.
        assert_eq!(s("x to the left of y", [5, 5, 5, 5], [9, 5, 9, 5]), 0.0);
    }
}
