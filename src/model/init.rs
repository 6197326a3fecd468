//! Parameter names and shapes of a T5 checkpoint (Hugging Face naming), and seeded random
//! initialisation, for training from scratch and for benchmarks without a trained model.

use super::config::{FeedForwardKind, T5Config};
use super::t5::{EXIT_CLASSIFIER_BIAS, EXIT_CLASSIFIER_WEIGHT};
use crate::util::rng::Rng;
use anyhow::Result;
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;

/// Every tensor of `T5ForConditionalGeneration` for `config`, with its shape, in a fixed order.
/// `with_classifier` adds CALM's early-exit classifier.
pub fn parameter_shapes(
    config: &T5Config,
    with_classifier: bool,
) -> Result<Vec<(String, Vec<usize>)>> {
    let (d, inner, ff, vocab) = (
        config.d_model,
        config.num_heads * config.d_kv,
        config.d_ff,
        config.vocab_size,
    );
    let kind = config.feed_forward()?;
    let mut shapes: Vec<(String, Vec<usize>)> = vec![("shared.weight".into(), vec![vocab, d])];
    let attention = |shapes: &mut Vec<(String, Vec<usize>)>, prefix: String, relative: bool| {
        for name in ["q", "k", "v"] {
            shapes.push((format!("{prefix}.{name}.weight"), vec![inner, d]));
        }
        shapes.push((format!("{prefix}.o.weight"), vec![d, inner]));
        if relative {
            shapes.push((
                format!("{prefix}.relative_attention_bias.weight"),
                vec![config.relative_attention_num_buckets, config.num_heads],
            ));
        }
    };
    let feed_forward = |shapes: &mut Vec<(String, Vec<usize>)>, prefix: String| {
        match kind {
            FeedForwardKind::Relu => shapes.push((format!("{prefix}.wi.weight"), vec![ff, d])),
            FeedForwardKind::GatedGelu | FeedForwardKind::GatedRelu => {
                shapes.push((format!("{prefix}.wi_0.weight"), vec![ff, d]));
                shapes.push((format!("{prefix}.wi_1.weight"), vec![ff, d]));
            }
        }
        shapes.push((format!("{prefix}.wo.weight"), vec![d, ff]));
    };
    for i in 0..config.num_layers {
        let p = format!("encoder.block.{i}");
        attention(&mut shapes, format!("{p}.layer.0.SelfAttention"), i == 0);
        shapes.push((format!("{p}.layer.0.layer_norm.weight"), vec![d]));
        feed_forward(&mut shapes, format!("{p}.layer.1.DenseReluDense"));
        shapes.push((format!("{p}.layer.1.layer_norm.weight"), vec![d]));
    }
    shapes.push(("encoder.final_layer_norm.weight".into(), vec![d]));
    for i in 0..config.decoder_layers() {
        let p = format!("decoder.block.{i}");
        attention(&mut shapes, format!("{p}.layer.0.SelfAttention"), i == 0);
        shapes.push((format!("{p}.layer.0.layer_norm.weight"), vec![d]));
        attention(&mut shapes, format!("{p}.layer.1.EncDecAttention"), false);
        shapes.push((format!("{p}.layer.1.layer_norm.weight"), vec![d]));
        feed_forward(&mut shapes, format!("{p}.layer.2.DenseReluDense"));
        shapes.push((format!("{p}.layer.2.layer_norm.weight"), vec![d]));
    }
    shapes.push(("decoder.final_layer_norm.weight".into(), vec![d]));
    if !config.tie_word_embeddings {
        shapes.push(("lm_head.weight".into(), vec![vocab, d]));
    }
    if with_classifier {
        shapes.push((EXIT_CLASSIFIER_WEIGHT.into(), vec![1, d]));
        shapes.push((EXIT_CLASSIFIER_BIAS.into(), vec![1]));
    }
    Ok(shapes)
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u1 = 1.0 - rng.uniform();
    let u2 = rng.uniform();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Seeded random weights: layer norms 1, biases 0, embeddings N(0, 1), every projection
/// N(0, fan_in^-1/2) (so activations keep their scale), the LM head N(0, d_model^-1/2).
pub fn random_weights(
    config: &T5Config,
    with_classifier: bool,
    seed: u64,
    device: &Device,
) -> Result<BTreeMap<String, Tensor>> {
    let mut rng = Rng::new(seed);
    let mut weights = BTreeMap::new();
    for (name, shape) in parameter_shapes(config, with_classifier)? {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = if name.ends_with("layer_norm.weight") {
            vec![1.0; count]
        } else if name == EXIT_CLASSIFIER_BIAS {
            vec![0.0; count]
        } else {
            let std = if name == "shared.weight" {
                1.0
            } else if name.contains("relative_attention_bias") {
                0.5
            } else {
                (*shape.last().unwrap_or(&1) as f64).powf(-0.5)
            };
            (0..count)
                .map(|_| (normal(&mut rng) * std) as f32)
                .collect()
        };
        weights.insert(name, Tensor::from_vec(values, shape, device)?);
    }
    Ok(weights)
}
