//! Monte-Carlo validity and power of the Learn-then-Test engine.
//!
//! Synthetic loss tables with a known true risk per candidate: over many repetitions the rate of
//! certifying (or selecting) a configuration whose true risk exceeds δ must stay ≤ ε within
//! sampling error, for every p-value and procedure; and with enough data the selection must reach
//! the best configuration whose true risk is ≤ δ.

use calm::calibrate::pvalues::{
    bentkus_p_value, binomial_p_value, hoeffding_bentkus_p_value, hoeffding_p_value, wsr_p_value,
};
use calm::calibrate::{
    calibrate, CalibrationOptions, Candidate, LossStats, LossTable, PValueMethod, Procedure,
    Selection,
};
use calm::util::rng::Rng;

const DELTA: f64 = 0.1;
const EPSILON: f64 = 0.1;

/// Risks per λ step (λ from 1 down): several configurations sit just above δ, where an invalid
/// p-value or procedure would certify them too often.
const STRESS_RISKS: [f64; 12] = [
    0.0, 0.02, 0.05, 0.08, 0.095, 0.0999, 0.1005, 0.101, 0.102, 0.104, 0.11, 0.15,
];

/// Loss shape: 0/1 (risk consistency) or fractional (textual distance).
#[derive(Clone, Copy, Debug)]
enum Shape {
    Binary,
    Fractional,
}

/// A table of `chains` measures × risks.len() lambdas with monotone coupled losses: example i has
/// one uniform u_i per chain and loss_j = 1[u_i < r_j] (times an independent severity in (0, 1]
/// with mean 1/2 for fractional losses, with the indicator at 2·r_j so the mean stays r_j).
fn synthetic_table(
    rng: &mut Rng,
    n: usize,
    risks: &[f64],
    chains: usize,
    shape: Shape,
) -> LossTable {
    let mut candidates = Vec::new();
    for chain in 0..chains {
        let u: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
        let severity: Vec<f64> = (0..n).map(|_| 1.0 - rng.uniform()).collect();
        for (j, &risk) in risks.iter().enumerate() {
            let losses = (0..n)
                .map(|i| match shape {
                    Shape::Binary => f64::from(u8::from(u[i] < risk)),
                    Shape::Fractional => {
                        if u[i] < 2.0 * risk {
                            severity[i]
                        } else {
                            0.0
                        }
                    }
                })
                .collect();
            candidates.push(Candidate {
                measure: format!("m{chain}"),
                tau: 0.0,
                lambda: 1.0 - j as f64 / risks.len() as f64,
                losses,
                layers: vec![8.0 - j as f64 * 0.5; n],
                tokens: vec![10; n],
                mean_layers: 8.0 - j as f64 * 0.5,
                chain_complete: Some(true),
            });
        }
    }
    LossTable {
        examples: (0..n).map(|i| format!("{i:05}")).collect(),
        num_layers: 8,
        candidates,
        cost: calm::record::cost::CostModel::layers_only(8),
    }
}

struct Rates {
    fwer: f64,
    selection: f64,
}

fn violation_rates(
    pvalue: PValueMethod,
    procedure: Procedure,
    shape: Shape,
    n: usize,
    reps: usize,
    seed: u64,
) -> Rates {
    let mut rng = Rng::new(seed);
    let mut any_violation = 0usize;
    let mut selected_violation = 0usize;
    for rep in 0..reps {
        let table = synthetic_table(&mut rng, n, &STRESS_RISKS, 2, shape);
        let options = CalibrationOptions {
            delta: DELTA,
            epsilon: EPSILON,
            pvalue,
            procedure,
            seed: rep as u64,
        };
        let result = calibrate(&table, &options).expect("calibration runs");
        let true_risk = |index: usize| STRESS_RISKS[index % STRESS_RISKS.len()];
        if result
            .candidates
            .iter()
            .enumerate()
            .any(|(j, c)| c.certified && true_risk(j) > DELTA)
        {
            any_violation += 1;
        }
        if let Selection::Candidate(j) = result.selection {
            if true_risk(j) > DELTA {
                selected_violation += 1;
            }
        }
    }
    Rates {
        fwer: any_violation as f64 / reps as f64,
        selection: selected_violation as f64 / reps as f64,
    }
}

/// ε plus three binomial standard errors of a rate estimated from `reps` repetitions.
fn tolerance(reps: usize) -> f64 {
    EPSILON + 3.0 * (EPSILON * (1.0 - EPSILON) / reps as f64).sqrt()
}

fn check_validity(pvalue: PValueMethod, shape: Shape) {
    let reps = 1500;
    for (k, procedure) in [
        Procedure::FixedSequence,
        Procedure::Bonferroni,
        Procedure::Holm,
    ]
    .into_iter()
    .enumerate()
    {
        let rates = violation_rates(pvalue, procedure, shape, 300, reps, 1000 + k as u64);
        eprintln!(
            "{pvalue:?} {procedure:?} {shape:?}: violation rate {:.4}, selected {:.4}",
            rates.fwer, rates.selection
        );
        assert!(
            rates.fwer <= tolerance(reps) && rates.selection <= rates.fwer,
            "{pvalue:?} {procedure:?} {shape:?}: violation rate {} (selected {}) exceeds epsilon {EPSILON}",
            rates.fwer,
            rates.selection
        );
    }
}

#[test]
fn hb_controls_the_error_rate() {
    check_validity(PValueMethod::Hb, Shape::Binary);
    check_validity(PValueMethod::Hb, Shape::Fractional);
}

#[test]
fn binomial_controls_the_error_rate() {
    check_validity(PValueMethod::Binomial, Shape::Binary);
}

#[test]
fn bentkus_and_hoeffding_control_the_error_rate() {
    check_validity(PValueMethod::Bentkus, Shape::Binary);
    check_validity(PValueMethod::Bentkus, Shape::Fractional);
    check_validity(PValueMethod::Hoeffding, Shape::Fractional);
}

#[test]
fn wsr_controls_the_error_rate() {
    check_validity(PValueMethod::Wsr, Shape::Binary);
    check_validity(PValueMethod::Wsr, Shape::Fractional);
}

#[test]
fn the_harness_detects_an_invalid_rule() {
    // Control: certifying whenever R̂ ≤ δ (no correction) must show up as a violation rate far
    // above ε, otherwise the validity tests above would prove nothing.
    let mut rng = Rng::new(5);
    let reps = 400;
    let mut violations = 0;
    for _ in 0..reps {
        let table = synthetic_table(&mut rng, 300, &STRESS_RISKS, 1, Shape::Binary);
        let plug_in_violation = table.candidates.iter().enumerate().any(|(j, c)| {
            LossStats::from_losses(&c.losses).risk <= DELTA && STRESS_RISKS[j] > DELTA
        });
        violations += usize::from(plug_in_violation);
    }
    let rate = violations as f64 / reps as f64;
    assert!(
        rate > 3.0 * tolerance(reps),
        "plug-in rule violation rate {rate}"
    );
}

/// Every p-value is super-uniform at the boundary of the null (true risk exactly δ):
/// P(p ≤ α) ≤ α, including tiny n.
#[test]
fn p_values_are_super_uniform_at_the_null_boundary() {
    let reps = 20_000;
    let mut rng = Rng::new(77);
    for &n in &[1usize, 2, 5, 30, 200] {
        for shape in [Shape::Binary, Shape::Fractional] {
            let mut p_values: Vec<Vec<f64>> = vec![Vec::new(); 5];
            for _ in 0..reps {
                let losses: Vec<f64> = (0..n)
                    .map(|_| match shape {
                        Shape::Binary => f64::from(u8::from(rng.uniform() < DELTA)),
                        Shape::Fractional => {
                            // Mean δ: indicator at 2δ times a uniform severity.
                            if rng.uniform() < 2.0 * DELTA {
                                rng.uniform()
                            } else {
                                0.0
                            }
                        }
                    })
                    .collect();
                let s = LossStats::from_losses(&losses);
                p_values[0].push(hoeffding_bentkus_p_value(
                    s.n,
                    s.risk,
                    s.bentkus_count,
                    DELTA,
                ));
                p_values[1].push(hoeffding_p_value(s.n, s.risk, DELTA));
                p_values[2].push(bentkus_p_value(s.n, s.bentkus_count, DELTA));
                p_values[3].push(wsr_p_value(&losses, DELTA, 0.1));
                p_values[4].push(if s.binary {
                    binomial_p_value(s.n, s.bentkus_count, DELTA)
                } else {
                    1.0
                });
            }
            for (method, values) in ["hb", "hoeffding", "bentkus", "wsr", "binomial"]
                .iter()
                .zip(&p_values)
            {
                for &alpha in &[0.01, 0.05, 0.1, 0.2, 0.5] {
                    let rate = values.iter().filter(|&&p| p <= alpha).count() as f64 / reps as f64;
                    let slack = 3.0 * (alpha * (1.0 - alpha) / reps as f64).sqrt();
                    assert!(
                        rate <= alpha + slack,
                        "{method} n={n} {shape:?}: P(p <= {alpha}) = {rate}"
                    );
                }
            }
        }
    }
}

#[test]
fn with_enough_data_the_selection_reaches_the_best_safe_lambda() {
    // Best safe configuration: index 5 (risk 0.09); index 6 (0.11) is unsafe.
    let risks = [0.0, 0.01, 0.03, 0.05, 0.07, 0.09, 0.11, 0.13, 0.2];
    let mut rng = Rng::new(9);
    let reps = 60;
    for pvalue in [PValueMethod::Hb, PValueMethod::Binomial, PValueMethod::Wsr] {
        let mut hits = 0;
        for rep in 0..reps {
            let table = synthetic_table(&mut rng, 20_000, &risks, 1, Shape::Binary);
            let options = CalibrationOptions {
                delta: DELTA,
                epsilon: 0.05,
                pvalue,
                procedure: Procedure::FixedSequence,
                seed: rep,
            };
            let result = calibrate(&table, &options).expect("calibration runs");
            assert_ne!(
                result.selection,
                Selection::Candidate(6),
                "{pvalue:?} picked an unsafe lambda"
            );
            hits += usize::from(result.selection == Selection::Candidate(5));
        }
        assert!(
            hits >= reps as usize * 9 / 10,
            "{pvalue:?}: best lambda selected {hits}/{reps}"
        );
    }
}
