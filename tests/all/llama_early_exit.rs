//! Early exit on Llama-family models against a cache-free reference decoder written here in
//! f64 from the safetensors weights (transformers' Llama semantics): forced exits at several
//! layers, with skipped layers' K/V propagated from the exit state at their own rotary position.
//! A negative control shows the comparison catches a wrong propagation rule.

use super::llama_parity::llama_fixture;
use calm::model::{generate, Checkpoint, ExitPolicy, GenerationOptions, Measure};
use candle_core::{DType, Device};
use std::collections::HashMap;

type Matrix = Vec<Vec<f64>>;

struct Layer {
    attention_norm: Vec<f64>,
    q: (Matrix, Option<Vec<f64>>),
    k: (Matrix, Option<Vec<f64>>),
    v: (Matrix, Option<Vec<f64>>),
    o: Matrix,
    mlp_norm: Vec<f64>,
    gate: Matrix,
    up: Matrix,
    down: Matrix,
}

struct Reference {
    embedding: Matrix,
    layers: Vec<Layer>,
    final_norm: Vec<f64>,
    head: Matrix,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    theta: f64,
    eps: f64,
}

/// Where a skipped layer's K/V come from.
#[derive(Clone, Copy, PartialEq)]
enum Propagation {
    /// CALM: the exit layer's state.
    ExitState,
    /// Wrong on purpose (negative control): the token embedding.
    Embedding,
}

fn matrix(w: &HashMap<String, candle_core::Tensor>, name: &str) -> Matrix {
    w[name]
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn vector(w: &HashMap<String, candle_core::Tensor>, name: &str) -> Option<Vec<f64>> {
    w.get(name).map(|t| {
        t.to_dtype(candle_core::DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap()
    })
}

fn matvec(m: &Matrix, x: &[f64]) -> Vec<f64> {
    m.iter()
        .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

fn linear(layer: &(Matrix, Option<Vec<f64>>), x: &[f64]) -> Vec<f64> {
    let mut y = matvec(&layer.0, x);
    if let Some(b) = &layer.1 {
        y.iter_mut().zip(b).for_each(|(y, b)| *y += b);
    }
    y
}

fn rms_norm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let mean = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let scale = 1.0 / (mean + eps).sqrt();
    x.iter().zip(w).map(|(v, w)| v * scale * w).collect()
}

fn argmax(x: &[f64]) -> u32 {
    let mut best = 0;
    for i in 1..x.len() {
        if x[i] > x[best] {
            best = i;
        }
    }
    best as u32
}

impl Reference {
    fn load(name: &str) -> Self {
        Self::load_dir(&llama_fixture(name))
    }

    fn load_dir(dir: &std::path::Path) -> Self {
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let w =
            candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
        let layers = (0..config["num_hidden_layers"].as_u64().unwrap() as usize)
            .map(|i| {
                let p = format!("model.layers.{i}");
                let proj = |n: &str| {
                    (
                        matrix(&w, &format!("{p}.self_attn.{n}_proj.weight")),
                        vector(&w, &format!("{p}.self_attn.{n}_proj.bias")),
                    )
                };
                Layer {
                    attention_norm: vector(&w, &format!("{p}.input_layernorm.weight")).unwrap(),
                    q: proj("q"),
                    k: proj("k"),
                    v: proj("v"),
                    o: matrix(&w, &format!("{p}.self_attn.o_proj.weight")),
                    mlp_norm: vector(&w, &format!("{p}.post_attention_layernorm.weight")).unwrap(),
                    gate: matrix(&w, &format!("{p}.mlp.gate_proj.weight")),
                    up: matrix(&w, &format!("{p}.mlp.up_proj.weight")),
                    down: matrix(&w, &format!("{p}.mlp.down_proj.weight")),
                }
            })
            .collect();
        let embedding = matrix(&w, "model.embed_tokens.weight");
        let head = if w.contains_key("lm_head.weight") {
            matrix(&w, "lm_head.weight")
        } else {
            embedding.clone()
        };
        let heads = config["num_attention_heads"].as_u64().unwrap() as usize;
        Reference {
            embedding,
            layers,
            final_norm: vector(&w, "model.norm.weight").unwrap(),
            head,
            heads,
            kv_heads: config["num_key_value_heads"].as_u64().unwrap() as usize,
            head_dim: config["head_dim"].as_u64().map_or(
                config["hidden_size"].as_u64().unwrap() as usize / heads,
                |d| d as usize,
            ),
            theta: config["rope_theta"].as_f64().unwrap(),
            eps: config["rms_norm_eps"].as_f64().unwrap(),
        }
    }

    /// rotate_half rotation of each head of `x` at `position`.
    fn rotate(&self, x: &[f64], position: usize) -> Vec<f64> {
        let d = self.head_dim;
        let mut out = x.to_vec();
        for head in 0..x.len() / d {
            for i in 0..d / 2 {
                let angle = position as f64 / self.theta.powf(2.0 * i as f64 / d as f64);
                let (a, b) = (x[head * d + i], x[head * d + i + d / 2]);
                out[head * d + i] = a * angle.cos() - b * angle.sin();
                out[head * d + i + d / 2] = b * angle.cos() + a * angle.sin();
            }
        }
        out
    }

    fn logits(&self, h: &[f64]) -> Vec<f64> {
        matvec(&self.head, &rms_norm(h, &self.final_norm, self.eps))
    }

    /// Recompute the whole sequence without a cache. Position p ≥ `prompt_len` runs layers
    /// 1..=exits[p − prompt_len + 1] only; deeper layers take their K/V from the propagated
    /// state. Returns the token predicted at the last position.
    fn next_token(
        &self,
        tokens: &[u32],
        prompt_len: usize,
        exits: &[usize],
        rule: Propagation,
    ) -> u32 {
        let t = tokens.len();
        let d = self.head_dim;
        let groups = self.heads / self.kv_heads;
        let embedded: Vec<Vec<f64>> = tokens
            .iter()
            .map(|&id| self.embedding[id as usize].clone())
            .collect();
        let mut states = embedded.clone();
        let mut exit_states = vec![None; t];
        for (i, layer) in self.layers.iter().enumerate() {
            let exit_at = |p: usize| exits[p + 1 - prompt_len];
            let runs = |p: usize| p < prompt_len || i < exit_at(p);
            let kv_input: Vec<Vec<f64>> = (0..t)
                .map(|p| match (runs(p), rule) {
                    (true, _) => states[p].clone(),
                    (false, Propagation::ExitState) => exit_states[p].clone().unwrap(),
                    (false, Propagation::Embedding) => embedded[p].clone(),
                })
                .collect();
            let keys: Vec<Vec<f64>> = (0..t)
                .map(|p| {
                    self.rotate(
                        &linear(
                            &layer.k,
                            &rms_norm(&kv_input[p], &layer.attention_norm, self.eps),
                        ),
                        p,
                    )
                })
                .collect();
            let values: Vec<Vec<f64>> = (0..t)
                .map(|p| {
                    linear(
                        &layer.v,
                        &rms_norm(&kv_input[p], &layer.attention_norm, self.eps),
                    )
                })
                .collect();
            let mut next = states.clone();
            for p in 0..t {
                if !runs(p) {
                    continue;
                }
                let h = rms_norm(&states[p], &layer.attention_norm, self.eps);
                let q = self.rotate(&linear(&layer.q, &h), p);
                let mut context = vec![0.0; self.heads * d];
                for head in 0..self.heads {
                    let kv = head / groups;
                    let scores: Vec<f64> = (0..=p)
                        .map(|s| {
                            (0..d)
                                .map(|c| q[head * d + c] * keys[s][kv * d + c])
                                .sum::<f64>()
                                / (d as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = exp.iter().sum();
                    for s in 0..=p {
                        for c in 0..d {
                            context[head * d + c] += exp[s] / sum * values[s][kv * d + c];
                        }
                    }
                }
                let attended: Vec<f64> = matvec(&layer.o, &context);
                let x: Vec<f64> = states[p]
                    .iter()
                    .zip(&attended)
                    .map(|(a, b)| a + b)
                    .collect();
                let h = rms_norm(&x, &layer.mlp_norm, self.eps);
                let gate = matvec(&layer.gate, &h);
                let up = matvec(&layer.up, &h);
                let act: Vec<f64> = gate
                    .iter()
                    .zip(&up)
                    .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                    .collect();
                let out = matvec(&layer.down, &act);
                next[p] = x.iter().zip(&out).map(|(a, b)| a + b).collect();
                if p >= prompt_len && i + 1 == exit_at(p) {
                    exit_states[p] = Some(next[p].clone());
                }
            }
            states = next;
        }
        let last = t - 1;
        if last < prompt_len {
            argmax(&self.logits(&states[last]))
        } else {
            argmax(&self.logits(exit_states[last].as_ref().unwrap()))
        }
    }

    /// Tokens with the exit layer `schedule[k]` for output token k (k = 0 is the prefill's).
    fn generate(&self, prompt: &[u32], schedule: &[usize], rule: Propagation) -> Vec<u32> {
        let mut tokens = prompt.to_vec();
        for _ in 0..schedule.len() {
            let next = self.next_token(&tokens, prompt.len(), schedule, rule);
            tokens.push(next);
        }
        tokens[prompt.len()..].to_vec()
    }
}

/// Decode `prompt` with a threshold rule (τ 0), assert the tokens equal the reference
/// decoder's on the same exit schedule, and return whether the exit layers varied and whether
/// the negative control (propagating the embedding instead of the exit state) differs.
fn threshold_exits_match(
    checkpoint: &Checkpoint,
    reference: &Reference,
    prompt: &[u32],
    (measure, lambda): (Measure, f64),
    max_new_tokens: usize,
) -> (bool, bool) {
    let options = GenerationOptions {
        max_new_tokens,
        policy: ExitPolicy::Threshold {
            measure,
            lambda,
            tau: 0.0,
            min_exit: 1,
        },
        record_all_layers: false,
    };
    let out = generate(&checkpoint.model, &[prompt.to_vec()], &options).unwrap();
    let layers = out[0].exit_layers();
    let varied = layers[1..]
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        > 1;
    let expected = reference.generate(prompt, &layers, Propagation::ExitState);
    assert_eq!(
        out[0].tokens, expected,
        "{measure:?} λ {lambda}: exits {layers:?}"
    );
    let wrong = reference.generate(prompt, &layers, Propagation::Embedding);
    (varied, wrong != out[0].tokens)
}

#[test]
fn forced_exits_match_a_cache_free_reference() {
    let mut control_differs = false;
    let mut varied = false;
    for name in ["llama-gqa-tied", "qwen2-bias"] {
        let checkpoint = Checkpoint::load(&llama_fixture(name), &Device::Cpu, DType::F32).unwrap();
        let reference = Reference::load(name);
        let depth = checkpoint.model.num_decoder_layers();
        let prompt = checkpoint.encode("The quick fox jumps").unwrap();
        for exit in 1..=depth {
            let options = GenerationOptions {
                max_new_tokens: 8,
                policy: ExitPolicy::Fixed(exit),
                record_all_layers: false,
            };
            let out = generate(&checkpoint.model, std::slice::from_ref(&prompt), &options).unwrap();
            let layers = out[0].exit_layers();
            assert_eq!(layers[0], depth, "the prefill's token is the full model's");
            assert!(layers[1..].iter().all(|&l| l == exit), "{layers:?}");
            let expected = reference.generate(&prompt, &layers, Propagation::ExitState);
            assert_eq!(
                out[0].tokens, expected,
                "{name}: forced exit at layer {exit}"
            );
        }
        // Exits that vary from token to token: later tokens read the propagated K/V.
        for lambda in [0.05, 0.1, 0.2, 0.4] {
            let (v, c) = threshold_exits_match(
                &checkpoint,
                &reference,
                &prompt,
                (Measure::SoftmaxMax, lambda),
                10,
            );
            varied |= v;
            control_differs |= c;
        }
    }
    // Negative control: propagating the wrong state changes some output, so the comparison
    // above would catch an engine that did so.
    assert!(varied, "no schedule varied its exit layers");
    assert!(control_differs);
}

/// The decoder-only default (`datasets/bible/model-llama`, trained by `calm train --architecture
/// llama`): threshold exits whose layers vary token to token equal the reference decoder's, and
/// propagating the wrong state would show.
#[test]
fn bible_llama_threshold_exits_match_a_cache_free_reference() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/bible/model-llama");
    let checkpoint = Checkpoint::load(&dir, &Device::Cpu, DType::F32).unwrap();
    let reference = Reference::load_dir(&dir);
    let prompt = checkpoint
        .encode("modernize: And God said, Let there be light: and there was light.")
        .unwrap();
    let (mut varied, mut control_differs) = (false, false);
    for rule in [
        (Measure::SoftmaxMax, 0.9),
        (Measure::SoftmaxMax, 0.6),
        (Measure::SoftmaxDiff, 0.5),
        (Measure::State, 0.95),
    ] {
        let (v, c) = threshold_exits_match(&checkpoint, &reference, &prompt, rule, 14);
        varied |= v;
        control_differs |= c;
    }
    assert!(varied, "no threshold varied the exit layers");
    assert!(control_differs);
}

#[test]
fn per_row_exits_in_a_batch_equal_batch_one() {
    let checkpoint = Checkpoint::load(
        &llama_fixture("llama-untied-rope"),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    // Prompts of one length share a batch; the rows exit at different layers.
    let prompts: Vec<Vec<u32>> = [
        "The quick fox",
        "A lazy dog",
        "The red hen",
        "One small cat",
    ]
    .iter()
    .map(|t| checkpoint.encode(t).unwrap())
    .collect();
    for measure in [Measure::SoftmaxMax, Measure::State] {
        let options = GenerationOptions {
            max_new_tokens: 10,
            policy: ExitPolicy::Threshold {
                measure,
                lambda: if measure == Measure::State { 0.9 } else { 0.3 },
                tau: 4.0,
                min_exit: 1,
            },
            record_all_layers: false,
        };
        let batched = generate(&checkpoint.model, &prompts, &options).unwrap();
        let mut layers_seen = std::collections::BTreeSet::new();
        for (prompt, row) in prompts.iter().zip(&batched) {
            let alone =
                generate(&checkpoint.model, std::slice::from_ref(prompt), &options).unwrap();
            assert_eq!(alone[0].tokens, row.tokens);
            assert_eq!(alone[0].exit_layers(), row.exit_layers());
            layers_seen.extend(row.exit_layers());
        }
        assert!(
            layers_seen.len() > 2,
            "{measure:?}: exits at {layers_seen:?} only"
        );
    }
}
