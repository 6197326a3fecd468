//! Early-exit decoding against an independent reference: a cache-free decoder written here from
//! the raw safetensors weights, which recomputes every key and value from stored per-layer input
//! states at every step, with skipped layers' inputs set to the exit layer's state (CALM §3.2).

use calm::model::layers::relative_position_bucket;
use calm::model::{generate, Checkpoint, ExitPolicy, GenerationOptions, Measure};
use candle_core::{DType, Device, Tensor, D};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/t5")
        .join(name)
}

struct Reference {
    w: HashMap<String, Tensor>,
    heads: usize,
    d_kv: usize,
    eps: f64,
    gated: bool,
    buckets: usize,
    max_distance: usize,
    depth: usize,
    head_scale: Option<f64>,
}

impl Reference {
    fn load(checkpoint: &Checkpoint, dir: &Path) -> Self {
        let config = &checkpoint.model.as_t5().unwrap().config;
        Reference {
            w: candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap(),
            heads: config.num_heads,
            d_kv: config.d_kv,
            eps: config.layer_norm_epsilon,
            gated: config.feed_forward_proj.starts_with("gated"),
            buckets: config.relative_attention_num_buckets,
            max_distance: config.relative_attention_max_distance,
            depth: config.decoder_layers(),
            head_scale: config
                .scales_decoder_output()
                .then(|| (config.d_model as f64).powf(-0.5)),
        }
    }

    fn get(&self, name: &str) -> &Tensor {
        self.w
            .get(name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }

    /// x · rsqrt(mean(x²) + ε) · w for rows of x [n, D], composed from elementary ops.
    fn rms(&self, x: &Tensor, name: &str) -> Tensor {
        let variance = x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let scale = (variance + self.eps)
            .unwrap()
            .sqrt()
            .unwrap()
            .recip()
            .unwrap();
        x.broadcast_mul(&scale)
            .unwrap()
            .broadcast_mul(self.get(name))
            .unwrap()
    }

    fn linear(&self, x: &Tensor, name: &str) -> Tensor {
        x.matmul(&self.get(name).t().unwrap()).unwrap()
    }

    fn feed_forward(&self, x: &Tensor, prefix: &str) -> Tensor {
        let hidden = if self.gated {
            let gate = self
                .linear(x, &format!("{prefix}.wi_0.weight"))
                .gelu()
                .unwrap();
            (gate * self.linear(x, &format!("{prefix}.wi_1.weight"))).unwrap()
        } else {
            self.linear(x, &format!("{prefix}.wi.weight"))
                .relu()
                .unwrap()
        };
        self.linear(&hidden, &format!("{prefix}.wo.weight"))
    }

    /// Attention of queries from `q_in` [Tq, D] over `kv_in` [Tk, D] with an optional bias [H, Tq, Tk].
    fn attention(
        &self,
        q_in: &Tensor,
        kv_in: &Tensor,
        prefix: &str,
        bias: Option<&Tensor>,
    ) -> Tensor {
        let split = |x: Tensor| {
            let n = x.dim(0).unwrap();
            x.reshape((n, self.heads, self.d_kv))
                .unwrap()
                .transpose(0, 1)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let q = split(self.linear(q_in, &format!("{prefix}.q.weight")));
        let k = split(self.linear(kv_in, &format!("{prefix}.k.weight")));
        let v = split(self.linear(kv_in, &format!("{prefix}.v.weight")));
        let mut scores = q
            .matmul(&k.transpose(1, 2).unwrap().contiguous().unwrap())
            .unwrap();
        if let Some(bias) = bias {
            scores = (scores + bias).unwrap();
        }
        let max = scores.max_keepdim(D::Minus1).unwrap();
        let exp = scores.broadcast_sub(&max).unwrap().exp().unwrap();
        let weights = exp
            .broadcast_div(&exp.sum_keepdim(D::Minus1).unwrap())
            .unwrap();
        let context = weights
            .matmul(&v)
            .unwrap()
            .transpose(0, 1)
            .unwrap()
            .contiguous()
            .unwrap();
        let n = context.dim(0).unwrap();
        self.linear(
            &context.reshape((n, self.heads * self.d_kv)).unwrap(),
            &format!("{prefix}.o.weight"),
        )
    }

    /// Causal bias [H, 1, t + 1] for the query at position t.
    fn self_bias(&self, t: usize) -> Tensor {
        let table =
            self.get("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
        let rows: Vec<Tensor> = (0..=t)
            .map(|key| {
                let bucket = relative_position_bucket(
                    key as i64 - t as i64,
                    false,
                    self.buckets,
                    self.max_distance,
                );
                table.get(bucket as usize).unwrap()
            })
            .collect();
        Tensor::stack(&rows, 1).unwrap().unsqueeze(1).unwrap()
    }

    /// The output state of decoder layer `layer` for input `x` at position t, attending to the
    /// layer's past inputs `past` (this position's included).
    fn layer_step(
        &self,
        layer: usize,
        x: &Tensor,
        past: &Tensor,
        encoder_output: &Tensor,
        t: usize,
    ) -> Tensor {
        let p = format!("decoder.block.{layer}");
        let h = self.rms(x, &format!("{p}.layer.0.layer_norm.weight"));
        let keys = self.rms(past, &format!("{p}.layer.0.layer_norm.weight"));
        let x = (x + self.attention(
            &h,
            &keys,
            &format!("{p}.layer.0.SelfAttention"),
            Some(&self.self_bias(t)),
        ))
        .unwrap();
        let h = self.rms(&x, &format!("{p}.layer.1.layer_norm.weight"));
        let x = (&x
            + self.attention(
                &h,
                encoder_output,
                &format!("{p}.layer.1.EncDecAttention"),
                None,
            ))
        .unwrap();
        let h = self.rms(&x, &format!("{p}.layer.2.layer_norm.weight"));
        (&x + self.feed_forward(&h, &format!("{p}.layer.2.DenseReluDense"))).unwrap()
    }

    /// The exit head's argmax of state `x` [1, D].
    fn head_argmax(&self, x: &Tensor) -> u32 {
        let embeddings = self.get("shared.weight");
        let lm_head = self.w.get("lm_head.weight").unwrap_or(embeddings);
        let mut normed = self.rms(x, "decoder.final_layer_norm.weight");
        if let Some(scale) = self.head_scale {
            normed = (normed * scale).unwrap();
        }
        let logits = normed
            .matmul(&lm_head.t().unwrap())
            .unwrap()
            .squeeze(0)
            .unwrap();
        logits.argmax(0).unwrap().to_scalar::<u32>().unwrap()
    }

    /// CALM's oracle, cache-free: at each token run every layer on the past inputs, exit at the
    /// first layer whose argmax equals the top layer's, and let the layers above see the exit
    /// state (state propagation). Returns the tokens and their exit layers.
    fn decode_oracle(
        &self,
        encoder_output: &Tensor,
        start: u32,
        eos: u32,
        max_new: usize,
    ) -> (Vec<u32>, Vec<usize>) {
        let embeddings = self.get("shared.weight");
        let mut inputs: Vec<Vec<Tensor>> = vec![Vec::new(); self.depth];
        let mut token = start;
        let (mut out, mut exits) = (Vec::new(), Vec::new());
        for t in 0..max_new {
            let embedded = embeddings
                .get(token as usize)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            // The probe: every layer, reading but not writing the past.
            let mut layer_inputs = vec![embedded];
            let mut argmax = Vec::new();
            for layer in 0..self.depth {
                let x = layer_inputs[layer].clone();
                let mut past = inputs[layer].clone();
                past.push(x.clone());
                let past = Tensor::cat(&past, 0).unwrap();
                let out = self.layer_step(layer, &x, &past, encoder_output, t);
                argmax.push(self.head_argmax(&out));
                layer_inputs.push(out);
            }
            let top = argmax[self.depth - 1];
            let exit = argmax.iter().position(|&a| a == top).unwrap() + 1;
            for (layer, past) in inputs.iter_mut().enumerate() {
                // Layers up to the exit saw their own input; the skipped ones see the exit state.
                past.push(layer_inputs[layer.min(exit)].clone());
            }
            token = top;
            out.push(token);
            exits.push(exit);
            if token == eos {
                break;
            }
        }
        (out, exits)
    }

    /// Greedy decoding exiting at layer `exit` for every token, with copied states above it.
    fn decode(
        &self,
        encoder_output: &Tensor,
        start: u32,
        eos: u32,
        exit: usize,
        max_new: usize,
    ) -> Vec<u32> {
        let embeddings = self.get("shared.weight");
        // inputs[i][s]: the input state of decoder layer i at position s, [1, D].
        let mut inputs: Vec<Vec<Tensor>> = vec![Vec::new(); self.depth];
        let mut token = start;
        let mut out = Vec::new();
        for t in 0..max_new {
            let mut x = embeddings
                .get(token as usize)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            for (layer, layer_inputs) in inputs.iter_mut().enumerate() {
                layer_inputs.push(x.clone());
                if layer >= exit {
                    continue; // skipped: the state passes through unchanged
                }
                let past = Tensor::cat(layer_inputs, 0).unwrap();
                x = self.layer_step(layer, &x, &past, encoder_output, t);
            }
            token = self.head_argmax(&x);
            out.push(token);
            if token == eos {
                break;
            }
        }
        out
    }
}

const INPUTS: [&str; 3] = [
    "the cat sat on the mat",
    "a dog runs",
    "the quick fox jumps over the lazy dog while the bird sings in the tree near the house",
];

fn check_forced_exits(name: &str) {
    let dir = fixture_dir(name);
    let checkpoint = Checkpoint::load(&dir, &Device::Cpu, DType::F32).unwrap();
    let reference = Reference::load(&checkpoint, &dir);
    let model = &checkpoint.model;
    let depth = model.num_decoder_layers();
    for input in INPUTS {
        let ids = checkpoint.encode(input).unwrap();
        let encoder_output = model
            .as_t5()
            .unwrap()
            .encode(std::slice::from_ref(&ids))
            .unwrap()
            .hidden
            .squeeze(0)
            .unwrap();
        for exit in 1..=depth {
            let want = reference.decode(
                &encoder_output,
                model.as_t5().unwrap().config.decoder_start(),
                model.as_t5().unwrap().config.eos(),
                exit,
                10,
            );
            let options = GenerationOptions {
                max_new_tokens: 10,
                policy: ExitPolicy::Fixed(exit),
                record_all_layers: false,
            };
            let got = &generate(model, std::slice::from_ref(&ids), &options).unwrap()[0];
            assert_eq!(
                got.tokens, want,
                "{name} {input:?}: forced exit at layer {exit}"
            );
            assert!(got.exit_layers().iter().all(|&l| l == exit));

            // The same exit reached through the threshold rule: the state measure with λ = 0 and
            // min_exit = j exits at layer j whenever cos(h_j, h_{j−1}) ≥ λ_t = 0.1.
            if exit >= 2 && exit < depth {
                let options = GenerationOptions {
                    max_new_tokens: 10,
                    policy: ExitPolicy::Threshold {
                        measure: Measure::State,
                        lambda: 0.0,
                        tau: 0.0,
                        min_exit: exit,
                    },
                    record_all_layers: false,
                };
                let by_rule = &generate(model, std::slice::from_ref(&ids), &options).unwrap()[0];
                if by_rule.exit_layers().iter().all(|&l| l == exit) {
                    assert_eq!(by_rule.tokens, want);
                } else {
                    panic!(
                        "{name}: the state rule did not exit at {exit}: {:?}",
                        by_rule.exit_layers()
                    );
                }
            }
        }
        // Never exit is the full model.
        let never = GenerationOptions {
            max_new_tokens: 10,
            policy: ExitPolicy::Never,
            record_all_layers: false,
        };
        let full = GenerationOptions {
            max_new_tokens: 10,
            policy: ExitPolicy::Fixed(depth),
            record_all_layers: false,
        };
        assert_eq!(
            generate(model, std::slice::from_ref(&ids), &never).unwrap()[0].tokens,
            generate(model, std::slice::from_ref(&ids), &full).unwrap()[0].tokens
        );
    }
}

#[test]
fn forced_exits_match_the_truncated_and_propagated_reference() {
    check_forced_exits("gated");
    check_forced_exits("tied-relu");
}

#[test]
fn exits_are_decided_per_sequence_in_a_batch() {
    let checkpoint = Checkpoint::load(&fixture_dir("gated"), &Device::Cpu, DType::F32).unwrap();
    let model = &checkpoint.model;
    let inputs: Vec<Vec<u32>> = INPUTS
        .iter()
        .map(|t| checkpoint.encode(t).unwrap())
        .collect();
    for policy in [
        ExitPolicy::Oracle,
        ExitPolicy::Threshold {
            measure: Measure::SoftmaxMax,
            lambda: 0.0,
            tau: 0.0,
            min_exit: 1,
        },
        ExitPolicy::Threshold {
            measure: Measure::State,
            lambda: 0.9,
            tau: 2.0,
            min_exit: 1,
        },
    ] {
        let options = GenerationOptions {
            max_new_tokens: 12,
            policy,
            record_all_layers: false,
        };
        let batched = generate(model, &inputs, &options).unwrap();
        // Rows of the batch that exit at different layers at the same position: the exits are
        // per row, not a batch-wide minimum.
        let positions_with_different_exits = (0..12)
            .filter(|&t| {
                let layers: std::collections::BTreeSet<usize> = batched
                    .iter()
                    .filter_map(|g| g.exit_layers().get(t).copied())
                    .collect();
                layers.len() > 1
            })
            .count();
        // (On this fixture the two threshold rules happen to exit the rows of each position
        // together; the oracle does not.)
        if policy == ExitPolicy::Oracle {
            assert!(
                positions_with_different_exits > 0,
                "{policy:?}: every position's rows exited together"
            );
        }
        let mut distinct_exits = std::collections::BTreeSet::new();
        for (i, input) in inputs.iter().enumerate() {
            let single = &generate(model, std::slice::from_ref(input), &options).unwrap()[0];
            assert_eq!(batched[i].tokens, single.tokens, "{policy:?} row {i}");
            assert_eq!(
                batched[i].exit_layers(),
                single.exit_layers(),
                "{policy:?} row {i}"
            );
            distinct_exits.extend(single.exit_layers());
        }
        eprintln!("{policy:?}: exit layers used {distinct_exits:?}");
    }
}

#[test]
fn oracle_exits_where_the_layer_agrees_with_the_top() {
    // The engine's oracle (probe, then exit with propagation) against the cache-free reference
    // oracle above, computed from its own per-layer logits.
    for name in ["gated", "tied-relu"] {
        let dir = fixture_dir(name);
        let checkpoint = Checkpoint::load(&dir, &Device::Cpu, DType::F32).unwrap();
        let reference = Reference::load(&checkpoint, &dir);
        let model = &checkpoint.model;
        let options = GenerationOptions {
            max_new_tokens: 12,
            policy: ExitPolicy::Oracle,
            record_all_layers: true,
        };
        let mut exits_seen = std::collections::BTreeSet::new();
        for input in INPUTS {
            let ids = checkpoint.encode(input).unwrap();
            let encoder_output = model
                .as_t5()
                .unwrap()
                .encode(std::slice::from_ref(&ids))
                .unwrap()
                .hidden
                .squeeze(0)
                .unwrap();
            let (tokens, exits) = reference.decode_oracle(
                &encoder_output,
                model.as_t5().unwrap().config.decoder_start(),
                model.as_t5().unwrap().config.eos(),
                12,
            );
            let out = &generate(model, &[ids], &options).unwrap()[0];
            assert_eq!(out.tokens, tokens, "{name} {input:?}");
            assert_eq!(out.exit_layers(), exits, "{name} {input:?}");
            exits_seen.extend(exits);
        }
        // The test bites only if the oracle exits below the top somewhere.
        assert!(exits_seen.len() > 1, "{name}: oracle exits {exits_seen:?}");
    }
}

/// A copy of the gated fixture with an early-exit classifier (w = 0, bias b) added.
fn checkpoint_with_classifier(bias: f32) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("calm-classifier-{}-{bias}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let source = fixture_dir("gated");
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let mut tensors =
        candle_core::safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
    tensors.insert(
        "calm.exit_classifier.weight".into(),
        Tensor::zeros((1, 64), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    tensors.insert(
        "calm.exit_classifier.bias".into(),
        Tensor::new(&[bias], &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    dir
}

#[test]
fn the_exit_classifier_is_loaded_and_used() {
    let ids_of = |checkpoint: &Checkpoint| checkpoint.encode(INPUTS[0]).unwrap();
    // sigmoid(5) = 0.9933 clears λ_t ≤ 0.9·0.95 + 0.1 = 0.955: every token exits at layer 1.
    let confident =
        Checkpoint::load(&checkpoint_with_classifier(5.0), &Device::Cpu, DType::F32).unwrap();
    let policy = ExitPolicy::Threshold {
        measure: Measure::Classifier,
        lambda: 0.95,
        tau: 0.0,
        min_exit: 1,
    };
    let options = GenerationOptions {
        max_new_tokens: 8,
        policy,
        record_all_layers: true,
    };
    let out = &generate(&confident.model, &[ids_of(&confident)], &options).unwrap()[0];
    assert!(out.exit_layers().iter().all(|&l| l == 1));
    let conf = out.traces[0].confidences[0].unwrap();
    assert!((conf - 1.0 / (1.0 + (-5.0f32).exp())).abs() < 1e-6);
    let layer_one = GenerationOptions {
        max_new_tokens: 8,
        policy: ExitPolicy::Fixed(1),
        record_all_layers: false,
    };
    assert_eq!(
        out.tokens,
        generate(&confident.model, &[ids_of(&confident)], &layer_one).unwrap()[0].tokens
    );
    assert!(out.traces[0]
        .layers
        .as_ref()
        .unwrap()
        .iter()
        .all(|l| l.classifier.is_some()));
    // sigmoid(−5) never clears it: the full model.
    let unsure =
        Checkpoint::load(&checkpoint_with_classifier(-5.0), &Device::Cpu, DType::F32).unwrap();
    let out = &generate(&unsure.model, &[ids_of(&unsure)], &options).unwrap()[0];
    assert!(out.exit_layers().iter().all(|&l| l == 3));
}
