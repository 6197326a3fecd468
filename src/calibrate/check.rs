//! The CI gate's statistics: two one-sided tests of a certified configuration on fresh data.
//!
//! - **Certify**: H: R > δ, the calibration's own null, with its p-value, rejected at level ε.
//!   Rejection is evidence that the risk is at most δ on data like the fresh data.
//! - **Violation**: H′: R ≤ δ, rejected at level α. With X = 1 − L ∈ [0, 1], R ≤ δ ⇔ E[X] ≥ 1 − δ,
//!   so the same valid p-values applied to X with target 1 − δ give a valid p-value for H′.
//!   Rejection is evidence that the risk exceeds δ.
//!
//! Neither rejected is **inconclusive**: not evidence either way. Not rejecting "R ≤ δ" says
//! nothing about the risk (an empty or one-example file rejects nothing), so the gate never turns
//! it into "the guarantee holds". The power figures say what n would decide.

use super::binomial::ln_binomial_cdf;
use super::bounds::upper_confidence_bound;
use super::{candidate_p_value, pvalues, CalibrationOptions, LossStats, PValueMethod, Procedure};
use crate::util::rng::Rng;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The power the gate's figures are computed for.
pub const TARGET_POWER: f64 = 0.8;
/// Largest sample size the power search considers.
const MAX_SEARCH_N: u64 = 10_000_000;
/// The same for WSR.
const MAX_WSR_SEARCH_N: u64 = 1_000_000;
/// Simulated fresh sets per power evaluation of an order-dependent p-value (WSR).
const WSR_POWER_SIMULATIONS: usize = 400;

/// What the gate tests and at which levels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateOptions {
    /// The certified risk bound δ.
    pub delta: f64,
    /// Level ε of the certify test (by default the calibration's ε).
    pub epsilon: f64,
    /// Level α of the violation test (the false-alarm rate when the risk is exactly δ).
    pub alpha: f64,
    pub pvalue: PValueMethod,
    /// Seed of the example order of WSR and of its power simulations.
    pub seed: u64,
}

impl GateOptions {
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("delta", self.delta),
            ("epsilon", self.epsilon),
            ("alpha", self.alpha),
        ] {
            if !(value > 0.0 && value < 1.0) {
                bail!("{name} must lie strictly between 0 and 1 (got {value})");
            }
        }
        Ok(())
    }

    fn calibration(&self, delta: f64, epsilon: f64) -> CalibrationOptions {
        CalibrationOptions {
            delta,
            epsilon,
            pvalue: self.pvalue,
            procedure: Procedure::FixedSequence,
            seed: self.seed,
        }
    }
}

/// The gate's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// H: R > δ rejected at level ε on the fresh data.
    Certified,
    /// H′: R ≤ δ rejected at level α: the risk exceeds δ.
    ViolationDetected,
    /// Neither test rejected.
    Inconclusive,
}

impl Verdict {
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::Certified => "certified on fresh data",
            Verdict::ViolationDetected => "violation detected",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// What n decides, for 0/1 losses (for a given mean, the case hardest to detect).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerFigures {
    /// The power these figures are for (0.8).
    pub power: f64,
    /// Smallest true risk that the violation test detects with this power at this n
    /// (None: not even risk 1).
    pub detectable_risk: Option<f64>,
    /// Fresh examples needed to certify if the observed risk held (None: the observed risk is
    /// not below δ, so no n certifies it).
    pub n_to_certify_at_observed_risk: Option<u64>,
    /// Fresh examples needed to detect a true risk of min(2δ, 1) with this power.
    pub n_to_detect_twice_delta: Option<u64>,
}

/// The outcome of gating one configuration on fresh data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateTest {
    pub n: u64,
    pub risk: f64,
    pub delta: f64,
    pub epsilon: f64,
    pub alpha: f64,
    pub pvalue: PValueMethod,
    /// p-value of H: risk > δ (small = evidence that the risk is at most δ).
    pub certify_p_value: f64,
    /// p-value of H′: risk ≤ δ (small = evidence of a violation).
    pub violation_p_value: f64,
    /// Upper confidence bound on the risk at level ε (the certify test inverted).
    pub risk_upper_bound: f64,
    /// Lower confidence bound on the risk at level α (the violation test inverted).
    pub risk_lower_bound: f64,
    pub verdict: Verdict,
    pub power: PowerFigures,
}

/// The verdict from the two p-values: a violation wins if both reject (it is the safe side).
pub fn verdict_from_p_values(
    certify_p_value: f64,
    violation_p_value: f64,
    options: &GateOptions,
) -> Verdict {
    if violation_p_value <= options.alpha {
        Verdict::ViolationDetected
    } else if certify_p_value <= options.epsilon {
        Verdict::Certified
    } else {
        Verdict::Inconclusive
    }
}

/// p-value of H′: R ≤ δ from the losses (the certify p-value of 1 − L against 1 − δ).
/// WSR's tuning level is α here, as for the lower confidence bound.
pub fn violation_p_value(losses: &[f64], options: &GateOptions) -> f64 {
    let flipped: Vec<f64> = losses.iter().map(|&l| 1.0 - l).collect();
    candidate_p_value(
        &flipped,
        &options.calibration(1.0 - options.delta, options.alpha),
    )
}

/// p-value of H: R > δ from the losses (the calibration's p-value).
pub fn certify_p_value(losses: &[f64], options: &GateOptions) -> f64 {
    candidate_p_value(losses, &options.calibration(options.delta, options.epsilon))
}

/// Run both tests on the fresh losses. n = 0 is refused: there is nothing to test.
pub fn gate_test(losses: &[f64], options: &GateOptions) -> Result<GateTest> {
    options.validate()?;
    if losses.is_empty() {
        bail!("no fresh examples: the gate needs at least one labelled example to test");
    }
    let stats = LossStats::from_losses(losses);
    if options.pvalue == PValueMethod::Binomial && !stats.binary {
        bail!("the binomial p-value needs 0/1 losses, but the fresh losses are fractional; calibrate with the hb p-value");
    }
    let certify = certify_p_value(losses, options);
    let violation = violation_p_value(losses, options);
    let flipped: Vec<f64> = losses.iter().map(|&l| 1.0 - l).collect();
    let upper = upper_confidence_bound(
        losses,
        &options.calibration(options.delta, options.epsilon),
        options.epsilon,
    );
    // The bounds invert the p-values over the bound itself, so the options' δ is not used.
    let lower = 1.0
        - upper_confidence_bound(
            &flipped,
            &options.calibration(options.delta, options.alpha),
            options.alpha,
        );
    Ok(GateTest {
        n: stats.n,
        risk: stats.risk,
        delta: options.delta,
        epsilon: options.epsilon,
        alpha: options.alpha,
        pvalue: options.pvalue,
        certify_p_value: certify,
        violation_p_value: violation,
        risk_upper_bound: upper,
        risk_lower_bound: lower.max(0.0),
        verdict: verdict_from_p_values(certify, violation, options),
        power: power_figures(stats.n, stats.risk, options),
    })
}

/// n 0/1 losses with `count` ones spread evenly (a deterministic sample with that mean).
fn spread_sample(n: u64, count: u64) -> Vec<f64> {
    (0..n)
        .map(|i| f64::from(u8::from((i + 1) * count / n > i * count / n)))
        .collect()
}

/// The certify p-value against `delta` of n losses with mean `risk` and count ⌈n·risk⌉ (the
/// sufficient statistics of the count-based p-values; WSR gets an evenly spread 0/1 sample).
fn count_p_value(options: &GateOptions, n: u64, risk: f64, count: u64, delta: f64) -> f64 {
    match options.pvalue {
        PValueMethod::Hb => pvalues::hoeffding_bentkus_p_value(n, risk, count, delta),
        PValueMethod::Hoeffding => pvalues::hoeffding_p_value(n, risk, delta),
        PValueMethod::Bentkus => pvalues::bentkus_p_value(n, count, delta),
        PValueMethod::Binomial => pvalues::binomial_p_value(n, count, delta),
        PValueMethod::Wsr => candidate_p_value(
            &spread_sample(n, count),
            &options.calibration(delta, options.epsilon),
        ),
    }
}

/// Violation p-value of n 0/1 losses with k ones (count-based methods).
fn violation_p_of_count(options: &GateOptions, n: u64, k: u64) -> f64 {
    let flipped_count = n - k;
    count_p_value(
        options,
        n,
        flipped_count as f64 / n as f64,
        flipped_count,
        1.0 - options.delta,
    )
}

/// Probability that the violation test rejects on n Bernoulli(`risk`) losses.
pub fn detection_probability(n: u64, risk: f64, options: &GateOptions) -> f64 {
    if n == 0 {
        return 0.0;
    }
    if options.pvalue == PValueMethod::Wsr {
        return simulated_detection(n, risk, options);
    }
    // The violation p-value falls as the count of ones k rises: find the smallest rejecting k.
    if violation_p_of_count(options, n, n) > options.alpha {
        return 0.0;
    }
    let (mut low, mut high) = (0u64, n); // p(high) ≤ α; p(low) > α unless low rejects too
    if violation_p_of_count(options, n, 0) <= options.alpha {
        return 1.0;
    }
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if violation_p_of_count(options, n, mid) <= options.alpha {
            high = mid;
        } else {
            low = mid;
        }
    }
    // P(Bin(n, risk) ≥ high) = 1 − P(Bin ≤ high − 1).
    1.0 - ln_binomial_cdf(high - 1, n, risk).exp()
}

/// WSR's detection probability by simulation with common random numbers (seeded): reproducible,
/// and approximately monotone in `risk` (WSR's bets follow the running variance, so a path's
/// rejection is not exactly monotone), which is what the bisections over it assume.
fn simulated_detection(n: u64, risk: f64, options: &GateOptions) -> f64 {
    let mut rng = Rng::new(options.seed ^ 0x9e37_79b9_7f4a_7c15 ^ n);
    let n = n as usize;
    let detected = (0..WSR_POWER_SIMULATIONS)
        .filter(|_| {
            let losses: Vec<f64> = (0..n)
                .map(|_| f64::from(u8::from(rng.uniform() < risk)))
                .collect();
            violation_p_value(&losses, options) <= options.alpha
        })
        .count();
    detected as f64 / WSR_POWER_SIMULATIONS as f64
}

/// The smallest n ≤ `max_n` whose `holds(n)` is true, searching by doubling (capped at `max_n`,
/// which is probed) then bisection; None when not even `max_n` holds. Discrete tests are not
/// exactly monotone in n; the bisection returns an n that satisfies `holds`.
fn smallest_n(max_n: u64, holds: impl Fn(u64) -> bool) -> Option<u64> {
    let mut high = 1u64;
    while !holds(high) {
        if high >= max_n {
            return None;
        }
        high = (high * 2).min(max_n);
    }
    let mut low = high / 2; // !holds(low) unless low = 0
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if holds(mid) {
            high = mid;
        } else {
            low = mid;
        }
    }
    Some(high)
}

/// The search limit of the power figures: 10^7, or 10^6 for WSR (O(n) per p-value, simulated).
fn search_limit(options: &GateOptions) -> u64 {
    if options.pvalue == PValueMethod::Wsr {
        MAX_WSR_SEARCH_N
    } else {
        MAX_SEARCH_N
    }
}

/// Fresh examples needed to detect a true risk `risk` with [`TARGET_POWER`].
pub fn n_to_detect(risk: f64, options: &GateOptions) -> Option<u64> {
    if risk <= options.delta {
        return None;
    }
    smallest_n(search_limit(options), |n| {
        detection_probability(n, risk, options) >= TARGET_POWER
    })
}

/// Fresh examples needed to certify if the losses kept mean `risk`.
pub fn n_to_certify(risk: f64, options: &GateOptions) -> Option<u64> {
    if risk >= options.delta {
        return None;
    }
    let p_at = |n: u64| -> f64 {
        let count = (n as f64 * risk - 1e-10 * n as f64).ceil().max(0.0) as u64;
        count_p_value(options, n, risk, count, options.delta)
    };
    smallest_n(search_limit(options), |n| p_at(n) <= options.epsilon)
}

/// The power figures of a gate with n fresh examples at observed risk `risk`.
pub fn power_figures(n: u64, risk: f64, options: &GateOptions) -> PowerFigures {
    let detectable_risk = if detection_probability(n, 1.0, options) < TARGET_POWER {
        None
    } else {
        let (mut low, mut high) = (options.delta, 1.0);
        // 30 halvings: the risk to within 1e-9.
        for _ in 0..30 {
            let mid = 0.5 * (low + high);
            if detection_probability(n, mid, options) >= TARGET_POWER {
                high = mid;
            } else {
                low = mid;
            }
        }
        Some(high)
    };
    PowerFigures {
        power: TARGET_POWER,
        detectable_risk,
        n_to_certify_at_observed_risk: n_to_certify(risk, options),
        n_to_detect_twice_delta: n_to_detect((2.0 * options.delta).min(1.0), options),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pvalue: PValueMethod) -> GateOptions {
        GateOptions {
            delta: 0.1,
            epsilon: 0.05,
            alpha: 0.05,
            pvalue,
            seed: 0,
        }
    }

    fn ones(n: usize, k: usize) -> Vec<f64> {
        (0..n).map(|i| f64::from(u8::from(i < k))).collect()
    }

    #[test]
    fn one_example_is_inconclusive_either_way() {
        // n = 1, loss 1 (the example): certify p = 1 (risk 1 > δ); violation p on the
        // flipped loss 0 against 1 − δ = 0.9: HB = min(0.1^1, e·P(Bin(1, 0.9) ≤ 0) = e·0.1) = 0.1,
        // above α = 0.05. Not a pass: inconclusive.
        let test = gate_test(&[1.0], &options(PValueMethod::Hb)).unwrap();
        assert_eq!(test.certify_p_value, 1.0);
        assert!((test.violation_p_value - 0.1).abs() < 1e-12);
        assert_eq!(test.verdict, Verdict::Inconclusive);
        // n = 1, loss 0: certify p = 0.9 (tight Hoeffding (1 − δ)^1), inconclusive.
        let test = gate_test(&[0.0], &options(PValueMethod::Hb)).unwrap();
        assert!((test.certify_p_value - 0.9).abs() < 1e-12);
        assert_eq!(test.violation_p_value, 1.0);
        assert_eq!(test.verdict, Verdict::Inconclusive);
        assert!(gate_test(&[], &options(PValueMethod::Hb)).is_err());
    }

    #[test]
    fn the_middle_is_inconclusive_and_the_ends_decide() {
        // n = 50 at observed risk 0.2: violation p = min(exp(−50·h1(0.8, 0.9)), e·P(Bin(50, 0.9) ≤ 40)).
        let hb = options(PValueMethod::Hb);
        let test = gate_test(&ones(50, 10), &hb).unwrap();
        let kl = 0.8f64 * (0.8f64 / 0.9).ln() + 0.2 * (0.2f64 / 0.1).ln();
        let hoeffding = (-50.0 * kl).exp();
        let bentkus = std::f64::consts::E * ln_binomial_cdf(40, 50, 0.9).exp();
        assert!((test.violation_p_value - hoeffding.min(bentkus)).abs() < 1e-12);
        assert!(test.violation_p_value > 0.05, "{}", test.violation_p_value);
        assert_eq!(test.verdict, Verdict::Inconclusive);
        assert!(test.power.detectable_risk.unwrap() > 0.2);
        assert_eq!(test.power.n_to_certify_at_observed_risk, None);
        // A clear violation: 500 examples at risk 0.25.
        let test = gate_test(&ones(500, 125), &hb).unwrap();
        assert_eq!(test.verdict, Verdict::ViolationDetected);
        assert!(test.risk_lower_bound > 0.1);
        // A clear certification: 500 examples at risk 0.04; certify p = min(exp(−500·h1(0.04, 0.1)), e·P(Bin(500, 0.1) ≤ 20)).
        let test = gate_test(&ones(500, 20), &hb).unwrap();
        let kl = 0.04f64 * (0.04f64 / 0.1).ln() + 0.96 * (0.96f64 / 0.9).ln();
        let expected = (-500.0 * kl)
            .exp()
            .min(std::f64::consts::E * ln_binomial_cdf(20, 500, 0.1).exp());
        assert!((test.certify_p_value - expected).abs() < 1e-15);
        assert_eq!(test.verdict, Verdict::Certified);
        assert!(test.risk_upper_bound < 0.1);
    }

    #[test]
    fn certified_only_when_the_certify_test_rejects() {
        let mut rng = Rng::new(11);
        for pvalue in [PValueMethod::Hb, PValueMethod::Hoeffding, PValueMethod::Wsr] {
            let o = options(pvalue);
            for _ in 0..300 {
                let n = 1 + rng.below(120) as usize;
                let risk = rng.uniform() * 0.3;
                let losses: Vec<f64> = (0..n)
                    .map(|_| f64::from(u8::from(rng.uniform() < risk)))
                    .collect();
                let test = gate_test(&losses, &o).unwrap();
                if test.verdict == Verdict::Certified {
                    assert!(test.certify_p_value <= o.epsilon);
                    assert!(test.violation_p_value > o.alpha);
                }
                if test.certify_p_value > o.epsilon {
                    assert_ne!(test.verdict, Verdict::Certified);
                }
            }
        }
    }

    #[test]
    fn power_figures_match_their_definitions() {
        let o = options(PValueMethod::Binomial);
        // Exact binomial, δ = 0.1, α = 0.05: the detection probability at the named n reaches 0.8
        // for risk 0.2, and one fewer example (the search's bracket) does not.
        let n = n_to_detect(0.2, &o).unwrap();
        assert!(detection_probability(n, 0.2, &o) >= 0.8);
        assert!(detection_probability(n / 2, 0.2, &o) < 0.8);
        assert!((30..400).contains(&n), "{n}");
        // n to certify at 0.05 observed with exact binomial: P(Bin(n, 0.1) ≤ ⌈0.05 n⌉) ≤ 0.05.
        let n = n_to_certify(0.05, &o).unwrap();
        let count = (n as f64 * 0.05).ceil() as u64;
        assert!(ln_binomial_cdf(count, n, 0.1).exp() <= 0.05);
        assert_eq!(n_to_certify(0.1, &o), None);
    }

    #[test]
    fn options_outside_the_unit_interval_are_refused() {
        let good = options(PValueMethod::Hb);
        assert!(good.validate().is_ok());
        for (delta, epsilon, alpha) in [
            (0.0, 0.05, 0.05),
            (1.0, 0.05, 0.05),
            (0.1, 0.0, 0.05),
            (0.1, 1.0, 0.05),
            (0.1, 0.05, 0.0),
            (0.1, 0.05, 1.0),
            (0.1, 0.05, f64::NAN),
        ] {
            let bad = GateOptions {
                delta,
                epsilon,
                alpha,
                ..good
            };
            let error = bad.validate().unwrap_err().to_string();
            assert!(error.contains("strictly between 0 and 1"), "{error}");
            assert!(gate_test(&[0.0; 10], &bad).is_err());
        }
        // The binomial p-value needs 0/1 losses.
        let binomial = options(PValueMethod::Binomial);
        assert!(gate_test(&[0.5, 0.0], &binomial).is_err());
        assert!(gate_test(&[1.0, 0.0], &binomial).is_ok());
    }

    #[test]
    fn verdicts_describe_themselves() {
        assert_eq!(Verdict::Certified.describe(), "certified on fresh data");
        assert_eq!(Verdict::ViolationDetected.describe(), "violation detected");
        assert_eq!(Verdict::Inconclusive.describe(), "inconclusive");
    }

    #[test]
    fn ties_at_the_levels_and_both_rejections() {
        let o = options(PValueMethod::Hb);
        assert_eq!(
            verdict_from_p_values(0.5, 0.05, &o),
            Verdict::ViolationDetected
        );
        assert_eq!(verdict_from_p_values(0.05, 0.5, &o), Verdict::Certified);
        assert_eq!(
            verdict_from_p_values(0.01, 0.01, &o),
            Verdict::ViolationDetected
        );
        assert_eq!(
            verdict_from_p_values(0.0501, 0.0501, &o),
            Verdict::Inconclusive
        );
    }

    #[test]
    fn detection_probability_equals_the_sum_over_counts() {
        // By hand: P(reject) = Σ_k P(Bin(n, r) = k)·[violation p-value of k ones ≤ α].
        for pvalue in [
            PValueMethod::Hb,
            PValueMethod::Binomial,
            PValueMethod::Hoeffding,
        ] {
            let o = options(pvalue);
            for (n, risk) in [(30u64, 0.2), (60, 0.15), (12, 0.5)] {
                let mut expected = 0.0;
                for k in 0..=n {
                    let p = violation_p_value(&ones(n as usize, k as usize), &o);
                    if p <= o.alpha {
                        expected += crate::calibrate::binomial::ln_binomial_pmf(k, n, risk).exp();
                    }
                }
                let got = detection_probability(n, risk, &o);
                assert!(
                    (got - expected).abs() < 1e-9,
                    "{pvalue:?} n={n} r={risk}: {got} vs {expected}"
                );
            }
        }
        assert_eq!(
            detection_probability(0, 0.5, &options(PValueMethod::Hb)),
            0.0
        );
    }

    #[test]
    fn one_example_detects_nothing_and_the_searches_agree_with_brute_force() {
        let o = options(PValueMethod::Hb);
        // n = 1: even risk 1 gives violation p = 0.1 > α.
        let power = power_figures(1, 1.0, &o);
        assert_eq!(power.detectable_risk, None);
        assert_eq!(detection_probability(1, 1.0, &o), 0.0);
        // n to certify at 0.05 with HB, by brute force over n.
        let brute = (1..2000u64)
            .find(|&n| {
                let count = (n as f64 * 0.05 - 1e-10 * n as f64).ceil() as u64;
                pvalues::hoeffding_bentkus_p_value(n, 0.05, count, 0.1) <= 0.05
            })
            .unwrap();
        let searched = n_to_certify(0.05, &o).unwrap();
        let count = (searched as f64 * 0.05 - 1e-10 * searched as f64).ceil() as u64;
        assert!(pvalues::hoeffding_bentkus_p_value(searched, 0.05, count, 0.1) <= 0.05);
        assert!(
            searched >= brute && searched < brute * 2,
            "{searched} vs {brute}"
        );
        // WSR figures exist and are plausible.
        let wsr = options(PValueMethod::Wsr);
        assert!(n_to_certify(0.02, &wsr).is_some_and(|n| n > 10 && n < 5000));
        assert_eq!(spread_sample(10, 3).iter().sum::<f64>(), 3.0);
        assert_eq!(spread_sample(7, 0).iter().sum::<f64>(), 0.0);
        assert_eq!(spread_sample(7, 7).iter().sum::<f64>(), 7.0);
    }

    #[test]
    fn the_interval_brackets_the_observed_risk() {
        let o = options(PValueMethod::Hb);
        for (n, k) in [(20, 0), (100, 7), (300, 60)] {
            let test = gate_test(&ones(n, k), &o).unwrap();
            assert!(test.risk_lower_bound <= test.risk + 1e-12);
            assert!(test.risk_upper_bound >= test.risk - 1e-12);
            // Certified exactly when the upper bound at ε is below δ (HB is continuous enough).
            assert_eq!(
                test.verdict == Verdict::Certified,
                test.risk_upper_bound < o.delta + 1e-9
            );
        }
    }
}
