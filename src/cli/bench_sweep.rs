//! `calm bench sweep`: the calibration sweep's decoding at batch 1 against length-bucketed
//! batches, side by side in one run: tokens/s of the full model and of one configuration per
//! measure, and how often the batched outputs differ from batch 1's (tokens, exit layers).

use super::generate::set_threads;
use crate::data::read_task_examples;
use crate::model::{ExitPolicy, Generation, GenerationOptions, Measure};
use crate::pipeline::replay::encode_examples;
use crate::pipeline::sweep::decode_all;
use crate::util::atomic::write_file_atomically;
use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct BenchSweepArgs {
    #[command(flatten)]
    pub model_args: super::model_args::ModelArgs,
    /// Checkpoint: a directory in Hugging Face layout (config.json, model.safetensors or shards, tokenizer.json) of a T5, Llama, Qwen2 or Mistral model, or a llama-architecture .gguf file.
    #[arg(long, value_name = "PATH", default_value = "datasets/bible/model")]
    pub model: PathBuf,
    /// Labelled examples (JSONL or JSONL.gz).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "datasets/bible/calibration.jsonl.gz"
    )]
    pub data: PathBuf,
    /// Only examples of this task.
    #[arg(long, default_value = "modernize")]
    pub task: String,
    /// Examples decoded per measurement (the first ones of the task).
    #[arg(long, default_value_t = 500)]
    pub examples: usize,
    /// Batch sizes to compare with batch 1.
    #[arg(long, value_delimiter = ',', default_value = "8,16,32,64")]
    pub batch: Vec<usize>,
    /// Parallel decoders (one core each).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Maximum output length N, in tokens.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Configurations besides the full model, as MEASURE:TAU:LAMBDA [default: one per measure
    /// the checkpoint supports, near the main job's certified region].
    #[arg(long, value_delimiter = ',', value_name = "M:T:L")]
    pub configurations: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON result to this file [default: stdout only].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct SweepRun {
    configuration: String,
    batch: usize,
    tokens: usize,
    seconds: f64,
    tokens_per_second: f64,
    /// tokens/s over batch 1's for the same configuration.
    speedup_vs_batch_1: f64,
    /// Examples whose generated ids differ from batch 1's.
    examples_with_other_tokens: usize,
    /// Examples whose ids are equal but whose exit layers differ.
    examples_with_other_exit_layers: usize,
    /// Tokens (of examples with equal ids) whose exit layer differs.
    tokens_with_other_exit_layer: usize,
}

#[derive(Debug, Serialize)]
struct SweepBench {
    benchmark: &'static str,
    model: PathBuf,
    data: PathBuf,
    examples: usize,
    jobs: usize,
    max_new_tokens: usize,
    runs: Vec<SweepRun>,
}

fn parse_configuration(text: &str) -> Result<(String, ExitPolicy)> {
    let parts: Vec<&str> = text.split(':').collect();
    let parsed = match parts.as_slice() {
        [measure, tau, lambda] => Measure::from_name(measure)
            .zip(tau.parse::<f64>().ok())
            .zip(lambda.parse::<f64>().ok()),
        _ => None,
    };
    let Some(((measure, tau), lambda)) = parsed else {
        bail!("--configurations: expected MEASURE:TAU:LAMBDA (e.g. state:4:0.9), got {text:?}");
    };
    if !(tau.is_finite() && tau >= 0.0 && (0.0..=1.0).contains(&lambda)) {
        bail!("--configurations {text:?}: τ must be a finite number ≥ 0 and λ lie in [0, 1]");
    }
    Ok((
        format!("{} tau={tau} lambda={lambda}", measure.name()),
        ExitPolicy::Threshold {
            measure,
            lambda,
            tau,
            min_exit: 1,
        },
    ))
}

pub fn run(args: BenchSweepArgs) -> Result<u8> {
    set_threads(1);
    if args.jobs == 0 || args.batch.contains(&0) {
        bail!("--jobs and --batch must not be zero");
    }
    let checkpoint = args.model_args.load(&args.model)?;
    let examples = read_task_examples(&args.data, Some(&args.task), Some(args.examples))?;
    let examples = encode_examples(&checkpoint, &examples, &args.data)?;
    let inputs: Vec<&[u32]> = examples.iter().map(|e| e.input_ids.as_slice()).collect();
    let mut configurations = vec![("full".to_string(), ExitPolicy::Never)];
    if args.configurations.is_empty() {
        for text in ["softmax-diff:4:0.9", "state:4:0.9"] {
            configurations.push(parse_configuration(text)?);
        }
        if checkpoint.model.has_exit_classifier() {
            configurations.push(parse_configuration("classifier:4:0.7")?);
        }
    } else {
        for text in &args.configurations {
            configurations.push(parse_configuration(text)?);
        }
    }
    let decode = |policy: ExitPolicy, batch: usize| -> Result<(Vec<Generation>, f64)> {
        let options = GenerationOptions {
            max_new_tokens: args.max_new_tokens,
            policy,
            record_all_layers: false,
        };
        let start = Instant::now();
        let decoded = decode_all(&checkpoint, &inputs, &options, args.jobs, batch)?;
        Ok((
            decoded.into_iter().map(|(g, _)| g).collect(),
            start.elapsed().as_secs_f64(),
        ))
    };
    // Untimed warm-up of both paths.
    let warm: Vec<&[u32]> = inputs.iter().take(16).copied().collect();
    let options = GenerationOptions {
        max_new_tokens: args.max_new_tokens,
        policy: ExitPolicy::Never,
        record_all_layers: false,
    };
    decode_all(&checkpoint, &warm, &options, args.jobs, 1)?;
    decode_all(&checkpoint, &warm, &options, args.jobs, 16)?;

    let mut runs = Vec::new();
    for (name, policy) in &configurations {
        let (reference, seconds) = decode(*policy, 1)?;
        let tokens: usize = reference.iter().map(|g| g.tokens.len()).sum();
        let base = tokens as f64 / seconds.max(1e-9);
        runs.push(SweepRun {
            configuration: name.clone(),
            batch: 1,
            tokens,
            seconds,
            tokens_per_second: base,
            speedup_vs_batch_1: 1.0,
            examples_with_other_tokens: 0,
            examples_with_other_exit_layers: 0,
            tokens_with_other_exit_layer: 0,
        });
        for &batch in &args.batch {
            let (batched, seconds) = decode(*policy, batch)?;
            let tokens: usize = batched.iter().map(|g| g.tokens.len()).sum();
            let mut other_tokens = 0;
            let mut other_layers = 0;
            let mut other_layer_tokens = 0;
            for (a, b) in reference.iter().zip(&batched) {
                if a.tokens != b.tokens {
                    other_tokens += 1;
                    continue;
                }
                let differing = a
                    .exit_layers()
                    .iter()
                    .zip(b.exit_layers())
                    .filter(|(x, y)| **x != *y)
                    .count();
                other_layer_tokens += differing;
                other_layers += usize::from(differing > 0);
            }
            let tokens_per_second = tokens as f64 / seconds.max(1e-9);
            runs.push(SweepRun {
                configuration: name.clone(),
                batch,
                tokens,
                seconds,
                tokens_per_second,
                speedup_vs_batch_1: tokens_per_second / base,
                examples_with_other_tokens: other_tokens,
                examples_with_other_exit_layers: other_layers,
                tokens_with_other_exit_layer: other_layer_tokens,
            });
        }
    }
    let result = SweepBench {
        benchmark: "sweep",
        model: args.model.clone(),
        data: args.data.clone(),
        examples: examples.len(),
        jobs: args.jobs,
        max_new_tokens: args.max_new_tokens,
        runs,
    };
    let json = serde_json::to_string_pretty(&result)? + "\n";
    if let Some(path) = &args.out {
        write_file_atomically(path, json.as_bytes())?;
    }
    if args.json {
        print!("{json}");
    } else {
        println!(
            "{} examples of {}, {} jobs, N = {}",
            result.examples,
            args.data.display(),
            args.jobs,
            args.max_new_tokens
        );
        println!("| configuration | batch | tokens/s | × batch 1 | examples with other ids | other exit layers (examples / tokens) |");
        println!("|---|---|---|---|---|---|");
        for run in &result.runs {
            println!(
                "| {} | {} | {:.0} | {:.2} | {} | {} / {} |",
                run.configuration,
                run.batch,
                run.tokens_per_second,
                run.speedup_vs_batch_1,
                run.examples_with_other_tokens,
                run.examples_with_other_exit_layers,
                run.tokens_with_other_exit_layer
            );
        }
    }
    Ok(0)
}
