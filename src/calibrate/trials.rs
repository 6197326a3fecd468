//! The CALM paper's validity protocol (§5, "50 random trials"): split the examples at random into
//! calibration and test parts, calibrate on the first, measure the selected configuration's
//! risk on the second. Over many trials the share whose test risk exceeds δ should be about ε at
//! most (the test part is finite, so its risk is itself an estimate).

use super::{calibrate, CalibrationOptions, LossTable, Selection};
use crate::util::rng::Rng;
use anyhow::{bail, Result};
use serde::Serialize;

/// One trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    /// "measure tau lambda" or "never exit".
    pub selected: String,
    pub calibration_risk: f64,
    pub test_risk: f64,
    pub mean_layers: f64,
    pub violated: bool,
}

/// All trials and their summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialsSummary {
    pub runs: usize,
    pub calibration_examples: usize,
    pub test_examples: usize,
    pub delta: f64,
    pub epsilon: f64,
    pub violation_rate: f64,
    pub mean_test_risk: f64,
    pub mean_layers: f64,
    pub never_exit_runs: usize,
    /// Set when the records' chains were cut short (or may have been) and the trials ran anyway:
    /// their violation rate is then biased optimistic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    pub trials: Vec<Trial>,
}

/// Run `runs` random splits with `calibration_share` of the examples for calibration.
pub fn run_trials(
    table: &LossTable,
    options: &CalibrationOptions,
    runs: usize,
    calibration_share: f64,
    seed: u64,
) -> Result<TrialsSummary> {
    let n = table.examples.len();
    let calibration_n = (n as f64 * calibration_share).round() as usize;
    if runs == 0
        || !(0.0..1.0).contains(&calibration_share)
        || calibration_n == 0
        || calibration_n >= n
    {
        bail!("trials need at least one run and a calibration share that leaves examples on both sides (n = {n})");
    }
    let mut rng = Rng::new(seed);
    let mut trials = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let (calibration_part, test_part) = order.split_at(calibration_n);
        let mut calibration_ids = calibration_part.to_vec();
        calibration_ids.sort_unstable();
        let mut test_ids = test_part.to_vec();
        test_ids.sort_unstable();
        let result = calibrate(&table.subset(&calibration_ids), options)?;
        let trial = match result.selection {
            Selection::Candidate(j) => {
                let chosen = &result.candidates[j];
                let test = table.candidates[j].subset(&test_ids);
                let test_risk = test.losses.iter().sum::<f64>() / test.losses.len() as f64;
                let mean_layers = test.mean_layers;
                Trial {
                    selected: format!(
                        "{} tau={} lambda={}",
                        chosen.measure, chosen.tau, chosen.lambda
                    ),
                    calibration_risk: chosen.risk,
                    test_risk,
                    mean_layers,
                    violated: test_risk > options.delta,
                }
            }
            Selection::NeverExit => Trial {
                selected: "never exit".into(),
                calibration_risk: 0.0,
                test_risk: 0.0,
                mean_layers: table.num_layers as f64,
                violated: false,
            },
        };
        trials.push(trial);
    }
    let runs_f = runs as f64;
    Ok(TrialsSummary {
        runs,
        calibration_examples: calibration_n,
        test_examples: n - calibration_n,
        delta: options.delta,
        epsilon: options.epsilon,
        violation_rate: trials.iter().filter(|t| t.violated).count() as f64 / runs_f,
        mean_test_risk: trials.iter().map(|t| t.test_risk).sum::<f64>() / runs_f,
        mean_layers: trials.iter().map(|t| t.mean_layers).sum::<f64>() / runs_f,
        never_exit_runs: trials.iter().filter(|t| t.selected == "never exit").count(),
        warning: None,
        trials,
    })
}
