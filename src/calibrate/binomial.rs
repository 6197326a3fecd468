//! Binomial probabilities in log space, accurate for n up to 10^7 and tails far below 1e-300.
//!
//! The point mass uses Loader's saddle-point expansion ("Fast and accurate computation of binomial
//! probabilities", C. Loader, 2000): ln P(X = k) is assembled from Stirling-series remainders and the
//! deviance term `bd0`, which avoids the catastrophic cancellation of `lgamma(n+1) − lgamma(k+1) − …`.
//! Tails are sums of point-mass ratios taken from the side where the terms decrease, so no `1 − x`
//! cancellation occurs and the tail never underflows before the final `exp`.

use std::f64::consts::PI;

/// ln(√(2π)).
const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// Stirling-series remainder δ(n) = ln n! − (n + ½)·ln n + n − ln √(2π), for integer n ≥ 1.
fn stirling_error(n: u64) -> f64 {
    const S0: f64 = 1.0 / 12.0;
    const S1: f64 = 1.0 / 360.0;
    const S2: f64 = 1.0 / 1260.0;
    const S3: f64 = 1.0 / 1680.0;
    const S4: f64 = 1.0 / 1188.0;
    debug_assert!(n >= 1);
    if n <= 15 {
        let ln_factorial: f64 = (2..=n).map(|i| (i as f64).ln()).sum();
        let x = n as f64;
        return ln_factorial - (x + 0.5) * x.ln() + x - LN_SQRT_2PI;
    }
    let x = n as f64;
    let xx = x * x;
    if n > 500 {
        (S0 - S1 / xx) / x
    } else if n > 80 {
        (S0 - (S1 - S2 / xx) / xx) / x
    } else if n > 35 {
        (S0 - (S1 - (S2 - S3 / xx) / xx) / xx) / x
    } else {
        (S0 - (S1 - (S2 - (S3 - S4 / xx) / xx) / xx) / xx) / x
    }
}

/// Deviance term bd0(x, m) = x·ln(x/m) + m − x, computed without cancellation when x ≈ m.
fn deviance(x: f64, m: f64) -> f64 {
    if (x - m).abs() < 0.1 * (x + m) {
        let v = (x - m) / (x + m);
        let mut sum = (x - m) * v;
        let mut term = 2.0 * x * v;
        let v2 = v * v;
        for j in 1..1000 {
            term *= v2;
            let next = sum + term / (2 * j + 1) as f64;
            if next == sum {
                return next;
            }
            sum = next;
        }
        sum
    } else {
        x * (x / m).ln() + m - x
    }
}

/// ln P(X = k) for X ~ Binomial(n, p), with p in (0, 1).
pub fn ln_binomial_pmf(k: u64, n: u64, p: f64) -> f64 {
    if k > n {
        return f64::NEG_INFINITY;
    }
    if p <= 0.0 {
        return if k == 0 { 0.0 } else { f64::NEG_INFINITY };
    }
    if p >= 1.0 {
        return if k == n { 0.0 } else { f64::NEG_INFINITY };
    }
    let nf = n as f64;
    if k == 0 {
        return nf * (-p).ln_1p();
    }
    if k == n {
        return nf * p.ln();
    }
    let q = 1.0 - p;
    let kf = k as f64;
    let log_core = stirling_error(n)
        - stirling_error(k)
        - stirling_error(n - k)
        - deviance(kf, nf * p)
        - deviance(nf - kf, nf * q);
    let log_factor = (2.0 * PI).ln() + kf.ln() + (-kf / nf).ln_1p();
    log_core - 0.5 * log_factor
}

/// Sum of the ratios t_j / t_start over a run of binomial terms walking away from `start`,
/// where `ratio(j)` gives t_{next(j)} / t_j. Stops when the terms no longer change the sum.
fn geometric_like_sum(mut ratio: impl FnMut(u64) -> Option<(u64, f64)>, start: u64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let mut j = start;
    while let Some((next, r)) = ratio(j) {
        term *= r;
        sum += term;
        if term <= sum * 1e-17 {
            break;
        }
        j = next;
    }
    sum
}

/// ln P(X ≤ k) for X ~ Binomial(n, p). Exact to roughly 1e-14 relative, in log space, so tails
/// such as P(Bin(10^7, 0.01) ≤ 0) = e^{−100 503} are representable.
pub fn ln_binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    if k >= n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return f64::NEG_INFINITY;
    }
    let q = 1.0 - p;
    let odds_down = q / p;
    let odds_up = p / q;
    if (k as f64) <= n as f64 * p {
        // Lower tail: the terms decrease as j falls from k to 0.
        let sum = geometric_like_sum(
            |j| (j > 0).then(|| (j - 1, j as f64 / (n - j + 1) as f64 * odds_down)),
            k,
        );
        ln_binomial_pmf(k, n, p) + sum.ln()
    } else {
        // Upper tail P(X ≥ k + 1): the terms decrease as j rises; the cdf is 1 minus it.
        let start = k + 1;
        let sum = geometric_like_sum(
            |j| (j < n).then(|| (j + 1, (n - j) as f64 / (j + 1) as f64 * odds_up)),
            start,
        );
        let upper = (ln_binomial_pmf(start, n, p) + sum.ln()).exp();
        (-upper.min(1.0)).ln_1p()
    }
}

/// P(X ≤ k) for X ~ Binomial(n, p); underflows to 0 only below ~1e-308 (use [`ln_binomial_cdf`]).
pub fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    ln_binomial_cdf(k, n, p).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct summation of exact pmf terms (small n only): an independent reference.
    fn naive_cdf(k: u64, n: u64, p: f64) -> f64 {
        let mut total = 0.0;
        let mut coefficient = 1.0f64; // C(n, i)
        for i in 0..=k.min(n) {
            if i > 0 {
                coefficient = coefficient * (n - i + 1) as f64 / i as f64;
            }
            total += coefficient * p.powi(i as i32) * (1.0 - p).powi((n - i) as i32);
        }
        total
    }

    #[test]
    fn pmf_and_cdf_match_direct_sums_for_small_n() {
        for n in 1..=60u64 {
            for &p in &[0.01, 0.1, 0.3, 0.5, 0.77, 0.99] {
                for k in 0..=n {
                    let reference = naive_cdf(k, n, p);
                    let got = binomial_cdf(k, n, p);
                    let rel = ((got - reference) / reference).abs();
                    assert!(rel < 1e-11, "n={n} k={k} p={p}: {got} vs {reference}");
                }
            }
        }
    }

    #[test]
    fn extreme_edges() {
        assert_eq!(ln_binomial_cdf(200, 200, 0.5), 0.0);
        let ln = ln_binomial_cdf(0, 10_000_000, 0.01);
        let exact = 10_000_000.0 * (0.99f64).ln();
        assert!(((ln - exact) / exact).abs() < 1e-13);
        assert_eq!(binomial_cdf(0, 10_000_000, 0.01), 0.0);
    }
}
