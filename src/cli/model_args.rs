//! Options shared by every command that loads a model: the weight type of GGUF files and the
//! prompt format of decoder-only models.

use crate::model::{Checkpoint, LoadOptions, PromptFormat};
use crate::pipeline::check::run_prompt_format;
use anyhow::{bail, Result};
use candle_core::{DType, Device};
use clap::{Args, ValueEnum};
use std::path::Path;

/// The weights a model runs and the dtype it computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum WeightType {
    /// GGUF: the file's quantized blocks through candle's quantized matmul (Q4_0, Q4_1, Q5_0,
    /// Q5_1, Q8_0, Q2_K–Q8_K; F16/F32 tensors as f32), activations f32. Safetensors: f32.
    #[default]
    Quantized,
    /// Every weight as f32 (GGUF blocks de-quantized): exact comparisons with transformers.
    F32,
    /// GGUF: block formats re-quantized to Q8_0, whose CPU dot product candle vectorises
    /// (Q4_1, Q5_0 and Q5_1 have only a scalar kernel): near-lossless, several times faster.
    Q8_0,
    /// Every weight and activation as f16 (GGUF blocks de-quantized): half the bytes of f32.
    F16,
    /// Every weight and activation as bf16 (GGUF blocks de-quantized). candle's CPU matmul
    /// has no bf16 kernel and widens each product to f32.
    Bf16,
}

impl WeightType {
    /// The GGUF load options and the compute dtype of this choice.
    pub fn load_settings(self) -> (LoadOptions, DType) {
        let dequantize = LoadOptions {
            dequantize: true,
            requantize_q8_0: false,
        };
        match self {
            WeightType::Quantized => (LoadOptions::default(), DType::F32),
            WeightType::F32 => (dequantize, DType::F32),
            WeightType::Q8_0 => (
                LoadOptions {
                    dequantize: false,
                    requantize_q8_0: true,
                },
                DType::F32,
            ),
            WeightType::F16 => (dequantize, DType::F16),
            WeightType::Bf16 => (dequantize, DType::BF16),
        }
    }
}

#[derive(Debug, Clone, Default, Args)]
pub struct ModelArgs {
    /// The weights and compute dtype: `quantized` runs a GGUF file's blocks as stored (a
    /// safetensors checkpoint as f32), `q8-0` re-quantizes GGUF blocks to Q8_0, `f32`, `f16`
    /// and `bf16` convert every weight (GGUF blocks de-quantized) and compute in that type.
    /// A calibration records the choice; `check` and `generate --thresholds` run the same.
    #[arg(long, value_enum, default_value_t = WeightType::Quantized)]
    pub dtype: WeightType,
    /// Decoder-only models: wrap each input in the model's chat format (its ChatML chat
    /// template from the GGUF metadata or tokenizer_config.json: default system message, one
    /// user turn, the assistant's generation prompt). Without it inputs are tokenized as given.
    #[arg(long, conflicts_with = "prompt_template")]
    pub chat: bool,
    /// Decoder-only models: a prompt template with `{input}` where each input goes, e.g.
    /// "Translate to modern English: {input}\n" [default: the input as given, or the
    /// calibrated format with --thresholds].
    #[arg(long, value_name = "TEMPLATE")]
    pub prompt_template: Option<String>,
}

impl ModelArgs {
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
        let (options, dtype) = self.dtype.load_settings();
        self.load_as(path, &options, dtype)
    }

    /// Load with these prompt options and the given weights and dtype, on the CPU.
    fn load_as(&self, path: &Path, options: &LoadOptions, dtype: DType) -> Result<Checkpoint> {
        let mut checkpoint = Checkpoint::load_with(path, &Device::Cpu, dtype, options)?;
        let asked = self.chat || self.prompt_template.is_some();
        if asked && checkpoint.model.as_t5().is_some() {
            bail!("--chat and --prompt-template apply to decoder-only models; {} is a T5 encoder-decoder", path.display());
        }
        checkpoint.prompt = self.prompt_format(&checkpoint)?;
        Ok(checkpoint)
    }
}

impl ModelArgs {
    /// Load the model a calibration ran: its GGUF weight type and compute dtype (as
    /// recorded, whatever --dtype says), and its prompt format unless these options name one,
    /// which must then be the same (the certificate holds for the prompts it was calibrated
    /// on).
    pub fn load_for_run(
        &self,
        path: &Path,
        run: &crate::calibrate::thresholds::RunInfo,
        thresholds: &Path,
    ) -> Result<Checkpoint> {
        let (options, dtype) = crate::pipeline::check::run_load_options(run, thresholds)?;
        // A weight type runs as calibrated when it computes in the recorded dtype and, for a
        // GGUF run, loads the blocks the same way (safetensors checkpoints ignore the latter).
        let as_calibrated = |w: WeightType| {
            let (o, d) = w.load_settings();
            d == dtype && (run.gguf_weights.is_none() || o == options)
        };
        if self.dtype != WeightType::Quantized && !as_calibrated(self.dtype) {
            let recorded = WeightType::value_variants()
                .iter()
                .find(|&&w| as_calibrated(w))
                .map_or_else(String::new, |&w| flag_value(w));
            bail!(
                "{}: calibrated with --dtype {recorded}, not --dtype {}; leave out --dtype to run the calibrated weights",
                thresholds.display(),
                flag_value(self.dtype)
            );
        }
        let mut checkpoint = self.load_as(path, &options, dtype)?;
        let asked = self.chat || self.prompt_template.is_some();
        if asked && checkpoint.prompt.template() != run.prompt_template.as_deref() {
            bail!(
                "{}: calibrated with prompt format {:?}, not the one asked for here ({:?}); leave out --chat/--prompt-template to use the calibrated one",
                thresholds.display(),
                run.prompt_template.as_deref().unwrap_or("the input as given"),
                checkpoint.prompt.template().unwrap_or("the input as given")
            );
        }
        checkpoint.prompt = run_prompt_format(run);
        Ok(checkpoint)
    }
}

/// The --dtype value of a weight type, as the command line spells it.
fn flag_value(weights: WeightType) -> String {
    weights
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}
