//! Where a Llama-family model's weights come from: Hugging Face safetensors (through a
//! VarBuilder, by checkpoint names) or a GGUF file (by llama.cpp's names, quantized or
//! de-quantized to f32).

use super::layers::Linear;
use crate::model::layers::Dense;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::sync::Arc;

/// One weight of the model, named independently of the file layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Embedding,
    FinalNorm,
    Head,
    AttentionNorm(usize),
    Query(usize),
    Key(usize),
    Value(usize),
    Output(usize),
    MlpNorm(usize),
    Gate(usize),
    Up(usize),
    Down(usize),
}

impl Part {
    /// The tensor name without `.weight`/`.bias` in transformers' layout.
    pub fn hf_name(self) -> String {
        match self {
            Part::Embedding => "model.embed_tokens".into(),
            Part::FinalNorm => "model.norm".into(),
            Part::Head => "lm_head".into(),
            Part::AttentionNorm(i) => format!("model.layers.{i}.input_layernorm"),
            Part::Query(i) => format!("model.layers.{i}.self_attn.q_proj"),
            Part::Key(i) => format!("model.layers.{i}.self_attn.k_proj"),
            Part::Value(i) => format!("model.layers.{i}.self_attn.v_proj"),
            Part::Output(i) => format!("model.layers.{i}.self_attn.o_proj"),
            Part::MlpNorm(i) => format!("model.layers.{i}.post_attention_layernorm"),
            Part::Gate(i) => format!("model.layers.{i}.mlp.gate_proj"),
            Part::Up(i) => format!("model.layers.{i}.mlp.up_proj"),
            Part::Down(i) => format!("model.layers.{i}.mlp.down_proj"),
        }
    }

    /// The tensor name without `.weight`/`.bias` in llama.cpp's GGUF layout.
    pub fn gguf_name(self) -> String {
        match self {
            Part::Embedding => "token_embd".into(),
            Part::FinalNorm => "output_norm".into(),
            Part::Head => "output".into(),
            Part::AttentionNorm(i) => format!("blk.{i}.attn_norm"),
            Part::Query(i) => format!("blk.{i}.attn_q"),
            Part::Key(i) => format!("blk.{i}.attn_k"),
            Part::Value(i) => format!("blk.{i}.attn_v"),
            Part::Output(i) => format!("blk.{i}.attn_output"),
            Part::MlpNorm(i) => format!("blk.{i}.ffn_norm"),
            Part::Gate(i) => format!("blk.{i}.ffn_gate"),
            Part::Up(i) => format!("blk.{i}.ffn_up"),
            Part::Down(i) => format!("blk.{i}.ffn_down"),
        }
    }
}

/// The tensors of a GGUF file, read once.
pub struct GgufTensors {
    pub tensors: HashMap<String, Arc<QTensor>>,
    /// De-quantize every weight to f32 (exact comparisons) instead of multiplying quantized.
    pub dequantize: bool,
    /// Re-quantize block formats without a SIMD kernel in candle (Q4_1, Q5_0, Q5_1, Q4_0 on
    /// some CPUs) to Q8_0, whose dot product is vectorised: near-lossless against the stored
    /// blocks and several times faster on CPU.
    pub requantize_q8_0: bool,
    /// The dtype float tensors (and de-quantized blocks) are loaded as, and the model computes in.
    pub dtype: DType,
}

/// A weight source.
pub enum Weights<'a> {
    Hf(VarBuilder<'a>),
    Gguf(&'a GgufTensors, Device),
}

impl Weights<'_> {
    /// The dtype the model's float weights have and its activations take.
    pub fn dtype(&self) -> DType {
        match self {
            Weights::Hf(vb) => vb.dtype(),
            Weights::Gguf(tensors, _) => tensors.dtype,
        }
    }

    fn gguf_tensor<'t>(tensors: &'t GgufTensors, name: &str) -> Result<&'t Arc<QTensor>> {
        tensors
            .tensors
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("cannot find tensor {name}")))
    }

    fn check_shape(name: &str, tensor: &Tensor, shape: &[usize]) -> Result<()> {
        if tensor.dims() != shape {
            candle_core::bail!(
                "tensor {name} has shape {:?}, expected {shape:?}",
                tensor.dims()
            );
        }
        Ok(())
    }

    pub fn contains(&self, part: Part) -> bool {
        match self {
            Weights::Hf(vb) => vb.contains_tensor(&format!("{}.weight", part.hf_name())),
            Weights::Gguf(t, _) => t
                .tensors
                .contains_key(&format!("{}.weight", part.gguf_name())),
        }
    }

    /// A dense f32 tensor of `shape` (norm weights, the embedding table).
    pub fn dense(&self, part: Part, suffix: &str, shape: &[usize]) -> Result<Tensor> {
        match self {
            Weights::Hf(vb) => vb.get(shape, &format!("{}.{suffix}", part.hf_name())),
            Weights::Gguf(tensors, device) => {
                let name = format!("{}.{suffix}", part.gguf_name());
                let tensor = Self::gguf_tensor(tensors, &name)?.dequantize(device)?;
                Self::check_shape(&name, &tensor, shape)?;
                tensor.to_dtype(tensors.dtype)
            }
        }
    }

    /// A linear layer [out, in], with a bias [out] when `bias`. GGUF block formats stay
    /// quantized unless de-quantization was asked for.
    pub fn linear(&self, part: Part, out_dim: usize, in_dim: usize, bias: bool) -> Result<Linear> {
        let bias = if bias {
            Some(self.dense(part, "bias", &[out_dim])?)
        } else {
            None
        };
        match self {
            Weights::Hf(_) => Ok(Linear::Dense {
                weight: Dense::new(&self.dense(part, "weight", &[out_dim, in_dim])?)?,
                bias,
            }),
            Weights::Gguf(tensors, device) => {
                let name = format!("{}.weight", part.gguf_name());
                let tensor = Self::gguf_tensor(tensors, &name)?;
                if tensor.shape().dims() != [out_dim, in_dim] {
                    candle_core::bail!(
                        "tensor {name} has shape {:?}, expected {:?}",
                        tensor.shape().dims(),
                        [out_dim, in_dim]
                    );
                }
                let float = matches!(
                    tensor.dtype(),
                    GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
                );
                if tensors.dequantize || float {
                    let weight = tensor.dequantize(device)?.to_dtype(tensors.dtype)?;
                    Ok(Linear::Dense {
                        weight: Dense::new(&weight)?,
                        bias,
                    })
                } else if tensors.requantize_q8_0 && tensor.dtype() != GgmlDType::Q8_0 {
                    let weight = tensor.dequantize(device)?;
                    let requantized = QTensor::quantize(&weight, GgmlDType::Q8_0)?;
                    Ok(Linear::Quantized {
                        weight: QMatMul::from_qtensor(requantized)?,
                        bias,
                    })
                } else {
                    Ok(Linear::Quantized {
                        weight: QMatMul::from_arc(tensor.clone())?,
                        bias,
                    })
                }
            }
        }
    }

    /// An optional tensor stored under its own name in both layouts (calm's classifier).
    pub fn extra(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        match self {
            Weights::Hf(vb) => {
                if vb.contains_tensor(name) {
                    Ok(Some(vb.get(shape, name)?))
                } else {
                    Ok(None)
                }
            }
            Weights::Gguf(tensors, device) => match tensors.tensors.get(name) {
                Some(t) => {
                    let tensor = t.dequantize(device)?.to_dtype(tensors.dtype)?;
                    Self::check_shape(name, &tensor, shape)?;
                    Ok(Some(tensor))
                }
                None => Ok(None),
            },
        }
    }
}
