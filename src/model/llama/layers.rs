//! Llama-family decoder layers (transformers `modeling_llama.py` semantics): linear layers that
//! are dense or quantized, rotary position embeddings, grouped-query attention, SwiGLU and the
//! pre-norm decoder block with the hooks early exit needs (a step on some rows, K/V propagation
//! for the others).

use crate::model::layers::{softmax, Dense, RmsNorm};
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Result, Tensor};

/// y = x·Wᵀ (+ b), with W dense (the model's dtype) or a quantized GGUF block format (whose
/// product takes and gives f32: other activations are widened for it and narrowed back).
#[derive(Debug, Clone)]
pub enum Linear {
    Dense {
        weight: Dense,
        bias: Option<Tensor>,
    },
    Quantized {
        weight: QMatMul,
        bias: Option<Tensor>,
    },
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (y, bias) = match self {
            Linear::Dense { weight, bias } => (weight.forward(x)?, bias),
            Linear::Quantized { weight, bias } if x.dtype() != DType::F32 => (
                weight
                    .forward(&x.to_dtype(DType::F32)?)?
                    .to_dtype(x.dtype())?,
                bias,
            ),
            Linear::Quantized { weight, bias } => (weight.forward(x)?, bias),
        };
        match bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Rotary position embeddings: per head, pairs of channels rotated by position · θ_i.
/// `interleaved` pairs channels (2i, 2i+1) (GGUF's layout, whose converter permutes q/k rows);
/// otherwise (i, i + d/2) as transformers' `rotate_half`.
#[derive(Debug, Clone)]
pub struct Rotary {
    inverse_frequencies: Vec<f32>,
    interleaved: bool,
}

impl Rotary {
    pub fn new(inverse_frequencies: &[f64], interleaved: bool) -> Self {
        Rotary {
            // transformers computes the angles in f32 from f32 frequencies.
            inverse_frequencies: inverse_frequencies.iter().map(|&f| f as f32).collect(),
            interleaved,
        }
    }

    /// cos and sin [T, d/2] of positions `positions`, computed in f32 and given in `dtype`.
    pub fn angles(
        &self,
        positions: std::ops::Range<usize>,
        dtype: DType,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let half = self.inverse_frequencies.len();
        let count = positions.len();
        let mut cos = Vec::with_capacity(count * half);
        let mut sin = Vec::with_capacity(count * half);
        for p in positions {
            for &f in &self.inverse_frequencies {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok((
            Tensor::from_vec(cos, (count, half), device)?.to_dtype(dtype)?,
            Tensor::from_vec(sin, (count, half), device)?.to_dtype(dtype)?,
        ))
    }

    /// Rotate x [B, H, T, d] by the angles of its T positions.
    pub fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        if x.track_op() {
            // Training: the fused kernels have no backward pass.
            return if self.interleaved {
                candle_nn::rotary_emb::rope_i_slow(&x, cos, sin)
            } else {
                candle_nn::rotary_emb::rope_slow(&x, cos, sin)
            };
        }
        if self.interleaved {
            candle_nn::rotary_emb::rope_i(&x, cos, sin)
        } else {
            candle_nn::rotary_emb::rope(&x, cos, sin)
        }
    }
}

/// Rotary angles of the positions one step (or one prefill) covers, with the causal mask of a
/// multi-position step.
#[derive(Debug, Clone)]
pub struct PositionAngles {
    pub cos: Tensor,
    pub sin: Tensor,
    /// Additive mask [T, S] for T > 1 queries (prefill); None for one query.
    pub mask: Option<Tensor>,
}

/// Grouped-query self-attention: `heads` query heads share `kv_heads` key/value heads
/// (query head h reads kv head h / (heads / kv_heads), transformers' `repeat_kv`).
#[derive(Debug, Clone)]
pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    /// [B, T, n·d] → [B, n, T, d].
    fn split(&self, x: &Tensor, n: usize) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        if t == 1 {
            return x.reshape((b, n, 1, self.head_dim));
        }
        x.reshape((b, t, n, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Rotated keys and the values [B, H_kv, T, d] of normed states `h` [B, T, D].
    pub fn key_value(
        &self,
        h: &Tensor,
        rotary: &Rotary,
        angles: &PositionAngles,
    ) -> Result<(Tensor, Tensor)> {
        let k = self.split(&self.k.forward(h)?, self.kv_heads)?;
        let k = rotary.apply(&k, &angles.cos, &angles.sin)?;
        let v = self.split(&self.v.forward(h)?, self.kv_heads)?;
        Ok((k, v))
    }

    /// Rotated queries [B, H, T, d] of normed states `h`.
    pub fn query(&self, h: &Tensor, rotary: &Rotary, angles: &PositionAngles) -> Result<Tensor> {
        let q = self.split(&self.q.forward(h)?, self.heads)?;
        rotary.apply(&q, &angles.cos, &angles.sin)
    }

    /// softmax(q·kᵀ/√d + mask)·v over keys [B, H_kv, S, d], then the output projection: [B, T, D].
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, _, t, d) = q.dims4()?;
        let groups = self.heads / self.kv_heads;
        let s = k.dim(2)?;
        // [B, H, T, d] → [B, H_kv, G·T, d]: the query heads of one kv head side by side.
        let q = q.reshape((b, self.kv_heads, groups * t, d))?;
        let scale = 1.0 / (d as f64).sqrt();
        let mut scores = (q.matmul(&k.transpose(2, 3)?)? * scale)?;
        if let Some(mask) = mask {
            scores = scores
                .reshape((b, self.kv_heads, groups, t, s))?
                .broadcast_add(mask)?
                .reshape((b, self.kv_heads, groups * t, s))?;
        }
        let weights = softmax(&scores)?;
        let context = weights.matmul(&v.contiguous()?)?; // [B, H_kv, G·T, d]
        let context = context.reshape((b, self.heads, t, d))?;
        let context = if t == 1 {
            context.reshape((b, 1, self.heads * d))?
        } else {
            context.transpose(1, 2)?.reshape((b, t, self.heads * d))?
        };
        self.o.forward(&context)
    }
}

/// The SwiGLU feed-forward network: down(silu(gate(x)) ⊙ up(x)).
#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate.forward(x)?)?;
        self.down.forward(&(gate * self.up.forward(x)?)?)
    }
}

/// One pre-norm decoder block: x + attn(norm(x)), then + mlp(norm(·)).
#[derive(Debug, Clone)]
pub struct Block {
    pub attention_norm: RmsNorm,
    pub attention: Attention,
    pub mlp_norm: RmsNorm,
    pub mlp: Mlp,
}

impl Block {
    /// The block on states `x` [A, T, D] at the positions of `angles`, attending to `past`
    /// [A, H_kv, t, d] and themselves. Returns the new state and these positions' keys/values.
    pub fn step(
        &self,
        x: &Tensor,
        past: Option<(&Tensor, &Tensor)>,
        rotary: &Rotary,
        angles: &PositionAngles,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let h = self.attention_norm.forward(x)?;
        let q = self.attention.query(&h, rotary, angles)?;
        let (k_new, v_new) = self.attention.key_value(&h, rotary, angles)?;
        let (k, v) = match past {
            Some((k_past, v_past)) => (
                Tensor::cat(&[k_past, &k_new], 2)?,
                Tensor::cat(&[v_past, &v_new], 2)?,
            ),
            None => (k_new.clone(), v_new.clone()),
        };
        let x = (x + self.attention.attend(&q, &k, &v, angles.mask.as_ref())?)?;
        let h = self.mlp_norm.forward(&x)?;
        let x = (&x + self.mlp.forward(&h)?)?;
        Ok((x, k_new, v_new))
    }

    /// CALM state propagation for a skipped block: its own norm, K/V projections and rotation
    /// at this position, applied to the exit layer's state `x` [E, 1, D] (CALM §3.2).
    pub fn propagate(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        angles: &PositionAngles,
    ) -> Result<(Tensor, Tensor)> {
        let h = self.attention_norm.forward(x)?;
        self.attention.key_value(&h, rotary, angles)
    }
}
