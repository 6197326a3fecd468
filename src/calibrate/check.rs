//! The CI gate's statistics: do fresh data reject the certified guarantee?
//!
//! Calibration rejects H: R > δ to certify. The gate tests the opposite null, H′: R ≤ δ, at level
//! ε: with X = 1 − L ∈ [0, 1], R ≤ δ ⇔ E[X] ≥ 1 − δ, so the same valid p-values applied to X with
//! target 1 − δ give a valid p-value for H′. A small value means the data show risk > δ.

use super::{candidate_p_value, CalibrationOptions, LossStats};
use serde::{Deserialize, Serialize};

/// The outcome of testing one configuration on fresh data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuaranteeTest {
    pub n: u64,
    pub risk: f64,
    /// p-value of H′: risk ≤ δ (small = evidence of a violation).
    pub p_value: f64,
    /// Whether H′ is rejected at level ε.
    pub violated: bool,
}

/// Test H′: E[loss] ≤ δ at level ε with the options' p-value.
pub fn test_guarantee(losses: &[f64], options: &CalibrationOptions) -> GuaranteeTest {
    let flipped: Vec<f64> = losses.iter().map(|&l| 1.0 - l).collect();
    let flipped_options = CalibrationOptions {
        delta: 1.0 - options.delta,
        ..*options
    };
    let p_value = if losses.is_empty() {
        1.0
    } else {
        candidate_p_value(&flipped, &flipped_options)
    };
    GuaranteeTest {
        n: losses.len() as u64,
        risk: LossStats::from_losses(losses).risk,
        p_value,
        violated: p_value <= options.epsilon,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::{PValueMethod, Procedure};
    use crate::util::rng::Rng;

    fn options(pvalue: PValueMethod) -> CalibrationOptions {
        CalibrationOptions {
            delta: 0.1,
            epsilon: 0.05,
            pvalue,
            procedure: Procedure::FixedSequence,
            seed: 0,
        }
    }

    #[test]
    fn clear_violations_are_flagged_and_clean_data_pass() {
        let bad: Vec<f64> = (0..500).map(|i| f64::from(u8::from(i % 4 == 0))).collect(); // 25% > 10%
        assert!(test_guarantee(&bad, &options(PValueMethod::Hb)).violated);
        let good: Vec<f64> = (0..500).map(|i| f64::from(u8::from(i % 20 == 0))).collect(); // 5%
        assert!(!test_guarantee(&good, &options(PValueMethod::Hb)).violated);
        assert!(!test_guarantee(&[], &options(PValueMethod::Hb)).violated);
    }

    #[test]
    fn false_alarms_stay_below_epsilon_when_the_guarantee_holds() {
        // True risk exactly δ (the boundary of H′): alarms at most ε of the time.
        let mut rng = Rng::new(3);
        for pvalue in [PValueMethod::Hb, PValueMethod::Binomial, PValueMethod::Wsr] {
            let reps = 2000;
            let alarms = (0..reps)
                .filter(|_| {
                    let losses: Vec<f64> = (0..200)
                        .map(|_| f64::from(u8::from(rng.uniform() < 0.1)))
                        .collect();
                    test_guarantee(&losses, &options(pvalue)).violated
                })
                .count();
            let rate = alarms as f64 / reps as f64;
            assert!(
                rate <= 0.05 + 3.0 * (0.05f64 * 0.95 / reps as f64).sqrt(),
                "{pvalue:?}: {rate}"
            );
        }
    }
}
