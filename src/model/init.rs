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
pub(crate) fn normal(rng: &mut Rng) -> f64 {
    let u1 = 1.0 - rng.uniform();
    let u2 = rng.uniform();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Seeded random weights as transformers initialises T5: layer norms 1, biases 0, embeddings
/// N(0, 1), queries N(0, (d_model·d_kv)^-1/2), relative position biases N(0, d_model^-1/2), every
/// other projection N(0, fan_in^-1/2) (so activations keep their scale), the LM head
/// N(0, d_model^-1/2).
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
            let fan_in = *shape.last().unwrap_or(&1) as f64;
            let std = if name == "shared.weight" {
                1.0
            } else if name.contains("relative_attention_bias") {
                (config.d_model as f64).powf(-0.5)
            } else if name.ends_with(".q.weight") {
                // T5 has no 1/sqrt(d_kv) in attention; the query init carries it, so that
                // attention logits start at unit scale instead of saturating the softmax.
                (fan_in * config.d_kv as f64).powf(-0.5)
            } else {
                fan_in.powf(-0.5)
            };
            (0..count)
                .map(|_| (normal(&mut rng) * std) as f32)
                .collect()
        };
        weights.insert(name, Tensor::from_vec(values, shape, device)?);
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_of(weights: &BTreeMap<String, Tensor>, name: &str) -> f64 {
        let values: Vec<f32> = weights[name].flatten_all().unwrap().to_vec1().unwrap();
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        (values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt()
    }

    #[test]
    fn initial_scales_follow_transformers_t5() {
        let config = T5Config::v1_1(crate::model::config::T5Shape {
            vocab_size: 300,
            d_model: 128,
            d_ff: 512,
            heads: 4,
            encoder_layers: 1,
            decoder_layers: 1,
            tie_embeddings: false,
        });
        let weights = random_weights(&config, false, 7, &Device::Cpu).unwrap();
        let attention = "encoder.block.0.layer.0.SelfAttention";
        // (name, expected std): T5PreTrainedModel._init_weights with factor 1.
        let expected = [
            ("shared.weight".to_string(), 1.0),
            (
                format!("{attention}.q.weight"),
                (128.0f64 * 32.0).powf(-0.5),
            ),
            (format!("{attention}.k.weight"), 128f64.powf(-0.5)),
            (format!("{attention}.o.weight"), 128f64.powf(-0.5)),
            (
                format!("{attention}.relative_attention_bias.weight"),
                128f64.powf(-0.5),
            ),
            (
                "encoder.block.0.layer.1.DenseReluDense.wo.weight".to_string(),
                512f64.powf(-0.5),
            ),
        ];
        for (name, want) in expected {
            let got = std_of(&weights, &name);
            assert!(
                (got / want - 1.0).abs() < 0.1,
                "{name}: std {got}, want {want}"
            );
        }
    }
}
