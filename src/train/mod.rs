//! `calm train`: a T5 v1.1-layout model trained from scratch (or continued) with the CALM loss,
//! with checkpoints that resume exactly (weights, AdamW moments, data order), a progress bar and
//! a CSV log of the curves.

pub mod batches;
pub mod classifier;
pub mod curriculum;
pub mod decoder_only;
pub mod loss;
pub mod optimizer;
pub mod tokenizer;

use crate::data::read_examples;
use crate::model::config::T5Shape;
use crate::model::init::random_weights;
use crate::model::{T5Config, T5Model};
use crate::util::atomic::write_files_atomically;
use anyhow::{bail, Context, Result};
use batches::{epoch_batches, Pair};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use optimizer::{learning_rate, AdamW, AdamWConfig};
use serde::{Deserialize, Serialize};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokenizers::Tokenizer;

/// Everything that defines a training run (saved in `trainer_state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub data: Vec<PathBuf>,
    /// The model's shape; `vocab_size` is the tokenizer's target size. Flattened, so the
    /// fields sit at the top level of `trainer_state.json` as before.
    #[serde(flatten)]
    pub shape: T5Shape,
    /// Pairs whose source or target is longer (in tokens, with `</s>`) are skipped.
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
    /// reference), to make copying easy to learn early. 0 disables it.
    #[serde(default)]
    pub copy_share: f64,
    /// Tasks whose examples get identity pairs; empty means every task.
    #[serde(default)]
    pub copy_tasks: Vec<String>,
    /// The first this many steps train on synthetic copy pairs of random tokens
    /// (`curriculum.rs`) instead of the data; they count towards `steps` and the schedule.
    #[serde(default)]
    pub copy_curriculum_steps: usize,
    /// Start from this checkpoint's weights and tokenizer (fresh optimizer and schedule)
    /// instead of a random initialisation; its shape must match the options.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
}

/// Progress saved with every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub options: TrainOptions,
    pub step: usize,
    pub epoch: u64,
    /// Batches of `epoch` already consumed.
    pub batch_in_epoch: usize,
    pub tokens_seen: u64,
    pub elapsed_seconds: f64,
}

const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const LOG_FILE: &str = "train_log.csv";

fn model_config(options: &TrainOptions, vocab: usize) -> T5Config {
    T5Config {
        n_positions: Some(512),
        ..T5Config::v1_1(T5Shape {
            vocab_size: vocab,
            ..options.shape
        })
    }
}

/// Token ids of `text` (with `</s>`); errors name the file and example.
fn encode_text(tokenizer: &Tokenizer, text: &str, path: &Path, id: &str) -> Result<Vec<u32>> {
    Ok(tokenizer
        .encode(text, true)
        .map_err(|e| anyhow::anyhow!("{}: cannot tokenize {id:?}: {e}", path.display()))?
        .get_ids()
        .to_vec())
}

/// Tokenize every example of the files (of `task` only, when given) into pairs of at most
/// `max_tokens` tokens a side.
pub fn load_pairs(
    data: &[PathBuf],
    task: Option<&str>,
    max_tokens: usize,
    tokenizer: &Tokenizer,
) -> Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for path in data {
        for example in crate::data::read_task_examples(path, task, None)? {
            let encode = |text: &str| encode_text(tokenizer, text, path, &example.id);
            let pair = Pair {
                source: encode(&example.input)?,
                target: encode(&example.reference)?,
            };
            if pair.source.len() <= max_tokens && pair.target.len() <= max_tokens {
                pairs.push(pair);
            }
        }
    }
    if pairs.is_empty() {
        bail!("no pairs within {max_tokens} tokens a side");
    }
    Ok(pairs)
}

/// Every example of the files (of `task` only, when given), each with the file it came from.
pub fn read_all_examples(
    data: &[PathBuf],
    task: Option<&str>,
) -> Result<Vec<(PathBuf, crate::data::Example)>> {
    let mut examples = Vec::new();
    for path in data {
        examples.extend(
            crate::data::read_task_examples(path, task, None)?
                .into_iter()
                .map(|e| (path.clone(), e)),
        );
    }
    Ok(examples)
}

/// Decoder-only pairs: the prompt as `checkpoint.encode` gives it (prompt format, BOS,
/// separator), and the reference followed by `eos`; pairs for which `keep` is false are left out.
pub fn prompt_pairs<'a>(
    examples: impl IntoIterator<Item = (&'a Path, &'a crate::data::Example)>,
    checkpoint: &crate::model::Checkpoint,
    eos: Option<u32>,
    keep: impl Fn(&Pair) -> bool,
) -> Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for (path, example) in examples {
        let source = checkpoint
            .encode(&example.input)
            .map_err(|e| anyhow::anyhow!("{}: example {:?}: {e}", path.display(), example.id))?;
        let mut target = checkpoint
            .tokenizer
            .encode(example.reference.as_str(), false)
            .map_err(|e| {
                anyhow::anyhow!("{}: cannot tokenize {:?}: {e}", path.display(), example.id)
            })?
            .get_ids()
            .to_vec();
        target.extend(eos);
        let pair = Pair { source, target };
        if keep(&pair) {
            pairs.push(pair);
        }
    }
    Ok(pairs)
}

/// Identity examples (the example's task prefix + its reference → its reference) for a seeded
/// `copy_share` of the training examples of `copy_tasks` (all tasks when empty), each with the
/// file it came from.
pub fn identity_examples(
    data: &[PathBuf],
    copy_share: f64,
    copy_tasks: &[String],
    seed: u64,
) -> Result<Vec<(PathBuf, crate::data::Example)>> {
    let mut rng = crate::util::rng::Rng::new(seed ^ 0xC0FF_EE00);
    let mut examples = Vec::new();
    let mut tasks_seen = std::collections::BTreeSet::new();
    for path in data {
        for example in read_examples(path)? {
            // One draw per example whatever its task, so that restricting the tasks keeps
            // the same examples of the tasks that stay.
            let drawn = rng.bernoulli(copy_share);
            tasks_seen.insert(example.task.clone());
            let task_wanted = copy_tasks.is_empty() || copy_tasks.contains(&example.task);
            if !(drawn && task_wanted) {
                continue;
            }
            let prefix = example
                .input
                .split_once(": ")
                .map_or("", |(prefix, _)| prefix);
            let input = if prefix.is_empty() {
                example.reference.clone()
            } else {
                format!("{prefix}: {}", example.reference)
            };
            examples.push((path.clone(), crate::data::Example { input, ..example }));
        }
    }
    if let Some(missing) = copy_tasks.iter().find(|task| !tasks_seen.contains(*task)) {
        let known: Vec<&str> = tasks_seen.iter().map(String::as_str).collect();
        bail!(
            "copy task {missing:?} does not occur in the training data (its tasks: {})",
            known.join(", ")
        );
    }
    Ok(examples)
}

/// Identity pairs of [`identity_examples`], tokenized for T5, within the length limit.
pub fn identity_pairs(options: &TrainOptions, tokenizer: &Tokenizer) -> Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for (path, example) in identity_examples(
        &options.data,
        options.copy_share,
        &options.copy_tasks,
        options.seed,
    )? {
        let encode = |text: &str| encode_text(tokenizer, text, &path, &example.id);
        let pair = Pair {
            source: encode(&example.input)?,
            target: encode(&example.reference)?,
        };
        if pair.source.len() <= options.max_tokens_per_sequence
            && pair.target.len() <= options.max_tokens_per_sequence
        {
            pairs.push(pair);
        }
    }
    Ok(pairs)
}

/// Padded tensors of one batch: source ids, lengths, decoder inputs, targets and target mask.
pub fn batch_tensors(
    pairs: &[Pair],
    batch: &[usize],
    device: &Device,
) -> Result<(Tensor, Vec<usize>, Tensor, Tensor, Tensor)> {
    let source_len = batch
        .iter()
        .map(|&i| pairs[i].source.len())
        .max()
        .unwrap_or(1);
    let target_len = batch
        .iter()
        .map(|&i| pairs[i].target.len())
        .max()
        .unwrap_or(1);
    let (mut source, mut decoder_in, mut target, mut mask) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut lengths = Vec::with_capacity(batch.len());
    for &i in batch {
        let pair = &pairs[i];
        lengths.push(pair.source.len());
        source.extend(
            pair.source
                .iter()
                .copied()
                .chain(std::iter::repeat(0))
                .take(source_len),
        );
        // Decoder input: start token (pad id 0) then the target shifted right.
        decoder_in.extend(
            std::iter::once(0)
                .chain(pair.target.iter().copied())
                .chain(std::iter::repeat(0))
                .take(target_len),
        );
        target.extend(
            pair.target
                .iter()
                .copied()
                .chain(std::iter::repeat(0))
                .take(target_len),
        );
        mask.extend((0..target_len).map(|t| u32::from(t < pair.target.len())));
    }
    let b = batch.len();
    Ok((
        Tensor::from_vec(source, (b, source_len), device)?,
        lengths,
        Tensor::from_vec(decoder_in, (b, target_len), device)?,
        Tensor::from_vec(target, (b, target_len), device)?,
        Tensor::from_vec(mask, (b, target_len), device)?,
    ))
}

/// A model whose parameters are variables in `varmap`.
pub fn trainable_model(
    config: &T5Config,
    varmap: &VarMap,
    seed: u64,
    device: &Device,
) -> Result<T5Model> {
    {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("variable map poisoned"))?;
        for (name, tensor) in random_weights(config, false, seed, device)? {
            data.insert(name, Var::from_tensor(&tensor)?);
        }
    }
    let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
    Ok(T5Model::load(config, vb)?)
}

fn named_vars(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("variable map poisoned"))?;
    let mut vars: Vec<(String, Var)> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(vars)
}

/// The safetensors file of `tensors`, serialized in memory (the same bytes as
/// `candle_core::safetensors::save`, without a temp file that concurrent savers could share).
pub(crate) fn safetensors_bytes<'a, S>(
    tensors: impl IntoIterator<Item = (S, &'a Tensor)>,
) -> Result<Vec<u8>>
where
    S: AsRef<str> + Ord + std::fmt::Display,
{
    safetensors::serialize(tensors, None).context("cannot serialize tensors")
}

/// Write the HF checkpoint (config, tokenizer, weights), the optimizer moments and the state.
pub fn save_checkpoint(
    dir: &Path,
    config: &T5Config,
    tokenizer: &Tokenizer,
    varmap: &VarMap,
    optimizer: &AdamW,
    state: &TrainerState,
) -> Result<()> {
    let weights: Vec<(String, Tensor)> = named_vars(varmap)?
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    let moments: Vec<(String, Tensor)> = optimizer.state().into_iter().collect();
    let tokenizer_json = tokenizer
        .to_string(true)
        .map_err(|e| anyhow::anyhow!("cannot serialize tokenizer: {e}"))?;
    write_files_atomically(
        dir,
        &[
            ("config.json", config.to_hf_json()?.into_bytes()),
            ("tokenizer.json", tokenizer_json.into_bytes()),
            (
                "model.safetensors",
                safetensors_bytes(weights.iter().map(|(n, t)| (n, t)))?,
            ),
            (
                OPTIMIZER_FILE,
                safetensors_bytes(moments.iter().map(|(n, t)| (n, t)))?,
            ),
            (
                STATE_FILE,
                (serde_json::to_string_pretty(state)? + "\n").into_bytes(),
            ),
        ],
    )?;
    Ok(())
}

/// Keep the log's header and its rows up to `step` (the checkpoint being resumed).
pub(crate) fn truncate_log(path: &Path, step: usize) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: unreadable training log", path.display()))?;
    let mut kept = String::with_capacity(text.len());
    for (i, line) in text.lines().enumerate() {
        let row_step = line.split(',').next().and_then(|s| s.parse::<usize>().ok());
        if i == 0 || row_step.is_some_and(|s| s <= step) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if kept.len() != text.len() {
        crate::util::atomic::write_file_atomically(path, kept.as_bytes())?;
    }
    Ok(())
}

/// The `--init-from` checkpoint must have the shape the options ask for; name what differs.
fn check_init_shape(config: &T5Config, init: &Path) -> Result<()> {
    let path = init.join("config.json");
    let found = T5Config::from_file(&path)?;
    let pairs = [
        ("vocab_size", config.vocab_size, found.vocab_size),
        ("d_model", config.d_model, found.d_model),
        ("d_kv", config.d_kv, found.d_kv),
        ("d_ff", config.d_ff, found.d_ff),
        ("num_layers", config.num_layers, found.num_layers),
        (
            "num_decoder_layers",
            config.decoder_layers(),
            found.decoder_layers(),
        ),
        ("num_heads", config.num_heads, found.num_heads),
    ];
    let mut differences: Vec<String> = pairs
        .iter()
        .filter(|(_, want, got)| want != got)
        .map(|(name, want, got)| format!("{name} is {got}, the options ask for {want}"))
        .collect();
    if config.tie_word_embeddings != found.tie_word_embeddings {
        differences.push(format!(
            "tie_word_embeddings is {}, the options ask for {}",
            found.tie_word_embeddings, config.tie_word_embeddings
        ));
    }
    if config.feed_forward_proj != found.feed_forward_proj {
        differences.push(format!(
            "feed_forward_proj is {:?}, training uses {:?}",
            found.feed_forward_proj, config.feed_forward_proj
        ));
    }
    if !differences.is_empty() {
        bail!("{}: {}", path.display(), differences.join("; "));
    }
    Ok(())
}

/// A progress bar of optimizer steps on a terminal (hidden in pipes and CI).
pub(crate) fn step_progress(steps: usize, done: usize) -> Result<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return Ok(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} steps {elapsed_precise} eta {eta} {msg}",
    )?);
    bar.set_position(done as u64);
    Ok(bar)
}

/// When to stop before `steps` (a checkpoint is written at the stop); not part of the run's
/// identity, so a stopped run resumes with the same options.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StopAt {
    pub steps: Option<usize>,
    /// Wall-clock seconds of this invocation.
    pub seconds: Option<f64>,
}

/// Train (or resume when `out` holds a trainer state), checkpointing into `out`.
pub fn train(options: &TrainOptions, out: &Path, stop: StopAt) -> Result<TrainerState> {
    let device = Device::Cpu;
    let state_path = out.join(STATE_FILE);
    let resumed: Option<TrainerState> = if state_path.is_file() {
        let text = std::fs::read_to_string(&state_path)?;
        let state: TrainerState = serde_json::from_str(&text)
            .with_context(|| format!("{}: unreadable trainer state", state_path.display()))?;
        if &state.options != options {
            bail!(
                "{} belongs to a run with different options; use another --out or the same options to resume",
                state_path.display()
            );
        }
        Some(state)
    } else {
        None
    };

    // Tokenizer: trained once per run (or taken from --init-from), reused on resume.
    let tokenizer = match (&resumed, &options.init_from) {
        (Some(_), _) => Tokenizer::from_file(out.join("tokenizer.json"))
            .map_err(|e| anyhow::anyhow!("cannot load the run's tokenizer: {e}"))?,
        (None, Some(init)) => Tokenizer::from_file(init.join("tokenizer.json")).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot load tokenizer: {e}",
                init.join("tokenizer.json").display()
            )
        })?,
        (None, None) => {
            let mut texts = Vec::new();
            for path in &options.data {
                for example in read_examples(path)? {
                    texts.push(example.input);
                    texts.push(example.reference);
                }
            }
            tokenizer::train_tokenizer(&texts, options.shape.vocab_size)?
        }
    };
    let vocab = tokenizer.get_vocab_size(true);
    let config = model_config(options, vocab);
    config.validate()?;
    if let (None, Some(init)) = (&resumed, &options.init_from) {
        check_init_shape(&config, init)?;
    }
    let mut pairs = load_pairs(
        &options.data,
        None,
        options.max_tokens_per_sequence,
        &tokenizer,
    )?;
    if options.copy_share > 0.0 {
        pairs.extend(identity_pairs(options, &tokenizer)?);
    }

    let mut varmap = VarMap::new();
    let model = trainable_model(&config, &varmap, options.seed, &device)?;
    let mut optimizer = AdamW::new(
        named_vars(&varmap)?,
        AdamWConfig {
            weight_decay: options.weight_decay,
            ..AdamWConfig::default()
        },
    )?;
    let mut state = match resumed {
        Some(state) => {
            varmap.load(out.join("model.safetensors"))?;
            let moments = candle_core::safetensors::load(out.join(OPTIMIZER_FILE), &device)?;
            optimizer.restore(&moments, state.step);
            state
        }
        None => {
            if let Some(init) = &options.init_from {
                varmap
                    .load(init.join("model.safetensors"))
                    .with_context(|| {
                        format!(
                            "{}: cannot load weights",
                            init.join("model.safetensors").display()
                        )
                    })?;
            }
            TrainerState {
                options: options.clone(),
                step: 0,
                epoch: 0,
                batch_in_epoch: 0,
                tokens_seen: 0,
                elapsed_seconds: 0.0,
            }
        }
    };

    std::fs::create_dir_all(out)?;
    let log_path = out.join(LOG_FILE);
    if log_path.exists() {
        // A run killed between checkpoints logged steps it will now redo.
        truncate_log(&log_path, state.step)?;
    }
    let new_log = !log_path.exists();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    if new_log {
        let layers: Vec<String> = (1..=options.shape.decoder_layers)
            .map(|i| format!("nll_layer{i}"))
            .collect();
        writeln!(
            log,
            "step,epoch,learning_rate,loss,{},grad_norm,tokens_seen,elapsed_s",
            layers.join(",")
        )?;
    }
    let progress = step_progress(options.steps, state.step)?;

    let mut batches = epoch_batches(&pairs, options.batch_tokens, options.seed, state.epoch);
    let started = Instant::now();
    let elapsed_before = state.elapsed_seconds;
    while state.step < options.steps {
        if state.batch_in_epoch >= batches.len() {
            state.epoch += 1;
            state.batch_in_epoch = 0;
            batches = epoch_batches(&pairs, options.batch_tokens, options.seed, state.epoch);
        }
        let in_curriculum = state.step < options.copy_curriculum_steps;
        let (source, lengths, decoder_in, target, mask) = if in_curriculum {
            let copies = curriculum::copy_batch(
                vocab,
                options.max_tokens_per_sequence,
                options.seed,
                state.step,
            );
            let all: Vec<usize> = (0..copies.len()).collect();
            batch_tensors(&copies, &all, &device)?
        } else {
            batch_tensors(&pairs, &batches[state.batch_in_epoch], &device)?
        };
        let logits = model.forward_all_exits(&source, &lengths, &decoder_in)?;
        let (loss, per_layer) = loss::calm_loss(&logits, &target, &mask)?;
        let lr = learning_rate(
            state.step,
            options.learning_rate,
            options.warmup,
            options.steps,
        );
        let norm = optimizer::clipped_step(&mut optimizer, &loss, lr, options.clip_norm)?;
        state.step += 1;
        if !in_curriculum {
            state.batch_in_epoch += 1;
        }
        state.tokens_seen += mask.sum_all()?.to_scalar::<u32>()? as u64;
        state.elapsed_seconds = elapsed_before + started.elapsed().as_secs_f64();

        let loss_value = loss.to_scalar::<f32>()?;
        if !loss_value.is_finite() {
            bail!(
                "loss became {loss_value} at step {}; lower --learning-rate",
                state.step
            );
        }
        let nll: Vec<f32> = per_layer
            .iter()
            .map(|t| t.to_scalar::<f32>())
            .collect::<candle_core::Result<_>>()?;
        let nll_text: Vec<String> = nll.iter().map(|v| format!("{v:.4}")).collect();
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
            "loss {loss_value:.3} | layer 1 {:.2} … layer {} {:.2}",
            nll[0],
            nll.len(),
            nll[nll.len() - 1]
        ));
        let stopping = stop.steps.is_some_and(|s| state.step >= s)
            || stop
                .seconds
                .is_some_and(|s| started.elapsed().as_secs_f64() >= s);
        if state.step % options.checkpoint_every == 0 || state.step == options.steps || stopping {
            log.flush()?;
            save_checkpoint(out, &config, &tokenizer, &varmap, &optimizer, &state)?;
        }
        if stopping {
            break;
        }
    }
    progress.finish_and_clear();
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_safetensors_equal_candles_file() {
        let device = Device::Cpu;
        let tensors: std::collections::HashMap<String, Tensor> = [
            ("b.weight", Tensor::arange(0f32, 6.0, &device).unwrap()),
            (
                "a.bias",
                Tensor::new(&[[1u32, 2], [3, 4]], &device).unwrap(),
            ),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
        let path = std::env::temp_dir().join(format!("calm-st-test-{}", std::process::id()));
        candle_core::safetensors::save(&tensors, &path).unwrap();
        let file = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(safetensors_bytes(&tensors).unwrap(), file);
    }
}
