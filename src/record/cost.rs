//! A deterministic cost model of early-exit decoding, from the model's shapes alone.
//!
//! Selection (`calibrate::select`) must prefer the configuration that is *fastest*, not the one
//! with the fewest layers: an exit check is not free (at vocabulary 4,000 a softmax check costs
//! most of a decoder layer on this CPU), so a configuration that saves 0.3 layers with a softmax
//! check at every layer is slower than the full model. Measured timings would make reruns differ;
//! this model is a pure function of the shapes, so the same records give the same selection.
//!
//! Per generated token, for a configuration with token-weighted mean exit layer m of L layers:
//!   cost = token + m·(layer + check) + (L − m)·propagate + head·[measure is not softmax]
//! plus `example` (the encoder or prompt prefill) amortised over the tokens an example generates.
//! A softmax check's logits give the token at the exit layer, so softmax measures pay no extra
//! head. The model counts a check at every layer run (m checks); the decoder makes none at the
//! top layer, so this overstates the check cost by at most one check per token that reaches
//! layer L — a conservative error for early exit. The full model ("never exit") costs
//! token + L·layer + head.
//!
//! Units: microseconds of one batch-1 decoder on one core of the reference CPU, estimated as
//! FLOPs / [`FLOPS_PER_MICROSECOND`] + kernels · [`MICROSECONDS_PER_KERNEL`] (see
//! `model::cost`). The constants were fitted once, on 2026-12-01, to the batch-1 timings of the
//! 2026-11-30 main-job sweep on this project's 2-core machine kind (31 configurations, Spearman
//! ρ 0.93 between the model and the measured seconds per token). They are constants, not
//! measurements of the machine at hand; each report gives the rank correlation of its own run.
//! Only ratios matter for selection.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Matrix–vector throughput of one core at batch 1 (7 GFLOP/s: weights streamed from memory for
/// one row), per microsecond.
pub const FLOPS_PER_MICROSECOND: f64 = 7_000.0;
/// Matrix–matrix throughput of one core on a whole sequence (the encoder or a prompt prefill:
/// 100 GFLOP/s), per microsecond.
pub const PREFILL_FLOPS_PER_MICROSECOND: f64 = 100_000.0;
/// Fixed cost of one tensor operation (allocation, dispatch, a pass over small data).
pub const MICROSECONDS_PER_KERNEL: f64 = 4.0;

/// Unit costs of the parts of one decoding step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    /// Decoder depth L.
    pub num_layers: u32,
    /// What the costs are measured in.
    pub unit: String,
    /// One decoder layer for one token (self-attention, cross-attention, feed-forward).
    pub layer: f64,
    /// K/V of one skipped layer from the exit state (its norm and K/V projections).
    pub propagate: f64,
    /// Final norm and LM head with argmax: the token of the full model or a non-softmax exit.
    pub head: f64,
    /// One exit check, by measure name (softmax: norm, head, softmax, top-2; state: a cosine;
    /// classifier: a dot product and a sigmoid). Measures not named cost 0.
    pub checks: BTreeMap<String, f64>,
    /// Per token, whatever the configuration (embedding lookup, cache bookkeeping).
    pub token: f64,
    /// Per example, whatever the configuration (encoder or prompt prefill).
    pub example: f64,
}

/// Whether a measure's check computes the exit head's logits (and so also gives the token).
pub fn check_gives_token(measure: &str) -> bool {
    measure.starts_with("softmax")
}

impl CostModel {
    /// Cost = decoder layers run and nothing else: selection by mean layers. For records made
    /// without a model and without `--cost-model`.
    pub fn layers_only(num_layers: u32) -> Self {
        CostModel {
            num_layers,
            unit: "decoder layers".to_string(),
            layer: 1.0,
            propagate: 0.0,
            head: 0.0,
            checks: BTreeMap::new(),
            token: 0.0,
            example: 0.0,
        }
    }

    fn check(&self, measure: &str) -> f64 {
        self.checks.get(measure).copied().unwrap_or(0.0)
    }

    /// Decoder cost per token of `measure` at token-weighted mean exit layer `mean_layers`.
    pub fn token_cost(&self, measure: &str, mean_layers: f64) -> f64 {
        let depth = self.num_layers as f64;
        let m = mean_layers.clamp(0.0, depth);
        let head = if check_gives_token(measure) {
            0.0
        } else {
            self.head
        };
        self.token + m * (self.layer + self.check(measure)) + (depth - m) * self.propagate + head
    }

    /// Decoder cost per token of the full model.
    pub fn full_token_cost(&self) -> f64 {
        self.token + self.num_layers as f64 * self.layer + self.head
    }

    /// The per-example cost spread over `tokens_per_example` generated tokens (0 tokens: all of it).
    fn amortised_example(&self, tokens_per_example: f64) -> f64 {
        self.example / tokens_per_example.max(1.0)
    }

    /// Cost per generated token, the per-example part included.
    pub fn cost_per_token(&self, measure: &str, mean_layers: f64, tokens_per_example: f64) -> f64 {
        self.amortised_example(tokens_per_example) + self.token_cost(measure, mean_layers)
    }

    /// The full model's cost per generated token for outputs of the same length.
    pub fn full_cost_per_token(&self, tokens_per_example: f64) -> f64 {
        self.amortised_example(tokens_per_example) + self.full_token_cost()
    }

    /// Full cost over the configuration's cost (> 1: faster than the full model).
    pub fn speedup(&self, measure: &str, mean_layers: f64, tokens_per_example: f64) -> f64 {
        self.full_cost_per_token(tokens_per_example)
            / self
                .cost_per_token(measure, mean_layers, tokens_per_example)
                .max(f64::MIN_POSITIVE)
    }

    /// Checks that every cost is finite and ≥ 0 and the depth matches the records'.
    pub fn validate(&self, num_layers: u32) -> Result<(), String> {
        if self.num_layers != num_layers {
            return Err(format!(
                "the cost model is for {} decoder layers but the records have {num_layers}",
                self.num_layers
            ));
        }
        let parts = [
            ("layer", self.layer),
            ("propagate", self.propagate),
            ("head", self.head),
            ("token", self.token),
            ("example", self.example),
        ];
        for (name, value) in parts
            .into_iter()
            .chain(self.checks.iter().map(|(k, &v)| (k.as_str(), v)))
        {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!(
                    "cost `{name}` is {value}, expected a finite number ≥ 0"
                ));
            }
        }
        if self.layer <= 0.0 {
            return Err("cost `layer` must be > 0".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> CostModel {
        CostModel {
            num_layers: 8,
            unit: "µs".into(),
            layer: 200.0,
            propagate: 30.0,
            head: 150.0,
            checks: [
                ("softmax-diff".to_string(), 150.0),
                ("state".to_string(), 15.0),
            ]
            .into_iter()
            .collect(),
            token: 10.0,
            example: 270.0,
        }
    }

    #[test]
    fn hand_computed_costs() {
        let m = model();
        // Full: 10 + 8·200 + 150 = 1760 per token; with 270/27 = 10 per token amortised.
        assert_eq!(m.full_token_cost(), 1760.0);
        assert_eq!(m.full_cost_per_token(27.0), 1770.0);
        // softmax at 4 layers: 10 + 4·350 + 4·30 = 1530 (no extra head).
        assert_eq!(m.token_cost("softmax-diff", 4.0), 1530.0);
        // state at 4 layers: 10 + 4·215 + 4·30 + 150 = 1140.
        assert_eq!(m.token_cost("state", 4.0), 1140.0);
        // A softmax configuration that saves 0.3 layers is slower than the full model.
        assert!(m.speedup("softmax-diff", 7.7, 27.0) < 1.0);
        assert!(m.speedup("state", 4.0, 27.0) > 1.5);
        // Layers only ranks by layers.
        let layers = CostModel::layers_only(8);
        assert_eq!(layers.token_cost("softmax-diff", 3.5), 3.5);
        assert_eq!(layers.speedup("state", 4.0, 27.0), 2.0);
    }

    #[test]
    fn validation_names_the_field() {
        let mut m = model();
        assert!(m.validate(8).is_ok());
        assert!(m.validate(6).unwrap_err().contains("8 decoder layers"));
        m.checks.insert("classifier".into(), f64::NAN);
        assert!(m.validate(8).unwrap_err().contains("classifier"));
    }
}
