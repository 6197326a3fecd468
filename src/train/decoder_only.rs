//! `calm train --init-from` for decoder-only (Llama-family) checkpoints: fine-tune every weight
//! with the CALM loss (Eq. 6) on prompt → completion pairs, the loss on the completion only, the
//! exits restricted to `exit_layers` (ω_i = i / Σ_{j∈S} j over the chosen layers S; all layers
//! give Eq. 6 itself). A GGUF file is first written out in Hugging Face layout (f32).
//! Checkpoints resume as `calm train`'s do.

use super::batches::{epoch_batches, Pair};
use super::optimizer::{learning_rate, AdamW, AdamWConfig};
use super::{safetensors_bytes, StopAt};
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
const BASE_DIR: &str = "base";

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

fn pairs(
    options: &FineTuneOptions,
    checkpoint: &Checkpoint,
    model: &LlamaModel,
) -> Result<Vec<Pair>> {
    let limit = options.max_tokens_per_sequence;
    let pairs = super::prompt_pairs(
        &options.data,
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
    let mut checkpoint = Checkpoint::load(&base)?;
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
        let mut total: Option<Tensor> = None;
        let mut nll_values = Vec::with_capacity(layers.len());
        for (&layer, &weight) in layers.iter().zip(&weights) {
            let logits = model.head_logits(&states[layer - 1])?;
            let nll = super::loss::masked_nll(&logits, &targets, &mask)?;
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
