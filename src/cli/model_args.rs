//! Options shared by every command that loads a model: the weight type of GGUF files and the
//! prompt format of decoder-only models.

use crate::model::{Checkpoint, LoadOptions, PromptFormat};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::path::Path;

/// How GGUF weights are multiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum WeightType {
    /// The file's quantized blocks through candle's quantized matmul (Q4_0, Q4_1, Q5_0, Q5_1,
    /// Q8_0, Q2_K–Q8_K; F16/F32 tensors as they are).
    #[default]
    Quantized,
    /// Every weight de-quantized to f32 (exact comparisons with transformers).
    F32,
    /// Block formats re-quantized to Q8_0, whose CPU dot product candle vectorises (Q4_1,
    /// Q5_0 and Q5_1 have only a scalar kernel): near-lossless, several times faster.
    Q8_0,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ModelArgs {
    /// GGUF models: run the quantized weights, or de-quantize them to f32. Ignored for
    /// safetensors checkpoints, which load as f32.
    #[arg(long, value_enum, default_value_t = WeightType::Quantized)]
    pub dtype: WeightType,
    /// Decoder-only models: wrap each input in the model's chat format (its ChatML chat
    /// template from the GGUF metadata or tokenizer_config.json: default system message, one
    /// user turn, the assistant's generation prompt). Without it inputs are tokenized as given.
    #[arg(long, conflicts_with = "prompt_template")]
    pub chat: bool,
    /// Decoder-only models: a prompt template with `{input}` where each input goes, e.g.
    /// "Translate to modern English: {input}\n".
    #[arg(long, value_name = "TEMPLATE")]
    pub prompt_template: Option<String>,
}

impl ModelArgs {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            dequantize: self.dtype == WeightType::F32,
            requantize_q8_0: self.dtype == WeightType::Q8_0,
        }
    }

    /// The prompt format these options ask for, given the loaded checkpoint.
    pub fn prompt_format(&self, checkpoint: &Checkpoint) -> Result<PromptFormat> {
        if let Some(template) = &self.prompt_template {
            return PromptFormat::from_template(template);
        }
        if self.chat {
            return checkpoint.chat_format();
        }
        Ok(PromptFormat::Plain)
    }

    /// Load a checkpoint directory or GGUF file with these options.
    pub fn load(&self, path: &Path) -> Result<Checkpoint> {
        let mut checkpoint = Checkpoint::load_with(path, &self.load_options())?;
        let asked = self.chat || self.prompt_template.is_some();
        if asked && checkpoint.model.as_t5().is_some() {
            bail!("--chat and --prompt-template apply to decoder-only models; {} is a T5 encoder-decoder", path.display());
        }
        checkpoint.prompt = self.prompt_format(&checkpoint)?;
        Ok(checkpoint)
    }
}

impl ModelArgs {
    /// Load the model a calibration ran: its GGUF weight type, and its prompt format unless
    /// these options name one, which must then be the same (the certificate holds for the
    /// prompts it was calibrated on).
    pub fn load_for_run(
        &self,
        path: &Path,
        run: &crate::calibrate::thresholds::RunInfo,
        thresholds: &Path,
    ) -> Result<Checkpoint> {
        let mut options = self.clone();
        if let Some(weights) = &run.gguf_weights {
            options.dtype = match weights.as_str() {
                "f32" => WeightType::F32,
                "q8_0" => WeightType::Q8_0,
                _ => WeightType::Quantized,
            };
        }
        let mut checkpoint = options.load(path)?;
        let asked = self.chat || self.prompt_template.is_some();
        if asked && checkpoint.prompt.template() != run.prompt_template.as_deref() {
            bail!(
                "{}: calibrated with prompt format {:?}, not the one asked for here ({:?}); leave out --chat/--prompt-template to use the calibrated one",
                thresholds.display(),
                run.prompt_template.as_deref().unwrap_or("the input as given"),
                checkpoint.prompt.template().unwrap_or("the input as given")
            );
        }
        checkpoint.prompt = match &run.prompt_template {
            Some(t) => PromptFormat::Template(t.clone()),
            None => PromptFormat::Plain,
        };
        Ok(checkpoint)
    }
}
