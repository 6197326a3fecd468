//! The paper's random-split protocol (CALM §4.1: calibrate on a random part, measure the risk
//! on the rest, many times) on recorded losses, as a library call; the CLI adds the plot.

use super::error::PipelineError;
use crate::calibrate::trials::{run_trials, TrialsSummary};
use crate::calibrate::{truncation_check, CalibrationOptions, LossTable};
use crate::record::cost::CostModel;
use crate::record::read_records;
use std::path::PathBuf;

/// Options of [`trials`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrialsOptions {
    /// Records files (CSV or Parquet; shards are combined) covering the whole λ grid.
    pub records: Vec<PathBuf>,
    pub calibration: CalibrationOptions,
    /// Random splits.
    pub runs: usize,
    /// Share of the examples each split calibrates on (the rest is its test part).
    pub calibration_share: f64,
    /// Seed of the splits.
    pub seed: u64,
    /// Price candidates with this cost model [None: mean decoder layers].
    pub cost_model: Option<CostModel>,
    /// Proceed on chains a fixed-sequence sweep cut short (biased optimistic; the summary
    /// carries the warning).
    pub allow_truncated: bool,
}

/// Run the trials: per split, calibrate on the calibration part and measure the selected
/// configuration's risk on the test part; the violation rate estimates P(risk > δ).
pub fn trials(options: &TrialsOptions) -> Result<TrialsSummary, PipelineError> {
    options.calibration.validate()?;
    if options.runs == 0 {
        return Err(PipelineError::invalid("runs", 0, "be at least 1"));
    }
    if !(options.calibration_share > 0.0 && options.calibration_share < 1.0) {
        return Err(PipelineError::invalid(
            "calibration_share",
            options.calibration_share,
            "lie strictly between 0 and 1",
        ));
    }
    let records = read_records(&options.records)?;
    let mut table = LossTable::from_records(&records)?;
    if let Some(cost) = &options.cost_model {
        table = table.with_cost(cost.clone())?;
    }
    let warning = truncation_check(&table, "random-split trials", options.allow_truncated)?;
    let mut summary = run_trials(
        &table,
        &options.calibration,
        options.runs,
        options.calibration_share,
        options.seed,
    )?;
    summary.warning = warning;
    Ok(summary)
}
