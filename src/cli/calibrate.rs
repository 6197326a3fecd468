//! `calm calibrate`: records in, certified thresholds out.

use super::EXIT_NEGATIVE;
use crate::calibrate::thresholds::ThresholdsFile;
use crate::calibrate::{
    calibrate, truncation_check, CalibrationOptions, LossTable, PValueMethod, Procedure,
};
use crate::pipeline::{calibrate_model, sweep_shard};
use crate::record::cost::CostModel;
use crate::record::read_records;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 done, 1 nothing certified with --require-certified, 2 bad input.\n\
Example:\n  calm calibrate --records datasets/example/records.parquet --delta 0.1 --epsilon 0.05 --out runs/example"
)]
pub struct CalibrateArgs {
    /// Records files (CSV or Parquet; shards are combined). See docs/records.md [default: none;
    /// a model run makes the records].
    #[arg(long, num_args = 1.., value_name = "FILE", conflicts_with_all = ["model", "data"])]
    pub records: Vec<PathBuf>,
    /// Run this checkpoint (a directory or a .gguf file, as for `calm generate`) over --data
    /// to make the records (instead of --records)
    /// [default without --records: the embedded model, datasets/bible/model]. Without --data,
    /// any model runs the main job's defaults: the calibration split's first 1,000 modernize
    /// examples, and its test split for the benchmark.
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub sweep: super::calibrate_model::SweepArgs,
    /// Risk bound δ: the largest tolerated expected loss, in (0, 1).
    #[arg(long, value_name = "D", default_value_t = 0.1)]
    pub delta: f64,
    /// Failure probability ε: the guarantee P(risk ≤ δ) ≥ 1 − ε, in (0, 1).
    #[arg(long, value_name = "E", default_value_t = 0.05)]
    pub epsilon: f64,
    /// Output directory [default with a model: reports/<model>-<task>-<consistency>/].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// p-value of each candidate.
    #[arg(long, value_enum, default_value_t = PValueMethod::Hb)]
    pub pvalue: PValueMethod,
    /// Family-wise error control across candidates.
    #[arg(long, value_enum, default_value_t = Procedure::FixedSequence)]
    pub procedure: Procedure,
    /// Seed for the example order of order-dependent p-values (wsr).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the full result (thresholds.json) to stdout.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 when no configuration is certified.
    #[arg(long)]
    pub require_certified: bool,
    /// With --records and --procedure bonferroni or holm: proceed on chains that a
    /// fixed-sequence sweep cut short (biased optimistic; a warning is printed).
    #[arg(long)]
    pub allow_truncated: bool,
    /// With --records: price candidates with this cost model (the `cost_model` block of a
    /// thresholds.json from `calm calibrate --model` on the same model, or that block alone)
    /// [default: mean decoder layers only].
    #[arg(long, value_name = "FILE", conflicts_with = "model")]
    pub cost_model: Option<PathBuf>,
}

/// A cost model from a JSON file: a thresholds.json's `cost_model` block, or the block alone.
pub fn read_cost_model(path: &std::path::Path) -> Result<CostModel> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let block = value.get("cost_model").cloned().unwrap_or(value);
    serde_json::from_value(block)
        .with_context(|| format!("{}: not a calm cost model (fields num_layers, unit, layer, propagate, head, checks, token, example)", path.display()))
}

/// The embedded default model and its calibration split, used when no input is named.
const DEFAULT_MODEL: &str = "datasets/bible/model";
const DEFAULT_DATA: &str = "datasets/bible/calibration.jsonl.gz";
const DEFAULT_TASK: &str = "modernize";
const DEFAULT_BENCH_DATA: &str = "datasets/bible/test.jsonl.gz";
/// The first 1,000 of the split's 1,980 modernize examples keep the main job within 30 minutes on
/// two cores; `--max-examples 1980` uses them all.
const DEFAULT_MAX_EXAMPLES: usize = 1000;

pub fn run(mut args: CalibrateArgs) -> Result<u8> {
    if args.records.is_empty() {
        if args.model.is_none() {
            let model = PathBuf::from(DEFAULT_MODEL);
            if !model.join("model.safetensors").is_file() {
                anyhow::bail!(
                    "no --records or --model given, and the embedded default model ({DEFAULT_MODEL}) is not there: \
                     train it with scripts/train_default_model.sh, or pass --model DIR or --records FILE"
                );
            }
            args.model = Some(model);
        }
        if args.sweep.data.is_none() {
            // The embedded calibration split comes with the main job's defaults, whatever the
            // model (`--model datasets/bible/model-llama` is the decoder-only main job).
            args.sweep.data = Some(PathBuf::from(DEFAULT_DATA));
            if args.sweep.task.is_none() {
                args.sweep.task = Some(DEFAULT_TASK.to_string());
            }
            if args.sweep.bench_data.is_none() {
                args.sweep.bench_data = Some(PathBuf::from(DEFAULT_BENCH_DATA));
            }
            if args.sweep.max_examples.is_none() {
                args.sweep.max_examples = Some(DEFAULT_MAX_EXAMPLES);
            }
        }
    }
    let out = match (&args.out, &args.model) {
        (Some(out), _) => out.clone(),
        (None, Some(model)) => {
            let name = model
                .file_name()
                .map_or("model".into(), |n| n.to_string_lossy().into_owned());
            // `…/bible/model` → `bible`, `…/bible/model-llama` → `bible-llama`.
            let name = match name.strip_prefix("model") {
                Some(suffix) if suffix.is_empty() || suffix.starts_with('-') => model
                    .parent()
                    .and_then(|p| p.file_name())
                    .map_or(name.clone(), |n| format!("{}{suffix}", n.to_string_lossy())),
                _ => name,
            };
            let task = args.sweep.task.clone().unwrap_or_else(|| "all".into());
            let consistency = serde_json::to_value(args.sweep.consistency)?
                .as_str()
                .unwrap_or("textual")
                .to_string();
            PathBuf::from("reports").join(format!("{name}-{task}-{consistency}"))
        }
        (None, None) => anyhow::bail!("--out is required with --records"),
    };
    args.out = Some(out.clone());
    let args = args;
    let options = CalibrationOptions {
        delta: args.delta,
        epsilon: args.epsilon,
        pvalue: args.pvalue,
        procedure: args.procedure,
        seed: args.seed,
    };
    options.validate()?;
    // A model run: load it (one compute thread per decoder; the parallelism is --jobs
    // decoders), then the library does the work.
    let model_run = match &args.model {
        Some(model) => {
            super::generate::set_threads(1);
            let data = args.sweep.data.clone().context("--model needs --data")?;
            let settings = args.sweep.settings(data);
            settings.validate().map_err(super::check::flag_error)?;
            let checkpoint = args.sweep.model_args.load(model)?;
            Some((model, checkpoint, settings))
        }
        None => None,
    };
    let (output, written, records) = match model_run {
        Some((model, checkpoint, settings)) if settings.shard.is_some() => {
            let (k, n) = settings.shard.unwrap_or((1, 1));
            let path =
                sweep_shard(checkpoint, &settings, &out).map_err(super::check::flag_error)?;
            println!(
                "wrote {} (shard {k} of {n}); when every shard is done: calm calibrate --records '{}' --delta {} --epsilon {} --out DIR",
                path.display(),
                out.join("records-*.parquet").display(),
                args.delta,
                args.epsilon
            );
            let _ = model;
            return Ok(0);
        }
        Some((model, checkpoint, settings)) => {
            let run = calibrate_model(checkpoint, model, &settings, &options, &out)
                .map_err(super::check::flag_error)?;
            (run.thresholds, run.written, run.records)
        }
        None => {
            let records = read_records(&args.records)?;
            let mut table = LossTable::from_records(&records)?;
            if let Some(path) = &args.cost_model {
                table = table
                    .with_cost(read_cost_model(path)?)
                    .with_context(|| path.display().to_string())?;
            }
            if options.procedure != Procedure::FixedSequence {
                if let Some(warning) =
                    truncation_check(&table, options.procedure.name(), args.allow_truncated)?
                {
                    eprintln!("{warning}");
                }
            }
            let calibration = calibrate(&table, &options)?;
            let output = ThresholdsFile::new(&calibration, &records.sources);
            let report = crate::report::build_report(&output, &table, &options, None, None)?;
            let files = report
                .iter()
                .map(|(name, bytes)| (name.as_str(), bytes.clone()))
                .collect();
            let written = output.write_with(&out, files)?;
            (output, written, records)
        }
    };
    let calibration_n = output.inputs.n;
    let num_layers = output.inputs.num_layers;

    // The exit status answers --require-certified, so a closed stdout must not turn it into 0.
    let mut text = String::new();
    if args.json {
        text = output.to_json()?;
    } else {
        let measures = records.measures.len();
        text += &format!(
            "calibrated {} examples x {} candidates ({} chains, {} measure{}) from {} file{}\n",
            calibration_n,
            output.summary.candidates,
            output.summary.chains,
            measures,
            if measures == 1 { "" } else { "s" },
            records.sources.len().max(1),
            if records.sources.len() <= 1 { "" } else { "s" },
        );
        text += &format!(
            "p-value {}, {} at level {:.3e}: {} certified\n",
            options.pvalue.name(),
            options.procedure.name(),
            output.summary.level,
            output.summary.certified
        );
        let selected = &output.selected;
        match (&selected.measure, selected.tau, selected.lambda, selected.p_value) {
            (Some(measure), Some(tau), Some(lambda), Some(p)) if !selected.never_exit => text += &format!(
                "selected: {measure} tau={tau} lambda={lambda}  risk {:.4} (p={p:.3e})  mean layers {:.2} of {} (x{:.2} fewer; cost model x{:.2})\n",
                selected.risk, selected.mean_layers, num_layers, selected.layer_speedup, selected.cost_speedup
            ),
            _ => text += &format!("selected: never exit (full model). {}\n", selected.reason),
        }
        text += &format!(
            "guarantee: P(risk <= {}) >= {}\n",
            options.delta,
            1.0 - options.epsilon
        );
        for path in &written {
            text += &format!("wrote {}\n", path.display());
        }
    }
    super::write_stdout(&text)?;
    if args.require_certified && output.selected.never_exit {
        eprintln!("nothing certified (--require-certified)");
        return Ok(EXIT_NEGATIVE);
    }
    Ok(0)
}
