//! `calm train --init-from` for decoder-only (Llama-family) checkpoints: fine-tune every weight
//! with the CALM loss (Eq. 6) on prompt → completion pairs, the loss on the completion only, the
//! exits restricted to `exit_layers` (ω_i = i / Σ_{j∈S} j over the chosen layers S; all layers
//! give Eq. 6 itself). A GGUF file is first written out in Hugging Face layout (f32).
//! Checkpoints resume as `calm train`'s do.

use super::batches::{epoch_batches, Pair};
use super::optimizer::{learning_rate, AdamW, AdamWConfig};
use super::{safetensors_bytes, StopAt};
use crate::model::llama::init::LlamaShape;
use crate::model::llama::weights::Weights;
use crate::model::llama::{LlamaConfig, LlamaModel};
use crate::model::{Checkpoint, PromptFormat};
use crate::util::atomic::write_files_atomically;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything that defines a decoder-only fine-tuning run (saved in `trainer_state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuneOptions {
    /// A Llama-family checkpoint directory (one model.safetensors) or a llama GGUF file.
    pub init_from: PathBuf,
    pub data: Vec<PathBuf>,
    /// Train on this task's examples only (all tasks when None).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The prompt template (`{input}`), None for inputs as given.
    pub prompt_template: Option<String>,
    /// 1-based layers whose exits enter the loss; empty: every layer.
    pub exit_layers: Vec<usize>,
    pub max_tokens_per_sequence: usize,
    pub batch_tokens: usize,
    pub steps: usize,
    pub warmup: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub clip_norm: f64,
    pub seed: u64,
    pub checkpoint_every: usize,
    /// Share of examples that also appear as an identity pair (task prefix + reference →
    /// reference); 0 disables it.
    #[serde(default)]
    pub copy_share: f64,
    /// Tasks whose examples get identity pairs; empty means every task.
    #[serde(default)]
    pub copy_tasks: Vec<String>,
}

/// Progress saved with every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuneState {
    pub options: FineTuneOptions,
    pub step: usize,
    pub epoch: u64,
    pub batch_in_epoch: usize,
    pub tokens_seen: u64,
    pub elapsed_seconds: f64,
}

const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const LOG_FILE: &str = "train_log.csv";
/// The subdirectory of a run that holds its starting checkpoint in HF layout (a GGUF file
/// written out, or a from-scratch model).
pub const BASE_DIR: &str = "base";

/// ω_i = i / Σ_{j∈S} j for the layers i of S (1-based).
pub fn subset_layer_weights(layers: &[usize]) -> Vec<f64> {
    let total: usize = layers.iter().sum();
    layers
        .iter()
        .map(|&i| i as f64 / total.max(1) as f64)
        .collect()
}

/// Prompt ++ completion rows, right-padded; `targets[p]` is the token after position p, and
/// the mask keeps the positions that predict the completion (its EOS included).
fn batch(pairs: &[Pair], rows: &[usize], device: &Device) -> Result<(Tensor, Tensor, Tensor)> {
    let length = rows
        .iter()
        .map(|&i| pairs[i].source.len() + pairs[i].target.len())
        .max()
        .unwrap_or(1);
    let (mut ids, mut targets, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for &i in rows {
        let pair = &pairs[i];
        let sequence: Vec<u32> = pair.source.iter().chain(&pair.target).copied().collect();
        for p in 0..length {
            ids.push(sequence.get(p).copied().unwrap_or(0));
            targets.push(sequence.get(p + 1).copied().unwrap_or(0));
            let predicts_completion = p + 1 >= pair.source.len() && p + 1 < sequence.len();
            mask.push(u32::from(predicts_completion));
        }
    }
    let shape = (rows.len(), length);
    Ok((
        Tensor::from_vec(ids, shape, device)?,
        Tensor::from_vec(targets, shape, device)?,
        Tensor::from_vec(mask, shape, device)?,
    ))
}

/// Flat indices (row-major over [B, T]) of the positions where `mask` is 1.
fn completion_positions(mask: &Tensor) -> Result<Tensor> {
    let flat = mask.flatten_all()?.to_vec1::<u32>()?;
    let picked: Vec<u32> = (0..flat.len() as u32)
        .filter(|&i| flat[i as usize] == 1)
        .collect();
    if picked.is_empty() {
        bail!("a training batch has no completion tokens");
    }
    Ok(Tensor::new(picked, mask.device())?)
}

fn pairs(
    options: &FineTuneOptions,
    checkpoint: &Checkpoint,
    model: &LlamaModel,
) -> Result<Vec<Pair>> {
    let limit = options.max_tokens_per_sequence;
    let task = options.task.as_deref();
    let mut examples = super::read_all_examples(&options.data, task)?;
    if options.copy_share > 0.0 {
        let identities = super::identity_examples(
            &options.data,
            options.copy_share,
            &options.copy_tasks,
            options.seed,
        )?;
        examples.extend(
            identities
                .into_iter()
                .filter(|(_, e)| task.is_none_or(|t| e.task == t)),
        );
    }
    let pairs = super::prompt_pairs(
        examples.iter().map(|(path, e)| (path.as_path(), e)),
        checkpoint,
        model.eos().first().copied(),
        |p| p.source.len() + p.target.len() <= limit,
    )?;
    if pairs.is_empty() {
        bail!(
            "no pairs within {} tokens (prompt and completion)",
            options.max_tokens_per_sequence
        );
    }
    Ok(pairs)
}

/// Fine-tune (or resume when `out` holds a trainer state), checkpointing into `out` in
/// Hugging Face layout.
pub fn fine_tune(options: &FineTuneOptions, out: &Path, stop: StopAt) -> Result<FineTuneState> {
    let device = Device::Cpu;
    let state_path = out.join(STATE_FILE);
    let resumed: Option<FineTuneState> = if state_path.is_file() {
        let state: FineTuneState = serde_json::from_str(&std::fs::read_to_string(&state_path)?)
            .with_context(|| format!("{}: unreadable trainer state", state_path.display()))?;
        if &state.options != options {
            bail!("{} belongs to a run with different options; use another --out or the same options to resume", state_path.display());
        }
        Some(state)
    } else {
        None
    };
    // The starting checkpoint in HF layout: the directory itself, or the GGUF written out once.
    let base = if options.init_from.extension().is_some_and(|e| e == "gguf") {
        let base = out.join(BASE_DIR);
        if !base.join("model.safetensors").is_file() {
            crate::model::llama::export::export_gguf_to_hf(&options.init_from, &base)?;
        }
        base
    } else {
        options.init_from.clone()
    };
    let weights_file = base.join("model.safetensors");
    if !weights_file.is_file() {
        bail!(
            "{}: fine-tuning needs one model.safetensors (sharded checkpoints are not supported)",
            base.display()
        );
    }
    // Training is f32 on the CPU.
    let mut checkpoint = Checkpoint::load(&base, &Device::Cpu, DType::F32)?;
    let Some(frozen) = checkpoint.model.as_llama() else {
        bail!("{}: not a decoder-only checkpoint (calm train trains T5 without --init-from a Llama-family model)", base.display());
    };
    let config: LlamaConfig = frozen.config.clone();
    let eos = frozen.eos().to_vec();
    let depth = config.num_hidden_layers;
    let layers: Vec<usize> = if options.exit_layers.is_empty() {
        (1..=depth).collect()
    } else {
        let mut layers = options.exit_layers.clone();
        layers.sort_unstable();
        layers.dedup();
        if let Some(bad) = layers.iter().find(|&&l| l == 0 || l > depth) {
            bail!("--exit-layers: {bad} is outside 1..={depth}");
        }
        layers
    };
    checkpoint.prompt = match &options.prompt_template {
        Some(t) => PromptFormat::Template(t.clone()),
        None => PromptFormat::Plain,
    };
    let pairs = pairs(options, &checkpoint, frozen)?;

    // Trainable weights: every tensor of the starting checkpoint becomes a variable.
    let varmap = VarMap::new();
    let start_weights = if resumed.is_some() {
        out.join("model.safetensors")
    } else {
        weights_file.clone()
    };
    {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("variable map poisoned"))?;
        for (name, tensor) in candle_core::safetensors::load(&start_weights, &device)? {
            data.insert(name, Var::from_tensor(&tensor.to_dtype(DType::F32)?)?);
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let model = LlamaModel::load(&config, &Weights::Hf(vb), false, eos, &device)?;
    let mut vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("variable map poisoned"))?
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut optimizer = AdamW::new(
        vars.clone(),
        AdamWConfig {
            weight_decay: options.weight_decay,
            ..AdamWConfig::default()
        },
    )?;
    let mut state = match resumed {
        Some(state) => {
            let moments = candle_core::safetensors::load(out.join(OPTIMIZER_FILE), &device)?;
            optimizer.restore(&moments, state.step);
            state
        }
        None => FineTuneState {
            options: options.clone(),
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            tokens_seen: 0,
            elapsed_seconds: 0.0,
        },
    };
    std::fs::create_dir_all(out)?;
    let log_path = out.join(LOG_FILE);
    if log_path.exists() {
        // A run killed between checkpoints logged steps it will now redo.
        super::truncate_log(&log_path, state.step)?;
    }
    let new_log = !log_path.exists();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    if new_log {
        let names: Vec<String> = layers.iter().map(|i| format!("nll_layer{i}")).collect();
        writeln!(
            log,
            "step,epoch,learning_rate,loss,{},grad_norm,tokens_seen,elapsed_s",
            names.join(",")
        )?;
    }
    let weights = subset_layer_weights(&layers);
    let progress = super::step_progress(options.steps, state.step)?;
    let mut batches = epoch_batches(&pairs, options.batch_tokens, options.seed, state.epoch);
    let started = Instant::now();
    let elapsed_before = state.elapsed_seconds;
    while state.step < options.steps {
        if state.batch_in_epoch >= batches.len() {
            state.epoch += 1;
            state.batch_in_epoch = 0;
            batches = epoch_batches(&pairs, options.batch_tokens, options.seed, state.epoch);
        }
        let (ids, targets, mask) = batch(&pairs, &batches[state.batch_in_epoch], &device)?;
        let states = model.forward_states(&ids)?;
        // The exit heads only at the positions that predict the completion: the same mean
        // NLL, without the vocabulary-wide logits of the prompt positions.
        let predicting = completion_positions(&mask)?;
        let targets = targets
            .flatten_all()?
            .index_select(&predicting, 0)?
            .unsqueeze(0)?;
        let ones = Tensor::ones(targets.dims(), DType::U32, &device)?;
        let mut total: Option<Tensor> = None;
        let mut nll_values = Vec::with_capacity(layers.len());
        for (&layer, &weight) in layers.iter().zip(&weights) {
            let state = &states[layer - 1];
            let rows = state
                .flatten_to(1)?
                .index_select(&predicting, 0)?
                .unsqueeze(0)?;
            let logits = model.head_logits(&rows)?;
            let nll = super::loss::masked_nll(&logits, &targets, &ones)?;
            nll_values.push(nll.to_scalar::<f32>()?);
            let term = (nll * weight)?;
            total = Some(match total {
                Some(sum) => (sum + term)?,
                None => term,
            });
        }
        let Some(loss) = total else {
            bail!("no exit layers")
        };
        let lr = learning_rate(
            state.step,
            options.learning_rate,
            options.warmup,
            options.steps,
        );
        let norm = super::optimizer::clipped_step(&mut optimizer, &loss, lr, options.clip_norm)?;
        state.step += 1;
        state.batch_in_epoch += 1;
        state.tokens_seen += mask.sum_all()?.to_scalar::<u32>()? as u64;
        state.elapsed_seconds = elapsed_before + started.elapsed().as_secs_f64();
        let loss_value = loss.to_scalar::<f32>()?;
        if !loss_value.is_finite() {
            bail!(
                "loss became {loss_value} at step {}; lower --learning-rate",
                state.step
            );
        }
        let nll_text: Vec<String> = nll_values.iter().map(|v| format!("{v:.4}")).collect();
        writeln!(
            log,
            "{},{},{lr:.3e},{loss_value:.5},{},{norm:.4},{},{:.1}",
            state.step,
            state.epoch,
            nll_text.join(","),
            state.tokens_seen,
            state.elapsed_seconds
        )?;
        progress.set_position(state.step as u64);
        progress.set_message(format!(
            "loss {loss_value:.3} | layer {} {:.2} … layer {} {:.2}",
            layers[0],
            nll_values[0],
            layers[layers.len() - 1],
            nll_values[nll_values.len() - 1]
        ));
        let stopping = stop.steps.is_some_and(|s| state.step >= s)
            || stop
                .seconds
                .is_some_and(|s| started.elapsed().as_secs_f64() >= s);
        if state.step % options.checkpoint_every.max(1) == 0
            || state.step == options.steps
            || stopping
        {
            log.flush()?;
            save(out, &base, &vars, &optimizer, &state)?;
        }
        if stopping {
            break;
        }
    }
    progress.finish_and_clear();
    Ok(state)
}

/// The HF checkpoint (config, tokenizer files copied from the base, weights), the optimizer
/// moments and the state, written together.
fn save(
    out: &Path,
    base: &Path,
    vars: &[(String, Var)],
    optimizer: &AdamW,
    state: &FineTuneState,
) -> Result<()> {
    let weights: Vec<(&String, Tensor)> = vars
        .iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    let moments: Vec<(String, Tensor)> = optimizer.state().into_iter().collect();
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    for name in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        if let Ok(bytes) = std::fs::read(base.join(name)) {
            files.push((name, bytes));
        }
    }
    files.push((
        "model.safetensors",
        safetensors_bytes(weights.iter().map(|(n, t)| (*n, t)))?,
    ));
    files.push((
        OPTIMIZER_FILE,
        safetensors_bytes(moments.iter().map(|(n, t)| (n, t)))?,
    ));
    files.push((
        STATE_FILE,
        (serde_json::to_string_pretty(state)? + "\n").into_bytes(),
    ));
    write_files_atomically(out, &files)?;
    Ok(())
}

/// What defines a from-scratch base model (saved as `scratch.json` beside it): a rerun with
/// the same definition reuses the base, another is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScratchBase {
    pub data: Vec<PathBuf>,
    /// The task whose texts train the tokenizer (all tasks when None).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    pub shape: LlamaShape,
    pub seed: u64,
}

const SCRATCH_FILE: &str = "scratch.json";

/// Write the starting point of a from-scratch decoder-only run into `base` (once; a rerun
/// checks it is the same): a BPE tokenizer trained on the data's inputs and references whose
/// post-processor ends every prompt with `<sep>` (so the directory itself records the prompt
/// format), and a `LlamaForCausalLM` of `shape` with seeded random weights. `calm train`
/// then fine-tunes it with the CALM loss.
pub fn prepare_scratch_base(definition: &ScratchBase, base: &Path) -> Result<()> {
    let scratch_path = base.join(SCRATCH_FILE);
    if scratch_path.is_file() {
        let found: ScratchBase = serde_json::from_str(&std::fs::read_to_string(&scratch_path)?)
            .with_context(|| format!("{}: unreadable", scratch_path.display()))?;
        if &found != definition {
            bail!(
                "{} was made with another shape, data or seed; use another --out or the same options to resume",
                scratch_path.display()
            );
        }
        return Ok(());
    }
    let mut texts = Vec::new();
    for (_, example) in super::read_all_examples(&definition.data, definition.task.as_deref())? {
        texts.push(example.input);
        texts.push(example.reference);
    }
    let tokenizer = super::tokenizer::train_prompt_tokenizer(&texts, definition.shape.vocab_size)?;
    let eos = 1;
    let shape = LlamaShape {
        vocab_size: tokenizer.get_vocab_size(true),
        ..definition.shape
    };
    let config = shape.config(None, eos)?;
    let weights =
        crate::model::llama::init::random_weights(&config, definition.seed, &Device::Cpu)?;
    let tokenizer_json = tokenizer
        .to_string(true)
        .map_err(|e| anyhow::anyhow!("cannot serialize the tokenizer: {e}"))?;
    let tokenizer_config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "sep_token": "<sep>",
        "model_max_length": shape.max_positions,
    });
    let generation_config = serde_json::json!({
        "eos_token_id": eos,
        "pad_token_id": 0,
    });
    let pretty = |v: &serde_json::Value| -> Result<Vec<u8>> {
        Ok((serde_json::to_string_pretty(v)? + "\n").into_bytes())
    };
    write_files_atomically(
        base,
        &[
            ("config.json", pretty(&serde_json::to_value(&config)?)?),
            ("generation_config.json", pretty(&generation_config)?),
            ("tokenizer.json", tokenizer_json.into_bytes()),
            ("tokenizer_config.json", pretty(&tokenizer_config)?),
            ("model.safetensors", safetensors_bytes(weights.iter())?),
            (SCRATCH_FILE, pretty(&serde_json::to_value(definition)?)?),
        ],
    )
    .with_context(|| format!("cannot write {}", base.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_weights_follow_eq_6() {
        let all = subset_layer_weights(&[1, 2, 3, 4]);
        assert_eq!(all, vec![0.1, 0.2, 0.3, 0.4]);
        let top = subset_layer_weights(&[3, 4]);
        assert!((top[0] - 3.0 / 7.0).abs() < 1e-15 && (top[1] - 4.0 / 7.0).abs() < 1e-15);
    }

    #[test]
    fn the_head_at_completion_positions_gives_the_masked_mean() {
        // Random states [2, 5, 3] through a random head [3 → 7]: the NLL of the picked
        // positions equals the masked NLL over every position.
        let device = Device::Cpu;
        let states = Tensor::randn(0f32, 1.0, (2, 5, 3), &device).unwrap();
        let head = Tensor::randn(0f32, 1.0, (3, 7), &device).unwrap();
        let targets = Tensor::new(&[[1u32, 2, 3, 4, 5], [6, 0, 1, 2, 3]], &device).unwrap();
        let mask = Tensor::new(&[[0u32, 1, 1, 0, 0], [1, 1, 0, 0, 0]], &device).unwrap();
        let logits = states.broadcast_matmul(&head).unwrap();
        let full = crate::train::loss::masked_nll(&logits, &targets, &mask)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let picked = completion_positions(&mask).unwrap();
        assert_eq!(picked.to_vec1::<u32>().unwrap(), vec![1, 2, 5, 6]);
        let rows = states
            .flatten_to(1)
            .unwrap()
            .index_select(&picked, 0)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let picked_targets = targets
            .flatten_all()
            .unwrap()
            .index_select(&picked, 0)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let ones = Tensor::ones(picked_targets.dims(), DType::U32, &device).unwrap();
        let subset = crate::train::loss::masked_nll(
            &rows.broadcast_matmul(&head).unwrap(),
            &picked_targets,
            &ones,
        )
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
        assert!((full - subset).abs() < 1e-5, "{full} vs {subset}");
        assert!(completion_positions(&mask.zeros_like().unwrap()).is_err());
    }

    #[test]
    fn the_mask_covers_the_completion_only() {
        let pairs = vec![
            Pair {
                source: vec![5, 6, 7],
                target: vec![8, 9],
            },
            Pair {
                source: vec![5],
                target: vec![4],
            },
        ];
        let (ids, targets, mask) = batch(&pairs, &[0, 1], &Device::Cpu).unwrap();
        assert_eq!(
            ids.to_vec2::<u32>().unwrap(),
            vec![vec![5, 6, 7, 8, 9], vec![5, 4, 0, 0, 0]]
        );
        assert_eq!(targets.to_vec2::<u32>().unwrap()[0], vec![6, 7, 8, 9, 0]);
        // Positions 2 and 3 predict 8 and 9; position 0 of row 2 predicts 4.
        assert_eq!(
            mask.to_vec2::<u32>().unwrap(),
            vec![vec![0, 0, 1, 1, 0], vec![1, 0, 0, 0, 0]]
        );
    }
}
