//! A Llama-layout model to train from scratch: the config of a shape, and seeded random
//! weights as transformers initialises `LlamaForCausalLM` (every linear layer and the embedding
//! N(0, 0.02²), RMS norm weights 1, `initializer_range` 0.02).

use super::config::{LlamaConfig, TokenIds};
use super::weights::Part;
use crate::model::init::normal;
use crate::util::rng::Rng;
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// transformers' `initializer_range` for Llama.
pub const INITIALIZER_RANGE: f64 = 0.02;

/// The shape of a Llama-layout model trained from scratch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlamaShape {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub layers: usize,
    pub heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
    pub tie_embeddings: bool,
    pub max_positions: usize,
}

impl LlamaShape {
    /// The `LlamaForCausalLM` config of this shape (rope θ 10,000, RMS ε 1e-6, SiLU, no
    /// biases) with the given special tokens.
    pub fn config(&self, bos: Option<u32>, eos: u32) -> Result<LlamaConfig> {
        if self.heads == 0 || self.hidden_size % self.heads != 0 {
            bail!(
                "the width {} must be a multiple of the heads {}",
                self.hidden_size,
                self.heads
            );
        }
        if self.kv_heads == 0 || self.heads % self.kv_heads != 0 {
            bail!(
                "the heads {} must be a multiple of the key/value heads {}",
                self.heads,
                self.kv_heads
            );
        }
        if (self.hidden_size / self.heads) % 2 != 0 {
            bail!("the head width (width / heads) must be even for rotary embeddings");
        }
        let config = LlamaConfig {
            architectures: vec!["LlamaForCausalLM".into()],
            model_type: Some("llama".into()),
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            num_key_value_heads: Some(self.kv_heads),
            head_dim: Some(self.hidden_size / self.heads),
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            rope_scaling: None,
            rope_parameters: None,
            max_position_embeddings: self.max_positions,
            tie_word_embeddings: self.tie_embeddings,
            attention_bias: false,
            mlp_bias: false,
            hidden_act: "silu".into(),
            bos_token_id: bos.map(TokenIds::One),
            eos_token_id: Some(TokenIds::One(eos)),
            sliding_window: None,
            use_sliding_window: None,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Every tensor of `LlamaForCausalLM` for `config` (HF names), with its shape, in a fixed order.
pub fn parameter_shapes(config: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let d = config.hidden_size;
    let (q_rows, kv_rows) = (
        config.num_attention_heads * config.head_dim(),
        config.kv_heads() * config.head_dim(),
    );
    let ff = config.intermediate_size;
    let weight = |part: Part| format!("{}.weight", part.hf_name());
    let mut shapes = vec![(weight(Part::Embedding), vec![config.vocab_size, d])];
    for i in 0..config.num_hidden_layers {
        shapes.extend([
            (weight(Part::AttentionNorm(i)), vec![d]),
            (weight(Part::Query(i)), vec![q_rows, d]),
            (weight(Part::Key(i)), vec![kv_rows, d]),
            (weight(Part::Value(i)), vec![kv_rows, d]),
            (weight(Part::Output(i)), vec![d, q_rows]),
            (weight(Part::MlpNorm(i)), vec![d]),
            (weight(Part::Gate(i)), vec![ff, d]),
            (weight(Part::Up(i)), vec![ff, d]),
            (weight(Part::Down(i)), vec![d, ff]),
        ]);
    }
    shapes.push((weight(Part::FinalNorm), vec![d]));
    if !config.tie_word_embeddings {
        shapes.push((weight(Part::Head), vec![config.vocab_size, d]));
    }
    shapes
}

/// Seeded random weights: norms 1, everything else N(0, 0.02²).
pub fn random_weights(
    config: &LlamaConfig,
    seed: u64,
    device: &Device,
) -> Result<BTreeMap<String, Tensor>> {
    let mut rng = Rng::new(seed);
    let mut weights = BTreeMap::new();
    for (name, shape) in parameter_shapes(config) {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = if shape.len() == 1 {
            vec![1.0; count]
        } else {
            (0..count)
                .map(|_| (normal(&mut rng) * INITIALIZER_RANGE) as f32)
                .collect()
        };
        weights.insert(name, Tensor::from_vec(values, shape, device)?);
    }
    Ok(weights)
}

/// Parameters of a config (the tied head counted once).
pub fn parameter_count(config: &LlamaConfig) -> usize {
    parameter_shapes(config)
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> LlamaShape {
        LlamaShape {
            vocab_size: 50,
            hidden_size: 16,
            intermediate_size: 24,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            tie_embeddings: true,
            max_positions: 64,
        }
    }

    #[test]
    fn weights_load_into_the_model_and_follow_transformers_init() {
        let config = shape().config(None, 1).unwrap();
        let device = Device::Cpu;
        let weights = random_weights(&config, 3, &device).unwrap();
        // Hand count: embedding 50·16; per layer 2·16 norms + q 16·16 + k, v 8·16 each
        // + o 16·16 + gate, up 24·16 each + down 16·24; final norm 16.
        let per_layer = 2 * 16 + 256 + 2 * 128 + 256 + 3 * 384;
        assert_eq!(parameter_count(&config), 800 + 2 * per_layer + 16);
        let embedding = weights["model.embed_tokens.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let n = embedding.len() as f64;
        let mean = embedding.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (embedding
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        assert!((std - 0.02).abs() < 0.002, "std {std}");
        let norm = weights["model.norm.weight"].to_vec1::<f32>().unwrap();
        assert!(norm.iter().all(|&v| v == 1.0));
        let vb = candle_nn::VarBuilder::from_tensors(
            weights.into_iter().collect(),
            candle_core::DType::F32,
            &device,
        );
        let model = super::super::LlamaModel::load(
            &config,
            &super::super::weights::Weights::Hf(vb),
            false,
            vec![1],
            &device,
        );
        assert!(model.is_ok());
        assert_eq!(
            random_weights(&config, 3, &device).unwrap()["model.layers.1.mlp.up_proj.weight"]
                .to_vec2::<f32>()
                .unwrap(),
            random_weights(&config, 3, &device).unwrap()["model.layers.1.mlp.up_proj.weight"]
                .to_vec2::<f32>()
                .unwrap()
        );
    }

    #[test]
    fn shapes_that_cannot_run_are_refused() {
        let refused = |shape: LlamaShape, needle: &str| {
            let error = shape.config(None, 1).unwrap_err().to_string();
            assert!(error.contains(needle), "{shape:?}: {error}");
        };
        // The width is not a multiple of the heads (the key/value heads divide the heads).
        refused(
            LlamaShape {
                heads: 3,
                kv_heads: 3,
                ..shape()
            },
            "multiple of the heads",
        );
        refused(
            LlamaShape {
                heads: 0,
                kv_heads: 0,
                ..shape()
            },
            "multiple of the heads",
        );
        // The heads are not a multiple of the key/value heads.
        refused(
            LlamaShape {
                kv_heads: 3,
                ..shape()
            },
            "key/value heads",
        );
        refused(
            LlamaShape {
                kv_heads: 0,
                ..shape()
            },
            "key/value heads",
        );
        // An odd head width (12 / 4 = 3) cannot rotate pairs.
        refused(
            LlamaShape {
                hidden_size: 12,
                ..shape()
            },
            "even",
        );
        // Head width 16 / 4 = 4: accepted, and written into the config.
        let config = shape().config(Some(2), 1).unwrap();
        assert_eq!(config.head_dim, Some(4));
        assert_eq!(config.kv_heads(), 2);
        assert_eq!(config.bos_id(), Some(2));
        assert_eq!(config.eos_ids(), vec![1]);
    }
}
