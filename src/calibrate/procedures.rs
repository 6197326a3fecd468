//! Family-wise error rate control over the candidate configurations (LTT §4; Bretz et al. 2009).
//! Each function returns, per hypothesis, whether H_j: R(λ_j) > δ is rejected, i.e. λ_j is certified.
//! All comparisons use `p ≤ level`.

crate::named_enum! {
    /// How the candidates' p-values are combined so that P(any certified candidate has risk > δ) ≤ ε.
    pub enum Procedure ("procedure") {
        /// One fixed-sequence test per (measure, τ) chain, lambdas from largest to smallest, each
        /// chain at level ε/K (Bonferroni across the K chains). CALM Algorithm 1 when K = 1. Default.
        FixedSequence => "fixed-sequence",
        /// Reject every candidate with p ≤ ε/N.
        Bonferroni => "bonferroni",
        /// Holm's step-down procedure over all N candidates.
        Holm => "holm",
    }
}

/// Outcome of a procedure: which hypotheses were tested and which were rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub tested: Vec<bool>,
    pub rejected: Vec<bool>,
}

/// Fixed-sequence testing along one pre-specified order: reject while p ≤ level, stop at the
/// first non-rejection. Returns how many leading hypotheses of `p_values_in_order` were rejected.
pub fn fixed_sequence_test(p_values_in_order: &[f64], level: f64) -> usize {
    p_values_in_order
        .iter()
        .take_while(|&&p| p <= level)
        .count()
}

/// Fixed-sequence testing on K disjoint chains at level ε/K each. `chains` lists hypothesis
/// indices in testing order; every index of `p_values` must appear in exactly one chain.
pub fn chained_fixed_sequence(
    chains: &[Vec<usize>],
    p_values: &[f64],
    epsilon: f64,
) -> TestOutcome {
    let mut tested = vec![false; p_values.len()];
    let mut rejected = vec![false; p_values.len()];
    if chains.is_empty() {
        return TestOutcome { tested, rejected };
    }
    let level = epsilon / chains.len() as f64;
    for chain in chains {
        let ordered: Vec<f64> = chain.iter().map(|&j| p_values[j]).collect();
        let accepted = fixed_sequence_test(&ordered, level);
        // The first non-rejected hypothesis was tested too; later ones never were.
        let tested_count = (accepted + 1).min(chain.len());
        for (position, &j) in chain.iter().enumerate() {
            tested[j] = position < tested_count;
            rejected[j] = position < accepted;
        }
    }
    TestOutcome { tested, rejected }
}

/// Bonferroni: reject H_j iff p_j ≤ ε/N.
pub fn bonferroni(p_values: &[f64], epsilon: f64) -> TestOutcome {
    let level = epsilon / p_values.len().max(1) as f64;
    TestOutcome {
        tested: vec![true; p_values.len()],
        rejected: p_values.iter().map(|&p| p <= level).collect(),
    }
}

/// Holm's step-down: sort p ascending; reject p_(r) while p_(r) ≤ ε/(N − r), r = 0, 1, …
/// Ties are broken by index, which does not change the rejected set.
pub fn holm(p_values: &[f64], epsilon: f64) -> TestOutcome {
    let n = p_values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]).then(a.cmp(&b)));
    let mut rejected = vec![false; n];
    for (rank, &j) in order.iter().enumerate() {
        if p_values[j] <= epsilon / (n - rank) as f64 {
            rejected[j] = true;
        } else {
            break;
        }
    }
    TestOutcome {
        tested: vec![true; n],
        rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indices(outcome: &TestOutcome) -> Vec<usize> {
        (0..outcome.rejected.len())
            .filter(|&j| outcome.rejected[j])
            .collect()
    }

    // Vectors from MAPIE's test_fwer_control.py (see shared/reference/learn-then-test.md §6).
    #[test]
    fn bonferroni_does_not_stop_at_first_failure() {
        assert_eq!(indices(&bonferroni(&[0.9, 1e-4], 0.05)), vec![1]);
    }

    #[test]
    fn holm_matches_reference_vector() {
        assert_eq!(indices(&holm(&[0.001, 0.01, 0.2], 0.05)), vec![0, 1]);
        assert!(indices(&holm(&[0.5, 0.6], 0.05)).is_empty());
        assert_eq!(indices(&holm(&[0.01, 0.01], 0.05)), vec![0, 1]);
    }

    #[test]
    fn fixed_sequence_stops_at_first_non_rejection() {
        let p = [0.001, 0.003, 0.01, 0.2, 0.001];
        assert_eq!(fixed_sequence_test(&p, 0.1), 3);
        assert_eq!(fixed_sequence_test(&p, 0.0001), 0);
        let outcome = chained_fixed_sequence(&[vec![0, 1, 2, 3, 4]], &p, 0.1);
        assert_eq!(indices(&outcome), vec![0, 1, 2]);
        assert_eq!(outcome.tested, vec![true, true, true, true, false]);
    }

    #[test]
    fn chains_split_the_level() {
        // Two chains at 0.1/2 = 0.05 each: 0.06 fails although it would pass a single chain.
        let p = [0.01, 0.06, 0.04, 0.05];
        let outcome = chained_fixed_sequence(&[vec![0, 1], vec![2, 3]], &p, 0.1);
        assert_eq!(indices(&outcome), vec![0, 2, 3]);
    }

    #[test]
    fn power_ordering_bonferroni_holm_fixed_sequence() {
        // Monotone p-values: FST ⊇ Holm ⊇ Bonferroni.
        let p: Vec<f64> = (0..15).map(|i| 0.001 * 1.6f64.powi(i)).collect();
        let b = indices(&bonferroni(&p, 0.2)).len();
        let h = indices(&holm(&p, 0.2)).len();
        let f = fixed_sequence_test(&p, 0.2);
        assert!(b < h && h < f, "{b} {h} {f}");
    }
}
