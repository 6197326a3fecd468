//! `calm trials`: the paper's random-split protocol on recorded losses, with a plot.

use crate::calibrate::{CalibrationOptions, PValueMethod, Procedure};
use crate::pipeline::{trials, TrialsOptions};
use crate::report::plots::{self, Histogram};
use crate::util::atomic::write_files_atomically;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Records must cover the whole λ grid, as `calm calibrate --model …` sweeps it by default\n\
(or --shard). A sweep with --early-stop stops chains at their first failure on all examples, which\n\
biases trials optimistic; such records are refused unless --allow-truncated.\n\
Example:\n  calm trials --records runs/modernize/records.parquet --delta 0.1 --runs 50 --out runs/modernize/trials"
)]
pub struct TrialsArgs {
    /// Records files (CSV or Parquet; shards are combined) covering the whole grid.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub records: Vec<PathBuf>,
    /// Risk bound δ each trial certifies, in (0, 1).
    #[arg(long, value_name = "D")]
    pub delta: f64,
    /// Failure probability ε of each trial's calibration, in (0, 1).
    #[arg(long, value_name = "E", default_value_t = 0.05)]
    pub epsilon: f64,
    /// Random calibration/test splits.
    #[arg(long, default_value_t = 50)]
    pub runs: usize,
    /// Share of the examples used for calibration in each run (the paper: 0.8).
    #[arg(long, default_value_t = 0.8)]
    pub calibration_share: f64,
    /// p-value of each candidate.
    #[arg(long, value_enum, default_value_t = PValueMethod::Hb)]
    pub pvalue: PValueMethod,
    /// Family-wise error control across candidates.
    #[arg(long, value_enum, default_value_t = Procedure::FixedSequence)]
    pub procedure: Procedure,
    /// Seed of the random splits (and of WSR's example order).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Price candidates with this cost model (a thresholds.json's `cost_model` block), as the
    /// calibration that made the records did [default: mean decoder layers only].
    #[arg(long, value_name = "FILE")]
    pub cost_model: Option<PathBuf>,
    /// Run on chains that a fixed-sequence sweep cut short (biased optimistic): prints the
    /// warning and marks trials.json.
    #[arg(long)]
    pub allow_truncated: bool,
    /// Output directory for trials.json and the plot.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Print trials.json to stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: TrialsArgs) -> Result<u8> {
    let options = CalibrationOptions {
        delta: args.delta,
        epsilon: args.epsilon,
        pvalue: args.pvalue,
        procedure: args.procedure,
        seed: args.seed,
    };
    let cost_model = match &args.cost_model {
        Some(path) => Some(super::calibrate::read_cost_model(path)?),
        None => None,
    };
    let summary = trials(&TrialsOptions {
        records: args.records.clone(),
        calibration: options,
        runs: args.runs,
        calibration_share: args.calibration_share,
        seed: args.seed,
        cost_model,
        allow_truncated: args.allow_truncated,
    })
    .map_err(super::check::flag_error)?;
    if let Some(warning) = &summary.warning {
        eprintln!("{warning}");
    }

    // Histogram of realised test risks in bins of δ/5, δ marked by the bin edge label.
    let width = args.delta / 5.0;
    let top = summary
        .trials
        .iter()
        .map(|t| t.test_risk)
        .fold(args.delta * 1.6, f64::max);
    let bins_count = ((top / width).ceil() as usize).max(1);
    let mut bins = vec![0f64; bins_count];
    for trial in &summary.trials {
        bins[((trial.test_risk / width) as usize).min(bins_count - 1)] += 1.0;
    }
    let (png, svg) = plots::histogram(&Histogram {
        title: format!(
            "{} random splits: test risk (δ = {}; violations {:.0}% vs ε = {:.0}%)",
            summary.runs,
            args.delta,
            summary.violation_rate * 100.0,
            args.epsilon * 100.0
        ),
        x_label: "realised test risk on the held-out part (bin lower edge)".into(),
        y_label: "runs".into(),
        bins: bins
            .iter()
            .enumerate()
            .map(|(i, &c)| (format!("{:.3}", i as f64 * width), c))
            .collect(),
    })?;
    let json = serde_json::to_string_pretty(&summary)? + "\n";
    write_files_atomically(
        &args.out,
        &[
            ("trials.json", json.clone().into_bytes()),
            ("trials.png", png),
            ("trials.svg", svg.into_bytes()),
        ],
    )?;
    if args.json {
        print!("{json}");
    } else {
        println!(
            "{} trials ({} calibration / {} test examples): violation rate {:.3} (epsilon {}), mean test risk {:.4} (delta {}), mean layers {:.2}, never exit in {} runs",
            summary.runs,
            summary.calibration_examples,
            summary.test_examples,
            summary.violation_rate,
            args.epsilon,
            summary.mean_test_risk,
            args.delta,
            summary.mean_layers,
            summary.never_exit_runs
        );
        println!("wrote {}", args.out.display());
    }
    Ok(0)
}
