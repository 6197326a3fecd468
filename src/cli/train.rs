//! `calm train`: train a CALM model (tokenizer included) into an HF-format checkpoint directory.

use super::generate::set_threads;
use crate::model::config::T5Shape;
use crate::train::{train, StopAt, TrainOptions};
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Resumes automatically when --out holds a checkpoint of the same run.\n\
Example:\n  calm train --data datasets/bible/train.jsonl.gz --out runs/bible-model --steps 20000"
)]
pub struct TrainArgs {
    /// The model to train from scratch: `t5` (encoder-decoder) or `llama` (decoder-only
    /// `LlamaForCausalLM` on prompt → completion pairs, the loss on the completion only, its
    /// tokenizer ending every prompt with `<sep>`). `llama` reads --d-model as the hidden size,
    /// --d-ff as the SwiGLU width and --decoder-layers as its layers; --encoder-layers does not
    /// apply.
    #[arg(long, value_enum, default_value_t = Architecture::T5)]
    pub architecture: Architecture,
    /// `--architecture llama`: key/value heads (grouped-query attention) [default: --heads].
    #[arg(long, value_name = "N")]
    pub kv_heads: Option<usize>,
    /// `--architecture llama`: the longest sequence (prompt and output, tokens) the model
    /// takes (`max_position_embeddings`).
    #[arg(long, default_value_t = 512, value_name = "TOKENS")]
    pub max_positions: usize,
    /// Training examples (JSONL or JSONL.gz with id, task, input, reference); tasks mix by prefix.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub data: Vec<PathBuf>,
    /// Decoder-only models: train on this task's examples only (e.g. `modernize`) [default:
    /// every task, mixed by prefix].
    #[arg(long, value_name = "TASK")]
    pub task: Option<String>,
    /// Checkpoint directory (config.json, model.safetensors, tokenizer.json, trainer state, log).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Size of the BPE vocabulary trained on the data (tokens, special tokens included).
    #[arg(long, default_value_t = 4000)]
    pub vocab_size: usize,
    /// Model width d_model.
    #[arg(long, default_value_t = 256)]
    pub d_model: usize,
    /// Feed-forward width d_ff (gated-gelu: two input projections of this width).
    #[arg(long, default_value_t = 1024)]
    pub d_ff: usize,
    /// Attention heads (d_kv = d_model / heads).
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Encoder layers.
    #[arg(long, default_value_t = 4)]
    pub encoder_layers: usize,
    /// Decoder layers L (the exits).
    #[arg(long, default_value_t = 8)]
    pub decoder_layers: usize,
    /// Tie the LM head to the embeddings (original T5) instead of T5 v1.1's separate head.
    #[arg(long)]
    pub tie_embeddings: bool,
    /// Skip pairs longer than this many tokens on either side (decoder-only: prompt and
    /// completion together).
    #[arg(long, default_value_t = 64)]
    pub max_tokens_per_sequence: usize,
    /// Padded tokens (source + target) per batch.
    #[arg(long, default_value_t = 4096)]
    pub batch_tokens: usize,
    /// Optimizer steps in all (a resumed run continues to this number).
    #[arg(long, default_value_t = 20_000)]
    pub steps: usize,
    /// Linear warm-up steps before the cosine decay.
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,
    /// Peak learning rate (AdamW, warm-up then cosine decay to a tenth).
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// AdamW weight decay (decoupled).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value.
    #[arg(long, default_value_t = 1.0)]
    pub clip_norm: f64,
    /// Seed of initialisation, batching and identity pairs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write a resumable checkpoint every this many steps.
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: usize,
    /// Compute threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Also train on identity pairs (prefix + reference → reference) for this share of the
    /// examples, which makes copying easy to learn early.
    #[arg(long, default_value_t = 0.0)]
    pub copy_share: f64,
    /// Give identity pairs only to these tasks (e.g. a copy-heavy `modernize`, so that a
    /// translation task spends its steps on real pairs) [default: every task].
    #[arg(long, num_args = 1.., value_name = "TASK")]
    pub copy_tasks: Vec<String>,
    /// Spend the first this many steps on synthetic copy pairs (48 random token sequences of
    /// 4–16 tokens a step, under half a data step's cost), so that the copy circuit
    /// forms before the language model takes over; they count towards --steps and the
    /// learning-rate schedule.
    #[arg(long, default_value_t = 0, value_name = "STEPS")]
    pub copy_curriculum_steps: usize,
    /// Start from this checkpoint's weights and tokenizer (fresh optimizer and learning-rate
    /// schedule). A T5 checkpoint must have the shape the model options describe; a
    /// decoder-only one (Llama, Qwen2, Mistral directory with one model.safetensors, or a llama
    /// GGUF file, written out in HF layout as f32 first) is fine-tuned with the CALM loss on
    /// prompt → completion pairs, and the model options are ignored [default: none, train from
    /// scratch].
    #[arg(long, value_name = "PATH")]
    pub init_from: Option<PathBuf>,
    /// Decoder-only fine-tuning: the 1-based layers whose exits enter the CALM loss (with
    /// ω_i = i / Σ_{j∈S} j over them) [default: every layer]. A 49k-token head at every layer
    /// is most of the cost on CPU; e.g. the top third.
    #[arg(long, value_delimiter = ',', value_name = "I,...")]
    pub exit_layers: Vec<usize>,
    /// Decoder-only fine-tuning: the prompt template (`{input}`) the inputs are wrapped in,
    /// as later given to `calibrate --model` [default: the input as given].
    #[arg(long, value_name = "TEMPLATE")]
    pub prompt_template: Option<String>,
    /// Stop (with a checkpoint) after this many minutes of wall clock; rerun the same command to
    /// resume [default: run to the last step].
    #[arg(long, value_name = "MINUTES")]
    pub stop_after_minutes: Option<f64>,
    /// Stop (with a checkpoint) at this step; rerun the same command to resume [default: run
    /// to the last step].
    #[arg(long, value_name = "STEP")]
    pub stop_after_steps: Option<usize>,
}

/// The model `calm train` builds from scratch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Architecture {
    /// T5 v1.1 encoder-decoder.
    T5,
    /// Llama decoder-only.
    Llama,
}

/// Whether `--init-from` names a decoder-only model: a GGUF file, or a config.json that the
/// checkpoint loader reads as not T5's.
fn is_decoder_only(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "gguf")
        || matches!(
            crate::model::checkpoint::is_t5_config(&path.join("config.json")),
            Ok(false)
        )
}

pub fn run(args: TrainArgs) -> Result<u8> {
    set_threads(args.threads);
    if args.steps == 0 || args.checkpoint_every == 0 || args.batch_tokens == 0 {
        bail!("--steps, --checkpoint-every and --batch-tokens must be at least 1");
    }
    if args.heads == 0 || args.d_model % args.heads != 0 {
        bail!("--d-model must be a multiple of --heads");
    }
    if !(0.0..=1.0).contains(&args.copy_share) {
        bail!("--copy-share must lie in [0, 1]");
    }
    if !args.copy_tasks.is_empty() && args.copy_share == 0.0 {
        bail!("--copy-tasks needs a --copy-share above 0");
    }
    if args.copy_curriculum_steps >= args.steps {
        bail!("--copy-curriculum-steps must be fewer than --steps");
    }
    if !(args.learning_rate > 0.0 && args.learning_rate.is_finite()) {
        bail!("--learning-rate must be a positive number");
    }
    let stop = StopAt {
        steps: args.stop_after_steps,
        seconds: args.stop_after_minutes.map(|m| m * 60.0),
    };
    let scratch_llama = args.architecture == Architecture::Llama;
    if scratch_llama {
        if args.init_from.is_some() {
            bail!("--architecture llama trains from scratch; to fine-tune a decoder-only model give only --init-from");
        }
        if args.copy_curriculum_steps > 0 {
            bail!("--copy-curriculum-steps applies to --architecture t5");
        }
        if args.prompt_template.is_some() {
            bail!("--architecture llama ends prompts with its tokenizer's <sep>; --prompt-template applies to --init-from");
        }
        let definition = crate::train::decoder_only::ScratchBase {
            data: args.data.clone(),
            task: args.task.clone(),
            shape: crate::model::llama::init::LlamaShape {
                vocab_size: args.vocab_size,
                hidden_size: args.d_model,
                intermediate_size: args.d_ff,
                layers: args.decoder_layers,
                heads: args.heads,
                kv_heads: args.kv_heads.unwrap_or(args.heads),
                tie_embeddings: args.tie_embeddings,
                max_positions: args.max_positions,
            },
            seed: args.seed,
        };
        definition.shape.config(None, 1)?;
        crate::train::decoder_only::prepare_scratch_base(
            &definition,
            &args.out.join(crate::train::decoder_only::BASE_DIR),
        )?;
    } else if args.kv_heads.is_some() {
        bail!("--kv-heads applies to --architecture llama");
    }
    let decoder_only_init = if scratch_llama {
        Some(args.out.join(crate::train::decoder_only::BASE_DIR))
    } else {
        args.init_from.clone().filter(|p| is_decoder_only(p))
    };
    if let Some(init) = decoder_only_init {
        if let Some(t) = &args.prompt_template {
            crate::model::PromptFormat::from_template(t)?;
        }
        let options = crate::train::decoder_only::FineTuneOptions {
            copy_share: args.copy_share,
            copy_tasks: args.copy_tasks,
            task: args.task,
            init_from: init,
            data: args.data,
            prompt_template: args.prompt_template,
            exit_layers: args.exit_layers,
            max_tokens_per_sequence: args.max_tokens_per_sequence,
            batch_tokens: args.batch_tokens,
            steps: args.steps,
            warmup: args.warmup,
            learning_rate: args.learning_rate,
            weight_decay: args.weight_decay,
            clip_norm: args.clip_norm,
            seed: args.seed,
            checkpoint_every: args.checkpoint_every,
        };
        let state = crate::train::decoder_only::fine_tune(&options, &args.out, stop)?;
        println!(
            "fine-tuned to step {} of {} (epoch {}, {} completion tokens, {:.0} s in all); checkpoint in {}",
            state.step,
            options.steps,
            state.epoch + 1,
            state.tokens_seen,
            state.elapsed_seconds,
            args.out.display()
        );
        return Ok(0);
    }
    if !args.exit_layers.is_empty() || args.prompt_template.is_some() || args.task.is_some() {
        bail!("--exit-layers, --prompt-template and --task apply to decoder-only models (--init-from a Llama-family model, or --architecture llama)");
    }
    let options = TrainOptions {
        data: args.data,
        shape: T5Shape {
            vocab_size: args.vocab_size,
            d_model: args.d_model,
            d_ff: args.d_ff,
            heads: args.heads,
            encoder_layers: args.encoder_layers,
            decoder_layers: args.decoder_layers,
            tie_embeddings: args.tie_embeddings,
        },
        max_tokens_per_sequence: args.max_tokens_per_sequence,
        batch_tokens: args.batch_tokens,
        steps: args.steps,
        warmup: args.warmup,
        learning_rate: args.learning_rate,
        weight_decay: args.weight_decay,
        clip_norm: args.clip_norm,
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        copy_share: args.copy_share,
        copy_tasks: args.copy_tasks,
        copy_curriculum_steps: args.copy_curriculum_steps,
        init_from: args.init_from,
    };
    let total_steps = options.steps;
    let state = train(&options, &args.out, stop)?;
    println!(
        "trained to step {} of {total_steps} (epoch {}, {} target tokens, {:.0} s in all); checkpoint in {}",
        state.step,
        state.epoch + 1,
        state.tokens_seen,
        state.elapsed_seconds,
        args.out.display()
    );
    Ok(0)
}
