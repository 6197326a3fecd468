//! A loaded model of any family calm runs, dispatched to the one engine.

use super::family::ExitFamily;
use super::llama::LlamaModel;
use super::t5::T5Model;

/// A model of one of calm's families. (One per process: the variants' size difference does
/// not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Model {
    /// Encoder-decoder (the CALM paper's setting).
    T5(T5Model),
    /// Decoder-only Llama family (Llama, Qwen2, Mistral; HF layout or GGUF).
    Llama(LlamaModel),
}

impl Model {
    pub fn num_decoder_layers(&self) -> usize {
        match self {
            Model::T5(m) => m.num_decoder_layers(),
            Model::Llama(m) => m.num_layers(),
        }
    }

    pub fn has_exit_classifier(&self) -> bool {
        match self {
            Model::T5(m) => m.has_exit_classifier(),
            Model::Llama(m) => ExitFamily::has_exit_classifier(m),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Model::T5(m) => m.config.vocab_size,
            Model::Llama(m) => m.config.vocab_size,
        }
    }

    /// The dtype the model computes in (f32, f16 or bf16).
    pub fn dtype(&self) -> candle_core::DType {
        match self {
            Model::T5(m) => m.dtype,
            Model::Llama(m) => m.dtype,
        }
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            Model::T5(m) => m.config.d_model,
            Model::Llama(m) => m.config.hidden_size,
        }
    }

    /// Whether the first output token comes from a full-model prefill (decoder-only), so that
    /// exits start at the second.
    pub fn prefills_prompt(&self) -> bool {
        matches!(self, Model::Llama(_))
    }

    /// The work before the first decoding step (T5: the encoder; decoder-only: the prefill),
    /// for timing it apart.
    pub fn start_batch(&self, inputs: &[Vec<u32>]) -> anyhow::Result<()> {
        match self {
            Model::T5(m) => {
                m.encode(inputs)?;
            }
            Model::Llama(m) => {
                for rows in super::generate::equal_length_groups(inputs).values() {
                    let group: Vec<Vec<u32>> = rows.iter().map(|&r| inputs[r].clone()).collect();
                    m.start(&group)?;
                }
            }
        }
        Ok(())
    }

    /// The family's name, as reports print it.
    pub fn family_name(&self) -> &'static str {
        match self {
            Model::T5(_) => "t5",
            Model::Llama(m) => match m.config.family() {
                super::llama::LlamaFamily::Llama => "llama",
                super::llama::LlamaFamily::Qwen2 => "qwen2",
                super::llama::LlamaFamily::Mistral => "mistral",
            },
        }
    }

    /// The T5 model, for what only the encoder-decoder path supports yet.
    pub fn as_t5(&self) -> Option<&T5Model> {
        match self {
            Model::T5(m) => Some(m),
            Model::Llama(_) => None,
        }
    }

    pub fn as_llama(&self) -> Option<&LlamaModel> {
        match self {
            Model::Llama(m) => Some(m),
            Model::T5(_) => None,
        }
    }
}
