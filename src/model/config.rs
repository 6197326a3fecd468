//! `config.json` of a Hugging Face `T5ForConditionalGeneration` checkpoint.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Feed-forward variant: `relu` (original T5) or `gated-gelu` (T5 v1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedForwardKind {
    Relu,
    GatedGelu,
    GatedRelu,
}

/// The fields of HF's `T5Config` that define the computation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    #[serde(default)]
    pub num_decoder_layers: Option<usize>,
    pub num_heads: usize,
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "default_epsilon")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_feed_forward")]
    pub feed_forward_proj: String,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// transformers ≥ 5 states the d_model^-0.5 output scaling explicitly; older configs imply it
    /// from `tie_word_embeddings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_decoder_outputs: Option<bool>,
    #[serde(default)]
    pub decoder_start_token_id: Option<u32>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// Maximum input length the model was trained for (HF `n_positions`; T5 itself has no hard
    /// limit because positions are relative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_positions: Option<usize>,
}

fn default_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_epsilon() -> f64 {
    1e-6
}
fn default_feed_forward() -> String {
    "relu".to_string()
}
fn default_true() -> bool {
    true
}

/// The shape of a T5 v1.1 model (gated-gelu feed-forward), as `calm train` makes them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct T5Shape {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub heads: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub tie_embeddings: bool,
}

impl T5Config {
    /// A T5 v1.1 config of `shape` with T5's defaults (32 buckets, distance 128, pad 0, eos 1,
    /// decoder start 0) and d_kv = d_model / heads.
    pub fn v1_1(shape: T5Shape) -> Self {
        T5Config {
            vocab_size: shape.vocab_size,
            d_model: shape.d_model,
            d_kv: shape.d_model / shape.heads.max(1),
            d_ff: shape.d_ff,
            num_layers: shape.encoder_layers,
            num_decoder_layers: Some(shape.decoder_layers),
            num_heads: shape.heads,
            relative_attention_num_buckets: default_buckets(),
            relative_attention_max_distance: default_max_distance(),
            layer_norm_epsilon: default_epsilon(),
            feed_forward_proj: "gated-gelu".into(),
            tie_word_embeddings: shape.tie_embeddings,
            scale_decoder_outputs: None,
            decoder_start_token_id: Some(0),
            pad_token_id: Some(0),
            eos_token_id: Some(1),
            n_positions: None,
        }
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model config {}", path.display()))?;
        let config: T5Config = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid T5 config.json", path.display()))?;
        config
            .validate()
            .with_context(|| format!("{}: invalid T5 config", path.display()))?;
        Ok(config)
    }

    /// `config.json` text that transformers' `T5ForConditionalGeneration` loads.
    pub fn to_hf_json(&self) -> Result<String> {
        let mut value = serde_json::to_value(self)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("model_type".into(), "t5".into());
            object.insert(
                "architectures".into(),
                serde_json::json!(["T5ForConditionalGeneration"]),
            );
            object.insert("is_encoder_decoder".into(), true.into());
            object.insert("dropout_rate".into(), 0.0.into());
            object.insert(
                "dense_act_fn".into(),
                if self.feed_forward_proj.contains("gelu") {
                    "gelu_new"
                } else {
                    "relu"
                }
                .into(),
            );
            object.insert(
                "is_gated_act".into(),
                self.feed_forward_proj.starts_with("gated").into(),
            );
        }
        Ok(serde_json::to_string_pretty(&value)? + "\n")
    }

    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("d_ff", self.d_ff),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_decoder_layers", self.decoder_layers()),
            (
                "relative_attention_num_buckets",
                self.relative_attention_num_buckets,
            ),
        ] {
            if value == 0 {
                bail!("`{name}` must be positive");
            }
        }
        self.feed_forward()?;
        Ok(())
    }

    /// Whether the decoder output is scaled by d_model^-0.5 before the LM head (tied heads).
    pub fn scales_decoder_output(&self) -> bool {
        self.scale_decoder_outputs
            .unwrap_or(self.tie_word_embeddings)
    }

    pub fn decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    pub fn feed_forward(&self) -> Result<FeedForwardKind> {
        match self.feed_forward_proj.as_str() {
            "relu" => Ok(FeedForwardKind::Relu),
            "gated-gelu" => Ok(FeedForwardKind::GatedGelu),
            "gated-relu" => Ok(FeedForwardKind::GatedRelu),
            other => bail!(
                "`feed_forward_proj` {other:?} is not supported (relu, gated-gelu, gated-relu)"
            ),
        }
    }

    pub fn decoder_start(&self) -> u32 {
        self.decoder_start_token_id
            .or(self.pad_token_id)
            .unwrap_or(0)
    }

    pub fn eos(&self) -> u32 {
        self.eos_token_id.unwrap_or(1)
    }

    pub fn pad(&self) -> u32 {
        self.pad_token_id.unwrap_or(0)
    }

    /// Longest accepted input in tokens.
    pub fn max_input_tokens(&self) -> usize {
        self.n_positions.unwrap_or(512)
    }
}
