//! CALM exit rules: confidence measures (§3.5), the decaying threshold (Eq. 5) and exit policies.

pub use crate::record::measure::Measure;

/// λ_t = clip[0,1](0.9·λ + 0.1·exp(−τ·t/N)) (CALM Eq. 5), with t the 0-based output position and
/// N the maximum output length. τ = 0 gives the constant 0.9·λ + 0.1.
pub fn decayed_threshold(lambda: f64, tau: f64, t: usize, max_len: usize) -> f64 {
    let n = max_len.max(1) as f64;
    (0.9 * lambda + 0.1 * (-tau * t as f64 / n).exp()).clamp(0.0, 1.0)
}

/// When a sequence leaves the decoder stack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExitPolicy {
    /// Full model at every token ("never exit" sentinel; not λ = 1).
    Never,
    /// Exit at the first layer i ≥ max(min_exit, first possible) with confidence ≥ λ_t.
    Threshold {
        measure: Measure,
        lambda: f64,
        tau: f64,
        /// Never exit before this layer (1-based).
        min_exit: usize,
    },
    /// Exit at exactly this layer (1-based), for analysis and benchmarks.
    Fixed(usize),
    /// Exit at the first layer whose argmax equals the top layer's (CALM's oracle).
    Oracle,
}

impl ExitPolicy {
    /// The measure whose confidences are reported for each evaluated layer, if any.
    pub fn measure(&self) -> Option<Measure> {
        match self {
            ExitPolicy::Threshold { measure, .. } => Some(*measure),
            _ => None,
        }
    }
}

/// Top-1 minus top-2 and the top-1 probability of a probability row.
pub fn top_two(probabilities: &[f32]) -> (usize, f32, f32) {
    let mut best = (0usize, f32::NEG_INFINITY);
    let mut second = f32::NEG_INFINITY;
    for (i, &p) in probabilities.iter().enumerate() {
        if p > best.1 {
            second = best.1;
            best = (i, p);
        } else if p > second {
            second = p;
        }
    }
    let second = if second.is_finite() { second } else { 0.0 };
    (best.0, best.1, best.1 - second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_schedule_matches_eq_5() {
        // τ = 0: 0.9λ + 0.1.
        assert!((decayed_threshold(0.5, 0.0, 7, 64) - 0.55).abs() < 1e-15);
        // t = N, τ = 4: 0.9·0.8 + 0.1·e^{−4}.
        let expected = 0.72 + 0.1 * (-4.0f64).exp();
        assert!((decayed_threshold(0.8, 4.0, 64, 64) - expected).abs() < 1e-15);
        assert_eq!(decayed_threshold(1.0, 0.0, 0, 10), 1.0);
        assert!(decayed_threshold(1.0, 2.0, 5, 10) < 1.0);
    }

    #[test]
    fn top_two_of_ties_and_single() {
        let (best, top, diff) = top_two(&[0.2, 0.5, 0.3]);
        assert_eq!((best, top), (1, 0.5));
        assert!((diff - 0.2).abs() < 1e-7);
        assert_eq!(top_two(&[0.5, 0.5]).2, 0.0);
        assert_eq!(top_two(&[1.0]), (0, 1.0, 1.0));
    }
}
