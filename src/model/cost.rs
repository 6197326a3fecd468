//! The cost models of T5 and Llama-family checkpoints (see [`crate::record::cost`]): FLOPs and tensor operations
//! of each part of a decoding step, counted from this crate's implementation (`decoder.rs`,
//! `layers.rs`, `generate.rs`) at batch 1.

use super::config::{FeedForwardKind, T5Config};
use crate::record::cost::{
    CostModel, FLOPS_PER_MICROSECOND, MICROSECONDS_PER_KERNEL, PREFILL_FLOPS_PER_MICROSECOND,
};
use std::collections::BTreeMap;

/// Tensor operations of one decoder block step: three norms, seven projections, two attentions
/// (product, sum, bias, five-op softmax, weighted sum, reshape), the feed-forward activation,
/// three residual adds and the two cache appends.
const LAYER_KERNELS: f64 = 46.0;
/// A skipped block: its norm, K and V projections and the two cache appends.
const PROPAGATE_KERNELS: f64 = 5.0;
/// Final norm, scaling, LM head, argmax.
const HEAD_KERNELS: f64 = 4.0;
/// Final norm, scaling, LM head, softmax, copy to the host for the top-2 scan.
const SOFTMAX_CHECK_KERNELS: f64 = 6.0;
/// Cosine of two rows: two products, three sums, a division, a copy.
const STATE_CHECK_KERNELS: f64 = 5.0;
/// A dot product, bias, sigmoid, copy.
const CLASSIFIER_CHECK_KERNELS: f64 = 4.0;
/// Per token: embedding, position bias, the exit bookkeeping.
const TOKEN_KERNELS: f64 = 10.0;
/// Per encoder block (whole input at once), as for a decoder block without cross-attention.
const ENCODER_LAYER_KERNELS: f64 = 30.0;
/// Host-side work per vocabulary entry of a top-2 scan or argmax (µs).
const MICROSECONDS_PER_VOCABULARY_ENTRY: f64 = 0.002;

/// One exit check per measure: a softmax check (as given), a cosine of two states, the
/// classifier's dot product.
fn exit_checks(d: f64, softmax_check: f64) -> BTreeMap<String, f64> {
    let mut checks = BTreeMap::new();
    checks.insert("softmax-diff".to_string(), softmax_check);
    checks.insert("softmax-max".to_string(), softmax_check);
    checks.insert(
        "state".to_string(),
        decode_cost(6.0 * d, STATE_CHECK_KERNELS),
    );
    checks.insert(
        "classifier".to_string(),
        decode_cost(2.0 * d, CLASSIFIER_CHECK_KERNELS),
    );
    checks
}

fn decode_cost(flops: f64, kernels: f64) -> f64 {
    flops / FLOPS_PER_MICROSECOND + kernels * MICROSECONDS_PER_KERNEL
}

/// The cost model of decoding with `config` for inputs of `mean_input_tokens` tokens and outputs
/// of `mean_output_tokens` (the self-attention span grows with the position: its mean is half).
pub fn t5_cost_model(
    config: &T5Config,
    mean_input_tokens: f64,
    mean_output_tokens: f64,
) -> CostModel {
    let d = config.d_model as f64;
    let inner = (config.num_heads * config.d_kv) as f64;
    let vocab = config.vocab_size as f64;
    let ff_matrices = match config.feed_forward() {
        Ok(FeedForwardKind::Relu) => 2.0,
        _ => 3.0,
    };
    let feed_forward = 2.0 * ff_matrices * d * config.d_ff as f64;
    let source = mean_input_tokens.max(1.0);
    let span = (mean_output_tokens / 2.0).max(1.0);
    // q, k, v, o of self-attention; q, o of cross-attention (its K/V are computed once).
    let projections = 2.0 * 6.0 * d * inner;
    let attention = 4.0 * (span + source) * inner;
    let layer = decode_cost(projections + attention + feed_forward, LAYER_KERNELS);
    let propagate = decode_cost(2.0 * 2.0 * d * inner, PROPAGATE_KERNELS);
    let host_scan = vocab * MICROSECONDS_PER_VOCABULARY_ENTRY;
    let head_flops = 2.0 * d * vocab;
    let head = decode_cost(head_flops, HEAD_KERNELS) + host_scan;
    let softmax_check = decode_cost(head_flops + 5.0 * vocab, SOFTMAX_CHECK_KERNELS) + host_scan;
    let checks = exit_checks(d, softmax_check);
    // Encoder: every block over the whole input, plus each decoder block's cross K/V.
    let encoder_block_flops =
        source * (2.0 * 4.0 * d * inner + feed_forward) + 4.0 * source * source * inner;
    let cross_kv_flops = source * 2.0 * 2.0 * d * inner;
    let example = config.num_layers as f64
        * (encoder_block_flops / PREFILL_FLOPS_PER_MICROSECOND
            + ENCODER_LAYER_KERNELS * MICROSECONDS_PER_KERNEL)
        + config.decoder_layers() as f64
            * (cross_kv_flops / PREFILL_FLOPS_PER_MICROSECOND + 3.0 * MICROSECONDS_PER_KERNEL);
    CostModel {
        num_layers: config.decoder_layers() as u32,
        unit: "estimated microseconds per token at batch 1 on one core (model::cost)".to_string(),
        layer,
        propagate,
        head,
        checks,
        token: TOKEN_KERNELS * MICROSECONDS_PER_KERNEL,
        example,
    }
}

/// Tensor operations of one Llama block step: two norms, seven projections, two rotations,
/// the attention (product, scale, five-op softmax, product, reshapes), SwiGLU, two residual
/// adds and the two cache appends.
const LLAMA_LAYER_KERNELS: f64 = 30.0;
/// A skipped Llama block: its norm, K and V projections, the key's rotation, two appends.
const LLAMA_PROPAGATE_KERNELS: f64 = 6.0;

/// The cost model of decoding a Llama-family model: prompts of `mean_input_tokens` tokens,
/// prefilled by the full model (the per-example cost), and outputs of `mean_output_tokens`.
pub fn llama_cost_model(
    config: &crate::model::llama::LlamaConfig,
    mean_input_tokens: f64,
    mean_output_tokens: f64,
) -> CostModel {
    let d = config.hidden_size as f64;
    let q_dim = (config.num_attention_heads * config.head_dim()) as f64;
    let kv_dim = (config.kv_heads() * config.head_dim()) as f64;
    let vocab = config.vocab_size as f64;
    let prompt = mean_input_tokens.max(1.0);
    let span = prompt + mean_output_tokens / 2.0;
    let projections = 2.0 * d * (2.0 * q_dim + 2.0 * kv_dim);
    let mlp = 2.0 * 3.0 * d * config.intermediate_size as f64;
    let attention = 4.0 * span * q_dim;
    let layer = decode_cost(projections + attention + mlp, LLAMA_LAYER_KERNELS);
    let propagate = decode_cost(2.0 * 2.0 * d * kv_dim, LLAMA_PROPAGATE_KERNELS);
    let host_scan = vocab * MICROSECONDS_PER_VOCABULARY_ENTRY;
    let head_flops = 2.0 * d * vocab;
    let head = decode_cost(head_flops, HEAD_KERNELS) + host_scan;
    let softmax_check = decode_cost(head_flops + 5.0 * vocab, SOFTMAX_CHECK_KERNELS) + host_scan;
    let checks = exit_checks(d, softmax_check);
    // The prefill: every layer over the whole prompt (causal attention: half the square).
    let prefill_layer_flops = prompt * (projections + mlp) + 2.0 * prompt * prompt * q_dim;
    let example = config.num_hidden_layers as f64
        * (prefill_layer_flops / PREFILL_FLOPS_PER_MICROSECOND
            + LLAMA_LAYER_KERNELS * MICROSECONDS_PER_KERNEL)
        + head;
    CostModel {
        num_layers: config.num_hidden_layers as u32,
        unit: "estimated microseconds per token at batch 1 on one core (model::cost)".to_string(),
        layer,
        propagate,
        head,
        checks,
        token: TOKEN_KERNELS * MICROSECONDS_PER_KERNEL,
        example,
    }
}

/// The cost model of any loaded model.
pub fn cost_model(
    model: &crate::model::Model,
    mean_input_tokens: f64,
    mean_output_tokens: f64,
) -> CostModel {
    match model {
        crate::model::Model::T5(m) => {
            t5_cost_model(&m.config, mean_input_tokens, mean_output_tokens)
        }
        crate::model::Model::Llama(m) => {
            llama_cost_model(&m.config, mean_input_tokens, mean_output_tokens)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::T5Shape;

    #[test]
    fn softmax_checks_cost_more_as_the_vocabulary_grows() {
        let shape = |vocab_size| T5Shape {
            vocab_size,
            d_model: 128,
            d_ff: 512,
            heads: 4,
            encoder_layers: 4,
            decoder_layers: 8,
            tie_embeddings: true,
        };
        let small = t5_cost_model(&T5Config::v1_1(shape(4000)), 30.0, 27.0);
        let large = t5_cost_model(&T5Config::v1_1(shape(32000)), 30.0, 27.0);
        assert_eq!(small.num_layers, 8);
        assert!(small.validate(8).is_ok());
        // A decoder layer costs more than a state check and a propagation; at 32k tokens a
        // softmax check costs more than a whole layer.
        assert!(small.layer > 5.0 * small.checks["state"]);
        assert!(small.layer > 5.0 * small.propagate);
        assert!(small.checks["softmax-diff"] < small.layer);
        assert!(large.checks["softmax-diff"] > large.layer);
        assert_eq!(small.layer, large.layer);
    }
}
