//! `calm train-classifier`: the CALM early-exit classifier (§3.5, App. D), trained on a frozen
//! model. One linear layer d_model → 1 shared by all decoder layers, on raw layer states; label
//! 1[argmax at layer i = argmax at the top layer]; per-layer class-balanced binary cross-entropy
//! (positives weighted N/(P+N), negatives P/(P+N), as the official code does), averaged over
//! layers 1..L−1.

use super::batches::{epoch_batches, Pair};
use super::optimizer::{learning_rate, AdamW, AdamWConfig};
use super::{batch_tensors, load_pairs};
use crate::model::t5::{EXIT_CLASSIFIER_BIAS, EXIT_CLASSIFIER_WEIGHT};
use crate::model::{Checkpoint, LlamaModel, Model, PromptFormat, T5Model};
use crate::util::atomic::write_file_atomically;
use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierOptions {
    pub data: Vec<PathBuf>,
    /// Held-out data for the per-layer F1 report (optional).
    pub eval: Vec<PathBuf>,
    pub steps: usize,
    pub batch_tokens: usize,
    pub learning_rate: f64,
    pub max_tokens_per_sequence: usize,
    pub seed: u64,
    /// Decoder-only models: the prompt format of the inputs (the references are the
    /// completions that follow).
    pub prompt: PromptFormat,
    /// Train and evaluate on this task's examples only (all tasks when None).
    pub task: Option<String>,
}

/// Per-layer quality of the classifier at threshold 0.5 on held-out data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerF1 {
    pub layer: usize,
    /// Share of tokens whose argmax at this layer equals the top layer's.
    pub consistent_share: f64,
    /// F1 of predicting "consistent" (safe to exit).
    pub f1_exit: f64,
    /// F1 of predicting "inconsistent" (do not exit), the number CALM's Table D.1 reports.
    pub f1_dont_exit: f64,
}

/// Raw states of layers 1..L−1 and their consistency labels for one batch, with the target mask.
fn states_and_labels(
    model: &Model,
    pairs: &[Pair],
    batch: &[usize],
    device: &Device,
) -> Result<(Vec<Tensor>, Vec<Tensor>, Tensor)> {
    match model {
        Model::T5(m) => t5_states_and_labels(m, pairs, batch, device),
        Model::Llama(m) => prompt_states_and_labels(m, pairs, batch, device),
    }
}

/// Consistency labels of layers 1..L−1 from each layer's states (argmax at layer i equals the
/// top layer's), and the states of those layers.
fn labels_from_states(
    states: Vec<Tensor>,
    head: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
    let depth = states.len();
    let top = head(&states[depth - 1])?.argmax(D::Minus1)?;
    let mut labels = Vec::with_capacity(depth - 1);
    for h in &states[..depth - 1] {
        let argmax = head(h)?.argmax(D::Minus1)?;
        labels.push(argmax.eq(&top)?.to_dtype(DType::F32)?);
    }
    let mut states = states;
    states.truncate(depth - 1);
    Ok((states, labels))
}

/// Decoder-only: each row is prompt ++ reference, right-padded (causal attention never reads
/// the padding); the mask keeps the positions that predict the reference's tokens.
fn prompt_states_and_labels(
    model: &LlamaModel,
    pairs: &[Pair],
    batch: &[usize],
    device: &Device,
) -> Result<(Vec<Tensor>, Vec<Tensor>, Tensor)> {
    let length = batch
        .iter()
        .map(|&i| pairs[i].source.len() + pairs[i].target.len())
        .max()
        .unwrap_or(1);
    let mut ids = Vec::with_capacity(batch.len() * length);
    let mut mask = Vec::with_capacity(batch.len() * length);
    for &i in batch {
        let pair = &pairs[i];
        let prompt = pair.source.len();
        ids.extend(
            pair.source
                .iter()
                .chain(&pair.target)
                .copied()
                .chain(std::iter::repeat(0))
                .take(length),
        );
        mask.extend((0..length).map(|p| {
            if p + 1 >= prompt && p + 1 < prompt + pair.target.len() {
                1f32
            } else {
                0f32
            }
        }));
    }
    let ids = Tensor::from_vec(ids, (batch.len(), length), device)?;
    let states = model.forward_states(&ids)?;
    let (states, labels) = labels_from_states(states, |h| model.head_logits(h))?;
    Ok((
        states,
        labels,
        Tensor::from_vec(mask, (batch.len(), length), device)?,
    ))
}

fn t5_states_and_labels(
    model: &T5Model,
    pairs: &[Pair],
    batch: &[usize],
    device: &Device,
) -> Result<(Vec<Tensor>, Vec<Tensor>, Tensor)> {
    let (source, lengths, decoder_in, _target, mask) = batch_tensors(pairs, batch, device)?;
    let states = model.forward_states(&source, &lengths, &decoder_in)?;
    let (states, labels) = labels_from_states(states, |h| model.head_logits(h))?;
    Ok((states, labels, mask.to_dtype(DType::F32)?))
}

/// Training pairs: T5 as `calm train` tokenizes them; decoder-only the prompt (format and BOS
/// as `Checkpoint::encode` gives it) and the reference followed by the model's EOS.
fn classifier_pairs(
    data: &[PathBuf],
    task: Option<&str>,
    max_tokens: usize,
    checkpoint: &Checkpoint,
) -> Result<Vec<Pair>> {
    let Some(llama) = checkpoint.model.as_llama() else {
        return load_pairs(data, task, max_tokens, &checkpoint.tokenizer);
    };
    let examples = super::read_all_examples(data, task)?;
    let pairs = super::prompt_pairs(
        examples.iter().map(|(path, e)| (path.as_path(), e)),
        checkpoint,
        llama.eos().first().copied(),
        |p| p.source.len() <= max_tokens && p.target.len() <= max_tokens,
    )?;
    if pairs.is_empty() {
        bail!("no pairs within {max_tokens} tokens a side");
    }
    Ok(pairs)
}

/// Class-balanced binary cross-entropy of logits `z` [B, T] against `labels`, over `mask`.
fn balanced_bce(z: &Tensor, labels: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let positives = (labels * mask)?.sum_all()?.to_scalar::<f32>()? as f64;
    let total = mask.sum_all()?.to_scalar::<f32>()? as f64;
    let negatives = total - positives;
    let (w_pos, w_neg) = if total > 0.0 {
        (negatives / total, positives / total)
    } else {
        (0.5, 0.5)
    };
    // softplus(z) − y·z, computed stably as relu(z) + ln(1 + e^{−|z|}) − y·z.
    let softplus = (z.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    let bce = (softplus - (labels * z)?)?;
    let weights = ((labels * w_pos)? + (labels.neg()? + 1.0)?.affine(w_neg, 0.0)?)?;
    let weighted = (bce * weights)?.mul(mask)?.sum_all()?;
    Ok((weighted / total.max(1.0))?)
}

/// Train the classifier on a frozen checkpoint and write it into the checkpoint's safetensors.
pub fn train_classifier(dir: &Path, options: &ClassifierOptions) -> Result<Vec<LayerF1>> {
    let weights_path = dir.join("model.safetensors");
    if !weights_path.is_file() {
        bail!(
            "{}: the classifier is written into model.safetensors; GGUF files and sharded checkpoints are not supported",
            dir.display()
        );
    }
    // Training is f32 on the CPU.
    let device = candle_core::Device::Cpu;
    let mut checkpoint = Checkpoint::load(dir, &device, DType::F32)?;
    checkpoint.prompt = options.prompt.clone();
    let model = &checkpoint.model;
    let depth = model.num_decoder_layers();
    if depth < 2 {
        bail!("the exit classifier needs at least two decoder layers");
    }
    let pairs = classifier_pairs(
        &options.data,
        options.task.as_deref(),
        options.max_tokens_per_sequence,
        &checkpoint,
    )?;
    let d = model.hidden_size();
    let weight = Var::zeros((1, d), DType::F32, &device)?;
    let bias = Var::zeros(1, DType::F32, &device)?;
    let mut optimizer = AdamW::new(
        vec![
            ("weight".into(), weight.clone()),
            ("bias".into(), bias.clone()),
        ],
        AdamWConfig {
            weight_decay: 0.0,
            ..AdamWConfig::default()
        },
    )?;
    let mut epoch = 0u64;
    let mut batches = epoch_batches(&pairs, options.batch_tokens, options.seed, epoch);
    let mut cursor = 0;
    for step in 0..options.steps {
        if cursor >= batches.len() {
            epoch += 1;
            cursor = 0;
            batches = epoch_batches(&pairs, options.batch_tokens, options.seed, epoch);
        }
        let (states, labels, mask) = states_and_labels(model, &pairs, &batches[cursor], &device)?;
        cursor += 1;
        let mut total: Option<Tensor> = None;
        for (h, y) in states.iter().zip(&labels) {
            let z = h
                .broadcast_matmul(&weight.as_tensor().t()?)?
                .squeeze(D::Minus1)?
                .broadcast_add(bias.as_tensor())?;
            let loss = balanced_bce(&z, y, &mask)?;
            total = Some(match total {
                Some(sum) => (sum + loss)?,
                None => loss,
            });
        }
        let Some(total) = total else {
            bail!("no layers")
        };
        let loss = (total / (depth - 1) as f64)?;
        let grads = loss.backward()?;
        let lr = learning_rate(
            step,
            options.learning_rate,
            (options.steps / 10).max(1),
            options.steps,
        );
        optimizer.update(&grads, lr, 1.0)?;
    }

    // Write the classifier into the checkpoint (every other tensor unchanged).
    let path = weights_path;
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu)?;
    tensors.insert(
        EXIT_CLASSIFIER_WEIGHT.to_string(),
        weight.as_tensor().clone(),
    );
    tensors.insert(EXIT_CLASSIFIER_BIAS.to_string(), bias.as_tensor().clone());
    write_file_atomically(&path, &super::safetensors_bytes(&tensors)?)?;

    if options.eval.is_empty() {
        return Ok(Vec::new());
    }
    evaluate(
        model,
        weight.as_tensor(),
        bias.as_tensor(),
        &options.eval,
        options,
        &checkpoint,
    )
}

/// Per-layer F1 of the classifier (threshold 0.5) on held-out teacher-forced tokens.
fn evaluate(
    model: &Model,
    weight: &Tensor,
    bias: &Tensor,
    eval: &[PathBuf],
    options: &ClassifierOptions,
    checkpoint: &Checkpoint,
) -> Result<Vec<LayerF1>> {
    let device = candle_core::Device::Cpu;
    let pairs = classifier_pairs(
        eval,
        options.task.as_deref(),
        options.max_tokens_per_sequence,
        checkpoint,
    )?;
    let depth = model.num_decoder_layers();
    // Per layer: [true positive, false positive, false negative, true negative].
    let mut counts = vec![[0f64; 4]; depth - 1];
    for batch in epoch_batches(&pairs, options.batch_tokens, options.seed, 0) {
        let (states, labels, mask) = states_and_labels(model, &pairs, &batch, &device)?;
        for (layer, (h, y)) in states.iter().zip(&labels).enumerate() {
            let z = h
                .broadcast_matmul(&weight.t()?)?
                .squeeze(D::Minus1)?
                .broadcast_add(bias)?;
            let predicted: Vec<f32> = z.ge(0f32)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            let truth: Vec<f32> = y.flatten_all()?.to_vec1()?;
            let valid: Vec<f32> = mask.flatten_all()?.to_vec1()?;
            for ((&p, &t), &m) in predicted.iter().zip(&truth).zip(&valid) {
                if m == 0.0 {
                    continue;
                }
                let slot = match (p > 0.5, t > 0.5) {
                    (true, true) => 0,
                    (true, false) => 1,
                    (false, true) => 2,
                    (false, false) => 3,
                };
                counts[layer][slot] += 1.0;
            }
        }
    }
    let f1 = |tp: f64, fp: f64, fne: f64| {
        if tp == 0.0 {
            0.0
        } else {
            2.0 * tp / (2.0 * tp + fp + fne)
        }
    };
    Ok(counts
        .iter()
        .enumerate()
        .map(|(layer, &[tp, fp, fne, tn])| LayerF1 {
            layer: layer + 1,
            consistent_share: (tp + fne) / (tp + fp + fne + tn).max(1.0),
            f1_exit: f1(tp, fp, fne),
            f1_dont_exit: f1(tn, fne, fp),
        })
        .collect())
}
