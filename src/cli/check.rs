//! `calm check`: the CI gate. Runs the certified configuration on fresh labelled data and fails
//! when the data reject the guarantee or mean layers regress.

use super::calibrate_model::parse_metric;
use super::selected::selected_configuration;
use super::EXIT_NEGATIVE;
use crate::calibrate::check::{test_guarantee, GuaranteeTest};
use crate::calibrate::thresholds::ThresholdsFile;
use crate::calibrate::{CalibrationOptions, PValueMethod, Procedure};
use crate::data::read_task_examples;
use crate::model::Checkpoint;
use crate::record::replay::{encode_examples, replay_configuration, Configuration};
use crate::record::sweep::Consistency;
use crate::util::atomic::write_file_atomically;
use crate::util::sha256_file;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 the guarantee holds, 1 violated (or layers regressed), 2 bad input.\n\
Example:\n  calm check --thresholds runs/modernize/thresholds.json --data datasets/bible/test.jsonl.gz"
)]
pub struct CheckArgs {
    /// A thresholds.json written by `calm calibrate --model`.
    #[arg(long, value_name = "FILE")]
    pub thresholds: PathBuf,
    /// Fresh labelled examples (JSONL or JSONL.gz), not used for calibration.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Checkpoint directory [default: the one recorded in the thresholds]; its sha256 must match.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    #[arg(long)]
    pub max_examples: Option<usize>,
    /// Fail when mean layers exceed the calibrated value by more than this fraction.
    #[arg(long, default_value_t = 0.10)]
    pub max_layer_regression: f64,
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Where to write check.json [default: next to the thresholds].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct CheckReport {
    schema: &'static str,
    version: u32,
    thresholds: PathBuf,
    thresholds_sha256: String,
    data: PathBuf,
    data_sha256: String,
    model_sha256: String,
    configuration: String,
    delta: f64,
    epsilon: f64,
    test: GuaranteeTest,
    mean_layers: f64,
    /// Wall-clock decoding speed on these data (one decoder per job): full model and the
    /// certified configuration.
    full_tokens_per_second: f64,
    selected_tokens_per_second: f64,
    wall_clock_speedup: f64,
    calibrated_mean_layers: f64,
    max_layer_regression: f64,
    layers_regressed: bool,
    holds: bool,
}

fn run_text<'a>(run: &'a serde_json::Value, key: &str) -> Result<&'a str> {
    run[key]
        .as_str()
        .with_context(|| format!("thresholds.json: run.{key} is missing"))
}

pub fn run(args: CheckArgs) -> Result<u8> {
    super::generate::set_threads(1);
    let text = std::fs::read_to_string(&args.thresholds)
        .with_context(|| format!("cannot read {}", args.thresholds.display()))?;
    let config: ThresholdsFile = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a calm thresholds file", args.thresholds.display()))?;
    let Some(run) = &config.run else {
        bail!("{}: made from records without a model run; `calm check` needs a config from `calm calibrate --model`", args.thresholds.display());
    };
    if args.max_layer_regression.is_nan() || args.max_layer_regression < 0.0 {
        bail!("--max-layer-regression must be ≥ 0");
    }
    let model_dir = match &args.model {
        Some(dir) => dir.clone(),
        None => PathBuf::from(run_text(run, "model")?),
    };
    let checkpoint = Checkpoint::load(&model_dir)?;
    let expected_sha = run_text(run, "model_sha256")?;
    if checkpoint.model_sha256 != expected_sha {
        bail!(
            "{} is not the model these thresholds were calibrated for (model.safetensors sha256 {} vs {} in {})",
            model_dir.display(),
            checkpoint.model_sha256,
            expected_sha,
            args.thresholds.display()
        );
    }
    let metric = parse_metric(run_text(run, "metric")?)?;
    let consistency: Consistency = serde_json::from_value(run["consistency"].clone())
        .context("thresholds.json: run.consistency")?;
    let pvalue: PValueMethod =
        serde_json::from_value(serde_json::Value::String(config.inputs.pvalue.clone()))
            .context("thresholds.json: inputs.pvalue")?;
    let options = CalibrationOptions {
        delta: config.inputs.delta,
        epsilon: config.inputs.epsilon,
        pvalue,
        procedure: Procedure::FixedSequence,
        seed: config.inputs.seed,
    };
    let max_new_tokens = run["max_new_tokens"].as_u64().unwrap_or(64) as usize;

    let examples = read_task_examples(&args.data, run["task"].as_str(), args.max_examples)?;
    let sweep_examples = encode_examples(&checkpoint, &examples, &args.data)?;

    let selected = &config.selected;
    let depth = checkpoint.model.num_decoder_layers() as f64;
    let (configuration, test, mean_layers, speeds) =
        match selected_configuration(selected, &args.thresholds.display().to_string())? {
            Some(certified) => {
                let Configuration {
                    measure,
                    tau,
                    lambda,
                } = certified;
                let score = |p: &str, r: &str| metric.score(p, r);
                let replay = replay_configuration(
                    &checkpoint,
                    &sweep_examples,
                    certified,
                    consistency,
                    &score,
                    max_new_tokens,
                    args.jobs,
                )?;
                (
                    format!("{} tau={tau} lambda={lambda}", measure.name()),
                    test_guarantee(&replay.losses, &options),
                    replay.mean_layers,
                    (replay.full_tokens_per_second, replay.tokens_per_second),
                )
            }
            None => (
                "never exit (full model)".to_string(),
                test_guarantee(&vec![0.0; sweep_examples.len()], &options),
                depth,
                (0.0, 0.0),
            ),
        };
    let layers_regressed = mean_layers > selected.mean_layers * (1.0 + args.max_layer_regression);
    let holds = !test.violated && !layers_regressed;
    let report = CheckReport {
        schema: "calm.check",
        version: 1,
        thresholds: args.thresholds.clone(),
        thresholds_sha256: sha256_file(&args.thresholds)?,
        data: args.data.clone(),
        data_sha256: sha256_file(&args.data)?,
        model_sha256: checkpoint.model_sha256.clone(),
        configuration,
        delta: options.delta,
        epsilon: options.epsilon,
        test,
        mean_layers,
        full_tokens_per_second: speeds.0,
        selected_tokens_per_second: speeds.1,
        wall_clock_speedup: if speeds.0 > 0.0 {
            speeds.1 / speeds.0
        } else {
            1.0
        },
        calibrated_mean_layers: selected.mean_layers,
        max_layer_regression: args.max_layer_regression,
        layers_regressed,
        holds,
    };
    let json = serde_json::to_string_pretty(&report)? + "\n";
    let out_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => args
            .thresholds
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    write_file_atomically(&out_dir.join("check.json"), json.as_bytes())?;
    if args.json {
        print!("{json}");
    } else {
        println!(
            "calm check: {} on {} fresh examples ({})",
            report.configuration,
            report.test.n,
            args.data.display()
        );
        println!(
            "  risk {:.4} (bound {}); p-value of 'risk <= {}' = {:.3e} -> {}",
            report.test.risk,
            report.delta,
            report.delta,
            report.test.p_value,
            if report.test.violated {
                "REJECTED at level epsilon"
            } else {
                "not rejected"
            }
        );
        println!(
            "  mean layers {:.2} vs {:.2} calibrated (allowed +{:.0}%) -> {}",
            report.mean_layers,
            report.calibrated_mean_layers,
            report.max_layer_regression * 100.0,
            if report.layers_regressed {
                "REGRESSED"
            } else {
                "ok"
            }
        );
        if report.full_tokens_per_second > 0.0 {
            println!(
                "  speed: full model {:.1} tokens/s, certified configuration {:.1} tokens/s (x{:.2})",
                report.full_tokens_per_second,
                report.selected_tokens_per_second,
                report.wall_clock_speedup
            );
        }
        println!(
            "  verdict: {}",
            if holds {
                "the guarantee holds"
            } else {
                "VIOLATED"
            }
        );
    }
    Ok(if holds { 0 } else { EXIT_NEGATIVE })
}
