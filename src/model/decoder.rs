//! The T5 decoder, one position at a time with a KV cache, with the hooks early exit needs:
//! every block can run fully for some rows and only propagate state for the others.

use super::config::T5Config;
use super::layers::{Attention, FeedForward, RmsNorm};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// One decoder block: causal self-attention, cross-attention, feed-forward.
#[derive(Debug, Clone)]
pub struct DecoderBlock {
    self_norm: RmsNorm,
    pub(crate) self_attention: Attention,
    cross_norm: RmsNorm,
    cross_attention: Attention,
    feed_forward_norm: RmsNorm,
    feed_forward: FeedForward,
}

impl DecoderBlock {
    fn load(config: &T5Config, first: bool, vb: VarBuilder) -> Result<Self> {
        let eps = config.layer_norm_epsilon;
        let d = config.d_model;
        let attention = |vb: VarBuilder, relative: bool| {
            Attention::load(
                d,
                config.num_heads,
                config.d_kv,
                relative,
                config.relative_attention_num_buckets,
                config.relative_attention_max_distance,
                vb,
            )
        };
        Ok(DecoderBlock {
            self_norm: RmsNorm::load(d, eps, vb.pp("layer.0.layer_norm"))?,
            self_attention: attention(vb.pp("layer.0.SelfAttention"), first)?,
            cross_norm: RmsNorm::load(d, eps, vb.pp("layer.1.layer_norm"))?,
            cross_attention: attention(vb.pp("layer.1.EncDecAttention"), false)?,
            feed_forward_norm: RmsNorm::load(d, eps, vb.pp("layer.2.layer_norm"))?,
            feed_forward: FeedForward::load(
                config.feed_forward().map_err(candle_core::Error::wrap)?,
                d,
                config.d_ff,
                vb.pp("layer.2.DenseReluDense"),
            )?,
        })
    }

    /// Cross-attention keys and values [B, H, S, d] of the encoder output, computed once per input.
    pub fn cross_key_value(&self, encoder_output: &Tensor) -> Result<(Tensor, Tensor)> {
        self.cross_attention.project_key_value(encoder_output)
    }

    /// The full block for rows with state `x` [A, 1, D]. `past` holds those rows' cached keys and
    /// values [A, H, t, d] (None at t = 0). Returns the new state and this position's key/value.
    pub fn step(
        &self,
        x: &Tensor,
        past: Option<(&Tensor, &Tensor)>,
        self_bias: &Tensor,
        cross: (&Tensor, &Tensor),
        cross_mask: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let h = self.self_norm.forward(x)?;
        let (q, k_new, v_new) = self.self_attention.project_all(&h)?;
        let (k, v) = match past {
            Some((k_past, v_past)) => (
                Tensor::cat(&[k_past, &k_new], 2)?,
                Tensor::cat(&[v_past, &v_new], 2)?,
            ),
            None => (k_new.clone(), v_new.clone()),
        };
        let x = (x + self.self_attention.attend(&q, &k, &v, Some(self_bias))?)?;
        let x = self.cross_and_feed_forward(&x, cross, cross_mask)?;
        Ok((x, k_new, v_new))
    }

    /// The block after self-attention: cross-attention over the encoder, then the feed-forward
    /// network, each with its pre-norm and residual.
    fn cross_and_feed_forward(
        &self,
        x: &Tensor,
        cross: (&Tensor, &Tensor),
        cross_mask: &Tensor,
    ) -> Result<Tensor> {
        let h = self.cross_norm.forward(x)?;
        let q = self.cross_attention.project_query(&h)?;
        let x = (x + self
            .cross_attention
            .attend(&q, cross.0, cross.1, Some(cross_mask))?)?;
        let h = self.feed_forward_norm.forward(&x)?;
        &x + self.feed_forward.forward(&h)?
    }

    /// Teacher-forced forward of whole sequences `x` [B, T, D] with a causal `self_bias`
    /// [1, H, T, T] (training and analysis).
    pub fn forward_sequence(
        &self,
        x: &Tensor,
        self_bias: &Tensor,
        cross: (&Tensor, &Tensor),
        cross_mask: &Tensor,
    ) -> Result<Tensor> {
        let h = self.self_norm.forward(x)?;
        let (q, k, v) = self.self_attention.project_all(&h)?;
        let x = (x + self.self_attention.attend(&q, &k, &v, Some(self_bias))?)?;
        self.cross_and_feed_forward(&x, cross, cross_mask)
    }

    /// CALM state propagation for a skipped block: its own layer norm and K/V projections applied
    /// to the exit layer's state `x` [E, 1, D] (CALM §3.2). Nothing else of the block runs.
    pub fn propagate(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.self_norm.forward(x)?;
        self.self_attention.project_key_value(&h)
    }
}

/// The decoder blocks and the final norm shared by every exit head.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub blocks: Vec<DecoderBlock>,
    pub final_norm: RmsNorm,
}

impl Decoder {
    pub fn load(config: &T5Config, vb: VarBuilder) -> Result<Self> {
        let blocks = (0..config.decoder_layers())
            .map(|i| DecoderBlock::load(config, i == 0, vb.pp(format!("block.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Decoder {
            blocks,
            final_norm: RmsNorm::load(
                config.d_model,
                config.layer_norm_epsilon,
                vb.pp("final_layer_norm"),
            )?,
        })
    }

    /// Relative position bias plus causal mask [1, H, T, T] for teacher-forced sequences.
    pub fn causal_bias(&self, length: usize, device: &candle_core::Device) -> Result<Tensor> {
        let relative =
            match self.blocks[0]
                .self_attention
                .position_bias(0..length, length, false, device)?
            {
                Some(bias) => bias,
                None => {
                    candle_core::bail!("the first decoder block has no relative_attention_bias")
                }
            };
        let mask: Vec<f32> = (0..length)
            .flat_map(|q| (0..length).map(move |k| if k <= q { 0.0 } else { -1e9 }))
            .collect();
        let mask =
            Tensor::from_vec(mask, (1, 1, length, length), device)?.to_dtype(relative.dtype())?;
        relative.broadcast_add(&mask)
    }

    /// Causal relative position bias [1, H, 1, t + 1] for the query at position t.
    pub fn self_bias(&self, position: usize, device: &candle_core::Device) -> Result<Tensor> {
        match self.blocks[0].self_attention.position_bias(
            position..position + 1,
            position + 1,
            false,
            device,
        )? {
            Some(bias) => Ok(bias),
            None => candle_core::bail!("the first decoder block has no relative_attention_bias"),
        }
    }
}
