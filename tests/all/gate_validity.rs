//! Monte-Carlo validity of the CI gate (`calm check`'s statistics), through the library.
//!
//! - At true risk exactly δ (the boundary of H′: R ≤ δ) "violation detected" happens at rate
//!   ≤ α (+3σ of the simulation).
//! - At true risk 2δ with the n that the gate's power figure names, it happens at rate ≥ 0.8
//!   (−3σ).
//! - Negative control: a gate with the two tests swapped (violation decided by the certify
//!   p-value) passes the first check but fails the second, so these tests catch the swap.
//! - "certified" at true risk δ (H: R > δ true at its boundary) happens at rate ≤ ε (+3σ).

use calm::calibrate::check::{
    certify_p_value, gate_test, n_to_detect, verdict_from_p_values, violation_p_value, GateOptions,
    Verdict,
};
use calm::calibrate::PValueMethod;
use calm::util::rng::Rng;

const SETS: usize = 2000;

fn options(pvalue: PValueMethod) -> GateOptions {
    GateOptions {
        delta: 0.1,
        epsilon: 0.05,
        alpha: 0.05,
        pvalue,
        seed: 7,
    }
}

fn bernoulli(rng: &mut Rng, n: u64, risk: f64) -> Vec<f64> {
    (0..n)
        .map(|_| f64::from(u8::from(rng.uniform() < risk)))
        .collect()
}

/// Rates of (violation detected, certified) over `SETS` fresh sets of n Bernoulli(risk) losses,
/// with the real gate and with the swapped one.
fn rates(pvalue: PValueMethod, n: u64, risk: f64, seed: u64) -> ([f64; 2], [f64; 2]) {
    let o = options(pvalue);
    let mut rng = Rng::new(seed);
    let (mut real, mut swapped) = ([0usize; 2], [0usize; 2]);
    for _ in 0..SETS {
        let losses = bernoulli(&mut rng, n, risk);
        let certify = certify_p_value(&losses, &o);
        let violation = violation_p_value(&losses, &o);
        let verdict = verdict_from_p_values(certify, violation, &o);
        real[0] += usize::from(verdict == Verdict::ViolationDetected);
        real[1] += usize::from(verdict == Verdict::Certified);
        // The swap: each p-value decides the other's verdict.
        let swap = verdict_from_p_values(violation, certify, &o);
        swapped[0] += usize::from(swap == Verdict::ViolationDetected);
        swapped[1] += usize::from(swap == Verdict::Certified);
    }
    let share = |c: usize| c as f64 / SETS as f64;
    (
        [share(real[0]), share(real[1])],
        [share(swapped[0]), share(swapped[1])],
    )
}

fn sigma(p: f64) -> f64 {
    (p * (1.0 - p) / SETS as f64).sqrt()
}

#[test]
fn false_alarms_at_delta_and_power_at_twice_delta() {
    for pvalue in [PValueMethod::Hb, PValueMethod::Binomial, PValueMethod::Wsr] {
        let o = options(pvalue);
        let n = n_to_detect(2.0 * o.delta, &o).expect("a detecting n exists");
        // True risk δ: false alarms ≤ α, false certifications ≤ ε.
        let (real, swapped) = rates(pvalue, n, o.delta, 1);
        let at_delta = real;
        assert!(
            real[0] <= o.alpha + 3.0 * sigma(o.alpha),
            "{pvalue:?} n = {n}: violation rate {} at risk δ",
            real[0]
        );
        assert!(
            real[1] <= o.epsilon + 3.0 * sigma(o.epsilon),
            "{pvalue:?}: certified rate {} at risk δ",
            real[1]
        );
        // The swapped gate also keeps its false alarms low here: this check alone would not
        // catch it.
        assert!(swapped[0] <= o.alpha + 3.0 * sigma(o.alpha));
        // True risk 2δ with the named n: detected with power ≥ 0.8.
        let (real, swapped) = rates(pvalue, n, 2.0 * o.delta, 2);
        assert!(
            real[0] >= 0.8 - 3.0 * sigma(0.8),
            "{pvalue:?} n = {n}: detection rate {} at risk 2δ",
            real[0]
        );
        // Negative control: the swapped gate almost never detects it.
        assert!(
            swapped[0] < 0.8 - 3.0 * sigma(0.8),
            "{pvalue:?}: the swapped gate detected {}",
            swapped[0]
        );
        eprintln!(
            "{pvalue:?}: n = {n}; at risk δ violation rate {:.4} (α = 0.05); at 2δ detection {:.4}, swapped gate {:.4}",
            at_delta[0],
            real[0],
            swapped[0]
        );
    }
}

#[test]
fn the_gate_reports_the_verdict_of_its_p_values() {
    let mut rng = Rng::new(5);
    for pvalue in [PValueMethod::Hb, PValueMethod::Wsr] {
        let o = options(pvalue);
        for n in [1u64, 20, 111] {
            let losses = bernoulli(&mut rng, n, 0.15);
            let test = gate_test(&losses, &o).unwrap();
            assert_eq!(test.certify_p_value, certify_p_value(&losses, &o));
            assert_eq!(test.violation_p_value, violation_p_value(&losses, &o));
            assert_eq!(
                test.verdict,
                verdict_from_p_values(test.certify_p_value, test.violation_p_value, &o)
            );
        }
    }
}

#[test]
fn the_power_figure_is_not_loose() {
    // Half the named n detects 2δ with clearly less than 0.8: the figure is the n that is needed,
    // not any n that works.
    let o = options(PValueMethod::Hb);
    let n = n_to_detect(0.2, &o).unwrap();
    let (real, _) = rates(PValueMethod::Hb, n / 2, 0.2, 3);
    assert!(real[0] < 0.8 - 3.0 * sigma(0.8), "{}", real[0]);
}
