//! `calm calibrate --model DIR --data FILE`: run the model over calibration data for a grid of
//! (measure, τ, λ), record consistency losses, and certify thresholds from them.

use super::selected::selected_configuration;
use crate::calibrate::thresholds::{Benchmark, RunInfo, SweepInfo, ThresholdsFile};
use crate::calibrate::{calibrate, candidate_p_value, CalibrationOptions, LossTable, Procedure};
use crate::data::read_task_examples;
use crate::metrics::Metric;
use crate::model::{Checkpoint, Measure};
use crate::record::replay::{encode_examples, replay_configuration, Configuration};
use crate::record::sweep::{sweep, Consistency, SweepExample, SweepOptions};
use crate::record::tokens::{layers_parquet, tokens_parquet};
use crate::record::{Records, SourceFile};
use crate::util::sha256_file;
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Options of the model sweep (used with --model).
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Labelled examples (JSONL or JSONL.gz with input, reference, id, task).
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Only examples of this task.
    #[arg(long)]
    pub task: Option<String>,
    /// Confidence measures to sweep [default: softmax-diff,state, and classifier when the
    /// checkpoint has a trained exit classifier].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub measures: Vec<Measure>,
    /// Temperatures τ of the decaying threshold.
    #[arg(long, value_delimiter = ',', default_value = "0,4")]
    pub taus: Vec<f64>,
    /// Thresholds λ, tested from the largest down [default: 1.00, 0.95, …, 0.05].
    #[arg(long, value_delimiter = ',')]
    pub lambdas: Vec<f64>,
    /// Textual consistency (early vs full output) or risk consistency (against the reference).
    #[arg(long, value_enum, default_value_t = Consistency::Textual)]
    pub consistency: Consistency,
    /// Metric of the consistency loss: rouge-l, bleu, chrf, token-f1, exact (and the others of `calm score`).
    #[arg(long, default_value = "rouge-l")]
    pub metric: String,
    /// Use at most this many examples (the first ones of the file).
    #[arg(long)]
    pub max_examples: Option<usize>,
    /// Parallel decoders (one core each).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Rows per decoding batch in the sweep (inputs of equal token length, so no padding; 1 =
    /// one example at a time). The outputs are batch 1's but for rare floating-point ties
    /// (reports/README.md); the benchmark step always decodes at batch 1.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Maximum output length N.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Sweep only shard k of N (examples k, k + N, … in file order) over the whole grid and write
    /// only `records-k-of-N.parquet`; finish with `calm calibrate --records 'DIR/records-*.parquet'`.
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

/// A metric by name (`rouge-l`, `bleu`, `chrf`, `token-f1`, `exact`, … — see [`Metric::from_name`]).
pub fn parse_metric(name: &str) -> Result<Metric> {
    Metric::from_name(name).with_context(|| {
        let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        format!("unknown metric {name:?} (known: {})", known.join(", "))
    })
}

fn default_lambdas() -> Vec<f64> {
    (0..20).map(|i| ((100 - 5 * i) as f64) / 100.0).collect()
}

/// What every model sweep needs: the checkpoint, the tokenized examples, the metric, the grid.
struct Prepared {
    checkpoint: Checkpoint,
    examples: Vec<SweepExample>,
    metric: Metric,
    measures: Vec<Measure>,
    lambdas: Vec<f64>,
    data: PathBuf,
    /// `--bench-data` and its tokenized examples.
    bench: Option<(PathBuf, Vec<SweepExample>)>,
}

fn prepare(model_dir: &Path, args: &SweepArgs) -> Result<Prepared> {
    let data = args.data.as_ref().context("--model needs --data")?;
    // One compute thread per decoder; the parallelism is --jobs decoders.
    super::generate::set_threads(1);
    let metric = parse_metric(&args.metric)?;
    let lambdas = if args.lambdas.is_empty() {
        default_lambdas()
    } else {
        args.lambdas.clone()
    };
    if lambdas.iter().any(|l| !(0.0..=1.0).contains(l)) || lambdas.windows(2).any(|w| w[0] <= w[1])
    {
        bail!("--lambdas must lie in [0, 1] and be strictly descending (they are tested in that order)");
    }
    if args.taus.iter().any(|t| !(t.is_finite() && *t >= 0.0)) {
        bail!("--taus must be finite numbers ≥ 0");
    }
    if args.jobs == 0 || args.max_new_tokens == 0 || args.bench_examples == 0 || args.batch_size == 0 {
        bail!("--jobs, --batch-size, --max-new-tokens and --bench-examples must not be zero");
    }
    let checkpoint = Checkpoint::load(model_dir)?;
    if args.measures.contains(&Measure::Classifier) && !checkpoint.model.has_exit_classifier() {
        bail!("--measures classifier needs a checkpoint with an exit classifier (calm train-classifier)");
    }
    let measures = if args.measures.is_empty() {
        let mut measures = vec![Measure::SoftmaxDiff, Measure::State];
        if checkpoint.model.has_exit_classifier() {
            measures.push(Measure::Classifier);
        }
        measures
    } else {
        args.measures.clone()
    };
    // Read before the sweep, so that a bad benchmark file fails at once, not after it.
    let bench = match &args.bench_data {
        Some(path) => {
            let examples =
                read_task_examples(path, args.task.as_deref(), Some(args.bench_examples))?;
            Some((path.clone(), encode_examples(&checkpoint, &examples, path)?))
        }
        None => None,
    };
    let mut examples = read_task_examples(data, args.task.as_deref(), args.max_examples)?;
    if let Some((k, n)) = args.shard {
        examples = examples.into_iter().skip(k - 1).step_by(n).collect();
        if examples.is_empty() {
            bail!("{}: shard {k}/{n} holds no examples", data.display());
        }
    }
    let sweep_examples = encode_examples(&checkpoint, &examples, data)?;

    Ok(Prepared {
        checkpoint,
        examples: sweep_examples,
        metric,
        measures,
        lambdas,
        data: data.clone(),
        bench,
    })
}

/// `--shard k/N`: sweep the whole grid over this shard's examples and write its records only.
pub fn sweep_shard(model_dir: &Path, args: &SweepArgs, out: &Path) -> Result<PathBuf> {
    let (k, n) = args.shard.context("no --shard")?;
    let prepared = prepare(model_dir, args)?;
    let sweep_options = SweepOptions {
        measures: prepared.measures.clone(),
        taus: args.taus.clone(),
        lambdas: prepared.lambdas.clone(),
        consistency: args.consistency,
        max_new_tokens: args.max_new_tokens,
        jobs: args.jobs,
        batch_size: args.batch_size,
        // A shard writes only its records.
        traces: false,
    };
    let metric = prepared.metric;
    let score = |prediction: &str, reference: &str| metric.score(prediction, reference);
    // Shards cannot stop chains (the test needs every shard's losses): sweep every configuration.
    let result = sweep(
        &prepared.checkpoint,
        &prepared.examples,
        &sweep_options,
        &score,
        &mut |_| true,
        &mut |_| {},
    )?;
    let path = out.join(format!("records-{k}-of-{n}.parquet"));
    crate::util::atomic::write_file_atomically(&path, &result.records_file(&path)?)?;
    Ok(path)
}

/// The selected configuration against the full model on held-out data (`--bench-data`): speeds,
/// risk and mean layers (None when nothing was selected).
fn benchmark(
    checkpoint: &Checkpoint,
    output: &ThresholdsFile,
    args: &SweepArgs,
    metric: Metric,
    (bench, examples): &(PathBuf, Vec<SweepExample>),
) -> Result<Option<Benchmark>> {
    let Some(configuration) = selected_configuration(&output.selected, "the calibration")? else {
        return Ok(None);
    };
    let Configuration {
        measure,
        tau,
        lambda,
    } = configuration;
    let spinner = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner().with_message(format!(
            "benchmark: full model and {} tau={tau} lambda={lambda} on {} examples of {}",
            measure.name(),
            examples.len(),
            bench.display()
        ))
    } else {
        ProgressBar::hidden()
    };
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let score = |prediction: &str, reference: &str| metric.score(prediction, reference);
    let run = replay_configuration(
        checkpoint,
        examples,
        configuration,
        args.consistency,
        &score,
        args.max_new_tokens,
        args.jobs,
    )?;
    spinner.finish_and_clear();
    Ok(Some(Benchmark {
        run,
        data: bench.clone(),
        data_sha256: sha256_file(bench)?,
    }))
}

pub fn calibrate_model(
    model_dir: &Path,
    args: &SweepArgs,
    options: &CalibrationOptions,
    out: &Path,
) -> Result<(ThresholdsFile, Vec<PathBuf>, Records)> {
    let Prepared {
        checkpoint,
        examples: sweep_examples,
        metric,
        measures,
        lambdas,
        data,
        bench,
    } = prepare(model_dir, args)?;
    let data = &data;
    // Fixed-sequence testing stops a chain at its first non-rejection: stop sweeping it there.
    let chains = measures.len() * args.taus.len();
    let level = options.epsilon / chains as f64;
    let mut id_order: Vec<usize> = (0..sweep_examples.len()).collect();
    id_order.sort_by(|&a, &b| sweep_examples[a].id.cmp(&sweep_examples[b].id));
    let fixed_sequence = options.procedure == Procedure::FixedSequence;
    let mut keep_going = |losses: &[f64]| -> bool {
        if !fixed_sequence {
            return true;
        }
        let ordered: Vec<f64> = id_order.iter().map(|&i| losses[i]).collect();
        candidate_p_value(&ordered, options) <= level
    };
    let grid = chains * lambdas.len();
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(grid as u64);
        bar.set_style(ProgressStyle::with_template(
            "{bar:30} {pos}/{len} configurations (at most) {elapsed_precise} {msg}",
        )?);
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut progress = |done: usize| bar.set_position(done as u64);
    let sweep_options = SweepOptions {
        measures: measures.clone(),
        taus: args.taus.clone(),
        lambdas: lambdas.clone(),
        consistency: args.consistency,
        max_new_tokens: args.max_new_tokens,
        jobs: args.jobs,
        batch_size: args.batch_size,
        traces: true,
    };
    let score = |prediction: &str, reference: &str| metric.score(prediction, reference);
    let result = sweep(
        &checkpoint,
        &sweep_examples,
        &sweep_options,
        &score,
        &mut keep_going,
        &mut progress,
    )?;
    bar.finish_and_clear();

    let records_path = out.join("records.parquet");
    let bytes = result.records_file(&records_path)?;
    let mut records = result.records.clone();
    records.sources = vec![SourceFile {
        path: records_path.clone(),
        sha256: Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        rows: records.rows.len() as u64,
    }];
    let mean_input_tokens = sweep_examples
        .iter()
        .map(|e| e.input_ids.len() as f64)
        .sum::<f64>()
        / sweep_examples.len().max(1) as f64;
    let mean_output_tokens = result.full_tokens as f64 / sweep_examples.len().max(1) as f64;
    let cost = crate::model::cost::t5_cost_model(
        &checkpoint.model.config,
        mean_input_tokens,
        mean_output_tokens,
    );
    let table = LossTable::from_records(&records)?.with_cost(cost)?;
    let calibration = calibrate(&table, options)?;
    let mut output = ThresholdsFile::new(&calibration, &records.sources);
    let benchmark = match &bench {
        Some(bench) => benchmark(&checkpoint, &output, args, metric, bench)?,
        None => None,
    };
    output.run = Some(RunInfo {
        model: model_dir.to_path_buf(),
        model_sha256: checkpoint.model_sha256.clone(),
        data: data.clone(),
        data_sha256: sha256_file(data)?,
        task: args.task.clone(),
        examples: sweep_examples.len(),
        metric,
        consistency: args.consistency,
        measures: measures.clone(),
        taus: args.taus.clone(),
        lambdas: lambdas.clone(),
        max_new_tokens: args.max_new_tokens,
        sweep: SweepInfo {
            configurations_evaluated: result.evaluated,
            configurations_in_grid: result.grid,
            full_tokens: result.full_tokens,
            full_seconds: result.full_seconds,
            early_tokens: result.early_tokens,
            early_seconds: result.early_seconds,
            configurations: result.timings.clone(),
            jobs: args.jobs,
            early_stop: fixed_sequence,
        },
        benchmark,
    });
    let traces = crate::report::Traces {
        tokens: &result.token_rows,
        layers: &result.layer_rows,
    };
    let report = crate::report::build_report(&output, &table, options, Some(traces))?;
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("records.parquet", bytes),
        (
            "tokens.parquet",
            tokens_parquet(&result.token_rows, &records.examples)?,
        ),
        (
            "layers.parquet",
            layers_parquet(&result.layer_rows, &records.examples)?,
        ),
    ];
    files.extend(
        report
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.clone())),
    );
    let written = output.write_with(out, files)?;
    Ok((output, written, records))
}
