//! `calm bench decode`: tokens/s of full decoding and of exits at each layer, and the decoder's
//! time per token at exit layer j against the ideal L/j.

use super::generate::set_threads;
use crate::model::config::T5Shape;
use crate::model::init::random_weights;
use crate::model::t5::{EXIT_CLASSIFIER_BIAS, EXIT_CLASSIFIER_WEIGHT};
use crate::model::{generate, ExitPolicy, GenerationOptions, Measure, T5Config, T5Model};
use crate::util::atomic::write_file_atomically;
use crate::util::rng::Rng;
use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use clap::Args;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct BenchDecodeArgs {
    #[command(flatten)]
    pub model_args: super::model_args::ModelArgs,
    /// Checkpoint directory or .gguf file (see `calm generate --help`) [default: a seeded random
    /// T5 of the size below].
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Width of the random model (without --model).
    #[arg(long, default_value_t = 256)]
    pub d_model: usize,
    /// Encoder layers of the random model.
    #[arg(long, default_value_t = 4)]
    pub encoder_layers: usize,
    /// Decoder layers L of the random model.
    #[arg(long, default_value_t = 8)]
    pub decoder_layers: usize,
    /// Attention heads of the random model.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Feed-forward width of the random model.
    #[arg(long, default_value_t = 1024)]
    pub d_ff: usize,
    /// Vocabulary size of the random model (the exit head's cost grows with it).
    #[arg(long, default_value_t = 8000)]
    pub vocab: usize,
    /// Exit layers j to measure forced exits at [default: every layer below the top].
    #[arg(long, value_delimiter = ',', value_name = "J,...")]
    pub exit_layers: Option<Vec<usize>>,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub batch: Vec<usize>,
    /// Inputs per measurement (random token ids, or the first ones of --data).
    #[arg(long, default_value_t = 16)]
    pub examples: usize,
    /// With --model: decode these labelled examples' inputs (JSONL, CSV or Parquet, as for
    /// `calm calibrate`) instead of random token ids, so that real outputs and exits are timed
    /// [default: random token ids].
    #[arg(long, value_name = "FILE", requires = "model")]
    pub data: Option<PathBuf>,
    /// With --data: only examples of this task [default: every task].
    #[arg(long, value_name = "TASK", requires = "data")]
    pub task: Option<String>,
    /// With --model: also time the certified configuration of this thresholds.json (made for
    /// the same model) as the policy `certified`, whose exit layers vary token to token
    /// [default: none].
    #[arg(long, value_name = "FILE", requires = "model")]
    pub thresholds: Option<PathBuf>,
    /// Tokens per random input (without --data).
    #[arg(long, default_value_t = 24)]
    pub input_tokens: usize,
    /// Output length N in tokens (random models rarely stop early).
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Compute threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Timed repetitions of every measurement; the fastest is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON result to this file [default: stdout only].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Where a run's time went, in milliseconds: the prefill per example, the rest per generated
/// token (`other` is the decoding time no timed part covers: embedding, row gathers, cache
/// appends, bookkeeping).
#[derive(Debug, Serialize)]
struct TimeSplit {
    prefill_ms_per_example: f64,
    layers_ms_per_token: f64,
    propagation_ms_per_token: f64,
    exit_checks_ms_per_token: f64,
    head_ms_per_token: f64,
    other_ms_per_token: f64,
}

#[derive(Debug, Serialize)]
struct DecodeRun {
    policy: String,
    /// The forced exit layer; for `certified`, the mean exit layer rounded down.
    exit_layer: usize,
    /// Mean exit layer of the generated tokens (the prefill's token excluded).
    mean_layers: f64,
    batch: usize,
    tokens: usize,
    seconds: f64,
    tokens_per_second: f64,
    decoder_ms_per_token: f64,
    decoder_speedup: f64,
    ideal_speedup: f64,
    speedup_vs_ideal: f64,
    /// Measured on the last repetition.
    time_split: TimeSplit,
}

#[derive(Debug, Serialize)]
struct DecodeBench {
    benchmark: &'static str,
    model: String,
    num_layers: usize,
    d_model: usize,
    vocab: usize,
    threads: usize,
    examples: usize,
    input_tokens: usize,
    max_new_tokens: usize,
    repeat: usize,
    runs: Vec<DecodeRun>,
}

fn random_model(args: &BenchDecodeArgs) -> Result<T5Model> {
    let config = T5Config::v1_1(T5Shape {
        vocab_size: args.vocab,
        d_model: args.d_model,
        d_ff: args.d_ff,
        heads: args.heads,
        encoder_layers: args.encoder_layers,
        decoder_layers: args.decoder_layers,
        tie_embeddings: false,
    });
    config.validate()?;
    let device = Device::Cpu;
    let mut weights: HashMap<String, Tensor> = random_weights(&config, true, 7, &device)?
        .into_iter()
        .collect();
    // A constant, confident classifier (w = 0, b = 10), so that λ = 0 with min_exit = j exits
    // exactly at layer j while paying the classifier's full cost.
    weights.insert(
        EXIT_CLASSIFIER_WEIGHT.to_string(),
        Tensor::zeros((1, args.d_model), DType::F32, &device)?,
    );
    weights.insert(
        EXIT_CLASSIFIER_BIAS.to_string(),
        Tensor::new(&[10f32], &device)?,
    );
    let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
    Ok(T5Model::load(&config, vb)?)
}

pub fn run(args: BenchDecodeArgs) -> Result<u8> {
    set_threads(args.threads);
    if args.examples == 0 || args.batch.contains(&0) || args.max_new_tokens == 0 || args.repeat == 0
    {
        bail!("--examples, --batch, --max-new-tokens and --repeat must be at least 1");
    }
    let Some(dir) = args.model.clone() else {
        let model = crate::model::Model::T5(random_model(&args)?);
        let name = format!(
            "random T5 d_model {} encoder {} decoder {} vocab {}",
            args.d_model, args.encoder_layers, args.decoder_layers, args.vocab
        );
        let inputs = random_inputs(&args, &model);
        return bench(&args, model, name, inputs, None);
    };
    let model = args.model_args.load(&dir)?;
    let inputs = match &args.data {
        Some(data) => {
            let examples =
                crate::data::read_task_examples(data, args.task.as_deref(), Some(args.examples))?;
            crate::pipeline::replay::encode_examples(&model, &examples, data)?
                .into_iter()
                .map(|e| e.input_ids)
                .collect()
        }
        None => random_inputs(&args, &model.model),
    };
    let certified = match &args.thresholds {
        Some(path) => match super::generate::certified_policy(path, &model, &dir)?.0 {
            // The certified configuration is the full model (never exit): the `full` run.
            ExitPolicy::Never => {
                eprintln!(
                    "{}: selects never exit; the full model's run is the certified one",
                    path.display()
                );
                None
            }
            policy => Some(policy),
        },
        None => None,
    };
    bench(
        &args,
        model.model,
        dir.display().to_string(),
        inputs,
        certified,
    )
}

/// `--examples` random inputs of `--input-tokens` tokens (T5's ending with `</s>`).
fn random_inputs(args: &BenchDecodeArgs, model: &crate::model::Model) -> Vec<Vec<u32>> {
    let mut rng = Rng::new(11);
    let vocab = model.vocab_size() as u64;
    let eos = model.as_t5().map(|m| m.config.eos());
    (0..args.examples)
        .map(|_| {
            let mut ids: Vec<u32> = (0..args.input_tokens.max(1) - 1)
                .map(|_| 3 + rng.below(vocab.saturating_sub(3).max(1)) as u32)
                .collect();
            ids.extend(eos);
            ids
        })
        .collect()
}

fn bench(
    args: &BenchDecodeArgs,
    model: crate::model::Model,
    model_name: String,
    inputs: Vec<Vec<u32>>,
    certified: Option<ExitPolicy>,
) -> Result<u8> {
    let depth = model.num_decoder_layers();
    if inputs.is_empty() {
        bail!("no inputs to decode");
    }
    let mut policies: Vec<(String, usize, ExitPolicy)> =
        vec![("full".into(), depth, ExitPolicy::Never)];
    let layers: Vec<usize> = match &args.exit_layers {
        Some(layers) => {
            if let Some(bad) = layers.iter().find(|&&j| j == 0 || j >= depth) {
                bail!(
                    "--exit-layers: {bad} is outside 1..{depth} (the top layer is the full model)"
                );
            }
            layers.clone()
        }
        None => (1..depth).collect(),
    };
    for &j in &layers {
        policies.push((format!("fixed@{j}"), j, ExitPolicy::Fixed(j)));
    }
    for &j in layers.iter().filter(|&&j| j >= 2) {
        policies.push((
            format!("state@{j}"),
            j,
            ExitPolicy::Threshold {
                measure: Measure::State,
                lambda: 0.0,
                // λ_t = 0.1·exp(−τt/N) is 0 after the first token: the exit is at layer j
                // whatever the cosine.
                tau: 1e9,
                min_exit: j,
            },
        ));
    }
    if model.has_exit_classifier() {
        for &j in &layers {
            policies.push((
                format!("classifier@{j}"),
                j,
                ExitPolicy::Threshold {
                    measure: Measure::Classifier,
                    lambda: 0.0,
                    tau: 0.0,
                    min_exit: j,
                },
            ));
        }
    }
    if let Some(policy) = certified {
        policies.push(("certified".into(), 0, policy));
    }
    let mut runs = Vec::new();
    for &batch in &args.batch {
        // Encoder time for these inputs, measured once, is subtracted to get decoder time.
        let chunks: Vec<&[Vec<u32>]> = inputs.chunks(batch).collect();
        let _warm = generate(
            &model,
            chunks[0],
            &GenerationOptions {
                max_new_tokens: 2,
                policy: ExitPolicy::Never,
                record_all_layers: false,
            },
        )?;
        let mut encoder_seconds = f64::INFINITY;
        for _ in 0..args.repeat {
            let start = Instant::now();
            for chunk in &chunks {
                model.start_batch(chunk)?;
            }
            encoder_seconds = encoder_seconds.min(start.elapsed().as_secs_f64());
        }
        let mut full_ms = None;
        for (name, layer, policy) in &policies {
            let options = GenerationOptions {
                max_new_tokens: args.max_new_tokens,
                policy: *policy,
                record_all_layers: false,
            };
            let mut seconds = f64::INFINITY;
            let mut tokens = 0;
            let mut exit_layers = Vec::new();
            let mut profile = crate::model::profile::TimeProfile::default();
            for _ in 0..args.repeat {
                crate::model::profile::begin();
                let start = Instant::now();
                tokens = 0;
                exit_layers.clear();
                for chunk in &chunks {
                    for generation in generate(&model, chunk, &options)? {
                        // Decoder-only: the first token is the prefill's (full model).
                        let skip = usize::from(model.prefills_prompt());
                        tokens += generation.tokens.len().saturating_sub(skip);
                        exit_layers.extend(generation.exit_layers().into_iter().skip(skip));
                    }
                }
                seconds = seconds.min(start.elapsed().as_secs_f64());
                profile = crate::model::profile::end();
            }
            let certified_run = name == "certified";
            if !certified_run && exit_layers.iter().any(|l| l != layer) {
                bail!("benchmark policy {name} did not exit at layer {layer}");
            }
            let mean_layers = if exit_layers.is_empty() {
                depth as f64
            } else {
                exit_layers.iter().sum::<usize>() as f64 / exit_layers.len() as f64
            };
            let decoder_ms = (seconds - encoder_seconds).max(0.0) * 1000.0 / tokens.max(1) as f64;
            let full = *full_ms.get_or_insert(decoder_ms);
            let ideal = depth as f64 / mean_layers;
            let per_token = |s: f64| s * 1000.0 / tokens.max(1) as f64;
            let time_split = TimeSplit {
                prefill_ms_per_example: encoder_seconds * 1000.0 / inputs.len() as f64,
                layers_ms_per_token: per_token(profile.layers_seconds),
                propagation_ms_per_token: per_token(profile.propagation_seconds),
                exit_checks_ms_per_token: per_token(profile.exit_checks_seconds),
                head_ms_per_token: per_token(profile.head_seconds),
                other_ms_per_token: (decoder_ms - per_token(profile.decode_parts_seconds()))
                    .max(0.0),
            };
            let speedup = full / decoder_ms;
            runs.push(DecodeRun {
                policy: name.clone(),
                exit_layer: if certified_run {
                    mean_layers.floor() as usize
                } else {
                    *layer
                },
                mean_layers,
                batch,
                tokens,
                seconds,
                tokens_per_second: tokens as f64 / seconds,
                decoder_ms_per_token: decoder_ms,
                decoder_speedup: speedup,
                ideal_speedup: ideal,
                speedup_vs_ideal: speedup / ideal,
                time_split,
            });
        }
    }
    let result = DecodeBench {
        benchmark: "decode",
        model: model_name,
        num_layers: depth,
        d_model: model.hidden_size(),
        vocab: model.vocab_size(),
        threads: args.threads,
        examples: inputs.len(),
        input_tokens: inputs.iter().map(Vec::len).sum::<usize>() / inputs.len(),
        max_new_tokens: args.max_new_tokens,
        repeat: args.repeat,
        runs,
    };
    let json = serde_json::to_string_pretty(&result)? + "\n";
    if let Some(out) = &args.out {
        write_file_atomically(out, json.as_bytes())?;
    }
    if args.json {
        print!("{json}");
    } else {
        println!(
            "{} ({} threads), {} inputs x {} new tokens",
            result.model, result.threads, result.examples, result.max_new_tokens
        );
        println!(
            "{:<16} {:>5} {:>8} {:>10} {:>12} {:>9} {:>7} {:>8}",
            "policy", "batch", "tokens", "tokens/s", "dec ms/tok", "speedup", "ideal", "of ideal"
        );
        for r in &result.runs {
            println!(
                "{:<16} {:>5} {:>8} {:>10.1} {:>12.3} {:>9.2} {:>7.2} {:>7.0}%",
                r.policy,
                r.batch,
                r.tokens,
                r.tokens_per_second,
                r.decoder_ms_per_token,
                r.decoder_speedup,
                r.ideal_speedup,
                r.speedup_vs_ideal * 100.0
            );
        }
    }
    println!();
    println!("where the time goes (ms; prefill per example, the rest per generated token)");
    println!(
        "{:<16} {:>5} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "policy", "batch", "layers", "prefill", "layers", "propag.", "checks", "head", "other"
    );
    for r in &result.runs {
        let t = &r.time_split;
        println!(
            "{:<16} {:>5} {:>6.2} {:>9.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            r.policy,
            r.batch,
            r.mean_layers,
            t.prefill_ms_per_example,
            t.layers_ms_per_token,
            t.propagation_ms_per_token,
            t.exit_checks_ms_per_token,
            t.head_ms_per_token,
            t.other_ms_per_token
        );
    }
    Ok(0)
}
