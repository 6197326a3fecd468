//! The quality-vs-speed frontier: the same records recalibrated at each risk bound δ, with the
//! same p-value, procedure, ε and cost model. Row δ = D is exactly what
//! `calm calibrate --records … --cost-model thresholds.json --delta D` selects. A report product: `thresholds.json` keeps the
//! configuration of the requested δ.

use super::{calibrate, CalibrationOptions, LossTable, Selection};
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// The risk bounds of the frontier table (0.01 to 0.5).
pub const FRONTIER_DELTAS: [f64; 12] = [
    0.01, 0.02, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5,
];

/// One row of the frontier: what calibration at `delta` selects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontierPoint {
    pub delta: f64,
    /// The selected (measure, τ, λ); None for never exit.
    pub measure: Option<String>,
    pub tau: Option<f64>,
    pub lambda: Option<f64>,
    /// Calibration risk of the selection (0 for never exit).
    pub risk: f64,
    /// Mean layers per token of the selection on the calibration examples (L for never exit).
    pub mean_layers: f64,
    /// The cost model's full-model cost over the selection's (1 for never exit).
    pub cost_speedup: f64,
    pub certified: usize,
    /// Held-out measurements of the selection at batch 1, when a model run made them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<HeldOut>,
}

/// The selection replayed on held-out data against the full model, one decoder per job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    pub examples: usize,
    pub risk: f64,
    pub mean_layers: f64,
    pub wall_clock_speedup: f64,
}

impl FrontierPoint {
    /// "measure tau=… lambda=…" or "never exit".
    pub fn label(&self) -> String {
        match (&self.measure, self.tau, self.lambda) {
            (Some(m), Some(t), Some(l)) => format!("{m} tau={t} lambda={l}"),
            _ => "never exit".to_string(),
        }
    }
}

/// Calibrate `table` at every δ of `deltas` with the rest of `options` unchanged.
pub fn frontier(
    table: &LossTable,
    options: &CalibrationOptions,
    deltas: &[f64],
) -> Result<Vec<FrontierPoint>> {
    let depth = table.num_layers as f64;
    deltas
        .iter()
        .map(|&delta| {
            let result = calibrate(table, &CalibrationOptions { delta, ..*options })?;
            let certified = result.certified_count();
            Ok(match (result.selection, result.selected()) {
                (Selection::Candidate(_), Some(c)) => FrontierPoint {
                    delta,
                    measure: Some(c.measure.clone()),
                    tau: Some(c.tau),
                    lambda: Some(c.lambda),
                    risk: c.risk,
                    mean_layers: c.mean_layers,
                    cost_speedup: c.cost_speedup,
                    certified,
                    held_out: None,
                },
                _ => FrontierPoint {
                    delta,
                    measure: None,
                    tau: None,
                    lambda: None,
                    risk: 0.0,
                    mean_layers: depth,
                    cost_speedup: 1.0,
                    certified,
                    held_out: None,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::{PValueMethod, Procedure};
    use crate::record::{simulate_records, SimulationSpec};

    #[test]
    fn each_row_is_the_calibration_at_its_delta_and_speed_grows_with_delta() {
        let records = simulate_records(&SimulationSpec::grid(800, 10, 3));
        let table = LossTable::from_records(&records).unwrap();
        let options = CalibrationOptions {
            delta: 0.1,
            epsilon: 0.05,
            pvalue: PValueMethod::Hb,
            procedure: Procedure::FixedSequence,
            seed: 0,
        };
        let rows = frontier(&table, &options, &FRONTIER_DELTAS).unwrap();
        assert_eq!(rows.len(), FRONTIER_DELTAS.len());
        for row in &rows {
            let direct = calibrate(
                &table,
                &CalibrationOptions {
                    delta: row.delta,
                    ..options
                },
            )
            .unwrap();
            assert_eq!(direct.selected().map(|c| c.lambda), row.lambda);
            assert_eq!(direct.certified_count(), row.certified);
        }
        // A larger δ certifies a superset here (fixed sequence on monotone chains), so the
        // selected cost never rises.
        for pair in rows.windows(2) {
            assert!(pair[1].cost_speedup >= pair[0].cost_speedup - 1e-12);
        }
        let last = rows.last().unwrap();
        assert!(last.cost_speedup > rows[0].cost_speedup);
        assert!(last.label().contains(" tau=") && last.label().contains(" lambda="));
    }
}
