//! What a model run over labelled data produced, as data: the consistency rule, per-configuration
//! timings and a replayed configuration's measurements. `thresholds.json`'s run block holds them.

use serde::{Deserialize, Serialize};

/// How an early output is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    /// 1 − metric(early output, full output).
    Textual,
    /// max(0, metric(full output, reference) − metric(early output, reference)).
    Risk,
}

/// Wall-clock cost of decoding every example with one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigurationTiming {
    pub measure: String,
    pub tau: f64,
    pub lambda: f64,
    pub seconds: f64,
    pub tokens: usize,
}

/// What replaying one configuration measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigurationRun {
    pub examples: usize,
    /// Per-example consistency loss, in example order.
    #[serde(skip)]
    pub losses: Vec<f64>,
    /// Per-example mean decoder layers per token and generated tokens, in example order.
    #[serde(skip)]
    pub example_layers: Vec<f64>,
    #[serde(skip)]
    pub example_tokens: Vec<u32>,
    /// Mean loss over the examples.
    pub risk: f64,
    /// Decoder layers per generated token (token-weighted over all examples).
    pub mean_layers: f64,
    pub full_tokens: usize,
    pub full_seconds: f64,
    pub tokens: usize,
    pub seconds: f64,
    pub full_tokens_per_second: f64,
    pub tokens_per_second: f64,
    /// Selected tokens/s over full tokens/s.
    pub wall_clock_speedup: f64,
    /// Parallel decoders (one thread each) the speeds were measured with.
    pub jobs: usize,
}
