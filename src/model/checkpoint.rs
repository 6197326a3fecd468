//! A checkpoint directory in Hugging Face layout: `config.json`, `model.safetensors`,
//! `tokenizer.json`. Loading fails with errors that name the file and the problem.

use super::config::T5Config;
use super::t5::T5Model;
use crate::util::sha256_file;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// A loaded model with its tokenizer.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub model: T5Model,
    pub tokenizer: Tokenizer,
    /// SHA-256 of `model.safetensors`: identifies the model in configs and reports.
    pub model_sha256: String,
}

fn required(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{}: missing {name} (a checkpoint directory holds config.json, model.safetensors and tokenizer.json)",
            dir.display()
        );
    }
    Ok(path)
}

impl Checkpoint {
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!(
                "{}: not a directory (expected a checkpoint directory)",
                dir.display()
            );
        }
        let config_path = required(dir, "config.json")?;
        let weights_path = required(dir, "model.safetensors")?;
        let tokenizer_path = required(dir, "tokenizer.json")?;
        let config = T5Config::from_file(&config_path)?;
        let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| {
            anyhow::anyhow!("{}: not a valid tokenizer: {e}", tokenizer_path.display())
        })?;
        let tokenizer_vocab = tokenizer.get_vocab_size(true);
        if tokenizer_vocab > config.vocab_size {
            bail!(
                "{} has {tokenizer_vocab} tokens but the model's vocab_size is {} ({})",
                tokenizer_path.display(),
                config.vocab_size,
                config_path.display()
            );
        }
        let bytes = std::fs::read(&weights_path)
            .with_context(|| format!("cannot read {}", weights_path.display()))?;
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
            .with_context(|| format!("{}: not a valid safetensors file", weights_path.display()))?;
        let model = T5Model::load(&config, vb).with_context(|| {
            format!(
                "{} does not match {} (tensor missing or of the wrong shape)",
                weights_path.display(),
                config_path.display()
            )
        })?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            model,
            tokenizer,
            model_sha256: sha256_file(&weights_path)?,
        })
    }

    /// Token ids of `text` (with the tokenizer's post-processing, i.e. a trailing `</s>`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| anyhow::anyhow!("cannot tokenize input: {e}"))?;
        let ids = encoding.get_ids().to_vec();
        let limit = self.model.config.max_input_tokens();
        if ids.len() > limit {
            bail!(
                "input is {} tokens, more than the model's maximum of {limit}",
                ids.len()
            );
        }
        if let Some(&bad) = ids
            .iter()
            .find(|&&id| id as usize >= self.model.config.vocab_size)
        {
            bail!("token id {bad} is outside the model's vocabulary");
        }
        Ok(ids)
    }

    /// Text of generated ids, special tokens removed.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| anyhow::anyhow!("cannot detokenize output: {e}"))
    }
}
