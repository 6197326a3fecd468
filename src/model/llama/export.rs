//! GGUF → Hugging Face layout: a llama-architecture GGUF file written as a `LlamaForCausalLM`
//! checkpoint directory (f32 weights by transformers' names, q/k rows back in transformers'
//! order, config.json, tokenizer.json, the chat template in tokenizer_config.json), so that it
//! can be fine-tuned and loaded by transformers.

use super::gguf::read_gguf;
use super::weights::Part;
use crate::util::atomic::write_files_atomically;
use anyhow::{anyhow, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::path::Path;

/// Undo llama.cpp's q/k permutation: GGUF row (head, i, s) holds transformers' row
/// (head, s, i) of a [heads·d, in] projection (d = head_dim, i < d/2, s ∈ {0, 1}).
pub fn unpermute_rows(weight: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (out, input) = weight.dims2()?;
    let half = out / heads / 2;
    weight
        .reshape((heads, half, 2, input))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, input))
}

/// Write `gguf` as a transformers checkpoint directory `out`.
pub fn export_gguf_to_hf(gguf: &Path, out: &Path) -> Result<()> {
    let device = Device::Cpu;
    let model = read_gguf(gguf, true, false, DType::F32, &device)?;
    let config = &model.config;
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut take = |part: Part, shape: &[usize], heads: Option<usize>| -> Result<()> {
        let name = format!("{}.weight", part.gguf_name());
        let tensor = model
            .tensors
            .tensors
            .get(&name)
            .ok_or_else(|| anyhow!("{}: tensor {name} is missing", gguf.display()))?
            .dequantize(&device)?
            .to_dtype(DType::F32)?;
        if tensor.dims() != shape {
            anyhow::bail!(
                "{}: tensor {name} has shape {:?}, expected {shape:?}",
                gguf.display(),
                tensor.dims()
            );
        }
        let tensor = match heads {
            Some(h) => unpermute_rows(&tensor, h)?,
            None => tensor,
        };
        tensors.push((format!("{}.weight", part.hf_name()), tensor));
        Ok(())
    };
    let d = config.hidden_size;
    let (heads, kv_heads, head_dim) = (
        config.num_attention_heads,
        config.kv_heads(),
        config.head_dim(),
    );
    let ff = config.intermediate_size;
    take(Part::Embedding, &[config.vocab_size, d], None)?;
    take(Part::FinalNorm, &[d], None)?;
    if !config.tie_word_embeddings {
        take(Part::Head, &[config.vocab_size, d], None)?;
    }
    for i in 0..config.num_hidden_layers {
        take(Part::AttentionNorm(i), &[d], None)?;
        take(Part::Query(i), &[heads * head_dim, d], Some(heads))?;
        take(Part::Key(i), &[kv_heads * head_dim, d], Some(kv_heads))?;
        take(Part::Value(i), &[kv_heads * head_dim, d], None)?;
        take(Part::Output(i), &[d, heads * head_dim], None)?;
        take(Part::MlpNorm(i), &[d], None)?;
        take(Part::Gate(i), &[ff, d], None)?;
        take(Part::Up(i), &[ff, d], None)?;
        take(Part::Down(i), &[d, ff], None)?;
    }
    let tokenizer_json = model
        .tokenizer
        .to_string(true)
        .map_err(|e| anyhow!("cannot serialize the tokenizer: {e}"))?;
    let mut tokenizer_config = serde_json::json!({
        "add_bos_token": model.add_bos,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    if let Some(template) = &model.chat_template {
        tokenizer_config["chat_template"] = serde_json::Value::String(template.clone());
    }
    let weights = safetensors::serialize(tensors.iter().map(|(n, t)| (n, t)), None)
        .context("cannot serialize the weights")?;
    write_files_atomically(
        out,
        &[
            (
                "config.json",
                (serde_json::to_string_pretty(config)? + "\n").into_bytes(),
            ),
            ("tokenizer.json", tokenizer_json.into_bytes()),
            (
                "tokenizer_config.json",
                (serde_json::to_string_pretty(&tokenizer_config)? + "\n").into_bytes(),
            ),
            ("model.safetensors", weights),
        ],
    )
    .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}
