//! Loading a model with its tokenizer: a checkpoint directory in Hugging Face layout
//! (`config.json`, `model.safetensors` or sharded `model-*.safetensors` with their index,
//! `tokenizer.json`) of a T5 or Llama-family model, or a llama-architecture GGUF file.
//! Loading fails with errors that name the file and the problem.

use super::config::T5Config;
use super::llama::gguf::read_gguf;
use super::llama::weights::Weights;
use super::llama::{LlamaConfig, LlamaModel};
use super::loaded::Model;
use super::t5::T5Model;
use crate::util::sha256_files;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// How a checkpoint's GGUF weights are loaded (safetensors checkpoints ignore it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// GGUF: de-quantize every weight to the compute dtype (exact comparisons with
    /// transformers) instead of multiplying the quantized blocks.
    pub dequantize: bool,
    /// GGUF: re-quantize block formats to Q8_0 (candle's vectorised CPU kernel).
    pub requantize_q8_0: bool,
}

impl LoadOptions {
    /// The options of a GGUF weight type as thresholds.json records it (`quantized`, `f32`
    /// for de-quantized, `q8_0`); None (a safetensors run): the defaults.
    pub fn from_gguf_weights(name: Option<&str>) -> Result<Self> {
        match name {
            None | Some("quantized") => Ok(LoadOptions::default()),
            Some("f32") => Ok(LoadOptions {
                dequantize: true,
                requantize_q8_0: false,
            }),
            Some("q8_0") => Ok(LoadOptions {
                dequantize: false,
                requantize_q8_0: true,
            }),
            Some(other) => {
                bail!("unknown GGUF weight type {other:?} (expected quantized, f32 or q8_0)")
            }
        }
    }

    /// The name thresholds.json records for these options.
    pub fn gguf_weights_name(&self) -> &'static str {
        if self.dequantize {
            "f32"
        } else if self.requantize_q8_0 {
            "q8_0"
        } else {
            "quantized"
        }
    }
}

/// The dtypes a model computes in: f32 (the default; training and exact comparisons), f16 and
/// bf16 (half the bytes per weight; candle's CPU kernels widen bf16 products to f32).
pub const COMPUTE_DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// The name of a compute dtype as thresholds.json and the CLI write it (`f32`, `f16`, `bf16`).
pub fn dtype_name(dtype: DType) -> &'static str {
    dtype.as_str()
}

/// A compute dtype by its name (`f32`, `f16`, `bf16`).
pub fn dtype_from_name(name: &str) -> Result<DType> {
    COMPUTE_DTYPES
        .into_iter()
        .find(|d| d.as_str() == name)
        .ok_or_else(|| anyhow!("unknown compute dtype {name:?} (expected f32, f16 or bf16)"))
}

/// How an input text becomes a decoder-only prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptFormat {
    /// The text as given.
    Plain,
    /// A template with `{input}` where the text goes (e.g. a chat format).
    Template(String),
}

impl PromptFormat {
    /// The template, None for inputs as given (as thresholds.json records it).
    pub fn template(&self) -> Option<&str> {
        match self {
            PromptFormat::Plain => None,
            PromptFormat::Template(t) => Some(t),
        }
    }

    /// A template with `{input}` where each input goes.
    pub fn from_template(template: &str) -> Result<Self> {
        if !template.contains("{input}") {
            bail!("--prompt-template must contain {{input}} where the input goes");
        }
        Ok(PromptFormat::Template(template.to_string()))
    }
}

/// A loaded model with its tokenizer.
pub struct Checkpoint {
    /// The checkpoint directory or GGUF file.
    pub dir: PathBuf,
    pub model: Model,
    pub tokenizer: Tokenizer,
    /// SHA-256 of the weights (`model.safetensors`, the shards in order, or the GGUF file):
    /// identifies the model in configs and reports.
    pub model_sha256: String,
    /// Decoder-only: how inputs become prompts.
    pub prompt: PromptFormat,
    /// The model's chat template (GGUF metadata or tokenizer_config.json), if it has one.
    pub chat_template: Option<String>,
    /// GGUF: the BOS token prepended to every prompt (`tokenizer.ggml.add_bos_token`).
    prepend_bos: Option<u32>,
    /// GGUF: how its weights were loaded (None for safetensors checkpoints).
    pub gguf_options: Option<LoadOptions>,
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

fn read_tokenizer(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path)
        .map_err(|e| anyhow!("{}: not a valid tokenizer: {e}", path.display()))
}

/// The safetensors files of a checkpoint directory: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` names, in name order.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index_path = dir.join("model.safetensors.index.json");
    if !index_path.is_file() {
        return Ok(vec![required(dir, "model.safetensors")?]);
    }
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&index_path)
            .with_context(|| format!("cannot read {}", index_path.display()))?,
    )
    .with_context(|| format!("{}: not valid JSON", index_path.display()))?;
    let map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| anyhow!("{}: no weight_map object", index_path.display()))?;
    let mut files: Vec<String> = map
        .values()
        .map(|v| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                anyhow!(
                    "{}: weight_map values must be file names",
                    index_path.display()
                )
            })
        })
        .collect::<Result<_>>()?;
    files.sort();
    files.dedup();
    if files.is_empty() {
        bail!("{}: weight_map names no files", index_path.display());
    }
    files
        .into_iter()
        .map(|name| {
            if name.contains('/') || name.contains("..") {
                bail!(
                    "{}: shard name {name:?} leaves the directory",
                    index_path.display()
                );
            }
            required(dir, &name)
        })
        .collect()
}

/// The `model_type`/`architectures` of a config.json, to choose the family.
pub fn is_t5_config(config_path: &Path) -> Result<bool> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", config_path.display()))?;
    let model_type = value.get("model_type").and_then(|v| v.as_str());
    let architectures: Vec<&str> = value
        .get("architectures")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    Ok(match model_type {
        Some("t5") => true,
        Some(_) => false,
        None => architectures.is_empty() || architectures.iter().any(|a| a.starts_with("T5")),
    })
}

/// EOS ids a directory's generation_config.json adds to its config's.
fn generation_eos(dir: &Path) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(dir.join("generation_config.json")) else {
        return Vec::new();
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("eos_token_id").cloned())
        .and_then(|v| serde_json::from_value::<super::llama::config::TokenIds>(v).ok())
        .map_or_else(Vec::new, |ids| ids.ids())
}

/// The chat template of tokenizer_config.json (or chat_template.jinja).
fn directory_chat_template(dir: &Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(dir.join("chat_template.jinja")) {
        return Some(text);
    }
    let text = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("chat_template")?.as_str().map(str::to_string)
}

impl Checkpoint {
    /// Load a checkpoint directory or GGUF file onto `device`, computing in `dtype` (f32, f16
    /// or bf16): weights stored in another float type are converted as they load, GGUF block
    /// formats stay quantized.
    pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with(path, device, dtype, &LoadOptions::default())
    }

    /// [`Checkpoint::load`] with GGUF load options.
    pub fn load_with(
        path: &Path,
        device: &Device,
        dtype: DType,
        options: &LoadOptions,
    ) -> Result<Self> {
        if !COMPUTE_DTYPES.contains(&dtype) {
            bail!(
                "cannot compute in {} (calm runs f32, f16 or bf16)",
                dtype.as_str()
            );
        }
        if path.is_file() && path.extension().is_some_and(|e| e == "gguf") {
            return Self::load_gguf(path, options, dtype, device);
        }
        if !path.is_dir() {
            bail!(
                "{}: not a directory (expected a checkpoint directory or a .gguf file)",
                path.display()
            );
        }
        let config_path = required(path, "config.json")?;
        let tokenizer_path = required(path, "tokenizer.json")?;
        let files = weight_files(path)?;
        let tokenizer = read_tokenizer(&tokenizer_path)?;
        let t5 = is_t5_config(&config_path)?;
        let vocab_size = if t5 {
            T5Config::from_file(&config_path)?.vocab_size
        } else {
            LlamaConfig::from_file(&config_path)?.vocab_size
        };
        let tokenizer_vocab = tokenizer.get_vocab_size(true);
        if tokenizer_vocab > vocab_size {
            bail!(
                "{} has {tokenizer_vocab} tokens but the model's vocab_size is {vocab_size} ({})",
                tokenizer_path.display(),
                config_path.display()
            );
        }
        let mismatch = || {
            format!(
                "{} does not match {} (tensor missing or of the wrong shape)",
                files[0].display(),
                config_path.display()
            )
        };
        let model = if t5 {
            let config = T5Config::from_file(&config_path)?;
            let bytes = std::fs::read(&files[0])
                .with_context(|| format!("cannot read {}", files[0].display()))?;
            let vb = VarBuilder::from_buffered_safetensors(bytes, dtype, device)
                .with_context(|| format!("{}: not a valid safetensors file", files[0].display()))?;
            Model::T5(T5Model::load(&config, vb).with_context(mismatch)?)
        } else {
            let config = LlamaConfig::from_file(&config_path)?;
            // SAFETY: the files are memory-mapped read-only for the duration of loading; calm
            // does not modify checkpoint files while it runs.
            let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device) }
                .with_context(|| format!("{}: not a valid safetensors file", files[0].display()))?;
            let mut eos = config.eos_ids();
            eos.extend(generation_eos(path));
            eos.sort_unstable();
            eos.dedup();
            Model::Llama(
                LlamaModel::load(&config, &Weights::Hf(vb), false, eos, device)
                    .with_context(mismatch)?,
            )
        };
        Ok(Checkpoint {
            dir: path.to_path_buf(),
            chat_template: if t5 {
                None
            } else {
                directory_chat_template(path)
            },
            model,
            tokenizer,
            model_sha256: sha256_files(&files)?,
            prompt: PromptFormat::Plain,
            prepend_bos: None,
            gguf_options: None,
        })
    }

    fn load_gguf(
        path: &Path,
        options: &LoadOptions,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let gguf = read_gguf(
            path,
            options.dequantize,
            options.requantize_q8_0,
            dtype,
            device,
        )?;
        let model = LlamaModel::load(
            &gguf.config,
            &Weights::Gguf(&gguf.tensors, device.clone()),
            true,
            gguf.eos.clone(),
            device,
        )
        .with_context(|| format!("{}: tensors do not match its metadata", path.display()))?;
        Ok(Checkpoint {
            dir: path.to_path_buf(),
            model: Model::Llama(model),
            tokenizer: gguf.tokenizer,
            model_sha256: sha256_files(&[path])?,
            prompt: PromptFormat::Plain,
            chat_template: gguf.chat_template,
            prepend_bos: if gguf.add_bos { gguf.bos } else { None },
            gguf_options: Some(*options),
        })
    }

    /// The model's chat format as a prompt template: its chat template must be ChatML
    /// (`<|im_start|>role\n…<|im_end|>\n`); a default system message it writes is kept.
    pub fn chat_format(&self) -> Result<PromptFormat> {
        let Some(template) = &self.chat_template else {
            bail!(
                "{} has no chat template (GGUF tokenizer.chat_template or tokenizer_config.json chat_template); give a --prompt-template",
                self.dir.display()
            );
        };
        super::prompt::chatml_template(template)
            .map(PromptFormat::Template)
            .with_context(|| format!("{}: chat template", self.dir.display()))
    }

    /// Token ids of `text`: for T5 with the tokenizer's post-processing (a trailing `</s>`);
    /// for decoder-only models the prompt format applied, and the BOS the tokenizer (or the
    /// GGUF metadata) adds.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let (text, limit) = match &self.model {
            Model::T5(m) => (text.to_string(), m.config.max_input_tokens()),
            Model::Llama(m) => (
                match &self.prompt {
                    PromptFormat::Plain => text.to_string(),
                    PromptFormat::Template(t) => t.replace("{input}", text),
                },
                m.config.max_position_embeddings,
            ),
        };
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| anyhow!("cannot tokenize input: {e}"))?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        ids.extend(self.prepend_bos);
        ids.extend_from_slice(encoding.get_ids());
        if ids.len() > limit {
            bail!(
                "input is {} tokens, more than the model's maximum of {limit}",
                ids.len()
            );
        }
        if let Some(&bad) = ids
            .iter()
            .find(|&&id| id as usize >= self.model.vocab_size())
        {
            bail!("token id {bad} is outside the model's vocabulary");
        }
        Ok(ids)
    }

    /// Text of generated ids, special tokens removed.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| anyhow!("cannot detokenize output: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_names_round_trip() {
        for options in [
            LoadOptions::default(),
            LoadOptions {
                dequantize: true,
                requantize_q8_0: false,
            },
            LoadOptions {
                dequantize: false,
                requantize_q8_0: true,
            },
        ] {
            let name = options.gguf_weights_name();
            assert_eq!(LoadOptions::from_gguf_weights(Some(name)).unwrap(), options);
        }
        assert_eq!(
            LoadOptions::from_gguf_weights(None).unwrap(),
            LoadOptions::default()
        );
        let error = LoadOptions::from_gguf_weights(Some("q4")).unwrap_err();
        assert!(error.to_string().contains("\"q4\""), "{error}");
        for dtype in COMPUTE_DTYPES {
            assert_eq!(dtype_from_name(dtype_name(dtype)).unwrap(), dtype);
        }
        assert_eq!(
            [DType::F32, DType::F16, DType::BF16].map(dtype_name),
            ["f32", "f16", "bf16"]
        );
        assert!(dtype_from_name("f64").is_err());
    }
}
