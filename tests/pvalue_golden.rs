//! p-values and binomial tails against golden values computed independently in high precision
//! with mpmath (tests/fixtures/make_pvalue_golden.py → pvalue_golden.json).

use calm::calibrate::binomial::ln_binomial_cdf;
use calm::calibrate::pvalues::{
    bentkus_bound, binomial_p_value, hoeffding_bentkus_p_value, hoeffding_p_value,
    hoeffding_tight_p_value, wsr_p_value,
};
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
