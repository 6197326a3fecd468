//! `config.json` of Hugging Face `LlamaForCausalLM`, `Qwen2ForCausalLM` and `MistralForCausalLM`
//! checkpoints (and the same fields read from GGUF metadata): the fields that define the
//! computation, with the defaults transformers uses.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `rope_scaling` of a config: how rotary frequencies are stretched for long contexts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// `rope_type` (transformers ≥ 4.43) or the older `type`.
    #[serde(default, alias = "type")]
    pub rope_type: Option<String>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
    /// transformers ≥ 5 `rope_parameters` carry the base here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
}

/// A token id field that may be one id or a list (Llama 3 lists several EOS ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn ids(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// The decoder-only families calm runs (one set of layers, with these differences).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LlamaFamily {
    Llama,
    /// q/k/v projections with biases.
    Qwen2,
    Mistral,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// transformers ≥ 5 writes the rotary settings here (base and scaling together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeScaling>,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama: biases on q, k, v and o.
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub bos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// Mistral/Qwen2 sliding-window attention; calm's outputs are exact only within the window.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10000.0
}
fn default_max_positions() -> usize {
    2048
}
fn default_act() -> String {
    "silu".to_string()
}

impl LlamaConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config: LlamaConfig = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid Llama-family config", path.display()))?;
        config
            .validate()
            .with_context(|| format!("{}: unsupported config", path.display()))?;
        Ok(config)
    }

    pub fn family(&self) -> LlamaFamily {
        let names: Vec<&str> = self
            .architectures
            .iter()
            .map(String::as_str)
            .chain(self.model_type.as_deref())
            .collect();
        if names
            .iter()
            .any(|n| n.starts_with("Qwen2") || *n == "qwen2")
        {
            LlamaFamily::Qwen2
        } else if names
            .iter()
            .any(|n| n.starts_with("Mistral") || *n == "mistral")
        {
            LlamaFamily::Mistral
        } else {
            LlamaFamily::Llama
        }
    }

    /// Whether q/k/v projections carry biases.
    pub fn qkv_bias(&self) -> bool {
        self.family() == LlamaFamily::Qwen2 || self.attention_bias
    }

    /// Whether the attention output projection carries a bias.
    pub fn output_bias(&self) -> bool {
        self.family() != LlamaFamily::Qwen2 && self.attention_bias
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    pub fn eos_ids(&self) -> Vec<u32> {
        self.eos_token_id
            .as_ref()
            .map_or_else(Vec::new, TokenIds::ids)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_token_id
            .as_ref()
            .and_then(|b| b.ids().first().copied())
    }

    /// The sliding window in force, if any (Qwen2 uses one only with `use_sliding_window`).
    pub fn active_sliding_window(&self) -> Option<usize> {
        match self.family() {
            LlamaFamily::Qwen2 if self.use_sliding_window != Some(true) => None,
            _ => self.sliding_window,
        }
    }

    /// The rotary scaling in force: `rope_scaling`, else `rope_parameters`.
    pub fn scaling(&self) -> Option<&RopeScaling> {
        self.rope_scaling.as_ref().or(self.rope_parameters.as_ref())
    }

    /// The rotary base: `rope_parameters.rope_theta` where given, else `rope_theta`.
    pub fn theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.rope_theta)
            .unwrap_or(self.rope_theta)
    }

    pub fn validate(&self) -> Result<()> {
        let known = ["LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"];
        if let Some(other) = self
            .architectures
            .iter()
            .find(|a| !known.contains(&a.as_str()))
        {
            bail!(
                "architecture {other} is not one calm runs (supported: {})",
                known.join(", ")
            );
        }
        if self.num_attention_heads == 0 || self.kv_heads() == 0 {
            bail!("num_attention_heads and num_key_value_heads must be positive");
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            bail!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.num_attention_heads,
                self.kv_heads()
            );
        }
        if self.head_dim() % 2 != 0 {
            bail!(
                "head_dim {} is odd; rotary embeddings need an even one",
                self.head_dim()
            );
        }
        if self.num_hidden_layers == 0 {
            bail!("num_hidden_layers must be positive");
        }
        if self.hidden_act != "silu" {
            bail!(
                "hidden_act {:?}: only silu (SwiGLU) is supported",
                self.hidden_act
            );
        }
        if let Some(scaling) = self.scaling() {
            match scaling.rope_type.as_deref() {
                None | Some("default") => {}
                Some("linear") => {
                    if scaling.factor.is_none() {
                        bail!("rope_scaling: linear scaling needs a factor");
                    }
                }
                Some("llama3") => {
                    if scaling.factor.is_none()
                        || scaling.low_freq_factor.is_none()
                        || scaling.high_freq_factor.is_none()
                        || scaling.original_max_position_embeddings.is_none()
                    {
                        bail!("rope_scaling: llama3 scaling needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings");
                    }
                }
                Some(other) => bail!(
                    "rope_scaling type {other:?} is not supported (supported: default, linear, llama3)"
                ),
            }
        }
        Ok(())
    }

    /// Rotary inverse frequencies θ_i = 1/base^(2i/d), i < d/2, with the config's scaling
    /// (transformers `modeling_rope_utils`: `linear` divides positions by the factor, i.e. the
    /// frequencies; `llama3` keeps high frequencies, divides low ones by the factor and
    /// interpolates between).
    pub fn inverse_frequencies(&self) -> Vec<f64> {
        let d = self.head_dim();
        let base: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / self.theta().powf(2.0 * i as f64 / d as f64))
            .collect();
        let Some(scaling) = self.scaling() else {
            return base;
        };
        match scaling.rope_type.as_deref() {
            Some("linear") => {
                let factor = scaling.factor.unwrap_or(1.0);
                base.into_iter().map(|f| f / factor).collect()
            }
            Some("llama3") => {
                let factor = scaling.factor.unwrap_or(1.0);
                let low = scaling.low_freq_factor.unwrap_or(1.0);
                let high = scaling.high_freq_factor.unwrap_or(1.0);
                let original = scaling.original_max_position_embeddings.unwrap_or(8192) as f64;
                let low_wavelength = original / low;
                let high_wavelength = original / high;
                base.into_iter()
                    .map(|f| {
                        let wavelength = 2.0 * std::f64::consts::PI / f;
                        if wavelength < high_wavelength {
                            f
                        } else if wavelength > low_wavelength {
                            f / factor
                        } else {
                            let smooth = (original / wavelength - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
            _ => base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> LlamaConfig {
        serde_json::from_str(json).unwrap()
    }

    const BASE: &str = r#""vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 2, "num_attention_heads": 2"#;

    #[test]
    fn families_and_biases() {
        let qwen = config(&format!(
            r#"{{"architectures": ["Qwen2ForCausalLM"], {BASE}}}"#
        ));
        assert_eq!(qwen.family(), LlamaFamily::Qwen2);
        assert!(qwen.qkv_bias() && !qwen.output_bias());
        let llama = config(&format!(
            r#"{{"architectures": ["LlamaForCausalLM"], {BASE}}}"#
        ));
        assert!(!llama.qkv_bias());
        assert_eq!(llama.kv_heads(), 2);
        assert_eq!(llama.head_dim(), 4);
        // transformers' defaults where the config is silent.
        assert_eq!(llama.rms_norm_eps, 1e-6);
        assert_eq!(llama.rope_theta, 10000.0);
        assert_eq!(llama.max_position_embeddings, 2048);
        assert!(!llama.tie_word_embeddings && !llama.attention_bias && !llama.mlp_bias);
        let bad = config(&format!(
            r#"{{"architectures": ["GPT2LMHeadModel"], {BASE}}}"#
        ));
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("GPT2LMHeadModel"));
    }

    #[test]
    fn eos_lists_and_single_ids() {
        let c = config(&format!(
            r#"{{{BASE}, "eos_token_id": [3, 7], "bos_token_id": 1}}"#
        ));
        assert_eq!(c.eos_ids(), vec![3, 7]);
        assert_eq!(c.bos_id(), Some(1));
    }

    #[test]
    fn llama3_scaling_by_hand() {
        // d = 4: base frequencies 1 and 1/100 at θ = 10^4. Original context 32, factors 1 and 4:
        // wavelengths 2π (< 8 = 32/4, kept) and 200π (> 32, divided by the factor 8).
        let c = config(&format!(
            r#"{{{BASE}, "rope_theta": 10000.0, "rope_scaling": {{"rope_type": "llama3",
            "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32}}}}"#
        ));
        let f = c.inverse_frequencies();
        assert!((f[0] - 1.0).abs() < 1e-12);
        assert!((f[1] - 0.01 / 8.0).abs() < 1e-12);
        let linear = config(&format!(
            r#"{{{BASE}, "rope_scaling": {{"type": "linear", "factor": 2.0}}}}"#
        ));
        assert!((linear.inverse_frequencies()[1] - 0.005).abs() < 1e-12);
        let yarn = config(&format!(
            r#"{{{BASE}, "rope_scaling": {{"rope_type": "yarn", "factor": 2.0}}}}"#
        ));
        let v5 = config(&format!(
            r#"{{{BASE}, "rope_parameters": {{"rope_type": "default", "rope_theta": 500.0}}}}"#
        ));
        assert!((v5.inverse_frequencies()[1] - 1.0 / 500f64.sqrt()).abs() < 1e-12);
        assert!(yarn.validate().unwrap_err().to_string().contains("yarn"));
    }
}
