//! `T5ForConditionalGeneration` with CALM's extras: exit heads at every decoder layer through the
//! shared final norm and LM head, and the optional early-exit classifier.

use super::config::T5Config;
use super::decoder::Decoder;
use super::encoder::Encoder;
use super::layers::Dense;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};

/// Tensor names of the CALM early-exit classifier (one linear layer d_model → 1 shared by all layers).
pub const EXIT_CLASSIFIER_WEIGHT: &str = "calm.exit_classifier.weight";
pub const EXIT_CLASSIFIER_BIAS: &str = "calm.exit_classifier.bias";

/// An encoded batch: encoder states and, per decoder layer, the cross-attention keys/values.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    pub hidden: Tensor,
    pub lengths: Vec<usize>,
    pub cross: Vec<(Tensor, Tensor)>,
    /// Additive padding mask [B, 1, 1, S] for cross-attention.
    pub mask: Tensor,
}

impl EncodedBatch {
    /// The same batch restricted to `rows` (an index tensor).
    pub fn select_rows(&self, rows: &Tensor) -> Result<(Vec<(Tensor, Tensor)>, Tensor)> {
        let cross = self
            .cross
            .iter()
            .map(|(k, v)| Ok((k.index_select(rows, 0)?, v.index_select(rows, 0)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok((cross, self.mask.index_select(rows, 0)?))
    }
}

#[derive(Debug, Clone)]
pub struct T5Model {
    pub config: T5Config,
    pub embedding: Embedding,
    pub encoder: Encoder,
    pub decoder: Decoder,
    lm_head: Dense,
    head_scale: Option<f64>,
    /// (weight [1, D], bias [1]) of the early-exit classifier, when the checkpoint has one.
    exit_classifier: Option<(Tensor, Tensor)>,
    pub device: Device,
    /// The dtype of the weights and activations (f32, f16 or bf16).
    pub dtype: DType,
}

impl T5Model {
    pub fn load(config: &T5Config, vb: VarBuilder) -> Result<Self> {
        let (vocab, d) = (config.vocab_size, config.d_model);
        let shared_name = ["shared", "encoder.embed_tokens", "decoder.embed_tokens"]
            .into_iter()
            .find(|name| vb.contains_tensor(&format!("{name}.weight")))
            .unwrap_or("shared");
        let shared = vb.pp(shared_name).get((vocab, d), "weight")?;
        let lm_head = if config.tie_word_embeddings {
            shared.clone()
        } else {
            vb.pp("lm_head").get((vocab, d), "weight")?
        };
        let exit_classifier = if vb.contains_tensor(EXIT_CLASSIFIER_WEIGHT) {
            Some((
                vb.get((1, d), EXIT_CLASSIFIER_WEIGHT)?,
                vb.get(1, EXIT_CLASSIFIER_BIAS)?,
            ))
        } else {
            None
        };
        Ok(T5Model {
            config: config.clone(),
            embedding: Embedding::new(shared, d),
            encoder: Encoder::load(config, vb.pp("encoder"))?,
            decoder: Decoder::load(config, vb.pp("decoder"))?,
            lm_head: Dense::new(&lm_head)?,
            head_scale: config
                .scales_decoder_output()
                .then(|| (d as f64).powf(-0.5)),
            exit_classifier,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn num_decoder_layers(&self) -> usize {
        self.decoder.blocks.len()
    }

    pub fn has_exit_classifier(&self) -> bool {
        self.exit_classifier.is_some()
    }

    /// Encode token id sequences (each ending with `</s>`), right-padded into one batch.
    pub fn encode(&self, inputs: &[Vec<u32>]) -> Result<EncodedBatch> {
        let lengths: Vec<usize> = inputs.iter().map(Vec::len).collect();
        let max_len = lengths.iter().copied().max().unwrap_or(0).max(1);
        let pad = self.config.pad();
        let mut ids = Vec::with_capacity(inputs.len() * max_len);
        for input in inputs {
            ids.extend_from_slice(input);
            ids.extend(std::iter::repeat_n(pad, max_len - input.len()));
        }
        let ids = Tensor::from_vec(ids, (inputs.len(), max_len), &self.device)?;
        let hidden = self.encoder.forward(&self.embedding, &ids, &lengths)?;
        let cross = self
            .decoder
            .blocks
            .iter()
            .map(|block| block.cross_key_value(&hidden))
            .collect::<Result<Vec<_>>>()?;
        let mask = super::layers::padding_mask(&lengths, max_len, self.dtype, &self.device)?;
        Ok(EncodedBatch {
            hidden,
            lengths,
            cross,
            mask,
        })
    }

    /// LM-head logits [.., V] of raw decoder states `h` [.., D], through the shared final norm
    /// (and the d_model^-0.5 scaling of tied heads): the exit head of any layer.
    pub fn head_logits(&self, h: &Tensor) -> Result<Tensor> {
        let mut normed = self.decoder.final_norm.forward(h)?;
        if let Some(scale) = self.head_scale {
            normed = (normed * scale)?;
        }
        self.lm_head.forward(&normed)
    }

    /// Exit head for one decoding position: logits [A, V] of states `h` [A, 1, D].
    pub fn exit_logits(&self, h: &Tensor) -> Result<Tensor> {
        self.head_logits(h)?.squeeze(1)
    }

    /// Teacher-forced forward: the raw output states [B, T, D] of every decoder layer, for
    /// right-padded inputs `input_ids` [B, S] (real lengths `lengths`) and `decoder_ids` [B, T].
    pub fn forward_states(
        &self,
        input_ids: &Tensor,
        lengths: &[usize],
        decoder_ids: &Tensor,
    ) -> Result<Vec<Tensor>> {
        let encoded = self.encoder.forward(&self.embedding, input_ids, lengths)?;
        let (_, source_len) = input_ids.dims2()?;
        let (_, target_len) = decoder_ids.dims2()?;
        let mask = super::layers::padding_mask(lengths, source_len, self.dtype, &self.device)?;
        let bias = self.decoder.causal_bias(target_len, &self.device)?;
        let mut x = candle_nn::Module::forward(&self.embedding, decoder_ids)?;
        let mut states = Vec::with_capacity(self.decoder.blocks.len());
        for block in &self.decoder.blocks {
            let (k, v) = block.cross_key_value(&encoded)?;
            x = block.forward_sequence(&x, &bias, (&k, &v), &mask)?;
            states.push(x.clone());
        }
        Ok(states)
    }

    /// Teacher-forced forward: the exit-head logits [B, T, V] of every decoder layer.
    pub fn forward_all_exits(
        &self,
        input_ids: &Tensor,
        lengths: &[usize],
        decoder_ids: &Tensor,
    ) -> Result<Vec<Tensor>> {
        self.forward_states(input_ids, lengths, decoder_ids)?
            .iter()
            .map(|h| self.head_logits(h))
            .collect()
    }

    /// The early-exit classifier's (weight, bias), when present.
    pub fn exit_classifier(&self) -> Option<&(Tensor, Tensor)> {
        self.exit_classifier.as_ref()
    }

    /// Early-exit classifier confidence sigmoid(w·h + b) [A] on raw states `h` [A, 1, D].
    pub fn classifier_confidence(&self, h: &Tensor) -> Result<Option<Tensor>> {
        super::family::classifier_confidence(self.exit_classifier.as_ref(), h)
    }
}

impl super::family::ExitFamily for T5Model {
    type Batch = EncodedBatch;
    type Position = Tensor;

    fn num_layers(&self) -> usize {
        self.decoder.blocks.len()
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn has_exit_classifier(&self) -> bool {
        self.exit_classifier.is_some()
    }

    fn is_eos(&self, token: u32) -> bool {
        token == self.config.eos()
    }

    fn needs_equal_lengths(&self) -> bool {
        false
    }

    fn start(&self, inputs: &[Vec<u32>]) -> Result<super::family::BatchStart<EncodedBatch>> {
        Ok(super::family::BatchStart {
            batch: self.encode(inputs)?,
            caches: vec![Default::default(); self.decoder.blocks.len()],
            prompt_states: None,
            first_input: vec![self.config.decoder_start(); inputs.len()],
        })
    }

    /// The causal relative position bias of the query at position t.
    fn position(&self, _batch: &EncodedBatch, t: usize) -> Result<Tensor> {
        self.decoder.self_bias(t, &self.device)
    }

    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        candle_core::Module::forward(&self.embedding, ids)
    }

    fn layer_step(
        &self,
        layer: usize,
        x: &Tensor,
        past: Option<(&Tensor, &Tensor)>,
        bias: &Tensor,
        batch: &EncodedBatch,
        rows: &[usize],
        batch_rows: usize,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        use super::family::select_rows;
        let (cross_k, cross_v) = &batch.cross[layer];
        let cross_k = select_rows(cross_k, rows, batch_rows)?;
        let cross_v = select_rows(cross_v, rows, batch_rows)?;
        let mask = select_rows(&batch.mask, rows, batch_rows)?;
        self.decoder.blocks[layer].step(x, past, bias, (&cross_k, &cross_v), &mask)
    }

    fn propagate(&self, layer: usize, x: &Tensor, _bias: &Tensor) -> Result<(Tensor, Tensor)> {
        self.decoder.blocks[layer].propagate(x)
    }

    fn exit_logits(&self, h: &Tensor) -> Result<Tensor> {
        T5Model::exit_logits(self, h)
    }

    fn classifier_confidence(&self, h: &Tensor) -> Result<Option<Tensor>> {
        T5Model::classifier_confidence(self, h)
    }
}
