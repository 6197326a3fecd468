//! Greedy, KV-cached decoding with CALM early exits decided per sequence (no batch-wide minimum).
//!
//! At each output position every sequence runs decoder blocks until its exit rule fires; the
//! blocks it skips still write their KV cache by applying their own layer norm and K/V projections
//! to the exit layer's state (CALM §3.2), so later tokens attend to a complete cache.

use super::exit::{decayed_threshold, top_two, ExitPolicy, Measure};
use super::family::{select_rows, ExitFamily, LayerCache};
use super::layers::row_cosine;
use super::loaded::Model;
use super::profile::{timed, Part};
use super::t5::T5Model;
use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};
use serde::Serialize;

/// Decoding options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerationOptions {
    /// N: the maximum output length, also the horizon of the decaying threshold.
    pub max_new_tokens: usize,
    pub policy: ExitPolicy,
    /// Also compute every layer's confidences and argmax for every token (a second, full pass
    /// that does not change the output; for traces and analysis).
    pub record_all_layers: bool,
}

/// Every measure and the argmax of one decoder layer's exit head.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerRecord {
    pub argmax: u32,
    pub softmax_diff: f32,
    pub softmax_max: f32,
    /// cos(h_i, h_{i−1}); None at layer 1.
    pub state: Option<f32>,
    pub classifier: Option<f32>,
}

impl LayerRecord {
    /// The confidence of `measure` at this layer (None where it is undefined).
    pub fn confidence(&self, measure: Measure) -> Option<f32> {
        match measure {
            Measure::SoftmaxDiff => Some(self.softmax_diff),
            Measure::SoftmaxMax => Some(self.softmax_max),
            Measure::State => self.state,
            Measure::Classifier => self.classifier,
        }
    }
}

/// One generated token and how it was produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenTrace {
    pub token: u32,
    /// 1-based decoder layer whose exit head produced the token.
    pub exit_layer: usize,
    /// The policy measure's confidence at each evaluated layer 1..=exit_layer (None where the
    /// measure is undefined or not evaluated, e.g. before `min_exit`).
    pub confidences: Vec<Option<f32>>,
    /// Record mode: every layer's measures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<LayerRecord>>,
}

/// The output of one sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    /// Generated ids, without the decoder start token, with `</s>` if it was produced.
    pub tokens: Vec<u32>,
    pub traces: Vec<TokenTrace>,
}

impl Generation {
    pub fn exit_layers(&self) -> Vec<usize> {
        self.traces.iter().map(|t| t.exit_layer).collect()
    }

    /// Mean decoder layers per generated token.
    pub fn mean_layers(&self) -> f64 {
        if self.traces.is_empty() {
            return 0.0;
        }
        self.traces.iter().map(|t| t.exit_layer as f64).sum::<f64>() / self.traces.len() as f64
    }
}

/// Append one position [B, H, 1, d] to a cache [B, H, t, d].
fn append_position(cache: &mut Option<Tensor>, new: Tensor) -> Result<()> {
    *cache = Some(match cache.take() {
        Some(past) => Tensor::cat(&[&past, &new], 2)?,
        None => new,
    });
    Ok(())
}

fn index_tensor(rows: &[usize], device: &candle_core::Device) -> Result<Tensor> {
    let rows: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
    Ok(Tensor::from_vec(rows.clone(), rows.len(), device)?)
}

fn select(t: &Tensor, rows: &[usize], batch: usize) -> Result<Tensor> {
    Ok(select_rows(t, rows, batch)?)
}

/// Reassemble a [B, …] tensor from the rows of `first` (for `first_rows`) and `second`.
fn merge(
    first: Option<&Tensor>,
    first_rows: &[usize],
    second: Option<&Tensor>,
    second_rows: &[usize],
) -> Result<Tensor> {
    match (first, second) {
        (Some(a), None) => Ok(a.clone()),
        (None, Some(b)) => Ok(b.clone()),
        (Some(a), Some(b)) => {
            let batch = first_rows.len() + second_rows.len();
            let mut inverse = vec![0usize; batch];
            for (position, &row) in first_rows.iter().chain(second_rows).enumerate() {
                inverse[row] = position;
            }
            let joined = Tensor::cat(&[a, b], 0)?;
            Ok(joined.index_select(&index_tensor(&inverse, a.device())?, 0)?)
        }
        (None, None) => bail!("internal error: merging no rows"),
    }
}

/// Confidences of the active rows at one layer (None where undefined) and, for softmax
/// measures, each row's argmax.
type LayerConfidences = (Vec<Option<f32>>, Option<Vec<u32>>);

/// Per-layer confidences of `measure` for rows with new states `h` and previous states `prev`.
/// Returns the confidences and, for softmax measures, each row's argmax.
fn confidences<F: ExitFamily>(
    model: &F,
    measure: Measure,
    layer: usize,
    h: &Tensor,
    prev: &Tensor,
) -> Result<LayerConfidences> {
    let rows = h.dim(0)?;
    match measure {
        Measure::SoftmaxDiff | Measure::SoftmaxMax => {
            let probs = exit_probabilities(model, h)?;
            let mut conf = Vec::with_capacity(rows);
            let mut argmax = Vec::with_capacity(rows);
            for row in &probs {
                let (best, top, diff) = top_two(row);
                conf.push(Some(if measure == Measure::SoftmaxDiff {
                    diff
                } else {
                    top
                }));
                argmax.push(best as u32);
            }
            Ok((conf, Some(argmax)))
        }
        Measure::State => {
            if layer < 2 {
                return Ok((vec![None; rows], None));
            }
            let cos = row_cosine(&h.squeeze(1)?, &prev.squeeze(1)?)?.to_vec1::<f32>()?;
            Ok((cos.into_iter().map(Some).collect(), None))
        }
        Measure::Classifier => match model.classifier_confidence(h)? {
            Some(conf) => Ok((conf.to_vec1::<f32>()?.into_iter().map(Some).collect(), None)),
            None => bail!("the checkpoint has no early-exit classifier (calm.exit_classifier.*)"),
        },
    }
}

/// Exit-head probabilities [A][V] of states `h` [A, 1, D]: the softmax in f32 whatever the
/// model's dtype, so confidences are comparable across dtypes.
fn exit_probabilities<F: ExitFamily>(model: &F, h: &Tensor) -> Result<Vec<Vec<f32>>> {
    let logits = model.exit_logits(h)?.to_dtype(DType::F32)?;
    Ok(candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?)
}

/// Argmax of the exit head for states `h` [A, 1, D].
fn exit_argmax<F: ExitFamily>(model: &F, h: &Tensor) -> Result<Vec<u32>> {
    Ok(model.exit_logits(h)?.argmax(D::Minus1)?.to_vec1::<u32>()?)
}

/// Greedy decoding of a batch of tokenized inputs with the given exit policy, on any loaded
/// model family.
pub fn generate(
    model: &Model,
    inputs: &[Vec<u32>],
    options: &GenerationOptions,
) -> Result<Vec<Generation>> {
    match model {
        Model::T5(t5) => generate_with(t5, inputs, options),
        Model::Llama(llama) => generate_with(llama, inputs, options),
    }
}

/// The early-exit engine: greedy decoding of `inputs` with exits decided per row.
/// Families whose rows must share positions (decoder-only) are decoded in groups of equal input
/// length; the results come back in input order.
pub fn generate_with<F: ExitFamily>(
    model: &F,
    inputs: &[Vec<u32>],
    options: &GenerationOptions,
) -> Result<Vec<Generation>> {
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    if let ExitPolicy::Threshold {
        measure: Measure::Classifier,
        ..
    } = options.policy
    {
        if !model.has_exit_classifier() {
            bail!("the classifier measure needs a checkpoint with an early-exit classifier (calm.exit_classifier.*; train one with `calm train-classifier`)");
        }
    }
    if let ExitPolicy::Fixed(layer) = options.policy {
        if layer == 0 || layer > model.num_layers() {
            bail!("exit layer {layer} is outside 1..={}", model.num_layers());
        }
    }
    if !model.needs_equal_lengths() || inputs.iter().all(|i| i.len() == inputs[0].len()) {
        return generate_group(model, inputs, options);
    }
    let groups = equal_length_groups(inputs);
    let mut results: Vec<Option<Generation>> = vec![None; inputs.len()];
    for rows in groups.values() {
        let group: Vec<Vec<u32>> = rows.iter().map(|&r| inputs[r].clone()).collect();
        for (&row, generation) in rows.iter().zip(generate_group(model, &group, options)?) {
            results[row] = Some(generation);
        }
    }
    results
        .into_iter()
        .map(|g| g.ok_or_else(|| anyhow::anyhow!("internal error: a row was not decoded")))
        .collect()
}

/// Row indices of `inputs` grouped by input length, shortest first.
pub fn equal_length_groups(inputs: &[Vec<u32>]) -> std::collections::BTreeMap<usize, Vec<usize>> {
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (row, input) in inputs.iter().enumerate() {
        groups.entry(input.len()).or_default().push(row);
    }
    groups
}

fn generate_group<F: ExitFamily>(
    model: &F,
    inputs: &[Vec<u32>],
    options: &GenerationOptions,
) -> Result<Vec<Generation>> {
    let start = timed(Part::Prefill, || model.start(inputs))?;
    let batch = inputs.len();
    let mut decoder = DecoderRun {
        model,
        batch_state: &start.batch,
        caches: start.caches,
        batch,
    };
    let mut results: Vec<Generation> = (0..batch)
        .map(|_| Generation {
            tokens: Vec::new(),
            traces: Vec::new(),
        })
        .collect();
    let mut finished = vec![false; batch];
    let mut last = start.first_input;
    let mut first_step = 0;
    if let Some(states) = &start.prompt_states {
        // Decoder-only: the prefill ran the full model at the prompt's last position, so the
        // first output token is the top layer's (no exit, nothing to propagate).
        if options.max_new_tokens > 0 {
            let depth = model.num_layers();
            let tokens = timed(Part::Prefill, || exit_argmax(model, &states[depth - 1]))?;
            let mut records = if options.record_all_layers {
                let mut all = vec![decoder.embed_placeholder()?];
                all.extend(states.iter().cloned());
                Some(decoder.layer_records(&all)?)
            } else {
                None
            };
            for (row, &token) in tokens.iter().enumerate() {
                results[row].tokens.push(token);
                results[row].traces.push(TokenTrace {
                    token,
                    exit_layer: depth,
                    confidences: Vec::new(),
                    layers: records.as_mut().map(|r| std::mem::take(&mut r[row])),
                });
                last[row] = token;
                finished[row] = model.is_eos(token);
            }
        }
        first_step = 1;
    }
    for t in first_step..options.max_new_tokens {
        if finished.iter().all(|&f| f) {
            break;
        }
        let traces = decoder.step(&last, t, &finished, options)?;
        for (row, trace) in traces.into_iter().enumerate() {
            if let Some(trace) = trace {
                last[row] = trace.token;
                results[row].tokens.push(trace.token);
                finished[row] = model.is_eos(trace.token);
                results[row].traces.push(trace);
            }
        }
    }
    Ok(results)
}

/// One decoder layer run at one position.
struct LayerAdvance {
    /// Every row's state after the layer (propagated rows keep their exit state).
    state: Tensor,
    /// For the active rows: their output and their input state of this layer.
    active: Option<(Tensor, Tensor)>,
}

/// What an exit decision reads at one layer.
struct ExitContext<'a> {
    /// 1-based layer just run.
    layer: usize,
    /// Output position.
    t: usize,
    /// The active rows' states after and before the layer.
    out: &'a Tensor,
    previous: &'a Tensor,
    /// The active rows (batch indices), in the order of `out`'s rows.
    active: &'a [usize],
    /// Forced exit layer per batch row (fixed exits, the oracle).
    targets: Option<&'a [usize]>,
}

/// The exit decision of one layer for the active rows.
struct ExitDecision {
    /// Per active row: whether it exits here.
    exiting: Vec<bool>,
    /// Per active row: the policy measure's confidence (threshold policies only).
    confidences: Option<Vec<Option<f32>>>,
    /// Per active row: the exit head's argmax when a softmax measure computed it.
    softmax_argmax: Option<Vec<u32>>,
}

/// The policy's exit decision at `context.layer` (CALM §3: exit once c ≥ λ_t, Eq. 5's
/// decaying threshold; the top layer always exits; fixed and oracle exits at their layer).
fn decide_exits<F: ExitFamily>(
    model: &F,
    options: &GenerationOptions,
    context: ExitContext<'_>,
) -> Result<ExitDecision> {
    let rows = context.active.len();
    let mut decision = ExitDecision {
        exiting: vec![false; rows],
        confidences: None,
        softmax_argmax: None,
    };
    match options.policy {
        _ if context.layer == model.num_layers() => decision.exiting = vec![true; rows],
        ExitPolicy::Never => {}
        ExitPolicy::Fixed(_) | ExitPolicy::Oracle => {
            if let Some(targets) = context.targets {
                for (position, &row) in context.active.iter().enumerate() {
                    decision.exiting[position] = targets[row] == context.layer;
                }
            }
        }
        ExitPolicy::Threshold {
            measure,
            lambda,
            tau,
            min_exit,
        } => {
            let (conf, softmax_argmax) = timed(Part::ExitChecks, || {
                confidences(model, measure, context.layer, context.out, context.previous)
            })?;
            let threshold = decayed_threshold(lambda, tau, context.t, options.max_new_tokens);
            for (position, c) in conf.iter().enumerate() {
                decision.exiting[position] =
                    context.layer >= min_exit && c.is_some_and(|c| c as f64 >= threshold);
            }
            decision.confidences = Some(conf);
            decision.softmax_argmax = softmax_argmax;
        }
    }
    Ok(decision)
}

/// Decoder state of one batch across output positions.
struct DecoderRun<'a, F: ExitFamily> {
    model: &'a F,
    batch_state: &'a F::Batch,
    caches: Vec<LayerCache>,
    batch: usize,
}

impl<F: ExitFamily> DecoderRun<'_, F> {
    /// A stand-in for the embedding in `layer_records`' state list (only layers ≥ 1 are read).
    fn embed_placeholder(&self) -> Result<Tensor> {
        Ok(Tensor::zeros(
            1,
            candle_core::DType::F32,
            self.model.device(),
        )?)
    }

    /// States h_0..h_L [B, 1, D] of a full pass that reads but never writes the caches.
    fn probe(&self, x: &Tensor, position: &F::Position) -> Result<Vec<Tensor>> {
        let rows: Vec<usize> = (0..self.batch).collect();
        let mut states = vec![x.clone()];
        for (i, cache) in self.caches.iter().enumerate() {
            let past = cache.keys.as_ref().zip(cache.values.as_ref());
            let (h, _, _) = self.model.layer_step(
                i,
                &states[i],
                past,
                position,
                self.batch_state,
                &rows,
                self.batch,
            )?;
            states.push(h);
        }
        Ok(states)
    }

    fn layer_records(&self, states: &[Tensor]) -> Result<Vec<Vec<LayerRecord>>> {
        let depth = states.len() - 1;
        let mut per_row: Vec<Vec<LayerRecord>> = vec![Vec::with_capacity(depth); self.batch];
        for layer in 1..=depth {
            let h = &states[layer];
            let probs = exit_probabilities(self.model, h)?;
            let state = if layer >= 2 {
                Some(row_cosine(&h.squeeze(1)?, &states[layer - 1].squeeze(1)?)?.to_vec1::<f32>()?)
            } else {
                None
            };
            let classifier = self
                .model
                .classifier_confidence(h)?
                .map(|c| c.to_vec1::<f32>())
                .transpose()?;
            for (row, records) in per_row.iter_mut().enumerate() {
                let (argmax, top, diff) = top_two(&probs[row]);
                records.push(LayerRecord {
                    argmax: argmax as u32,
                    softmax_diff: diff,
                    softmax_max: top,
                    state: state.as_ref().map(|s| s[row]),
                    classifier: classifier.as_ref().map(|c| c[row]),
                });
            }
        }
        Ok(per_row)
    }

    /// Run decoder layer `layer` (1-based) at one position: the active rows in full, the others
    /// by K/V propagation from their exit state (CALM §3.2); both write the layer's cache. The
    /// per-layer computation, apart from any exit decision.
    fn advance_layer(
        &mut self,
        layer: usize,
        state: &Tensor,
        active: &[usize],
        position: &F::Position,
    ) -> Result<LayerAdvance> {
        let model = self.model;
        let inactive: Vec<usize> = (0..self.batch).filter(|r| !active.contains(r)).collect();
        let cache = &self.caches[layer - 1];
        let mut active_run = None;
        let mut active_kv = None;
        if !active.is_empty() {
            let h = select(state, active, self.batch)?;
            let past = match (&cache.keys, &cache.values) {
                (Some(k), Some(v)) => Some((
                    select(k, active, self.batch)?,
                    select(v, active, self.batch)?,
                )),
                _ => None,
            };
            let (out, k, v) = timed(Part::Layers, || {
                model.layer_step(
                    layer - 1,
                    &h,
                    past.as_ref().map(|(k, v)| (k, v)),
                    position,
                    self.batch_state,
                    active,
                    self.batch,
                )
            })?;
            active_run = Some((out, h));
            active_kv = Some((k, v));
        }
        let mut inactive_kv = None;
        let mut inactive_state = None;
        if !inactive.is_empty() {
            let h = select(state, &inactive, self.batch)?;
            inactive_kv = Some(timed(Part::Propagation, || {
                model.propagate(layer - 1, &h, position)
            })?);
            inactive_state = Some(h);
        }
        let new_k = merge(
            active_kv.as_ref().map(|kv| &kv.0),
            active,
            inactive_kv.as_ref().map(|kv| &kv.0),
            &inactive,
        )?;
        let new_v = merge(
            active_kv.as_ref().map(|kv| &kv.1),
            active,
            inactive_kv.as_ref().map(|kv| &kv.1),
            &inactive,
        )?;
        let cache = &mut self.caches[layer - 1];
        append_position(&mut cache.keys, new_k)?;
        append_position(&mut cache.values, new_v)?;
        let state = merge(
            active_run.as_ref().map(|(out, _)| out),
            active,
            inactive_state.as_ref(),
            &inactive,
        )?;
        Ok(LayerAdvance {
            state,
            active: active_run,
        })
    }

    /// Decode position t for every unfinished row; returns a trace per row (None if finished).
    fn step(
        &mut self,
        last: &[u32],
        t: usize,
        finished: &[bool],
        options: &GenerationOptions,
    ) -> Result<Vec<Option<TokenTrace>>> {
        let model = self.model;
        let device = model.device();
        let depth = model.num_layers();
        let ids = Tensor::from_vec(last.to_vec(), (self.batch, 1), device)?;
        let x = model.embed(&ids)?;
        let position = model.position(self.batch_state, t)?;

        // Record mode and the oracle need every layer's state before deciding.
        let probe_records = if options.record_all_layers || options.policy == ExitPolicy::Oracle {
            let states = self.probe(&x, &position)?;
            Some(self.layer_records(&states)?)
        } else {
            None
        };
        let target_layer: Option<Vec<usize>> = match options.policy {
            ExitPolicy::Fixed(layer) => Some(vec![layer; self.batch]),
            ExitPolicy::Oracle => probe_records.as_ref().map(|records| {
                records
                    .iter()
                    .map(|layers| {
                        let top = layers[depth - 1].argmax;
                        layers
                            .iter()
                            .position(|r| r.argmax == top)
                            .map_or(depth, |i| i + 1)
                    })
                    .collect()
            }),
            _ => None,
        };

        let mut active: Vec<usize> = (0..self.batch).filter(|&r| !finished[r]).collect();
        let mut tokens: Vec<Option<u32>> = vec![None; self.batch];
        let mut exit_layer = vec![0usize; self.batch];
        let mut confidence_log: Vec<Vec<Option<f32>>> = vec![Vec::new(); self.batch];
        let mut state = x;
        for layer in 1..=depth {
            let computed = self.advance_layer(layer, &state, &active, &position)?;
            state = computed.state;
            let Some((out, previous)) = computed.active else {
                continue;
            };
            let decision = decide_exits(
                model,
                options,
                ExitContext {
                    layer,
                    t,
                    out: &out,
                    previous: &previous,
                    active: &active,
                    targets: target_layer.as_deref(),
                },
            )?;
            if let Some(confidences) = decision.confidences {
                for (position, &row) in active.iter().enumerate() {
                    confidence_log[row].push(confidences[position]);
                }
            }
            let exiting_positions: Vec<usize> =
                (0..active.len()).filter(|&p| decision.exiting[p]).collect();
            if exiting_positions.is_empty() {
                continue;
            }
            let chosen = match decision.softmax_argmax {
                Some(all) => exiting_positions.iter().map(|&p| all[p]).collect(),
                None => timed(Part::Head, || {
                    exit_argmax(model, &select(&out, &exiting_positions, active.len())?)
                })?,
            };
            for (&position, token) in exiting_positions.iter().zip(chosen) {
                let row = active[position];
                tokens[row] = Some(token);
                exit_layer[row] = layer;
            }
            active.retain(|row| tokens[*row].is_none());
        }

        let mut probe_records = probe_records;
        Ok((0..self.batch)
            .map(|row| {
                tokens[row].map(|token| TokenTrace {
                    token,
                    exit_layer: exit_layer[row],
                    confidences: std::mem::take(&mut confidence_log[row]),
                    layers: probe_records
                        .as_mut()
                        .filter(|_| options.record_all_layers)
                        .map(|records| std::mem::take(&mut records[row])),
                })
            })
            .collect())
    }
}

/// Logits of every decoder layer's exit head at every position when the decoder is fed
/// `decoder_input_ids` (teacher forcing), for one input: `[position][layer][vocab]`.
/// Runs the same cached step as generation, with the full model writing the cache.
pub fn teacher_forced_logits(
    model: &T5Model,
    input_ids: &[u32],
    decoder_input_ids: &[u32],
) -> Result<Vec<Vec<Vec<f32>>>> {
    let start = model.start(&[input_ids.to_vec()])?;
    let mut run = DecoderRun {
        model,
        batch_state: &start.batch,
        caches: start.caches,
        batch: 1,
    };
    let options = GenerationOptions {
        max_new_tokens: decoder_input_ids.len(),
        policy: ExitPolicy::Never,
        record_all_layers: false,
    };
    let mut out = Vec::with_capacity(decoder_input_ids.len());
    for (t, &token) in decoder_input_ids.iter().enumerate() {
        let ids = Tensor::from_vec(vec![token], (1, 1), &model.device)?;
        let x = ExitFamily::embed(model, &ids)?;
        let position = model.position(&start.batch, t)?;
        let states = run.probe(&x, &position)?;
        let mut layers = Vec::with_capacity(states.len() - 1);
        for h in &states[1..] {
            layers.push(
                model
                    .exit_logits(h)?
                    .squeeze(0)?
                    .to_dtype(DType::F32)?
                    .to_vec1::<f32>()?,
            );
        }
        out.push(layers);
        run.step(&[token], t, &[false], &options)?;
    }
    Ok(out)
}
