//! The certified configuration of a `thresholds.json`, as the decoders need it.

use crate::calibrate::thresholds::Selected;
use crate::model::Measure;
use crate::record::replay::Configuration;
use anyhow::{Context, Result};

/// The selected (measure, τ, λ), or None for the never-exit sentinel; `source` names the
/// thresholds in the error for a measure this build does not know.
pub fn selected_configuration(selected: &Selected, source: &str) -> Result<Option<Configuration>> {
    match (&selected.measure, selected.tau, selected.lambda) {
        (Some(name), Some(tau), Some(lambda)) if !selected.never_exit => {
            let measure = Measure::from_name(name)
                .with_context(|| format!("{source}: unknown measure {name:?}"))?;
            Ok(Some(Configuration {
                measure,
                tau,
                lambda,
            }))
        }
        _ => Ok(None),
    }
}
