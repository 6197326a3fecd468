//! Valid p-values for the null H: R(λ) > δ, where R is the expected loss of a configuration and
//! losses lie in [0, 1]. A small p-value is evidence that the configuration is safe (risk ≤ δ).
//! Formulas follow Learn then Test (Angelopoulos et al., 2021, §3 and Appendix B) and
//! Bates et al. "Distribution-free, risk-controlling prediction sets" (2021, §3.1) for WSR.

use super::binomial::ln_binomial_cdf;

crate::named_enum! {
    /// Which p-value to compute for every candidate.
    pub enum PValueMethod ("p-value") {
        /// Hoeffding–Bentkus: min(tight Hoeffding, Bentkus), capped at 1 (LTT Prop. 3). Default.
        Hb => "hb",
        /// Simple Hoeffding: exp(−2n·(δ − R̂)₊²).
        Hoeffding => "hoeffding",
        /// Bentkus: e·P(Binomial(n, δ) ≤ ⌈n·R̂⌉), capped at 1.
        Bentkus => "bentkus",
        /// Exact binomial tail P(Binomial(n, δ) ≤ k); 0/1 losses only.
        Binomial => "binomial",
        /// One-sided Waudby-Smith–Ramdas betting p-value (predictable mixture, Ville's inequality).
        Wsr => "wsr",
    }
}

/// Bernoulli Kullback–Leibler divergence h1(a, b) = a·ln(a/b) + (1−a)·ln((1−a)/(1−b)), 0·ln 0 = 0.
pub fn bernoulli_kl(a: f64, b: f64) -> f64 {
    let first = if a == 0.0 { 0.0 } else { a * (a / b).ln() };
    let second = if a == 1.0 {
        0.0
    } else {
        // ln((1−a)/(1−b)) = ln1p((b−a)/(1−b)), accurate when a ≈ b.
        (1.0 - a) * ((b - a) / (1.0 - b)).ln_1p()
    };
    first + second
}

/// Simple Hoeffding p-value exp(−2n·max(0, δ − R̂)²).
pub fn hoeffding_p_value(n: u64, risk: f64, delta: f64) -> f64 {
    let gap = (delta - risk).max(0.0);
    (-2.0 * n as f64 * gap * gap).exp()
}

/// Tight (Chernoff) Hoeffding p-value exp(−n·h1(min(R̂, δ), δ)); equals (1−δ)^n at R̂ = 0 and 1 at R̂ ≥ δ.
pub fn hoeffding_tight_p_value(n: u64, risk: f64, delta: f64) -> f64 {
    let a = risk.min(delta);
    if a >= delta {
        return 1.0;
    }
    (-(n as f64) * bernoulli_kl(a, delta)).exp()
}

/// Bentkus bound e·P(Binomial(n, δ) ≤ k) before capping (may exceed 1); k = ⌈n·R̂⌉.
pub fn bentkus_bound(n: u64, count: u64, delta: f64) -> f64 {
    (1.0 + ln_binomial_cdf(count, n, delta)).exp()
}

/// Bentkus p-value min(1, e·P(Binomial(n, δ) ≤ k)), k = ⌈n·R̂⌉.
pub fn bentkus_p_value(n: u64, count: u64, delta: f64) -> f64 {
    bentkus_bound(n, count, delta).min(1.0)
}

/// Hoeffding–Bentkus p-value min(tight Hoeffding, Bentkus, 1) (LTT Prop. 3).
pub fn hoeffding_bentkus_p_value(n: u64, risk: f64, count: u64, delta: f64) -> f64 {
    hoeffding_tight_p_value(n, risk, delta)
        .min(bentkus_bound(n, count, delta))
        .min(1.0)
}

/// Exact binomial p-value P(Binomial(n, δ) ≤ k) for 0/1 losses with k losses equal to 1.
pub fn binomial_p_value(n: u64, count: u64, delta: f64) -> f64 {
    ln_binomial_cdf(count, n, delta).exp()
}

/// One-sided Waudby-Smith–Ramdas betting p-value for H: E[L] ≥ δ (Bates et al. 2021, Prop. 5).
///
/// K_i = Π_{j≤i} (1 − ν_j·(L_j − δ)) is a nonnegative supermartingale under the null, so by Ville's
/// inequality p = min(1, 1 / max_i K_i) is valid. The bet ν_j = min(1, √(2·ln(1/w) / (n·σ̂²_{j−1})))
/// is predictable (uses only L_1..L_{j−1}); `w` only tunes power. Only bets that profit when the
/// risk is *low* are placed, unlike the two-sided hedged process in some public code, which is
/// not a valid p-value for this null. The value depends on the order of `losses`.
pub fn wsr_p_value(losses: &[f64], delta: f64, w: f64) -> f64 {
    let n = losses.len() as f64;
    if losses.is_empty() {
        return 1.0;
    }
    let log_scale = 2.0 * (1.0 / w).ln() / n;
    let mut variance = 0.25; // σ̂²_0
    let mut sum = 0.0;
    let mut squared_deviations = 0.0;
    let mut log_wealth = 0.0;
    let mut max_log_wealth = f64::NEG_INFINITY;
    for (index, &loss) in losses.iter().enumerate() {
        let i = (index + 1) as f64;
        let bet = (log_scale / variance).sqrt().min(1.0);
        log_wealth += (-bet * (loss - delta)).ln_1p();
        max_log_wealth = max_log_wealth.max(log_wealth);
        sum += loss;
        let mean = (0.5 + sum) / (1.0 + i);
        squared_deviations += (loss - mean) * (loss - mean);
        variance = (0.25 + squared_deviations) / (1.0 + i);
    }
    (-max_log_wealth).exp().min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_limits() {
        assert!((bernoulli_kl(0.0, 0.1) + 0.9f64.ln()).abs() < 1e-16);
        assert!(bernoulli_kl(0.1, 0.1).abs() < 1e-18);
        assert!((bernoulli_kl(1.0, 0.5) - 2f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn hb_is_capped_and_one_above_delta() {
        assert_eq!(hoeffding_bentkus_p_value(100, 0.1, 10, 0.1), 1.0);
        assert_eq!(hoeffding_bentkus_p_value(100, 0.5, 50, 0.1), 1.0);
        assert!(bentkus_bound(100, 10, 0.1) > 1.0);
    }
}
