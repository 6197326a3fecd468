//! `calm generate`: run the model with or without early exit and show where each token exited.

use crate::calibrate::thresholds::read_thresholds;
use crate::model::{generate, Checkpoint, ExitPolicy, Generation, GenerationOptions, Measure};
use crate::pipeline::check::selected_configuration;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  calm generate --model tests/fixtures/t5/gated --input \"the cat sat\" --never-exit\n  \
echo \"a dog runs\" | calm generate --model DIR --input - --measure softmax-diff --lambda 0.8 --tau 4"
)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model_args: super::model_args::ModelArgs,
    /// Checkpoint: a directory in Hugging Face layout (config.json, model.safetensors or shards, tokenizer.json) of a T5, Llama, Qwen2 or Mistral model, or a llama-architecture .gguf file.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// Input text, or `-` to read one input per line from stdin (one JSON line out per input).
    #[arg(long, value_name = "TEXT")]
    pub input: String,
    /// Confidence measure for early exit [default: none, the full model].
    #[arg(long, value_enum, requires = "lambda", conflicts_with_all = ["never_exit", "oracle", "exit_layer"])]
    pub measure: Option<Measure>,
    /// Threshold λ in [0, 1] of --measure [default: none; required with --measure].
    #[arg(long, requires = "measure")]
    pub lambda: Option<f64>,
    /// Temperature τ ≥ 0 of the decaying threshold λ_t = clip(0.9λ + 0.1·exp(−τt/N)).
    #[arg(long, default_value_t = 0.0, requires = "measure")]
    pub tau: f64,
    /// Never exit before this layer.
    #[arg(long, default_value_t = 1, requires = "measure")]
    pub min_exit: usize,
    /// Run the full model (the default when no measure is given).
    #[arg(long, conflicts_with_all = ["oracle", "exit_layer"])]
    pub never_exit: bool,
    /// Exit at the first layer whose prediction equals the top layer's (analysis).
    #[arg(long, conflicts_with = "exit_layer")]
    pub oracle: bool,
    /// Always exit at this layer, 1-based (analysis) [default: none].
    #[arg(long, value_name = "J")]
    pub exit_layer: Option<usize>,
    /// Use the certified configuration of a thresholds.json (from `calm calibrate --model`
    /// with this model: the sha256 must match) and its output length N (the certificate holds
    /// for that N only; another --max-new-tokens gets a warning) [default: none].
    #[arg(long, value_name = "FILE", conflicts_with_all = ["measure", "never_exit", "oracle", "exit_layer"])]
    pub thresholds: Option<PathBuf>,
    /// Maximum output length N in tokens, also the horizon of the decaying threshold
    /// [default: 64, or the calibrated N with --thresholds].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Print JSON: text, tokens, exit_layers (and per-token confidences).
    #[arg(long)]
    pub json: bool,
    /// Compute threads (batch-1 decoding is fastest on one).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

#[derive(Debug, Serialize)]
struct GenerateOutput<'a> {
    text: String,
    tokens: &'a [u32],
    exit_layers: Vec<usize>,
    mean_layers: f64,
    num_layers: usize,
    confidences: Vec<&'a [Option<f32>]>,
}

/// Set the compute thread count before candle starts its pool.
pub fn set_threads(threads: usize) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", threads.max(1).to_string());
    }
}

impl GenerateArgs {
    fn policy(&self) -> Result<ExitPolicy> {
        if let Some(layer) = self.exit_layer {
            return Ok(ExitPolicy::Fixed(layer));
        }
        if self.oracle {
            return Ok(ExitPolicy::Oracle);
        }
        match (self.measure, self.lambda) {
            (Some(measure), Some(lambda)) => {
                if !(0.0..=1.0).contains(&lambda) {
                    bail!("--lambda must lie in [0, 1] (got {lambda})");
                }
                if !(self.tau >= 0.0 && self.tau.is_finite()) {
                    bail!("--tau must be a finite number ≥ 0 (got {})", self.tau);
                }
                Ok(ExitPolicy::Threshold {
                    measure,
                    lambda,
                    tau: self.tau,
                    min_exit: self.min_exit,
                })
            }
            _ => Ok(ExitPolicy::Never),
        }
    }
}

/// The certified policy and output length N of a thresholds file made for this checkpoint
/// (None for a config made from records, which names no model or N).
pub(super) fn certified_policy(
    path: &Path,
    checkpoint: &Checkpoint,
    model_dir: &Path,
) -> Result<(ExitPolicy, Option<usize>)> {
    let config = read_thresholds(path)?;
    if let Some(run) = &config.run {
        run.require_model(&checkpoint.model_sha256, model_dir, path)?;
    }
    let policy = match selected_configuration(&config.selected, &path.display().to_string())? {
        Some(c) => ExitPolicy::Threshold {
            measure: c.measure,
            lambda: c.lambda,
            tau: c.tau,
            min_exit: 1,
        },
        None => ExitPolicy::Never,
    };
    Ok((policy, config.run.as_ref().map(|r| r.max_new_tokens)))
}

pub fn run(args: GenerateArgs) -> Result<u8> {
    set_threads(args.threads);
    let mut policy = args.policy()?;
    let thresholds_run = match &args.thresholds {
        Some(path) => read_thresholds(path)?.run,
        None => None,
    };
    let checkpoint = match (&thresholds_run, &args.thresholds) {
        (Some(run), Some(path)) => args.model_args.load_for_run(&args.model, run, path)?,
        _ => args.model_args.load(&args.model)?,
    };
    let mut calibrated_length = None;
    if let Some(path) = &args.thresholds {
        let (certified, length) = certified_policy(path, &checkpoint, &args.model)?;
        policy = certified;
        calibrated_length = length;
        if let (Some(calibrated), Some(asked)) = (length, args.max_new_tokens) {
            if calibrated != asked && policy != ExitPolicy::Never {
                eprintln!(
                    "warning: {} is certified for N = {calibrated} (--max-new-tokens of the calibration); N = {asked} changes every decayed threshold λ_t, so the guarantee does not cover this run",
                    path.display()
                );
            }
        }
    }
    // λ_t decays over the horizon N: with --thresholds keep the calibrated one unless overridden.
    let max_new_tokens = args.max_new_tokens.or(calibrated_length).unwrap_or(64);
    let options = GenerationOptions {
        max_new_tokens,
        policy,
        record_all_layers: false,
    };
    let depth = checkpoint.model.num_decoder_layers();
    let stdout = std::io::stdout();
    if args.input == "-" {
        let stdin = std::io::stdin();
        let mut out = stdout.lock();
        for (number, line) in stdin.lock().lines().enumerate() {
            let line = line.with_context(|| format!("cannot read stdin line {}", number + 1))?;
            let ids = checkpoint
                .encode(&line)
                .with_context(|| format!("stdin line {}", number + 1))?;
            let generation = generate(&checkpoint.model, &[ids], &options)?;
            let json = output(&checkpoint, &generation[0], depth)?;
            writeln!(out, "{}", serde_json::to_string(&json)?)?;
        }
        return Ok(0);
    }
    let ids = checkpoint.encode(&args.input)?;
    let generation = generate(&checkpoint.model, &[ids], &options)?;
    let generation = &generation[0];
    if args.json {
        let json = output(&checkpoint, generation, depth)?;
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else if stdout.is_terminal() {
        println!("{}", shaded(&checkpoint, generation, depth)?);
    } else {
        println!("{}", checkpoint.decode(&generation.tokens)?);
    }
    Ok(0)
}

fn output<'a>(
    checkpoint: &Checkpoint,
    generation: &'a Generation,
    depth: usize,
) -> Result<GenerateOutput<'a>> {
    Ok(GenerateOutput {
        text: checkpoint.decode(&generation.tokens)?,
        tokens: &generation.tokens,
        exit_layers: generation.exit_layers(),
        mean_layers: generation.mean_layers(),
        num_layers: depth,
        confidences: generation
            .traces
            .iter()
            .map(|t| t.confidences.as_slice())
            .collect(),
    })
}

/// Each token coloured by its exit layer (green = early, red = full depth), then a summary line.
fn shaded(checkpoint: &Checkpoint, generation: &Generation, depth: usize) -> Result<String> {
    // 256-colour ramp from green (early) through yellow to red (late).
    const RAMP: [u8; 8] = [46, 82, 118, 154, 190, 220, 208, 196];
    let mut text = String::new();
    for trace in &generation.traces {
        let piece = checkpoint.decode(&[trace.token])?;
        if piece.is_empty() {
            continue;
        }
        let shade = RAMP[((trace.exit_layer.saturating_sub(1)) * (RAMP.len() - 1))
            / depth.saturating_sub(1).max(1)];
        text.push_str(&format!("\x1b[38;5;{shade}m{piece}\x1b[0m "));
    }
    let layers: Vec<String> = generation
        .exit_layers()
        .iter()
        .map(|l| l.to_string())
        .collect();
    text.push_str(&format!(
        "\n\x1b[2mexit layers {} · mean {:.2} of {depth} layers\x1b[0m",
        layers.join(" "),
        generation.mean_layers()
    ));
    Ok(text)
}
