//! `calm calibrate --model DIR --data FILE`: the options of the model sweep; the work is
//! `pipeline::calibrate_model`.

use crate::metrics::Metric;
use crate::model::Measure;
pub use crate::pipeline::calibrate_model::LambdaGrid;
use crate::pipeline::calibrate_model::SweepSettings;
use crate::pipeline::sweep::Consistency;
use clap::Args;
use std::path::PathBuf;

/// Options of the model sweep (used with --model).
#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub model_args: super::model_args::ModelArgs,
    /// Labelled examples (JSONL or JSONL.gz with input, reference, id, task) [default: the main
    /// job's, datasets/bible/calibration.jsonl.gz].
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Only examples of this task [default: every task; the main job's: modernize].
    #[arg(long)]
    pub task: Option<String>,
    /// Confidence measures to sweep [default: softmax-diff,state, and classifier when the
    /// checkpoint has a trained exit classifier].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub measures: Vec<Measure>,
    /// Temperatures τ ≥ 0 of the decaying threshold λ_t = clip(0.9λ + 0.1·exp(−τt/N)), unitless.
    #[arg(long, value_delimiter = ',', default_value = "0,4")]
    pub taus: Vec<f64>,
    /// Thresholds λ, tested from the largest down: `auto` gives each measure λ = 1 and up to 11
    /// λs that step its mean exit layer on the grid examples (--grid-share) evenly from L to 1;
    /// or give a list (e.g. 1,0.95,0.9) used for every measure.
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(LambdaGrid))]
    pub lambdas: LambdaGrid,
    /// The share of --data's examples (seeded by --grid-seed) whose full-model confidences place
    /// an auto grid. They are left out of the records and the test, so the grid is fixed
    /// independently of the tested examples [default: 0.1 with --lambdas auto, 0 with a list;
    /// give it with a list to test the same examples as an auto run].
    #[arg(long, value_name = "SHARE")]
    pub grid_share: Option<f64>,
    /// Seed of the grid examples' draw.
    #[arg(long, default_value_t = 0)]
    pub grid_seed: u64,
    /// Textual consistency (early vs full output) or risk consistency (against the reference).
    #[arg(long, value_enum, default_value_t = Consistency::Textual)]
    pub consistency: Consistency,
    /// Metric of the consistency loss: rouge-l, bleu, chrf, token-f1, exact (and the others of `calm score`).
    #[arg(long, default_value = "rouge-l")]
    pub metric: Metric,
    /// Use at most this many examples (the first ones of the file) [default: all; the main
    /// job's: 1000].
    #[arg(long)]
    pub max_examples: Option<usize>,
    /// Parallel decoders (one core each).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Stop each (measure, τ) chain at its first failed fixed-sequence test (fewer
    /// configurations decoded, for large grids). Without it the whole grid is swept, so the
    /// report's frontier recalibrates every λ at every δ, and trials can use the records.
    #[arg(long)]
    pub early_stop: bool,
    /// Rows per decoding batch in the sweep (inputs of equal token length, so no padding; 1 =
    /// one example at a time). The outputs are batch 1's but for rare floating-point ties
    /// (reports/README.md); the benchmark step always decodes at batch 1.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Maximum output length N, in tokens.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Sweep only shard k of N (examples k, k + N, … in file order) over the whole grid and write
    /// only `records-k-of-N.parquet`; finish with `calm calibrate --records 'DIR/records-*.parquet'`
    /// [default: one process sweeps every example].
    #[arg(long, value_name = "k/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// Held-out labelled examples for the report's benchmark line: wall-clock tokens/s of the full
    /// model and of the selected configuration, and its risk there
    /// [default with the embedded model: datasets/bible/test.jsonl.gz].
    #[arg(long, value_name = "FILE")]
    pub bench_data: Option<PathBuf>,
    /// Decode at most this many examples of --bench-data (the first ones of the task).
    #[arg(long, default_value_t = 200)]
    pub bench_examples: usize,
}

fn parse_shard(text: &str) -> std::result::Result<(usize, usize), String> {
    let parsed = text.split_once('/').and_then(|(k, n)| {
        Some((
            k.trim().parse::<usize>().ok()?,
            n.trim().parse::<usize>().ok()?,
        ))
    });
    match parsed {
        Some((k, n)) if k >= 1 && k <= n => Ok((k, n)),
        _ => Err(format!("expected k/N with 1 <= k <= N, got {text:?}")),
    }
}

impl SweepArgs {
    /// The library's settings of these options (`--data` required).
    pub fn settings(&self, data: PathBuf) -> SweepSettings {
        SweepSettings {
            data,
            task: self.task.clone(),
            measures: self.measures.clone(),
            taus: self.taus.clone(),
            lambdas: self.lambdas.clone(),
            grid_share: self.grid_share,
            grid_seed: self.grid_seed,
            consistency: self.consistency,
            metric: self.metric,
            max_examples: self.max_examples,
            jobs: self.jobs,
            early_stop: self.early_stop,
            batch_size: self.batch_size,
            max_new_tokens: self.max_new_tokens,
            shard: self.shard,
            bench_data: self.bench_data.clone(),
            bench_examples: self.bench_examples,
        }
    }
}
