//! Summary statistics of one candidate's losses, computed robustly.

/// Trust each loss to about ten significant digits when rounding n·R̂ up to a count, so that
/// 100 × 0.07 = 7.000000000000001 counts as 7, not 8.
const COUNT_TOLERANCE_PER_EXAMPLE: f64 = 1e-10;

/// n, the empirical risk R̂ and the count k = ⌈n·R̂⌉ used by the Bentkus and binomial tails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossStats {
    pub n: u64,
    pub risk: f64,
    /// For 0/1 losses the exact number of ones; otherwise ⌈Σ L_i⌉ with a tolerance for rounding.
    pub bentkus_count: u64,
    pub binary: bool,
}

impl LossStats {
    pub fn from_losses(losses: &[f64]) -> Self {
        let n = losses.len() as u64;
        let binary = losses.iter().all(|&l| l == 0.0 || l == 1.0);
        let sum = neumaier_sum(losses);
        let bentkus_count = if binary {
            losses.iter().filter(|&&l| l == 1.0).count() as u64
        } else {
            (sum - COUNT_TOLERANCE_PER_EXAMPLE * n as f64)
                .ceil()
                .max(0.0) as u64
        };
        let risk = if n == 0 {
            0.0
        } else if binary {
            bentkus_count as f64 / n as f64
        } else {
            sum / n as f64
        };
        LossStats {
            n,
            risk,
            bentkus_count,
            binary,
        }
    }
}

/// Compensated (Neumaier) summation: error independent of n to first order.
pub fn neumaier_sum(values: &[f64]) -> f64 {
    let mut sum = 0.0f64;
    let mut compensation = 0.0f64;
    for &value in values {
        let t = sum + value;
        if sum.abs() >= value.abs() {
            compensation += (sum - t) + value;
        } else {
            compensation += (value - t) + sum;
        }
        sum = t;
    }
    sum + compensation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_robust_to_floating_point() {
        let mut losses = vec![0.0; 100];
        losses[..70].iter_mut().for_each(|l| *l = 0.1);
        let stats = LossStats::from_losses(&losses);
        assert_eq!(stats.bentkus_count, 7);
        assert!(!stats.binary);
        let mut binary = vec![0.0; 100];
        binary[..7].iter_mut().for_each(|l| *l = 1.0);
        let stats = LossStats::from_losses(&binary);
        assert_eq!((stats.bentkus_count, stats.binary), (7, true));
        assert_eq!(stats.risk, 0.07);
        // A genuinely fractional excess still rounds up.
        let mut losses = vec![0.0; 10];
        losses[0] = 0.5;
        assert_eq!(LossStats::from_losses(&losses).bentkus_count, 1);
    }
}
