//! The T5 encoder stack: self-attention + feed-forward blocks, then a final RMS norm.

use super::config::T5Config;
use super::layers::{padding_mask, Attention, FeedForward, RmsNorm};
use candle_core::{Result, Tensor};
use candle_nn::{Embedding, Module, VarBuilder};

#[derive(Debug, Clone)]
struct EncoderBlock {
    attention_norm: RmsNorm,
    attention: Attention,
    feed_forward_norm: RmsNorm,
    feed_forward: FeedForward,
}

impl EncoderBlock {
    fn load(config: &T5Config, first: bool, vb: VarBuilder) -> Result<Self> {
        let attention = vb.pp("layer.0");
        let feed_forward = vb.pp("layer.1");
        Ok(EncoderBlock {
            attention_norm: RmsNorm::load(
                config.d_model,
                config.layer_norm_epsilon,
                attention.pp("layer_norm"),
            )?,
            attention: Attention::load(
                config.d_model,
                config.num_heads,
                config.d_kv,
                first,
                config.relative_attention_num_buckets,
                config.relative_attention_max_distance,
                attention.pp("SelfAttention"),
            )?,
            feed_forward_norm: RmsNorm::load(
                config.d_model,
                config.layer_norm_epsilon,
                feed_forward.pp("layer_norm"),
            )?,
            feed_forward: FeedForward::load(
                config.feed_forward().map_err(candle_core::Error::wrap)?,
                config.d_model,
                config.d_ff,
                feed_forward.pp("DenseReluDense"),
            )?,
        })
    }

    fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let h = self.attention_norm.forward(x)?;
        let (q, k, v) = self.attention.project_all(&h)?;
        let x = (x + self.attention.attend(&q, &k, &v, Some(bias))?)?;
        let h = self.feed_forward_norm.forward(&x)?;
        x + self.feed_forward.forward(&h)?
    }
}

/// The encoder: token embeddings (shared with the decoder), blocks, final norm.
#[derive(Debug, Clone)]
pub struct Encoder {
    blocks: Vec<EncoderBlock>,
    final_norm: RmsNorm,
}

impl Encoder {
    pub fn load(config: &T5Config, vb: VarBuilder) -> Result<Self> {
        let blocks = (0..config.num_layers)
            .map(|i| EncoderBlock::load(config, i == 0, vb.pp(format!("block.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder {
            blocks,
            final_norm: RmsNorm::load(
                config.d_model,
                config.layer_norm_epsilon,
                vb.pp("final_layer_norm"),
            )?,
        })
    }

    /// Encode a right-padded batch `ids` [B, S] whose real lengths are `lengths`: [B, S, D].
    pub fn forward(
        &self,
        embedding: &Embedding,
        ids: &Tensor,
        lengths: &[usize],
    ) -> Result<Tensor> {
        let (_, seq_len) = ids.dims2()?;
        let device = ids.device();
        let mask = padding_mask(lengths, seq_len, embedding.embeddings().dtype(), device)?;
        let relative = self.blocks[0]
            .attention
            .position_bias(0..seq_len, seq_len, true, device)?;
        let bias = match relative {
            Some(relative) => relative.broadcast_add(&mask)?,
            None => mask,
        };
        let mut x = embedding.forward(ids)?;
        for block in &self.blocks {
            x = block.forward(&x, &bias)?;
        }
        self.final_norm.forward(&x)
    }
}
