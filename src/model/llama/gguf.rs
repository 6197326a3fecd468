//! GGUF files of the llama architecture (llama.cpp's format): the model config and the
//! tokenizer from the metadata, the tensors by llama.cpp's names.
//!
//! Supported weight types: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K-quants
//! (Q2_K … Q8_K), as candle's quantized matmul runs them on CPU.

use super::config::{LlamaConfig, RopeScaling, TokenIds};
use super::weights::GgufTensors;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tokenizers::Tokenizer;

/// What a GGUF file holds besides its tensors.
pub struct GgufModel {
    pub config: LlamaConfig,
    pub tokenizer: Tokenizer,
    pub bos: Option<u32>,
    pub add_bos: bool,
    pub eos: Vec<u32>,
    pub chat_template: Option<String>,
    pub tensors: GgufTensors,
}

fn metadata<'a>(content: &'a Content, key: &str) -> Option<&'a Value> {
    content.metadata.get(key)
}

fn required_u32(content: &Content, path: &Path, key: &str) -> Result<u32> {
    let value = metadata(content, key)
        .ok_or_else(|| anyhow!("{}: metadata {key} is missing", path.display()))?;
    to_u32(value).with_context(|| format!("{}: metadata {key}", path.display()))
}

fn to_u32(value: &Value) -> Result<u32> {
    Ok(match value {
        Value::U8(v) => *v as u32,
        Value::U16(v) => *v as u32,
        Value::U32(v) => *v,
        Value::U64(v) => u32::try_from(*v)?,
        Value::I8(v) => u32::try_from(*v)?,
        Value::I16(v) => u32::try_from(*v)?,
        Value::I32(v) => u32::try_from(*v)?,
        Value::I64(v) => u32::try_from(*v)?,
        other => bail!("expected an integer, found {other:?}"),
    })
}

fn optional_f64(content: &Content, key: &str) -> Option<f64> {
    match metadata(content, key)? {
        Value::F32(v) => Some(*v as f64),
        Value::F64(v) => Some(*v),
        _ => None,
    }
}

fn string_array(content: &Content, path: &Path, key: &str) -> Result<Vec<String>> {
    let values = metadata(content, key)
        .ok_or_else(|| anyhow!("{}: metadata {key} is missing", path.display()))?
        .to_vec()
        .map_err(|e| anyhow!("{}: metadata {key}: {e}", path.display()))?;
    values
        .iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|e| anyhow!("{}: metadata {key}: {e}", path.display()))
        })
        .collect()
}

/// The pre-tokenizer of llama.cpp's `tokenizer.ggml.pre` (as tokenizer.json JSON).
fn pre_tokenizer(pre: &str, path: &Path) -> Result<serde_json::Value> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    Ok(match pre {
        "default" | "gpt2" | "gpt-2" => byte_level(true),
        // GPT-2's split after every digit on its own (llama.cpp LLAMA_VOCAB_PRE_TYPE_SMOLLM).
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "llama-bpe" | "llama3" => json!({"type": "Sequence", "pretokenizers": [
            split(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
            byte_level(false)]}),
        "qwen2" => json!({"type": "Sequence", "pretokenizers": [
            split(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
            byte_level(false)]}),
        other => bail!(
            "{}: tokenizer.ggml.pre {other:?} is not supported (supported: gpt2, smollm, llama-bpe, qwen2)",
            path.display()
        ),
    })
}

/// A byte-level BPE tokenizer from the GGUF metadata: its tokens, merges, token types
/// (control and user-defined tokens are added tokens, matched before the BPE) and
/// pre-tokenizer.
fn tokenizer(content: &Content, path: &Path) -> Result<Tokenizer> {
    let model = metadata(content, "tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("");
    if model != "gpt2" {
        bail!(
            "{}: tokenizer.ggml.model {model:?} is not supported (only byte-level BPE, \"gpt2\")",
            path.display()
        );
    }
    let tokens = string_array(content, path, "tokenizer.ggml.tokens")?;
    let merges = string_array(content, path, "tokenizer.ggml.merges")?;
    let types: Vec<u32> = match metadata(content, "tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(|e| anyhow!("{}: tokenizer.ggml.token_type: {e}", path.display()))?
            .iter()
            .map(to_u32)
            .collect::<Result<_>>()?,
        None => vec![1; tokens.len()],
    };
    let pre = metadata(content, "tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("default");
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.clone(), json!(id)))
        .collect();
    // llama.cpp token types: 3 control, 4 user-defined.
    let added: Vec<serde_json::Value> = tokens
        .iter()
        .enumerate()
        .filter(|(id, _)| matches!(types.get(*id), Some(3) | Some(4)))
        .map(|(id, token)| {
            json!({"id": id, "content": token, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": types[id] == 3})
        })
        .collect();
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer(pre, path)?,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges},
    });
    spec.to_string().parse::<Tokenizer>().map_err(|e| {
        anyhow!(
            "{}: cannot build the tokenizer from its metadata: {e}",
            path.display()
        )
    })
}

/// Read a llama-architecture GGUF file. With `dequantize`, every weight becomes f32.
pub fn read_gguf(
    path: &Path,
    dequantize: bool,
    requantize_q8_0: bool,
    dtype: DType,
    device: &Device,
) -> Result<GgufModel> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let content = Content::read(&mut file)
        .map_err(|e| anyhow!("{}: not a valid GGUF file: {e}", path.display()))?;
    let arch = metadata(&content, "general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if arch != "llama" {
        bail!(
            "{}: general.architecture {arch:?} is not supported (only \"llama\")",
            path.display()
        );
    }
    let key = |name: &str| format!("llama.{name}");
    let heads = required_u32(&content, path, &key("attention.head_count"))? as usize;
    let hidden = required_u32(&content, path, &key("embedding_length"))? as usize;
    let tokenizer = tokenizer(&content, path)?;
    let vocab = match metadata(&content, &key("vocab_size")) {
        Some(v) => to_u32(v)? as usize,
        None => tokenizer.get_vocab_size(true),
    };
    let bos = metadata(&content, "tokenizer.ggml.bos_token_id")
        .map(to_u32)
        .transpose()?;
    let eos: Vec<u32> = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
        .iter()
        .filter_map(|k| metadata(&content, k))
        .map(to_u32)
        .collect::<Result<_>>()?;
    let add_bos = matches!(
        metadata(&content, "tokenizer.ggml.add_bos_token"),
        Some(Value::Bool(true))
    );
    let rope_dim = metadata(&content, &key("rope.dimension_count"))
        .map(to_u32)
        .transpose()?
        .map(|d| d as usize);
    let rope_scaling =
        match metadata(&content, &key("rope.scaling.type")).and_then(|v| v.to_string().ok()) {
            Some(kind) if kind == "linear" => Some(RopeScaling {
                rope_type: Some("linear".into()),
                factor: optional_f64(&content, &key("rope.scaling.factor")),
                low_freq_factor: None,
                high_freq_factor: None,
                original_max_position_embeddings: None,
                rope_theta: None,
            }),
            Some(kind) if kind != "none" => bail!(
                "{}: llama.rope.scaling.type {kind:?} is not supported (supported: none, linear)",
                path.display()
            ),
            _ => None,
        };
    let mut tensors = HashMap::new();
    for name in content.tensor_infos.keys() {
        let tensor = content
            .tensor(&mut file, name, device)
            .map_err(|e| anyhow!("{}: tensor {name}: {e}", path.display()))?;
        tensors.insert(name.clone(), Arc::new(tensor));
    }
    let config = LlamaConfig {
        architectures: vec!["LlamaForCausalLM".into()],
        model_type: Some("llama".into()),
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: required_u32(&content, path, &key("feed_forward_length"))? as usize,
        num_hidden_layers: required_u32(&content, path, &key("block_count"))? as usize,
        num_attention_heads: heads,
        num_key_value_heads: metadata(&content, &key("attention.head_count_kv"))
            .map(to_u32)
            .transpose()?
            .map(|v| v as usize),
        head_dim: rope_dim.filter(|&d| d != hidden / heads.max(1)),
        rms_norm_eps: optional_f64(&content, &key("attention.layer_norm_rms_epsilon"))
            .unwrap_or(1e-5),
        rope_theta: optional_f64(&content, &key("rope.freq_base")).unwrap_or(10000.0),
        rope_scaling,
        rope_parameters: None,
        max_position_embeddings: metadata(&content, &key("context_length"))
            .map(to_u32)
            .transpose()?
            .map_or(2048, |v| v as usize),
        tie_word_embeddings: !tensors.contains_key("output.weight"),
        attention_bias: false,
        mlp_bias: false,
        hidden_act: "silu".into(),
        bos_token_id: bos.map(TokenIds::One),
        eos_token_id: Some(TokenIds::Many(eos.clone())),
        sliding_window: None,
        use_sliding_window: None,
    };
    config
        .validate()
        .with_context(|| format!("{}: unsupported model", path.display()))?;
    let chat_template = metadata(&content, "tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .cloned();
    Ok(GgufModel {
        config,
        tokenizer,
        bos,
        add_bos,
        eos,
        chat_template,
        tensors: GgufTensors {
            tensors,
            dequantize,
            requantize_q8_0,
            dtype,
        },
    })
}
