//! The small interface a model family implements for the one early-exit engine
//! (`model::generate`): embed, one decoder layer step with its cache, K/V propagation for a
//! skipped layer, the shared exit head and the early-exit classifier. Exits, measures, the
//! decaying threshold, per-row exits, the oracle, record mode and traces are the engine's.

use candle_core::{Device, Result, Tensor};

/// The self-attention cache of one decoder layer: keys and values [B, H_kv, t, d].
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    pub keys: Option<Tensor>,
    pub values: Option<Tensor>,
}

/// What a family hands the engine when a batch starts.
pub struct BatchStart<B> {
    /// Per-batch state besides the self-attention caches (T5: the encoder's cross K/V).
    pub batch: B,
    /// The caches after the prompt (decoder-only: the full-model prefill); empty caches for an
    /// encoder-decoder.
    pub caches: Vec<LayerCache>,
    /// Decoder-only: the raw states h_1..h_L [B, 1, D] of the full model at the prompt's last
    /// position, from which the first output token is predicted (by the full model: the prompt
    /// is prefilled without exits). None for an encoder-decoder, whose first step starts from
    /// `first_input`.
    pub prompt_states: Option<Vec<Tensor>>,
    /// The decoder's first input token per row (T5: the decoder start token).
    pub first_input: Vec<u32>,
}

/// One decoder stack with exits at every layer through a shared final norm and LM head.
pub trait ExitFamily {
    /// Per-batch state the layers read besides their self-attention caches.
    type Batch;
    /// Per-position context shared by every row of a step (T5: the relative position bias;
    /// Llama: the rotary angles).
    type Position;

    fn num_layers(&self) -> usize;
    fn device(&self) -> &Device;
    fn has_exit_classifier(&self) -> bool;
    /// Whether generation ends after `token`.
    fn is_eos(&self, token: u32) -> bool;
    /// Whether every row of one batch must have an input of the same length (decoder-only
    /// prompts share positions, so rows are never padded).
    fn needs_equal_lengths(&self) -> bool;

    /// Start a batch: encode (encoder-decoder) or prefill (decoder-only) the inputs.
    fn start(&self, inputs: &[Vec<u32>]) -> Result<BatchStart<Self::Batch>>;
    /// The context of the decoding step that produces output token `t` (0-based).
    fn position(&self, batch: &Self::Batch, t: usize) -> Result<Self::Position>;
    /// Token embeddings [B, 1, D] of `ids` [B, 1].
    fn embed(&self, ids: &Tensor) -> Result<Tensor>;
    /// Layer `layer` (0-based) on the rows `rows` of the batch (of `batch_rows`), with states
    /// `x` [A, 1, D] and those rows' cached keys/values. Returns the new state and this
    /// position's key and value [A, H_kv, 1, d].
    #[allow(clippy::too_many_arguments)]
    fn layer_step(
        &self,
        layer: usize,
        x: &Tensor,
        past: Option<(&Tensor, &Tensor)>,
        position: &Self::Position,
        batch: &Self::Batch,
        rows: &[usize],
        batch_rows: usize,
    ) -> Result<(Tensor, Tensor, Tensor)>;
    /// CALM state propagation (§3.2): a skipped layer's own norm and K/V projections (and, for
    /// rotary models, its rotation at this position) applied to the exit layer's state.
    fn propagate(
        &self,
        layer: usize,
        x: &Tensor,
        position: &Self::Position,
    ) -> Result<(Tensor, Tensor)>;
    /// Exit-head logits [A, V] of raw states `h` [A, 1, D] (shared final norm and LM head).
    fn exit_logits(&self, h: &Tensor) -> Result<Tensor>;
    /// Early-exit classifier confidences [A] (f32) of raw states `h` [A, 1, D], if the model
    /// has one.
    fn classifier_confidence(&self, h: &Tensor) -> Result<Option<Tensor>>;
}

/// CALM's early-exit classifier (§3.5): sigmoid(w·h + b) [A] of raw states `h` [A, 1, D], for
/// a classifier (weight [1, D], bias [1]) when the model has one; in f32 whatever the model's
/// dtype, as every confidence.
pub fn classifier_confidence(
    classifier: Option<&(Tensor, Tensor)>,
    h: &Tensor,
) -> Result<Option<Tensor>> {
    let Some((weight, bias)) = classifier else {
        return Ok(None);
    };
    let logits = h
        .squeeze(1)?
        .matmul(&weight.t()?)?
        .broadcast_add(bias)?
        .squeeze(candle_core::D::Minus1)?;
    Ok(Some(
        candle_nn::ops::sigmoid(&logits)?.to_dtype(candle_core::DType::F32)?,
    ))
}

/// Rows of `t` (dim 0), skipping the copy when `rows` is every row in order.
pub fn select_rows(t: &Tensor, rows: &[usize], batch: usize) -> Result<Tensor> {
    if rows.len() == batch {
        return Ok(t.clone());
    }
    let index: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
    let index = Tensor::from_vec(index, rows.len(), t.device())?;
    t.index_select(&index, 0)
}
