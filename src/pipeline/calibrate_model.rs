//! Calibrating from a model (`calm calibrate --model`) as a library call: run the model over
//! calibration data for a grid of (measure, τ, λ), record consistency losses, certify
//! thresholds with Learn then Test, benchmark the selection on held-out data, and write the
//! run folder (thresholds.json, records, traces, report).

use super::error::PipelineError;
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
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// What a model sweep runs over and how (`calm calibrate --model`'s options, without the
/// model, which the caller loads).
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSettings {
    /// Labelled examples (JSONL, JSONL.gz, CSV or Parquet with input, reference, id, task).
    pub data: PathBuf,
    /// Only examples of this task.
    pub task: Option<String>,
    /// Confidence measures to sweep [empty: softmax-diff and state, and classifier when the
    /// checkpoint has a trained exit classifier].
    pub measures: Vec<Measure>,
    /// Temperatures τ of the decaying threshold.
    pub taus: Vec<f64>,
    pub lambdas: LambdaGrid,
    /// The share of examples (seeded by `grid_seed`) that place an auto grid and are left out
    /// [None: 0.1 with an auto grid, 0 with a list].
    pub grid_share: Option<f64>,
    pub grid_seed: u64,
    pub consistency: Consistency,
    pub metric: Metric,
    /// Use at most this many examples (the first ones).
    pub max_examples: Option<usize>,
    /// Parallel decoders (one core each).
    pub jobs: usize,
    /// Stop each chain at its first failed fixed-sequence test.
    pub early_stop: bool,
    /// Rows per decoding batch of the sweep.
    pub batch_size: usize,
    /// Maximum output length N.
    pub max_new_tokens: usize,
    /// Sweep only shard k of N.
    pub shard: Option<(usize, usize)>,
    /// Held-out labelled examples for the benchmark of the selection and the frontier.
    pub bench_data: Option<PathBuf>,
    /// Decode at most this many examples of `bench_data`.
    pub bench_examples: usize,
}

impl SweepSettings {
    /// The settings of `data` with `calm calibrate --model`'s defaults.
    pub fn new(data: impl Into<PathBuf>) -> Self {
        SweepSettings {
            data: data.into(),
            task: None,
            measures: Vec::new(),
            taus: vec![0.0, 4.0],
            lambdas: LambdaGrid::Auto,
            grid_share: None,
            grid_seed: 0,
            consistency: Consistency::Textual,
            metric: Metric::RougeL,
            max_examples: None,
            jobs: 2,
            early_stop: false,
            batch_size: 32,
            max_new_tokens: 64,
            shard: None,
            bench_data: None,
            bench_examples: 200,
        }
    }

    /// Check the settings before any decoding.
    pub fn validate(&self) -> Result<(), PipelineError> {
        let grid_share = self.grid_share();
        if !(0.0..1.0).contains(&grid_share) {
            return Err(PipelineError::invalid(
                "grid_share",
                grid_share,
                "lie in [0, 1)",
            ));
        }
        if let Some(t) = self.taus.iter().find(|t| !(t.is_finite() && **t >= 0.0)) {
            return Err(PipelineError::invalid("taus", t, "be finite numbers ≥ 0"));
        }
        // Duplicates would make duplicate records, refused only after the whole sweep.
        let mut taus: Vec<u64> = self.taus.iter().map(|&t| (t + 0.0).to_bits()).collect();
        taus.sort_unstable();
        if taus.windows(2).any(|w| w[0] == w[1]) {
            return Err(PipelineError::invalid(
                "taus",
                format!("{:?}", self.taus),
                "not list a value twice",
            ));
        }
        if let Some(twice) = self
            .measures
            .iter()
            .enumerate()
            .find(|(i, m)| self.measures[..*i].contains(m))
        {
            return Err(PipelineError::invalid(
                "measures",
                twice.1.name(),
                "not list a measure twice",
            ));
        }
        for (name, value) in [
            ("jobs", self.jobs),
            ("batch_size", self.batch_size),
            ("max_new_tokens", self.max_new_tokens),
            ("bench_examples", self.bench_examples),
        ] {
            if value == 0 {
                return Err(PipelineError::invalid(name, value, "not be zero"));
            }
        }
        Ok(())
    }

    fn grid_share(&self) -> f64 {
        self.grid_share.unwrap_or(match self.lambdas {
            LambdaGrid::Auto => 0.1,
            LambdaGrid::Values(_) => 0.0,
        })
    }
}

/// The λ grid: per measure from the data, or one list for all.
#[derive(Debug, Clone, PartialEq)]
pub enum LambdaGrid {
    Auto,
    Values(Vec<f64>),
}

impl std::str::FromStr for LambdaGrid {
    type Err = String;

    /// `auto`, or a strictly descending list of λs in [0, 1] (e.g. `1,0.95,0.9`).
    fn from_str(text: &str) -> std::result::Result<LambdaGrid, String> {
        parse_lambda_grid(text)
    }
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
    settings: &SweepSettings,
) -> Result<Vec<Vec<Vec<Option<f32>>>>> {
    let options = crate::model::GenerationOptions {
        max_new_tokens: settings.max_new_tokens,
        policy: crate::model::ExitPolicy::Never,
        record_all_layers: true,
    };
    let inputs: Vec<&[u32]> = examples.iter().map(|e| e.input_ids.as_slice()).collect();
    let decoded = crate::pipeline::sweep::decode_all(
        checkpoint,
        &inputs,
        &options,
        settings.jobs,
        settings.batch_size,
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

fn prepare(checkpoint: Checkpoint, settings: &SweepSettings) -> Result<Prepared> {
    let data = &settings.data;
    let metric = settings.metric;
    let grid_share = settings.grid_share();
    settings.validate()?;
    if settings.measures.contains(&Measure::Classifier) && !checkpoint.model.has_exit_classifier() {
        bail!("the classifier measure needs a checkpoint with an exit classifier (train one with train-classifier)");
    }
    let measures = if settings.measures.is_empty() {
        let mut measures = vec![Measure::SoftmaxDiff, Measure::State];
        if checkpoint.model.has_exit_classifier() {
            measures.push(Measure::Classifier);
        }
        measures
    } else {
        settings.measures.clone()
    };
    // Read before the sweep, so that a bad benchmark file fails at once, not after it.
    let bench = match &settings.bench_data {
        Some(path) => {
            let examples = read_task_examples(
                path,
                settings.task.as_deref(),
                Some(settings.bench_examples),
            )?;
            Some((path.clone(), encode_examples(&checkpoint, &examples, path)?))
        }
        None => None,
    };
    let mut examples = read_task_examples(data, settings.task.as_deref(), settings.max_examples)?;
    // The auto grid's examples are drawn before sharding, so every shard places the same grid.
    let (grid, test) =
        crate::record::grid::grid_split(examples.len(), grid_share, settings.grid_seed);
    let picked: Vec<_> = grid.iter().map(|&i| examples[i].clone()).collect();
    examples = test.into_iter().map(|i| examples[i].clone()).collect();
    let lambdas = match &settings.lambdas {
        LambdaGrid::Values(values) => vec![values.clone(); measures.len()],
        LambdaGrid::Auto => {
            if picked.is_empty() {
                bail!("an auto λ grid needs grid examples: a grid share above 0 and at least two examples");
            }
            let encoded = encode_examples(&checkpoint, &picked, data)?;
            grid_confidences(&checkpoint, &encoded, &measures, settings)?
                .iter()
                .map(|c| {
                    crate::record::grid::auto_lambdas(c, checkpoint.model.num_decoder_layers())
                })
                .collect()
        }
    };
    let grid_examples: Vec<String> = picked.into_iter().map(|e| e.id).collect();
    if let Some((k, n)) = settings.shard {
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

/// Shard k of N (`settings.shard`): sweep the whole grid over this shard's examples and write
/// its records only (`records-k-of-N.parquet` in `out`); returns the file.
pub fn sweep_shard(
    checkpoint: Checkpoint,
    settings: &SweepSettings,
    out: &Path,
) -> Result<PathBuf, PipelineError> {
    Ok(sweep_shard_inner(checkpoint, settings, out)?)
}

fn sweep_shard_inner(
    checkpoint: Checkpoint,
    settings: &SweepSettings,
    out: &Path,
) -> Result<PathBuf> {
    let (k, n) = settings.shard.context("no shard given")?;
    let prepared = prepare(checkpoint, settings)?;
    let sweep_options = SweepOptions {
        measures: prepared.measures.clone(),
        taus: settings.taus.clone(),
        lambdas: prepared.lambdas.clone(),
        consistency: settings.consistency,
        max_new_tokens: settings.max_new_tokens,
        jobs: settings.jobs,
        batch_size: settings.batch_size,
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
    settings: &SweepSettings,
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
        settings.consistency,
        &score,
        settings.max_new_tokens,
        settings.jobs,
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
    settings: &SweepSettings,
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
            settings.consistency,
            &score,
            settings.max_new_tokens,
            settings.jobs,
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

/// What [`calibrate_model`] made: the thresholds file (also written to the run folder), the
/// files it wrote, and the records.
pub struct ModelCalibration {
    pub thresholds: ThresholdsFile,
    pub written: Vec<PathBuf>,
    pub records: Records,
}

/// Calibrate `checkpoint` (loaded from `model_dir`, with its prompt format) on the settings'
/// data: sweep the grid into records, certify with Learn then Test at `options`, select the
/// cheapest certified configuration, recalibrate the frontier, benchmark on `bench_data`, and
/// write the run folder `out` (thresholds.json, candidates.csv, frontier.json, records and
/// traces, report.md and plots).
pub fn calibrate_model(
    checkpoint: Checkpoint,
    model_dir: &Path,
    settings: &SweepSettings,
    options: &CalibrationOptions,
    out: &Path,
) -> Result<ModelCalibration, PipelineError> {
    settings.validate()?;
    options.validate()?;
    let (thresholds, written, records) =
        calibrate_model_inner(checkpoint, model_dir, settings, options, out)?;
    Ok(ModelCalibration {
        thresholds,
        written,
        records,
    })
}

fn calibrate_model_inner(
    checkpoint: Checkpoint,
    model_dir: &Path,
    settings: &SweepSettings,
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
    } = prepare(checkpoint, settings)?;
    let data = &data;
    // Fixed-sequence testing stops a chain at its first non-rejection: stop sweeping it there.
    let chains = measures.len() * settings.taus.len();
    let level = options.epsilon / chains as f64;
    let mut id_order: Vec<usize> = (0..sweep_examples.len()).collect();
    id_order.sort_by(|&a, &b| sweep_examples[a].id.cmp(&sweep_examples[b].id));
    // With --early-stop (fixed-sequence only) a chain stops at its first failure at this δ;
    // otherwise the whole grid is swept, so the frontier can recalibrate every λ at every δ.
    let early_stop = settings.early_stop && options.procedure == Procedure::FixedSequence;
    let mut keep_going = |losses: &[f64]| -> bool {
        if !early_stop {
            return true;
        }
        let ordered: Vec<f64> = id_order.iter().map(|&i| losses[i]).collect();
        candidate_p_value(&ordered, options) <= level
    };
    let grid = settings.taus.len() * lambdas.iter().map(Vec::len).sum::<usize>();
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
        taus: settings.taus.clone(),
        lambdas: lambdas.clone(),
        consistency: settings.consistency,
        max_new_tokens: settings.max_new_tokens,
        jobs: settings.jobs,
        batch_size: settings.batch_size,
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
            let selected = benchmark(&checkpoint, &output, settings, metric, bench)?;
            measure_frontier(
                &checkpoint,
                &mut frontier,
                &output,
                selected.as_ref(),
                settings,
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
        task: settings.task.clone(),
        examples: sweep_examples.len(),
        metric,
        consistency: settings.consistency,
        measures: measures.clone(),
        taus: settings.taus.clone(),
        lambdas: lambdas.clone(),
        grid: (!grid_examples.is_empty()).then(|| GridInfo {
            auto: settings.lambdas == LambdaGrid::Auto,
            share: grid_share,
            seed: settings.grid_seed,
            steps: crate::record::grid::GRID_STEPS,
            examples: grid_examples.clone(),
        }),
        max_new_tokens: settings.max_new_tokens,
        prompt_template: checkpoint.prompt.template().map(str::to_string),
        gguf_weights: checkpoint
            .gguf_options
            .map(|o| o.gguf_weights_name().to_string()),
        dtype: Some(checkpoint.model.dtype())
            .filter(|&d| d != candle_core::DType::F32)
            .map(|d| crate::model::dtype_name(d).to_string()),
        sweep: SweepInfo {
            configurations_evaluated: result.evaluated,
            configurations_in_grid: result.grid,
            full_tokens: result.full_tokens,
            full_seconds: result.full_seconds,
            early_tokens: result.early_tokens,
            early_seconds: result.early_seconds,
            configurations: result.timings.clone(),
            jobs: settings.jobs,
            early_stop,
            batch_size: settings.batch_size,
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
