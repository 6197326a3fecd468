//! `calm train-classifier`: the early-exit classifier on a frozen checkpoint.

use super::generate::set_threads;
use crate::train::classifier::{train_classifier, ClassifierOptions};
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  calm train-classifier --model runs/bible-model --data datasets/bible/train.jsonl.gz --eval datasets/bible/test.jsonl.gz"
)]
pub struct TrainClassifierArgs {
    /// Checkpoint directory (T5 or Llama-family, one model.safetensors); its model.safetensors
    /// gains calm.exit_classifier.{weight,bias}.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Decoder-only models: a prompt template with `{input}` for the inputs (the references
    /// are the completions after it), as given to `calibrate --model` [default: the input as
    /// given].
    #[arg(long, value_name = "TEMPLATE")]
    pub prompt_template: Option<String>,
    /// Training examples (JSONL or JSONL.gz).
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub data: Vec<PathBuf>,
    /// Train and evaluate on this task's examples only (e.g. the task a model was trained on)
    /// [default: every task].
    #[arg(long, value_name = "TASK")]
    pub task: Option<String>,
    /// Held-out examples for the per-layer F1 report [default: none, no report].
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub eval: Vec<PathBuf>,
    /// Optimizer steps of the classifier (the model stays frozen).
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Padded tokens per batch (batches of similar-length pairs).
    #[arg(long, default_value_t = 4096)]
    pub batch_tokens: usize,
    /// AdamW learning rate of the classifier.
    #[arg(long, default_value_t = 1e-2)]
    pub learning_rate: f64,
    /// Use only pairs whose input and reference both fit in this many tokens.
    #[arg(long, default_value_t = 64)]
    pub max_tokens_per_sequence: usize,
    /// Seed of the batch order and initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the per-layer F1 as JSON.
    #[arg(long)]
    pub json: bool,
    /// Compute threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

pub fn run(args: TrainClassifierArgs) -> Result<u8> {
    set_threads(args.threads);
    if args.steps == 0 || args.batch_tokens == 0 {
        bail!("--steps and --batch-tokens must be at least 1");
    }
    let options = ClassifierOptions {
        task: args.task,
        data: args.data,
        eval: args.eval,
        steps: args.steps,
        batch_tokens: args.batch_tokens,
        learning_rate: args.learning_rate,
        max_tokens_per_sequence: args.max_tokens_per_sequence,
        seed: args.seed,
        prompt: match &args.prompt_template {
            Some(t) => crate::model::PromptFormat::from_template(t)?,
            None => crate::model::PromptFormat::Plain,
        },
    };
    let report = train_classifier(&args.model, &options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    println!(
        "wrote the exit classifier into {}/model.safetensors",
        args.model.display()
    );
    if !report.is_empty() {
        println!("layer  consistent  F1(exit)  F1(don't exit)");
        for row in &report {
            println!(
                "{:>5}  {:>9.1}%  {:>8.3}  {:>14.3}",
                row.layer,
                row.consistent_share * 100.0,
                row.f1_exit,
                row.f1_dont_exit
            );
        }
    }
    Ok(0)
}
