//! `calm calibrate --model DIR --data FILE`: run the model over calibration data for a grid of
//! (measure, τ, λ), record consistency losses, and certify thresholds from them.

use crate::calibrate::thresholds::{Benchmark, GridInfo, RunInfo, SweepInfo, ThresholdsFile};
use crate::calibrate::{calibrate, candidate_p_value, CalibrationOptions, LossTable, Procedure};
use crate::data::read_task_examples;
use crate::metrics::Metric;
use crate::model::{Checkpoint, Measure};
use crate::pipeline::check::selected_configuration;
use crate::pipeline::replay::{encode_examples, replay_configuration, Configuration};
use crate::pipeline::sweep::{sweep, Consistency, SweepExample, SweepOptions};
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
    #[command(flatten)]
    pub model_args: super::model_args::ModelArgs,
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
    /// Thresholds λ, tested from the largest down: `auto` gives each measure λ = 1 and up to 11
    /// λs that step its mean exit layer on the grid examples (--grid-share) evenly from L to 1;
    /// or give a list (e.g. 1,0.95,0.9) used for every measure.
    #[arg(long, default_value = "auto", value_parser = parse_lambda_grid)]
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
    /// Use at most this many examples (the first ones of the file).
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

/// The λ grid: per measure from the data, or one list for all.
#[derive(Debug, Clone, PartialEq)]
pub enum LambdaGrid {
    Auto,
    Values(Vec<f64>),
}

fn parse_lambda_grid(text: &str) -> std::result::Result<LambdaGrid, String> {
    if text.trim().eq_ignore_ascii_case("auto") {
        return Ok(LambdaGrid::Auto);
    }
    let values = text
        .split(',')
        .map(|v| {
            v.trim().parse::<f64>().map_err(|_| {
                format!("{v:?} is not a number (give `auto` or a list like 1,0.9,0.8)")
            })
        })
        .collect::<std::result::Result<Vec<f64>, String>>()?;
    if values.iter().any(|l| !(0.0..=1.0).contains(l)) || values.windows(2).any(|w| w[0] <= w[1]) {
        return Err(
            "λs must lie in [0, 1] and be strictly descending (they are tested in that order)"
                .into(),
        );
    }
    Ok(LambdaGrid::Values(values))
}

/// Per measure, every token's confidences at the layers below the top (None where undefined),
/// on the full model's outputs for `examples` (record mode).
fn grid_confidences(
    checkpoint: &Checkpoint,
    examples: &[SweepExample],
    measures: &[Measure],
    args: &SweepArgs,
) -> Result<Vec<Vec<Vec<Option<f32>>>>> {
    let options = crate::model::GenerationOptions {
        max_new_tokens: args.max_new_tokens,
        policy: crate::model::ExitPolicy::Never,
        record_all_layers: true,
    };
    let inputs: Vec<&[u32]> = examples.iter().map(|e| e.input_ids.as_slice()).collect();
    let decoded = crate::pipeline::sweep::decode_all(
        checkpoint,
        &inputs,
        &options,
        args.jobs,
        args.batch_size,
    )?;
    let mut tokens = vec![Vec::new(); measures.len()];
    for (generation, _) in &decoded {
        for trace in &generation.traces {
            let Some(layers) = &trace.layers else {
                continue;
            };
            let below_top = &layers[..layers.len().saturating_sub(1)];
            for (slot, measure) in measures.iter().enumerate() {
                tokens[slot].push(below_top.iter().map(|r| r.confidence(*measure)).collect());
            }
        }
    }
    Ok(tokens)
}

/// What every model sweep needs: the checkpoint, the tokenized examples, the metric, the grid.
struct Prepared {
    checkpoint: Checkpoint,
    examples: Vec<SweepExample>,
    metric: Metric,
    measures: Vec<Measure>,
    /// λs per measure (aligned with `measures`).
    lambdas: Vec<Vec<f64>>,
    /// Ids of the examples that placed an auto grid or were held out with it (not tested).
    grid_examples: Vec<String>,
    /// The share of examples held out for the grid.
    grid_share: f64,
    data: PathBuf,
    /// `--bench-data` and its tokenized examples.
    bench: Option<(PathBuf, Vec<SweepExample>)>,
}

fn prepare(model_dir: &Path, args: &SweepArgs) -> Result<Prepared> {
    let data = args.data.as_ref().context("--model needs --data")?;
    // One compute thread per decoder; the parallelism is --jobs decoders.
    super::generate::set_threads(1);
    let metric = args.metric;
    let grid_share = args.grid_share.unwrap_or(match args.lambdas {
        LambdaGrid::Auto => 0.1,
        LambdaGrid::Values(_) => 0.0,
    });
    if !(0.0..1.0).contains(&grid_share) {
        bail!("--grid-share must lie in [0, 1) (got {grid_share})");
    }
    if args.taus.iter().any(|t| !(t.is_finite() && *t >= 0.0)) {
        bail!("--taus must be finite numbers ≥ 0");
    }
    // Duplicates would make duplicate records, refused only after the whole sweep.
    let mut taus: Vec<u64> = args.taus.iter().map(|&t| (t + 0.0).to_bits()).collect();
    taus.sort_unstable();
    if taus.windows(2).any(|w| w[0] == w[1]) {
        bail!("--taus lists a value twice ({:?})", args.taus);
    }
    if let Some(twice) = args
        .measures
        .iter()
        .enumerate()
        .find(|(i, m)| args.measures[..*i].contains(m))
    {
        bail!("--measures lists {} twice", twice.1.name());
    }
    if args.jobs == 0
        || args.max_new_tokens == 0
        || args.bench_examples == 0
        || args.batch_size == 0
    {
        bail!("--jobs, --batch-size, --max-new-tokens and --bench-examples must not be zero");
    }
    let checkpoint = args.model_args.load(model_dir)?;
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
    // The auto grid's examples are drawn before sharding, so every shard places the same grid.
    let (grid, test) = crate::record::grid::grid_split(examples.len(), grid_share, args.grid_seed);
    let picked: Vec<_> = grid.iter().map(|&i| examples[i].clone()).collect();
    examples = test.into_iter().map(|i| examples[i].clone()).collect();
    let lambdas = match &args.lambdas {
        LambdaGrid::Values(values) => vec![values.clone(); measures.len()],
        LambdaGrid::Auto => {
            if picked.is_empty() {
                bail!("--lambdas auto needs grid examples: give --grid-share above 0 and at least two examples");
            }
            let encoded = encode_examples(&checkpoint, &picked, data)?;
            grid_confidences(&checkpoint, &encoded, &measures, args)?
                .iter()
                .map(|c| {
                    crate::record::grid::auto_lambdas(c, checkpoint.model.num_decoder_layers())
                })
                .collect()
        }
    };
    let grid_examples: Vec<String> = picked.into_iter().map(|e| e.id).collect();
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
        grid_examples,
        grid_share,
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

/// Replay every configuration the frontier selects on the held-out benchmark data at batch 1
/// (full model beside it), reusing the selected configuration's benchmark run.
fn measure_frontier(
    checkpoint: &Checkpoint,
    frontier: &mut [crate::calibrate::frontier::FrontierPoint],
    output: &ThresholdsFile,
    selected: Option<&Benchmark>,
    args: &SweepArgs,
    metric: Metric,
    (_, examples): &(PathBuf, Vec<SweepExample>),
) -> Result<()> {
    use crate::calibrate::frontier::HeldOut;
    let score = |prediction: &str, reference: &str| metric.score(prediction, reference);
    let mut measured: Vec<(String, HeldOut)> = Vec::new();
    if let (Some(bench), Some(measure), Some(tau), Some(lambda)) = (
        selected,
        &output.selected.measure,
        output.selected.tau,
        output.selected.lambda,
    ) {
        measured.push((
            format!("{measure} tau={tau} lambda={lambda}"),
            held_out(&bench.run),
        ));
    }
    for row in frontier.iter_mut() {
        let (Some(measure), Some(tau), Some(lambda)) = (&row.measure, row.tau, row.lambda) else {
            continue;
        };
        let label = row.label();
        if let Some((_, done)) = measured.iter().find(|(l, _)| *l == label) {
            row.held_out = Some(done.clone());
            continue;
        }
        let measure = Measure::from_name(measure)
            .with_context(|| format!("frontier: unknown measure {measure:?}"))?;
        let run = replay_configuration(
            checkpoint,
            examples,
            Configuration {
                measure,
                tau,
                lambda,
            },
            args.consistency,
            &score,
            args.max_new_tokens,
            args.jobs,
        )?;
        let result = held_out(&run);
        row.held_out = Some(result.clone());
        measured.push((label, result));
    }
    Ok(())
}

fn held_out(run: &crate::record::run::ConfigurationRun) -> crate::calibrate::frontier::HeldOut {
    crate::calibrate::frontier::HeldOut {
        examples: run.examples,
        risk: run.risk,
        mean_layers: run.mean_layers,
        wall_clock_speedup: run.wall_clock_speedup,
    }
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
        grid_examples,
        grid_share,
        data,
        bench,
    } = prepare(model_dir, args)?;
    let data = &data;
    // Fixed-sequence testing stops a chain at its first non-rejection: stop sweeping it there.
    let chains = measures.len() * args.taus.len();
    let level = options.epsilon / chains as f64;
    let mut id_order: Vec<usize> = (0..sweep_examples.len()).collect();
    id_order.sort_by(|&a, &b| sweep_examples[a].id.cmp(&sweep_examples[b].id));
    // With --early-stop (fixed-sequence only) a chain stops at its first failure at this δ;
    // otherwise the whole grid is swept, so the frontier can recalibrate every λ at every δ.
    let early_stop = args.early_stop && options.procedure == Procedure::FixedSequence;
    let mut keep_going = |losses: &[f64]| -> bool {
        if !early_stop {
            return true;
        }
        let ordered: Vec<f64> = id_order.iter().map(|&i| losses[i]).collect();
        candidate_p_value(&ordered, options) <= level
    };
    let grid = args.taus.len() * lambdas.iter().map(Vec::len).sum::<usize>();
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
    let cost =
        crate::model::cost::cost_model(&checkpoint.model, mean_input_tokens, mean_output_tokens);
    let table = LossTable::from_records(&records)?.with_cost(cost)?;
    let calibration = calibrate(&table, options)?;
    let mut output = ThresholdsFile::new(&calibration, &records.sources);
    let mut frontier = crate::calibrate::frontier::frontier(
        &table,
        options,
        &crate::calibrate::frontier::FRONTIER_DELTAS,
    )?;
    let benchmark = match &bench {
        Some(bench) => {
            let selected = benchmark(&checkpoint, &output, args, metric, bench)?;
            measure_frontier(
                &checkpoint,
                &mut frontier,
                &output,
                selected.as_ref(),
                args,
                metric,
                bench,
            )?;
            selected
        }
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
        grid: (!grid_examples.is_empty()).then(|| GridInfo {
            auto: args.lambdas == LambdaGrid::Auto,
            share: grid_share,
            seed: args.grid_seed,
            steps: crate::record::grid::GRID_STEPS,
            examples: grid_examples.clone(),
        }),
        max_new_tokens: args.max_new_tokens,
        prompt_template: super::model_args::prompt_template(&checkpoint.prompt),
        gguf_weights: model_dir
            .extension()
            .is_some_and(|e| e == "gguf")
            .then(|| format!("{:?}", args.model_args.dtype).to_lowercase()),
        sweep: SweepInfo {
            configurations_evaluated: result.evaluated,
            configurations_in_grid: result.grid,
            full_tokens: result.full_tokens,
            full_seconds: result.full_seconds,
            early_tokens: result.early_tokens,
            early_seconds: result.early_seconds,
            configurations: result.timings.clone(),
            jobs: args.jobs,
            early_stop,
            batch_size: args.batch_size,
        },
        benchmark,
    });
    let traces = crate::report::Traces {
        tokens: &result.token_rows,
        layers: &result.layer_rows,
    };
    let report =
        crate::report::build_report(&output, &table, options, Some(traces), Some(frontier))?;
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
