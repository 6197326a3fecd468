//! The calibration output: `thresholds.json` (schema `calm.thresholds`, versioned) and
//! `candidates.csv`, written together and atomically.

use super::{Calibration, CandidateResult, Selection};
use crate::record::SourceFile;
use crate::util::atomic::write_files_atomically;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const THRESHOLDS_SCHEMA: &str = "calm.thresholds";
pub const THRESHOLDS_VERSION: u32 = 1;

/// `thresholds.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdsFile {
    pub schema: String,
    pub version: u32,
    pub calm_version: String,
    pub guarantee: String,
    pub inputs: Inputs,
    pub selected: Selected,
    pub summary: Summary,
    /// How the records were made, when calm ran the model itself (`calibrate --model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<serde_json::Value>,
    pub candidates: Vec<CandidateResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    pub records: Vec<SourceFile>,
    pub n: u64,
    pub num_layers: u32,
    pub delta: f64,
    pub epsilon: f64,
    pub pvalue: String,
    pub procedure: String,
    pub seed: u64,
}

/// The chosen configuration; `never_exit` is the full-model sentinel (not λ = 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selected {
    pub never_exit: bool,
    pub measure: Option<String>,
    pub tau: Option<f64>,
    pub lambda: Option<f64>,
    pub risk: f64,
    pub p_value: Option<f64>,
    pub mean_layers: f64,
    /// num_layers / mean_layers: the decoder-layer reduction (not a wall-clock speed-up).
    pub layer_speedup: f64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub candidates: usize,
    pub chains: usize,
    pub certified: usize,
    pub level: f64,
}

impl ThresholdsFile {
    pub fn new(calibration: &Calibration, sources: &[SourceFile]) -> Self {
        let options = &calibration.options;
        let full_depth = calibration.num_layers as f64;
        let selected = match (calibration.selection, calibration.selected()) {
            (Selection::Candidate(_), Some(chosen)) => Selected {
                never_exit: false,
                measure: Some(chosen.measure.clone()),
                tau: Some(chosen.tau),
                lambda: Some(chosen.lambda),
                risk: chosen.risk,
                p_value: Some(chosen.p_value),
                mean_layers: chosen.mean_layers,
                layer_speedup: full_depth / chosen.mean_layers.max(f64::MIN_POSITIVE),
                reason: format!(
                    "lowest mean layers among {} certified configurations",
                    calibration.certified_count()
                ),
            },
            _ => Selected {
                never_exit: true,
                measure: None,
                tau: None,
                lambda: None,
                risk: 0.0,
                p_value: None,
                mean_layers: full_depth,
                layer_speedup: 1.0,
                reason: format!(
                    "no configuration was certified at delta {} and epsilon {} with n = {}: run the full model (never exit)",
                    options.delta, options.epsilon, calibration.n
                ),
            },
        };
        ThresholdsFile {
            schema: THRESHOLDS_SCHEMA.to_string(),
            version: THRESHOLDS_VERSION,
            calm_version: env!("CARGO_PKG_VERSION").to_string(),
            guarantee: format!(
                "P(risk <= {}) >= {} over the draw of calibration data, for inputs exchangeable with the {} calibration examples",
                options.delta,
                1.0 - options.epsilon,
                calibration.n
            ),
            inputs: Inputs {
                records: sources.to_vec(),
                n: calibration.n,
                num_layers: calibration.num_layers,
                delta: options.delta,
                epsilon: options.epsilon,
                pvalue: options.pvalue.name().to_string(),
                procedure: options.procedure.name().to_string(),
                seed: options.seed,
            },
            selected,
            summary: Summary {
                candidates: calibration.candidates.len(),
                chains: calibration.chains,
                certified: calibration.certified_count(),
                level: calibration.level,
            },
            run: None,
            candidates: calibration.candidates.clone(),
        }
    }

    pub fn to_json(&self) -> Result<String> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        Ok(text)
    }

    /// The candidate table as CSV, same columns as the JSON table.
    pub fn candidates_csv(&self) -> String {
        let mut out =
            String::from("measure,tau,lambda,n,risk,p_value,tested,certified,mean_layers\n");
        for c in &self.candidates {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\n",
                csv_field(&c.measure),
                csv_number(c.tau),
                csv_number(c.lambda),
                c.n,
                csv_number(c.risk),
                csv_number(c.p_value),
                c.tested,
                c.certified,
                csv_number(c.mean_layers)
            ));
        }
        out
    }

    /// Write `thresholds.json` and `candidates.csv` into `dir`, both or neither.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        self.write_with(dir, Vec::new())
    }

    /// Write `thresholds.json`, `candidates.csv` and `more` files into `dir`, all or none.
    pub fn write_with(&self, dir: &Path, more: Vec<(&str, Vec<u8>)>) -> Result<Vec<PathBuf>> {
        let mut files = vec![
            ("thresholds.json", self.to_json()?.into_bytes()),
            ("candidates.csv", self.candidates_csv().into_bytes()),
        ];
        files.extend(more);
        write_files_atomically(dir, &files)
    }
}

/// Shortest round-trip text of a number; scientific notation for very small or large magnitudes.
fn csv_number(value: f64) -> String {
    if value != 0.0 && (value.abs() < 1e-4 || value.abs() >= 1e16) {
        format!("{value:e}")
    } else {
        format!("{value}")
    }
}

/// Quote a CSV field when it holds a separator, quote or newline.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
