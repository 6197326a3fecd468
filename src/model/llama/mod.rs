//! Decoder-only Llama-family models (`LlamaForCausalLM`, `Qwen2ForCausalLM`,
//! `MistralForCausalLM`, and llama-architecture GGUF files) with CALM exits at every layer
//! through the shared final norm and LM head.

pub mod config;
pub mod export;
pub mod gguf;
pub mod init;
pub mod layers;
pub mod weights;

pub use config::{LlamaConfig, LlamaFamily};

use super::family::{BatchStart, ExitFamily, LayerCache};
use super::layers::RmsNorm;
use super::t5::{EXIT_CLASSIFIER_BIAS, EXIT_CLASSIFIER_WEIGHT};
use candle_core::{Device, Result, Tensor};
use candle_nn::Embedding;
use layers::{Attention, Block, Linear, Mlp, PositionAngles, Rotary};
use weights::{Part, Weights};

#[derive(Debug, Clone)]
pub struct LlamaModel {
    pub config: LlamaConfig,
    embedding: Embedding,
    pub blocks: Vec<Block>,
    final_norm: RmsNorm,
    head: Linear,
    rotary: Rotary,
    exit_classifier: Option<(Tensor, Tensor)>,
    /// Tokens that end generation (the config's and the tokenizer's EOS).
    eos: Vec<u32>,
    /// Whether the weights are quantized (GGUF without de-quantization).
    pub quantized: bool,
    device: Device,
    /// The dtype of the float weights and the activations (f32, f16 or bf16).
    pub dtype: candle_core::DType,
}

/// A decoder-only batch: every row's prompt has this many tokens.
#[derive(Debug, Clone, Copy)]
pub struct PromptBatch {
    pub prompt_len: usize,
}

impl LlamaModel {
    /// Load by checkpoint names. `interleaved_rope` for GGUF files (whose q/k rows llama.cpp's
    /// converter permuted for the interleaved rotation).
    pub fn load(
        config: &LlamaConfig,
        weights: &Weights,
        interleaved_rope: bool,
        eos: Vec<u32>,
        device: &Device,
    ) -> Result<Self> {
        let d = config.hidden_size;
        let (heads, kv_heads, head_dim) = (
            config.num_attention_heads,
            config.kv_heads(),
            config.head_dim(),
        );
        let ff = config.intermediate_size;
        let eps = config.rms_norm_eps;
        let mut blocks = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let qkv_bias = config.qkv_bias();
            blocks.push(Block {
                attention_norm: RmsNorm::new(
                    weights.dense(Part::AttentionNorm(i), "weight", &[d])?,
                    eps,
                ),
                attention: Attention {
                    q: weights.linear(Part::Query(i), heads * head_dim, d, qkv_bias)?,
                    k: weights.linear(Part::Key(i), kv_heads * head_dim, d, qkv_bias)?,
                    v: weights.linear(Part::Value(i), kv_heads * head_dim, d, qkv_bias)?,
                    o: weights.linear(
                        Part::Output(i),
                        d,
                        heads * head_dim,
                        config.output_bias(),
                    )?,
                    heads,
                    kv_heads,
                    head_dim,
                },
                mlp_norm: RmsNorm::new(weights.dense(Part::MlpNorm(i), "weight", &[d])?, eps),
                mlp: Mlp {
                    gate: weights.linear(Part::Gate(i), ff, d, config.mlp_bias)?,
                    up: weights.linear(Part::Up(i), ff, d, config.mlp_bias)?,
                    down: weights.linear(Part::Down(i), d, ff, config.mlp_bias)?,
                },
            });
        }
        let embedding_table = weights.dense(Part::Embedding, "weight", &[config.vocab_size, d])?;
        let head_part = if !config.tie_word_embeddings && weights.contains(Part::Head) {
            Part::Head
        } else if config.tie_word_embeddings || matches!(weights, Weights::Gguf(..)) {
            // GGUF files of tied models have no `output.weight`.
            Part::Embedding
        } else {
            Part::Head
        };
        let head = weights.linear(head_part, config.vocab_size, d, false)?;
        let exit_classifier = match weights.extra(EXIT_CLASSIFIER_WEIGHT, &[1, d])? {
            Some(w) => {
                let b = weights.extra(EXIT_CLASSIFIER_BIAS, &[1])?.ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "{EXIT_CLASSIFIER_WEIGHT} without {EXIT_CLASSIFIER_BIAS}"
                    ))
                })?;
                Some((w, b))
            }
            None => None,
        };
        let quantized = blocks
            .iter()
            .any(|b| matches!(b.attention.q, Linear::Quantized { .. }));
        Ok(LlamaModel {
            config: config.clone(),
            embedding: Embedding::new(embedding_table, d),
            blocks,
            final_norm: RmsNorm::new(weights.dense(Part::FinalNorm, "weight", &[d])?, eps),
            head,
            rotary: Rotary::new(&config.inverse_frequencies(), interleaved_rope),
            exit_classifier,
            eos,
            quantized,
            device: device.clone(),
            dtype: weights.dtype(),
        })
    }

    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    pub fn eos(&self) -> &[u32] {
        &self.eos
    }

    /// Angles (and the causal mask when T > 1) of positions `start..start + count`, attending to
    /// keys 0..start + count.
    fn angles(&self, start: usize, count: usize) -> Result<PositionAngles> {
        if let Some(window) = self.config.active_sliding_window() {
            if start + count > window {
                candle_core::bail!(
                    "sequence of {} tokens exceeds the sliding window of {window}; calm does not implement sliding-window attention",
                    start + count
                );
            }
        }
        let (cos, sin) = self
            .rotary
            .angles(start..start + count, self.dtype, &self.device)?;
        let mask = if count > 1 {
            let keys = start + count;
            let values: Vec<f32> = (0..count)
                .flat_map(|q| {
                    (0..keys).map(move |k| {
                        if k <= start + q {
                            0.0
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                })
                .collect();
            Some(Tensor::from_vec(values, (count, keys), &self.device)?.to_dtype(self.dtype)?)
        } else {
            None
        };
        Ok(PositionAngles { cos, sin, mask })
    }

    /// Teacher-forced forward of whole sequences `ids` [B, T] (no cache): the raw output states
    /// [B, T, D] of every layer (training and analysis).
    pub fn forward_states(&self, ids: &Tensor) -> Result<Vec<Tensor>> {
        let (_, t) = ids.dims2()?;
        let angles = self.angles(0, t)?;
        let mut x = candle_core::Module::forward(&self.embedding, ids)?;
        let mut states = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            x = block.step(&x, None, &self.rotary, &angles)?.0;
            states.push(x.clone());
        }
        Ok(states)
    }

    /// LM-head logits [.., V] of raw states `h` [.., D] through the shared final norm.
    pub fn head_logits(&self, h: &Tensor) -> Result<Tensor> {
        self.head.forward(&self.final_norm.forward(h)?)
    }
}

impl ExitFamily for LlamaModel {
    type Batch = PromptBatch;
    type Position = PositionAngles;

    fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn has_exit_classifier(&self) -> bool {
        self.exit_classifier.is_some()
    }

    fn is_eos(&self, token: u32) -> bool {
        self.eos.contains(&token)
    }

    fn needs_equal_lengths(&self) -> bool {
        true
    }

    /// Prefill every prompt with the full model (no exits), writing every layer's cache.
    fn start(&self, inputs: &[Vec<u32>]) -> Result<BatchStart<PromptBatch>> {
        let prompt_len = inputs.first().map_or(0, Vec::len);
        if prompt_len == 0 {
            candle_core::bail!("a decoder-only model needs a prompt of at least one token");
        }
        if inputs.iter().any(|i| i.len() != prompt_len) {
            candle_core::bail!("internal error: prompts of one batch differ in length");
        }
        let ids: Vec<u32> = inputs.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(ids, (inputs.len(), prompt_len), &self.device)?;
        let angles = self.angles(0, prompt_len)?;
        let mut x = candle_core::Module::forward(&self.embedding, &ids)?;
        let mut caches = Vec::with_capacity(self.blocks.len());
        let mut states = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let (h, k, v) = block.step(&x, None, &self.rotary, &angles)?;
            caches.push(LayerCache {
                keys: Some(k),
                values: Some(v),
            });
            states.push(h.narrow(1, prompt_len - 1, 1)?.contiguous()?);
            x = h;
        }
        Ok(BatchStart {
            batch: PromptBatch { prompt_len },
            caches,
            prompt_states: Some(states),
            first_input: inputs.iter().map(|i| i[prompt_len - 1]).collect(),
        })
    }

    /// Output token t ≥ 1 is produced from output token t − 1 at position prompt_len + t − 1.
    fn position(&self, batch: &PromptBatch, t: usize) -> Result<PositionAngles> {
        self.angles(batch.prompt_len + t.max(1) - 1, 1)
    }

    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        candle_core::Module::forward(&self.embedding, ids)
    }

    fn layer_step(
        &self,
        layer: usize,
        x: &Tensor,
        past: Option<(&Tensor, &Tensor)>,
        angles: &PositionAngles,
        _batch: &PromptBatch,
        _rows: &[usize],
        _batch_rows: usize,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.blocks[layer].step(x, past, &self.rotary, angles)
    }

    fn propagate(
        &self,
        layer: usize,
        x: &Tensor,
        angles: &PositionAngles,
    ) -> Result<(Tensor, Tensor)> {
        self.blocks[layer].propagate(x, &self.rotary, angles)
    }

    fn exit_logits(&self, h: &Tensor) -> Result<Tensor> {
        self.head_logits(h)?.squeeze(1)
    }

    fn classifier_confidence(&self, h: &Tensor) -> Result<Option<Tensor>> {
        super::family::classifier_confidence(self.exit_classifier.as_ref(), h)
    }
}
