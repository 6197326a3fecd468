//! The CI gate as a library call: run a certified configuration on fresh labelled data and give
//! one of three verdicts (certified on fresh data, violation detected, inconclusive; see
//! `calibrate::check`), plus a layer-regression check with its sampling error.

use super::error::PipelineError;
use crate::calibrate::check::{gate_test, GateOptions, GateTest, Verdict};
use crate::calibrate::thresholds::{RunInfo, Selected, ThresholdsFile};
use crate::data::read_task_examples;
use crate::model::{Checkpoint, LoadOptions, Measure, PromptFormat};
use crate::pipeline::replay::{encode_examples, replay_configuration, Configuration};
use crate::util::sha256_file;
use candle_core::{DType, Device};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Options of [`check`]; [`CheckOptions::new`] validates them.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOptions {
    /// Level ε of the certify test (H: risk > δ) [None: the calibration's ε].
    pub epsilon: Option<f64>,
    /// Level α of the violation test (H′: risk ≤ δ), separate from ε.
    pub alpha: f64,
    /// Flag a layer regression when mean layers exceed the calibrated value by more than this
    /// fraction, beyond the one-sided level-α margin of their standard error.
    pub max_layer_regression: f64,
    /// The gate passes only on "certified on fresh data".
    pub require_certified: bool,
    /// Parallel decoders (one core each).
    pub jobs: usize,
    /// Use at most this many examples (the first ones of the calibrated task).
    pub max_examples: Option<usize>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            epsilon: None,
            alpha: 0.05,
            max_layer_regression: 0.10,
            require_certified: false,
            jobs: 2,
            max_examples: None,
        }
    }
}

impl CheckOptions {
    /// The default options with these levels, validated.
    pub fn new(
        epsilon: Option<f64>,
        alpha: f64,
        max_layer_regression: f64,
        jobs: usize,
    ) -> Result<Self, PipelineError> {
        let options = CheckOptions {
            epsilon,
            alpha,
            max_layer_regression,
            jobs,
            ..CheckOptions::default()
        };
        options.validate()?;
        Ok(options)
    }

    pub fn validate(&self) -> Result<(), PipelineError> {
        let open_unit = |v: f64| v > 0.0 && v < 1.0;
        if let Some(e) = self.epsilon.filter(|&e| !open_unit(e)) {
            return Err(PipelineError::invalid(
                "epsilon",
                e,
                "lie strictly between 0 and 1",
            ));
        }
        if !open_unit(self.alpha) {
            return Err(PipelineError::invalid(
                "alpha",
                self.alpha,
                "lie strictly between 0 and 1",
            ));
        }
        if self.max_layer_regression.is_nan() || self.max_layer_regression < 0.0 {
            return Err(PipelineError::invalid(
                "max_layer_regression",
                self.max_layer_regression,
                "be ≥ 0",
            ));
        }
        if self.jobs == 0 {
            return Err(PipelineError::invalid("jobs", self.jobs, "be at least 1"));
        }
        Ok(())
    }
}

/// Mean layers per token on the fresh data against the calibrated value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerCheck {
    pub mean_layers: f64,
    /// Standard error of the token-weighted mean (ratio estimator, delta method).
    pub standard_error: f64,
    pub calibrated_mean_layers: f64,
    pub max_layer_regression: f64,
    /// calibrated · (1 + max_layer_regression) + z_{1−α} · standard error.
    pub threshold: f64,
    pub regressed: bool,
}

/// The gate's result (`check.json`).
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub schema: &'static str,
    pub version: u32,
    pub thresholds: PathBuf,
    pub thresholds_sha256: String,
    pub data: PathBuf,
    pub data_sha256: String,
    pub model_sha256: String,
    pub configuration: String,
    pub never_exit: bool,
    pub test: GateTest,
    pub layers: LayerCheck,
    /// Wall-clock decoding speed on these data (one decoder per job): full model and the
    /// certified configuration (0 for never exit, which is the full model).
    pub full_tokens_per_second: f64,
    pub selected_tokens_per_second: f64,
    pub wall_clock_speedup: f64,
    /// The verdict, then whether the layers regressed, decide `passed`.
    pub verdict: Verdict,
    pub passed: bool,
}

/// Standard normal quantile.
fn normal_quantile(p: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::standard().inverse_cdf(p)
}

/// Token-weighted mean layers and its standard error: m = Σ l_i t_i / Σ t_i, and by the delta
/// method Var(m) ≈ Σ (t_i (l_i − m))² / (Σ t_i)².
pub fn mean_layers_with_error(layers: &[f64], tokens: &[u32]) -> (f64, f64) {
    let mean = crate::record::mean_layers_per_token(layers, tokens);
    let total: f64 = tokens.iter().map(|&t| t as f64).sum();
    if total == 0.0 || layers.len() < 2 {
        return (mean, 0.0);
    }
    let n = layers.len() as f64;
    let squares: f64 = layers
        .iter()
        .zip(tokens)
        .map(|(&l, &t)| (t as f64 * (l - mean)).powi(2))
        .sum();
    (mean, (squares * n / (n - 1.0)).sqrt() / total)
}

/// How the calibration recorded in `run` (read from `source`) loaded its model: the GGUF
/// weight type and the compute dtype (f32 when not recorded).
pub fn run_load_options(
    run: &RunInfo,
    source: &Path,
) -> Result<(LoadOptions, DType), PipelineError> {
    let dtype = match run.dtype.as_deref() {
        None => DType::F32,
        Some(name) => crate::model::dtype_from_name(name).map_err(|e| {
            PipelineError::Other(e.context(format!("{}: run.dtype", source.display())))
        })?,
    };
    let options = LoadOptions::from_gguf_weights(run.gguf_weights.as_deref()).map_err(|e| {
        PipelineError::Other(e.context(format!("{}: run.gguf_weights", source.display())))
    })?;
    Ok((options, dtype))
}

/// The prompt format the calibration recorded in `run` used.
pub fn run_prompt_format(run: &RunInfo) -> PromptFormat {
    match &run.prompt_template {
        Some(t) => PromptFormat::Template(t.clone()),
        None => PromptFormat::Plain,
    }
}

/// The model a calibration ran (`model`, or the path it recorded), loaded as it ran: its
/// GGUF weight type, compute dtype and prompt format, on `device`.
pub fn load_calibrated_model(
    thresholds: &ThresholdsFile,
    source: &Path,
    model: Option<&Path>,
    device: &Device,
) -> Result<Checkpoint, PipelineError> {
    let run = thresholds
        .run
        .as_ref()
        .ok_or_else(|| PipelineError::NoModelRun(source.to_path_buf()))?;
    let path = model.map_or_else(|| run.model.clone(), Path::to_path_buf);
    let (options, dtype) = run_load_options(run, source)?;
    let mut checkpoint = Checkpoint::load_with(&path, device, dtype, &options)?;
    checkpoint.prompt = run_prompt_format(run);
    run.require_model(&checkpoint.model_sha256, &path, source)?;
    Ok(checkpoint)
}

/// Run the certified configuration of `config` (the thresholds file read from `thresholds`) on the fresh
/// labelled examples of `data` with `checkpoint` (the calibrated model: its sha256 must
/// match), and test its risk: certify (H: risk > δ at level ε) and detect a violation
/// (H′: risk ≤ δ at level α), with the mean layers against the calibrated value.
pub fn check(
    config: &ThresholdsFile,
    thresholds: &Path,
    data: &Path,
    checkpoint: &Checkpoint,
    options: &CheckOptions,
) -> Result<CheckReport, PipelineError> {
    options.validate()?;
    let Some(run) = &config.run else {
        return Err(PipelineError::NoModelRun(thresholds.to_path_buf()));
    };
    let gate = GateOptions {
        delta: config.inputs.delta,
        epsilon: options.epsilon.unwrap_or(config.inputs.epsilon),
        alpha: options.alpha,
        pvalue: config.inputs.pvalue,
        seed: config.inputs.seed,
    };
    gate.validate()?;
    run.require_model(&checkpoint.model_sha256, &checkpoint.dir, thresholds)?;

    let examples = read_task_examples(data, run.task.as_deref(), options.max_examples)?;
    if examples.is_empty() {
        return Err(PipelineError::NoExamples {
            data: data.to_path_buf(),
            task: run.task.clone(),
        });
    }
    let sweep_examples = encode_examples(checkpoint, &examples, data)?;

    let selected = &config.selected;
    let depth = checkpoint.model.num_decoder_layers() as f64;
    let certified = selected_configuration(selected, &thresholds.display().to_string())?;
    let (configuration, losses, layers, tokens, speeds) = match certified {
        Some(certified) => {
            let Configuration {
                measure,
                tau,
                lambda,
            } = certified;
            let metric = run.metric;
            let score = |p: &str, r: &str| metric.score(p, r);
            let replay = replay_configuration(
                checkpoint,
                &sweep_examples,
                certified,
                run.consistency,
                &score,
                run.max_new_tokens,
                options.jobs,
            )?;
            (
                format!("{} tau={tau} lambda={lambda}", measure.name()),
                replay.losses,
                replay.example_layers,
                replay.example_tokens,
                (replay.full_tokens_per_second, replay.tokens_per_second),
            )
        }
        // The full model's consistency loss is 0 by construction.
        None => (
            "never exit (full model)".to_string(),
            vec![0.0; sweep_examples.len()],
            vec![depth; sweep_examples.len()],
            vec![1; sweep_examples.len()],
            (0.0, 0.0),
        ),
    };
    let test = gate_test(&losses, &gate)?;
    let (mean_layers, standard_error) = mean_layers_with_error(&layers, &tokens);
    let threshold = selected.mean_layers * (1.0 + options.max_layer_regression)
        + normal_quantile(1.0 - gate.alpha) * standard_error;
    let layers = LayerCheck {
        mean_layers,
        standard_error,
        calibrated_mean_layers: selected.mean_layers,
        max_layer_regression: options.max_layer_regression,
        threshold,
        regressed: mean_layers > threshold,
    };
    let verdict = test.verdict;
    let passed = verdict != Verdict::ViolationDetected
        && !layers.regressed
        && (!options.require_certified || verdict == Verdict::Certified);
    Ok(CheckReport {
        schema: "calm.check",
        version: 2,
        thresholds: thresholds.to_path_buf(),
        thresholds_sha256: sha256_file(thresholds)?,
        data: data.to_path_buf(),
        data_sha256: sha256_file(data)?,
        model_sha256: checkpoint.model_sha256.clone(),
        configuration,
        never_exit: certified.is_none(),
        test,
        layers,
        full_tokens_per_second: speeds.0,
        selected_tokens_per_second: speeds.1,
        wall_clock_speedup: if speeds.0 > 0.0 {
            speeds.1 / speeds.0
        } else {
            1.0
        },
        verdict,
        passed,
    })
}

/// The selected (measure, τ, λ) of a thresholds file, or None for the never-exit sentinel;
/// `source` names the thresholds in the error for a measure this build does not know.
pub fn selected_configuration(
    selected: &Selected,
    source: &str,
) -> Result<Option<Configuration>, PipelineError> {
    match (&selected.measure, selected.tau, selected.lambda) {
        (Some(name), Some(tau), Some(lambda)) if !selected.never_exit => {
            let measure = Measure::from_name(name)
                .ok_or_else(|| anyhow::anyhow!("{source}: unknown measure {name:?}"))?;
            Ok(Some(Configuration {
                measure,
                tau,
                lambda,
            }))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_error_of_the_token_weighted_mean() {
        // Equal tokens: the plain standard error of the mean, s/√n.
        let (mean, se) = mean_layers_with_error(&[2.0, 4.0, 6.0], &[5, 5, 5]);
        assert!((mean - 4.0).abs() < 1e-12);
        assert!((se - (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_layers_with_error(&[3.0], &[7]), (3.0, 0.0));
        assert!((normal_quantile(0.95) - 1.6448536269514722).abs() < 1e-9);
    }

    #[test]
    fn options_are_validated_without_flag_names() {
        assert!(CheckOptions::new(None, 0.05, 0.1, 2).is_ok());
        let error = CheckOptions::new(Some(1.5), 0.05, 0.1, 2).unwrap_err();
        assert_eq!(
            error.to_string(),
            "epsilon must lie strictly between 0 and 1 (got 1.5)"
        );
        assert!(matches!(
            CheckOptions::new(None, 0.05, f64::NAN, 2),
            Err(PipelineError::InvalidOption {
                name: "max_layer_regression",
                ..
            })
        ));
        assert!(CheckOptions::new(None, 0.0, 0.1, 2).is_err());
        assert!(CheckOptions::new(None, 0.05, 0.1, 0).is_err());
    }
}
