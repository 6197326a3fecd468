//! calm's binomial tails, Bentkus and HB p-values and confidence bounds against statrs (a second,
//! independent implementation: its Binomial CDF goes through the regularized incomplete beta
//! function, calm's through a log-space sum of pmf ratios).
//!
//! Where statrs is accurate (its CDF ≥ 1e-250, n ≤ 10^5) the two agree to 1e-9 relative (worst
//! measured 9.5e-10, over 243 grid points; calm matches the mpmath values to 1e-11 in log space).
//! Where it is not, this file measures how far it is off against the mpmath golden values of
//! tests/fixtures/pvalue_golden.json, which is why calm keeps its own log-space tails (statrs
//! returns a plain f64 CDF, which underflows to 0 below ~1e-308, and loses relative accuracy
//! deep in the tails).

use calm::calibrate::binomial::{binomial_cdf, ln_binomial_cdf};
use calm::calibrate::bounds::upper_confidence_bound;
use calm::calibrate::pvalues::{bentkus_p_value, hoeffding_bentkus_p_value};
use calm::calibrate::{CalibrationOptions, PValueMethod, Procedure};
use serde_json::Value;
use statrs::distribution::{Beta, Binomial, ContinuousCDF, DiscreteCDF};

const TOLERANCE: f64 = 1e-9;

fn relative(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

fn grid() -> Vec<(u64, u64, f64)> {
    let mut points = Vec::new();
    for n in [1u64, 2, 7, 30, 100, 1_000, 10_000, 100_000] {
        for p in [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.9] {
            let mean = n as f64 * p;
            let spread = (n as f64 * p * (1.0 - p)).sqrt().max(1.0);
            for z in [-6.0, -3.0, -1.0, 0.0, 1.0, 3.0] {
                let k = (mean + z * spread).floor();
                if k >= 0.0 && (k as u64) < n {
                    points.push((n, k as u64, p));
                }
            }
            points.push((n, 0, p));
        }
    }
    points.sort_by(|a, b| a.partial_cmp(b).unwrap());
    points.dedup();
    points
}

#[test]
fn binomial_tails_agree_with_statrs_where_statrs_is_accurate() {
    let mut compared = 0;
    let mut worst: f64 = 0.0;
    for (n, k, p) in grid() {
        let reference = Binomial::new(p, n).unwrap().cdf(k);
        if reference < 1e-250 {
            continue;
        }
        let ours = binomial_cdf(k, n, p);
        let error = relative(ours, reference);
        worst = worst.max(error);
        assert!(
            error <= TOLERANCE,
            "P(Bin({n}, {p}) <= {k}): calm {ours:e}, statrs {reference:e} (relative {error:e})"
        );
        compared += 1;
    }
    eprintln!("binomial CDF: {compared} points, worst relative difference {worst:e}");
    assert!(compared > 200, "{compared}");
}

#[test]
fn bentkus_and_hb_p_values_agree_with_statrs() {
    let e = std::f64::consts::E;
    for (n, k, delta) in grid() {
        let reference = Binomial::new(delta, n).unwrap().cdf(k);
        if reference < 1e-250 {
            continue;
        }
        let bentkus = (e * reference).min(1.0);
        assert!(relative(bentkus_p_value(n, k, delta), bentkus) <= TOLERANCE);
        // HB = min(exp(−n·h1(min(R̂, δ), δ)), e·P(Bin(n, δ) ≤ k), 1), with R̂ = k/n.
        let risk = k as f64 / n as f64;
        let a = risk.min(delta);
        let kl = if a == 0.0 {
            -(1.0 - delta).ln()
        } else {
            a * (a / delta).ln() + (1.0 - a) * ((1.0 - a) / (1.0 - delta)).ln()
        };
        let tight = if risk >= delta {
            1.0
        } else {
            (-(n as f64) * kl).exp()
        };
        let hb = tight.min(bentkus).min(1.0);
        let ours = hoeffding_bentkus_p_value(n, risk, k, delta);
        assert!(
            relative(ours, hb) <= 1e-8,
            "HB n={n} k={k} delta={delta}: calm {ours:e}, reference {hb:e}"
        );
    }
}

#[test]
fn the_binomial_upper_bound_is_the_clopper_pearson_beta_quantile() {
    // Inverting P(Bin(n, r) ≤ k) ≤ level over r gives the Clopper–Pearson upper bound, the
    // 1 − level quantile of Beta(k + 1, n − k).
    for (n, k) in [
        (20u64, 0u64),
        (20, 3),
        (100, 5),
        (100, 30),
        (1000, 70),
        (5000, 400),
    ] {
        for level in [0.05, 0.01, 0.05 / 6.0] {
            let losses: Vec<f64> = (0..n).map(|i| f64::from(u8::from(i < k))).collect();
            let options = CalibrationOptions {
                delta: 0.5,
                epsilon: 0.05,
                pvalue: PValueMethod::Binomial,
                procedure: Procedure::FixedSequence,
                seed: 0,
            };
            let ours = upper_confidence_bound(&losses, &options, level);
            let beta = Beta::new((k + 1) as f64, (n - k) as f64).unwrap();
            let reference = beta.inverse_cdf(1.0 - level);
            assert!(
                (ours - reference).abs() <= 1e-7,
                "n={n} k={k} level={level}: calm {ours}, Beta quantile {reference}"
            );
        }
    }
}

#[test]
fn where_statrs_is_not_accurate_calm_matches_mpmath() {
    // The mpmath golden values (110 digits) in the far tails: statrs underflows or drifts, calm
    // stays within 1e-11 in log space.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pvalue_golden.json"
    );
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut statrs_failures = 0;
    for row in golden["binomial_cdf_log"].as_array().unwrap() {
        let n = row["n"].as_u64().unwrap();
        let k = row["k"].as_u64().unwrap();
        let p = row["p"].as_f64().unwrap();
        let want_ln = row["ln_cdf"].as_f64().unwrap();
        let ours = ln_binomial_cdf(k, n, p);
        assert!(relative(ours, want_ln) <= 1e-11, "calm n={n} k={k} p={p}");
        let theirs = Binomial::new(p, n).unwrap().cdf(k).ln();
        let error = relative(theirs, want_ln);
        eprintln!(
            "n={n} k={k} p={p}: ln CDF mpmath {want_ln:.6e}, calm {ours:.6e}, statrs {theirs:.6e} (relative error {error:.1e})"
        );
        if error.is_nan() || error > 1e-9 {
            statrs_failures += 1;
        }
    }
    // Measured: statrs gives ln CDF = −inf for every golden tail below ~1e-308 (e.g.
    // P(Bin(10^7, 0.01) ≤ 0) = e^−100503), 0 instead of −6.2e−61 for P(Bin(200, 0.5) ≤ 199), and a
    // relative error of 2e−6 at P(Bin(10^7, 0.01) ≤ 10^5); calm is within 1e−11 on all of them.
    assert!(statrs_failures >= 1);
}
