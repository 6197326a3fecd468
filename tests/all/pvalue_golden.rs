//! p-values and binomial tails against golden values computed independently in high precision
//! with mpmath (tests/fixtures/make_pvalue_golden.py → pvalue_golden.json); the WSR p-value also
//! against a reference computed another way (tests/fixtures/make_wsr_reference.py →
//! wsr_reference.json: exact rational statistics, product-form wealth, the dual confidence
//! bound, exact enumeration); and the validity of every p-value, P(p ≤ α) ≤ α at the boundary
//! of the null, by exact enumeration, with no reference at all.

use calm::calibrate::binomial::ln_binomial_cdf;
use calm::calibrate::pvalues::{
    bentkus_bound, bentkus_p_value, binomial_p_value, hoeffding_bentkus_p_value, hoeffding_p_value,
    hoeffding_tight_p_value, wsr_p_value,
};
use calm::calibrate::LossStats;
use serde_json::Value;

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pvalue_golden.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("json")
}

/// |got − want| ≤ tol·|want|, with exact zero required for a zero reference.
fn assert_relative(got: f64, want: f64, tol: f64, what: &str) {
    let ok = if want == 0.0 {
        got == 0.0
    } else {
        (got - want).abs() <= tol * want.abs()
    };
    assert!(ok, "{what}: got {got:e}, want {want:e}");
}

/// A p-value field: a number, or a string for values below the double range (compare its log).
fn check_value(row: &Value, field: &str, got: f64, got_ln: f64, what: &str) {
    match &row[field] {
        Value::Number(number) => assert_relative(got, number.as_f64().unwrap(), 1e-9, what),
        Value::String(_) => {
            let want_ln = row[format!("ln_{field}")].as_f64().unwrap();
            assert_relative(got_ln, want_ln, 1e-11, &format!("ln {what}"));
            assert!(got < 1e-300, "{what}: {got:e} should underflow");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn p_values_match_mpmath() {
    let golden = golden();
    let rows = golden["pvalues"].as_array().unwrap();
    assert!(rows.len() >= 30);
    for row in rows {
        let n = row["n"].as_u64().unwrap();
        let k = row["k"].as_u64().unwrap();
        let delta = row["delta"].as_f64().unwrap();
        let risk = k as f64 / n as f64;
        let what = |name: &str| format!("{name} n={n} k={k} delta={delta}");
        let ln_cdf = ln_binomial_cdf(k, n, delta);
        let simple = hoeffding_p_value(n, risk, delta);
        let gap = (delta - risk).max(0.0);
        let simple_ln = -2.0 * n as f64 * gap * gap;
        check_value(row, "hoeffding", simple, simple_ln, &what("hoeffding"));
        let tight = hoeffding_tight_p_value(n, risk, delta);
        let tight_ln = -(n as f64) * calm::calibrate::pvalues::bernoulli_kl(risk.min(delta), delta);
        check_value(
            row,
            "hoeffding_tight",
            tight,
            tight_ln,
            &what("hoeffding_tight"),
        );
        check_value(
            row,
            "bentkus",
            bentkus_bound(n, k, delta),
            1.0 + ln_cdf,
            &what("bentkus"),
        );
        let hb = hoeffding_bentkus_p_value(n, risk, k, delta);
        check_value(
            row,
            "hb",
            hb,
            tight_ln.min(1.0 + ln_cdf).min(0.0),
            &what("hb"),
        );
        check_value(
            row,
            "binomial",
            binomial_p_value(n, k, delta),
            ln_cdf,
            &what("binomial"),
        );
    }
}

#[test]
fn binomial_tails_match_mpmath_in_log_space() {
    for row in golden()["binomial_cdf_log"].as_array().unwrap() {
        let (n, k, p) = (
            row["n"].as_u64().unwrap(),
            row["k"].as_u64().unwrap(),
            row["p"].as_f64().unwrap(),
        );
        let want = row["ln_cdf"].as_f64().unwrap();
        assert_relative(
            ln_binomial_cdf(k, n, p),
            want,
            1e-10,
            &format!("ln P(Bin({n},{p}) <= {k})"),
        );
    }
}

#[test]
fn wsr_matches_a_reference_loop() {
    for row in golden()["wsr"].as_array().unwrap() {
        let losses: Vec<f64> = row["losses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let delta = row["delta"].as_f64().unwrap();
        let w = row["w"].as_f64().unwrap();
        let want = row["p"].as_f64().unwrap();
        let name = row["name"].as_str().unwrap();
        assert_relative(
            wsr_p_value(&losses, delta, w),
            want,
            1e-10,
            &format!("wsr {name} delta={delta} w={w}"),
        );
    }
}

#[test]
fn smallest_certifiable_n_matches() {
    // The best HB p-value is (1 − δ)^n at R̂ = 0: certification needs it ≤ ε/N.
    for row in golden()["n_min"].as_array().unwrap() {
        let delta = row["delta"].as_f64().unwrap();
        let level = row["epsilon"].as_f64().unwrap() / row["N"].as_f64().unwrap();
        let n_min = (1..100_000u64)
            .find(|&n| hoeffding_bentkus_p_value(n, 0.0, 0, delta) <= level)
            .unwrap();
        assert_eq!(
            n_min,
            row["n_min"].as_u64().unwrap(),
            "delta={delta} level={level}"
        );
    }
}

fn wsr_reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wsr_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("reference file")).expect("json")
}

/// The losses of the sequence a reference row names.
fn reference_losses(reference: &Value, row: &Value) -> Vec<f64> {
    let name = row["name"].as_str().unwrap();
    reference["sequences"][name]
        .as_array()
        .unwrap_or_else(|| panic!("no sequence {name}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// Relative tolerance of calm's WSR p-value (doubles, running sums, log-sum wealth) against the
/// exact-arithmetic reference. Measured worst case 6.1e-13 (zeros1000, p = 3e-41, where the
/// relative error of p is the absolute error of ln K ≈ 93); 1e-10 leaves a wide margin and still
/// catches any change of formula: the bet from σ̂²_i instead of σ̂²_{i−1}, n − 1 for n, the last
/// wealth for the maximum, or μ̂_{i−1} in the variance each move p by 7% to 6000× on 14–20 of
/// the 30 rows (checked with the script's formulas).
const WSR_TOLERANCE: f64 = 1e-10;

#[test]
fn wsr_matches_an_exact_arithmetic_reference() {
    let reference = wsr_reference();
    let rows = reference["pvalues"].as_array().unwrap();
    assert!(rows.len() >= 30);
    let mut worst: f64 = 0.0;
    for row in rows {
        let losses = reference_losses(&reference, row);
        let delta = row["delta"].as_f64().unwrap();
        let w = row["w"].as_f64().unwrap();
        let got = wsr_p_value(&losses, delta, w);
        let what = format!("wsr {} delta={delta} w={w}", row["name"]);
        match &row["p"] {
            Value::Number(want) => {
                let want = want.as_f64().unwrap();
                worst = worst.max((got - want).abs() / want);
                assert_relative(got, want, WSR_TOLERANCE, &what);
            }
            // Below the double range: calm's exp(−ln K) underflows.
            Value::String(_) => assert!(got < 1e-300, "{what}: {got:e} should underflow"),
            other => panic!("unexpected {other}"),
        }
    }
    eprintln!("wsr against the exact reference: worst relative error {worst:.1e}");
}

#[test]
fn wsr_crosses_alpha_at_the_reference_upper_confidence_bound() {
    // The dual parametrisation: p(δ) ≤ α exactly when δ ≥ R⁺(α), the WSR upper confidence bound
    // found by bisection on the wealth as a function of R (not from p).
    let reference = wsr_reference();
    let rows = reference["ucb"].as_array().unwrap();
    assert!(rows.len() >= 20);
    for row in rows {
        let losses = reference_losses(&reference, row);
        let w = row["w"].as_f64().unwrap();
        let alpha = row["alpha"].as_f64().unwrap();
        let what = format!("wsr {} w={w} alpha={alpha}", row["name"]);
        match row["ucb"].as_f64() {
            None => assert!(wsr_p_value(&losses, 1.0, w) > alpha, "{what}: no bound"),
            Some(bound) => {
                let above = wsr_p_value(&losses, bound * (1.0 + 1e-9), w);
                let below = wsr_p_value(&losses, bound * (1.0 - 1e-9), w);
                assert!(
                    above <= alpha && alpha < below,
                    "{what}: R+ = {bound}: p just above {above}, just below {below}"
                );
            }
        }
    }
}

/// Every 0/1 sequence of length n with its probability when P(L = 1) = δ.
fn binary_sequences(n: usize, delta: f64) -> impl Iterator<Item = (Vec<f64>, f64)> {
    (0u32..1 << n).map(move |bits| {
        let losses: Vec<f64> = (0..n).map(|i| f64::from((bits >> i) & 1)).collect();
        let ones = bits.count_ones() as i32;
        (
            losses,
            delta.powi(ones) * (1.0 - delta).powi(n as i32 - ones),
        )
    })
}

#[test]
fn wsr_validity_by_enumeration_matches_the_reference() {
    // The reference's exact P(p ≤ α) over all 2^n sequences (n ≤ 10) against calm's own.
    let reference = wsr_reference();
    let rows = reference["enumeration"].as_array().unwrap();
    assert!(rows.len() >= 300);
    for row in rows {
        let n = row["n"].as_u64().unwrap() as usize;
        let delta = row["delta"].as_f64().unwrap();
        let w = row["w"].as_f64().unwrap();
        let alpha = row["alpha"].as_f64().unwrap();
        let prob: f64 = binary_sequences(n, delta)
            .filter(|(losses, _)| wsr_p_value(losses, delta, w) <= alpha)
            .map(|(_, weight)| weight)
            .sum();
        let want = row["prob"].as_f64().unwrap();
        assert!(
            (prob - want).abs() <= 1e-12,
            "n={n} delta={delta} w={w} alpha={alpha}: P(p <= alpha) {prob} vs reference {want}"
        );
    }
}

/// The p-values calm offers, for one loss sequence (binomial only for 0/1 losses).
fn all_p_values(losses: &[f64], delta: f64, w: f64) -> [(&'static str, f64); 5] {
    let s = LossStats::from_losses(losses);
    [
        (
            "hb",
            hoeffding_bentkus_p_value(s.n, s.risk, s.bentkus_count, delta),
        ),
        ("hoeffding", hoeffding_p_value(s.n, s.risk, delta)),
        ("bentkus", bentkus_p_value(s.n, s.bentkus_count, delta)),
        (
            "binomial",
            if s.binary {
                binomial_p_value(s.n, s.bentkus_count, delta)
            } else {
                1.0
            },
        ),
        ("wsr", wsr_p_value(losses, delta, w)),
    ]
}

const ALPHAS: [f64; 6] = [0.001, 0.01, 0.05, 0.1, 0.2, 0.5];

/// Adds `weight` to the P(p ≤ α) tallies of every method and α.
fn tally(rates: &mut [[f64; ALPHAS.len()]; 5], p_values: &[(&str, f64); 5], weight: f64) {
    for (m, &(_, p)) in p_values.iter().enumerate() {
        for (a, &alpha) in ALPHAS.iter().enumerate() {
            if p <= alpha {
                rates[m][a] += weight;
            }
        }
    }
}

fn assert_valid(rates: &[[f64; ALPHAS.len()]; 5], what: &str) {
    let names = ["hb", "hoeffding", "bentkus", "binomial", "wsr"];
    for (m, row) in rates.iter().enumerate() {
        for (a, &alpha) in ALPHAS.iter().enumerate() {
            // Slack for the double rounding of a sum of at most 3^8 probabilities.
            assert!(
                row[a] <= alpha * (1.0 + 1e-12),
                "{} {what}: P(p <= {alpha}) = {} exceeds alpha",
                names[m],
                row[a]
            );
        }
    }
}

#[test]
fn p_values_are_valid_by_exact_enumeration() {
    // No reference and no Monte Carlo: under the null (mean loss ≥ δ) every p-value must satisfy
    // P(p ≤ α) ≤ α, summed exactly over all loss sequences with their probabilities.
    for &delta in &[0.05, 0.1, 0.3, 0.5] {
        for &w in &[0.01, 0.1, 0.5] {
            // 0/1 losses with P(L = 1) = r: all 2^n sequences (WSR depends on the order), at the
            // boundary r = δ and inside the null at r = (1 + δ)/2, where a p-value that also
            // bets on a high risk (the two-sided WSR) fails.
            for risk in [delta, 0.5 * (1.0 + delta)] {
                for n in 1..=12 {
                    let mut rates = [[0.0; ALPHAS.len()]; 5];
                    for (losses, weight) in binary_sequences(n, risk) {
                        tally(&mut rates, &all_p_values(&losses, delta, w), weight);
                    }
                    assert_valid(
                        &rates,
                        &format!("0/1 losses n={n} risk={risk} delta={delta} w={w}"),
                    );
                }
            }
            // Losses in {0, 1/2, 1} with P(1/2) = δ and P(1) = δ/2 (mean δ): all 3^n sequences.
            for n in 1..=8 {
                let probability = [1.0 - 1.5 * delta, delta, 0.5 * delta];
                let mut rates = [[0.0; ALPHAS.len()]; 5];
                for code in 0..3usize.pow(n as u32) {
                    let mut digits = code;
                    let mut losses = Vec::with_capacity(n);
                    let mut weight = 1.0;
                    for _ in 0..n {
                        losses.push(0.5 * (digits % 3) as f64);
                        weight *= probability[digits % 3];
                        digits /= 3;
                    }
                    tally(&mut rates, &all_p_values(&losses, delta, w), weight);
                }
                assert_valid(
                    &rates,
                    &format!("losses in {{0, 1/2, 1}} n={n} delta={delta} w={w}"),
                );
            }
        }
    }
    // Larger n for the methods that depend on the count only: P(Bin(n, δ) = k) by a product
    // recurrence, over every count k.
    for delta in [0.05f64, 0.1, 0.3] {
        for n in [20u64, 50, 100, 200, 400] {
            let mut rates = [[0.0; ALPHAS.len()]; 5];
            let mut pmf = (1.0 - delta).powi(n as i32);
            for k in 0..=n {
                let risk = k as f64 / n as f64;
                let p_values = [
                    ("hb", hoeffding_bentkus_p_value(n, risk, k, delta)),
                    ("hoeffding", hoeffding_p_value(n, risk, delta)),
                    ("bentkus", bentkus_p_value(n, k, delta)),
                    ("binomial", binomial_p_value(n, k, delta)),
                    ("wsr", 1.0),
                ];
                tally(&mut rates, &p_values, pmf);
                pmf *= (n - k) as f64 / (k + 1) as f64 * delta / (1.0 - delta);
            }
            assert_valid(&rates, &format!("counts n={n} delta={delta}"));
        }
    }
}
