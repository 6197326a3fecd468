//! Upper confidence bounds on a candidate's risk, by inverting its p-value: the smallest r such
//! that H: R > r is rejected at `level`. Used by reports to draw the bound next to the empirical
//! risk; a candidate is certified exactly when its bound at the procedure's level is ≤ δ.

use super::{candidate_p_value, CalibrationOptions};

/// min{r ∈ [R̂, 1] : p-value of H: R > r ≤ level}, by bisection (1 when nothing below 1 is
/// rejected). `losses` in example-id order.
pub fn upper_confidence_bound(losses: &[f64], options: &CalibrationOptions, level: f64) -> f64 {
    let p_at = |r: f64| {
        candidate_p_value(
            losses,
            &CalibrationOptions {
                delta: r,
                ..*options
            },
        )
    };
    let risk = super::LossStats::from_losses(losses).risk;
    let (mut low, mut high) = (risk.clamp(0.0, 1.0), 1.0 - 1e-12);
    if p_at(high) > level {
        return 1.0;
    }
    if low > 0.0 && p_at(low) <= level {
        return low;
    }
    for _ in 0..60 {
        let mid = 0.5 * (low + high);
        if p_at(mid) <= level {
            high = mid;
        } else {
            low = mid;
        }
    }
    high
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::{PValueMethod, Procedure};

    #[test]
    fn the_bound_certifies_exactly_when_the_p_value_does() {
        let options = CalibrationOptions {
            delta: 0.1,
            epsilon: 0.05,
            pvalue: PValueMethod::Hb,
            procedure: Procedure::FixedSequence,
            seed: 0,
        };
        for ones in [0usize, 3, 6, 9, 12] {
            let losses: Vec<f64> = (0..100).map(|i| f64::from(u8::from(i < ones))).collect();
            let bound = upper_confidence_bound(&losses, &options, 0.05);
            let certified = candidate_p_value(&losses, &options) <= 0.05;
            assert_eq!(bound <= 0.1, certified, "ones={ones} bound={bound}");
            assert!(bound >= ones as f64 / 100.0);
        }
        // n = 5 cannot certify anything below 1 − 0.05^(1/5) ≈ 0.45 (HB at R̂ = 0 is (1 − r)^n).
        let bound = upper_confidence_bound(&[0.0; 5], &options, 0.05);
        assert!((bound - (1.0 - 0.05f64.powf(0.2))).abs() < 1e-6, "{bound}");
    }
}
