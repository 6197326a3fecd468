//! `calm evaluate`: the model card's numbers for one task.

use crate::data::read_task_examples;
use crate::pipeline::evaluate::evaluate;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  calm evaluate --model runs/bible-model --data datasets/bible/test.jsonl.gz --task modernize"
)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub model_args: super::model_args::ModelArgs,
    /// Checkpoint: a directory in Hugging Face layout (config.json, model.safetensors or shards, tokenizer.json) of a T5, Llama, Qwen2 or Mistral model, or a llama-architecture .gguf file.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// Labelled examples (JSONL or JSONL.gz).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// The task to evaluate (examples of other tasks are skipped).
    #[arg(long)]
    pub task: String,
    /// Evaluate at most this many examples of the task (the first ones) [default: all].
    #[arg(long)]
    pub max_examples: Option<usize>,
    /// Maximum output length N of every decoding, in tokens.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Parallel decoders (one core each).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Print the model card as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: EvaluateArgs) -> Result<u8> {
    super::generate::set_threads(1);
    let checkpoint = args.model_args.load(&args.model)?;
    let examples = read_task_examples(&args.data, Some(&args.task), args.max_examples)?;
    let inputs = examples
        .iter()
        .map(|e| {
            checkpoint
                .encode(&e.input)
                .with_context(|| format!("example {:?}", e.id))
        })
        .collect::<Result<Vec<_>>>()?;
    // The copy baseline compares the input text itself, without its "task: " prefix.
    let sources: Vec<String> = examples
        .iter()
        .map(|e| {
            e.input
                .split_once(": ")
                .map_or(e.input.as_str(), |(_, rest)| rest)
                .to_string()
        })
        .collect();
    let references: Vec<String> = examples.iter().map(|e| e.reference.clone()).collect();
    let quiet = args.json;
    let mut progress = |stage: &str| {
        if !quiet {
            eprintln!("evaluating: {stage}");
        }
    };
    let result = evaluate(
        &checkpoint,
        &inputs,
        &sources,
        &references,
        args.max_new_tokens,
        args.jobs,
        &mut progress,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(0);
    }
    println!(
        "{} on {} {} examples of {}",
        args.model.display(),
        result.examples,
        args.task,
        args.data.display()
    );
    println!("copy-the-input baseline: BLEU {:.2}", result.copy_bleu);
    println!("| decoder | BLEU | ROUGE-L | mean layers | agrees with top layer |");
    println!("|---|---|---|---|---|");
    for (i, row) in result.layers.iter().enumerate() {
        println!(
            "| exit at layer {} | {:.2} | {:.2} | {:.2} | {:.1}% |",
            i + 1,
            row.bleu,
            row.rouge_l,
            row.mean_layers,
            result.agreement[i] * 100.0
        );
    }
    println!(
        "| full model | {:.2} | {:.2} | {:.2} | 100% |",
        result.full.bleu, result.full.rouge_l, result.full.mean_layers
    );
    println!(
        "| oracle | {:.2} | {:.2} | {:.2} | |",
        result.oracle.bleu, result.oracle.rouge_l, result.oracle.mean_layers
    );
    Ok(0)
}
