//! The calibration output: `thresholds.json` (schema `calm.thresholds`, versioned) and
//! `candidates.csv`, written together and atomically.

use super::{Calibration, CandidateResult, PValueMethod, Procedure, Selection};
use crate::metrics::Metric;
use crate::record::cost::CostModel;
use crate::record::measure::Measure;
use crate::record::run::{ConfigurationRun, ConfigurationTiming, Consistency};
use crate::record::SourceFile;
use crate::util::atomic::write_files_atomically;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const THRESHOLDS_SCHEMA: &str = "calm.thresholds";
/// Version 2: typed run block, the cost model, candidates' cost and cost speed-up.
pub const THRESHOLDS_VERSION: u32 = 2;

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
    /// How selection priced the candidates.
    pub cost_model: CostModel,
    /// How the records were made, when calm ran the model itself (`calibrate --model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
    pub candidates: Vec<CandidateResult>,
}

/// The model run behind a `calibrate --model` calibration: what `check` and `generate` need to
/// replay the certified configuration exactly as it was calibrated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub model: PathBuf,
    /// sha256 of the checkpoint's model.safetensors: the config applies to this model only.
    pub model_sha256: String,
    pub data: PathBuf,
    pub data_sha256: String,
    pub task: Option<String>,
    pub examples: usize,
    pub metric: Metric,
    pub consistency: Consistency,
    pub measures: Vec<Measure>,
    pub taus: Vec<f64>,
    /// The λ grid of each measure (aligned with `measures`).
    pub lambdas: Vec<Vec<f64>>,
    /// With `--lambdas auto`: how the grid was placed, and the examples that placed it (left
    /// out of the records and the test).
    pub grid: Option<GridInfo>,
    /// N, the maximum output length and the horizon of the decaying threshold λ_t: the
    /// certificate holds for decoding with this N.
    pub max_new_tokens: usize,
    /// Decoder-only models: the prompt template the inputs were wrapped in (`{input}`), when
    /// not given as they are; `check` and `generate` use the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_template: Option<String>,
    /// GGUF models: the weights the sweep ran ("quantized", "f32" for de-quantized, "q8_0").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf_weights: Option<String>,
    /// The dtype the sweep computed in, when not f32 ("f16", "bf16"): the gate and `generate`
    /// run the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    pub sweep: SweepInfo,
    /// The selected configuration against the full model on held-out data (`--bench-data`).
    pub benchmark: Option<Benchmark>,
}

/// The data behind an auto λ grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridInfo {
    /// Whether the grid was placed from these examples (`--lambdas auto`); false when they were
    /// only held out (`--grid-share` with a list), to test the same examples as an auto run.
    pub auto: bool,
    pub share: f64,
    pub seed: u64,
    /// λs placed besides λ = 1 (`record::grid::GRID_STEPS`).
    pub steps: usize,
    /// Ids of the grid examples; none of them is in the records.
    pub examples: Vec<String>,
}

/// What the calibration sweep decoded and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepInfo {
    pub configurations_evaluated: usize,
    pub configurations_in_grid: usize,
    pub full_tokens: usize,
    pub full_seconds: f64,
    pub early_tokens: usize,
    pub early_seconds: f64,
    pub configurations: Vec<ConfigurationTiming>,
    pub jobs: usize,
    /// Whether chains stopped at their first failure (fixed-sequence) or covered the grid.
    pub early_stop: bool,
    /// Rows per decoding batch of the timed passes (absent in files from before batching: 1).
    #[serde(default = "one")]
    pub batch_size: usize,
}

fn one() -> usize {
    1
}

/// A held-out benchmark run and the data it ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Benchmark {
    #[serde(flatten)]
    pub run: ConfigurationRun,
    pub data: PathBuf,
    pub data_sha256: String,
}

impl RunInfo {
    /// Refuse a checkpoint other than the one calibrated (sha256 of model.safetensors).
    pub fn require_model(&self, model_sha256: &str, model_dir: &Path, source: &Path) -> Result<()> {
        if model_sha256 != self.model_sha256 {
            bail!(
                "{} is not the model these thresholds were calibrated for (model.safetensors sha256 {} vs {} in {})",
                model_dir.display(),
                model_sha256,
                self.model_sha256,
                source.display()
            );
        }
        Ok(())
    }
}

/// Read a `thresholds.json`: the one reader, which checks the schema name and version.
pub fn read_thresholds(path: &Path) -> Result<ThresholdsFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not JSON (expected a calm thresholds.json)",
            path.display()
        )
    })?;
    let schema = value.get("schema").and_then(|s| s.as_str());
    if schema != Some(THRESHOLDS_SCHEMA) {
        bail!(
            "{}: schema is {}, expected {THRESHOLDS_SCHEMA:?} (not a calm thresholds file)",
            path.display(),
            schema.map_or("missing".to_string(), |s| format!("{s:?}"))
        );
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(version) if version == THRESHOLDS_VERSION as u64 => {}
        Some(version) => bail!(
            "{}: {THRESHOLDS_SCHEMA} version {version} is not supported (this calm reads version {THRESHOLDS_VERSION}); recalibrate with this calm",
            path.display()
        ),
        None => bail!("{}: field `version` is missing", path.display()),
    }
    serde_json::from_value(value).with_context(|| {
        format!(
            "{}: not a valid {THRESHOLDS_SCHEMA} version {THRESHOLDS_VERSION} file",
            path.display()
        )
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    pub records: Vec<SourceFile>,
    pub n: u64,
    pub num_layers: u32,
    pub delta: f64,
    pub epsilon: f64,
    pub pvalue: PValueMethod,
    pub procedure: Procedure,
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
    /// The cost model's full-model cost over this configuration's (an estimate, not a timing).
    pub cost_speedup: f64,
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
                cost_speedup: chosen.cost_speedup,
                reason: format!(
                    "lowest cost per token ({}) among {} certified configurations",
                    calibration.cost.unit,
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
                cost_speedup: 1.0,
                reason: if calibration.certified_count() == 0 {
                    format!(
                        "no configuration was certified at delta {} and epsilon {} with n = {}: run the full model (never exit)",
                        options.delta, options.epsilon, calibration.n
                    )
                } else {
                    format!(
                        "{} configurations were certified at delta {} and epsilon {} with n = {}, but none costs less than the full model ({}): run the full model (never exit)",
                        calibration.certified_count(), options.delta, options.epsilon, calibration.n, calibration.cost.unit
                    )
                },
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
                pvalue: options.pvalue,
                procedure: options.procedure,
                seed: options.seed,
            },
            selected,
            summary: Summary {
                candidates: calibration.candidates.len(),
                chains: calibration.chains,
                certified: calibration.certified_count(),
                level: calibration.level,
            },
            cost_model: calibration.cost.clone(),
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
            String::from("measure,tau,lambda,n,risk,p_value,tested,certified,mean_layers,cost_per_token,cost_speedup\n");
        for c in &self.candidates {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{}\n",
                csv_field(&c.measure),
                csv_number(c.tau),
                csv_number(c.lambda),
                c.n,
                csv_number(c.risk),
                csv_number(c.p_value),
                c.tested,
                c.certified,
                csv_number(c.mean_layers),
                csv_number(c.cost_per_token),
                csv_number(c.cost_speedup)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_csv_quotes_what_needs_quoting_and_reads_back_with_polars() {
        let field = csv_field("odd, \"measure\"\nname");
        assert_eq!(field, "\"odd, \"\"measure\"\"\nname\"");
        assert_eq!(csv_field("state"), "state");
        let dir = std::env::temp_dir().join(format!("calm-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.csv");
        std::fs::write(
            &path,
            format!("measure,lambda\n{field},{}\nstate,0.5\n", csv_number(1e-7)),
        )
        .unwrap();
        let frame = crate::util::table::read_table(&path, "test").unwrap();
        let measures = crate::util::table::text_column(&frame, "measure", &path).unwrap();
        assert_eq!(measures, vec!["odd, \"measure\"\nname", "state"]);
        let lambdas = crate::util::table::text_column(&frame, "lambda", &path).unwrap();
        assert_eq!(lambdas[0].parse::<f64>().unwrap(), 1e-7);
    }
}
