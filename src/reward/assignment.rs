//! Maximum-similarity assignment of detections to references.
//!
//! Items have at most a handful of subjects per category and the detector keeps few boxes, so
//! an exhaustive search over injective assignments is exact, allocation-light and simpler than
//! a general Hungarian solver for these sizes (k subjects x at most `MAX_CANDIDATES` boxes).

/// Most boxes considered per category.
pub const MAX_CANDIDATES: usize = 8;

/// `sim[s][b]` = similarity of subject `s` to box `b`. Returns, per subject, the box it gets
/// (`None` when there are fewer boxes than subjects), maximising the summed similarity; ties
/// go to the lexicographically first assignment (earlier boxes, in query order).
pub fn best_assignment(sim: &[Vec<f64>]) -> Vec<Option<usize>> {
    let subjects = sim.len();
    let boxes = sim.first().map_or(0, Vec::len);
    let mut best = (f64::NEG_INFINITY, vec![None; subjects]);
    let mut current = vec![None; subjects];
    let mut used = vec![false; boxes];
    search(sim, 0, 0.0, &mut current, &mut used, &mut best);
    best.1
}

fn search(
    sim: &[Vec<f64>],
    s: usize,
    total: f64,
    current: &mut Vec<Option<usize>>,
    used: &mut [bool],
    best: &mut (f64, Vec<Option<usize>>),
) {
    if s == sim.len() {
        if total > best.0 {
            *best = (total, current.clone());
        }
        return;
    }
    let free = used.iter().filter(|u| !**u).count();
    let remaining = sim.len() - s;
    for b in 0..used.len() {
        if !used[b] {
            used[b] = true;
            current[s] = Some(b);
            search(sim, s + 1, total + sim[s][b], current, used, best);
            used[b] = false;
        }
    }
    // A subject may stay unassigned only when boxes run out for the rest.
    if free < remaining {
        current[s] = None;
        search(sim, s + 1, total, current, used, best);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_best_total_not_the_greedy_choice() {
        // Greedy would give subject 0 box 0 (0.9) and subject 1 box 1 (0.1): total 1.0.
        let sim = vec![vec![0.9, 0.8], vec![0.85, 0.1]];
        assert_eq!(best_assignment(&sim), vec![Some(1), Some(0)]);
    }

    #[test]
    fn fewer_boxes_than_subjects_leaves_the_worst_unassigned() {
        let sim = vec![vec![0.2], vec![0.7], vec![0.5]];
        assert_eq!(best_assignment(&sim), vec![None, Some(0), None]);
    }

    #[test]
    fn one_subject_picks_its_most_similar_instance() {
        assert_eq!(best_assignment(&[vec![0.3, 0.95, 0.6]]), vec![Some(1)]);
        assert_eq!(best_assignment(&[vec![]]), vec![None]);
    }
}
