//! One certified configuration replayed over labelled examples: its per-example losses, mean
//! layers and wall-clock speed against the full model. The CI gate (`calm check`) and the
//! held-out benchmark of `calm calibrate` both use it.

use super::sweep::{sweep, Consistency, SweepExample, SweepOptions};
use crate::data::Example;
use crate::model::{Checkpoint, Measure};
pub use crate::record::run::ConfigurationRun;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// A (measure, τ, λ) early-exit configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Configuration {
    pub measure: Measure,
    pub tau: f64,
    pub lambda: f64,
}

/// Tokenize labelled examples for the model; errors name the file and the example.
pub fn encode_examples(
    checkpoint: &Checkpoint,
    examples: &[Example],
    path: &Path,
) -> Result<Vec<SweepExample>> {
    let mut seen = std::collections::HashSet::new();
    examples
        .iter()
        .map(|example| {
            if !seen.insert(example.id.as_str()) {
                bail!("{}: duplicate example id {:?}", path.display(), example.id);
            }
            Ok(SweepExample {
                id: example.id.clone(),
                input_ids: checkpoint
                    .encode(&example.input)
                    .with_context(|| format!("{}: example {:?}", path.display(), example.id))?,
                reference: example.reference.clone(),
            })
        })
        .collect()
}

/// Decode `examples` with the full model and with `configuration` (timed, after an untimed
/// warm-up pass) and score the early outputs with the same consistency loss as calibration.
#[allow(clippy::too_many_arguments)]
pub fn replay_configuration(
    checkpoint: &Checkpoint,
    examples: &[SweepExample],
    configuration: Configuration,
    consistency: Consistency,
    metric: &(dyn Fn(&str, &str) -> f64 + Sync),
    max_new_tokens: usize,
    jobs: usize,
) -> Result<ConfigurationRun> {
    if examples.is_empty() {
        bail!("no examples to replay the configuration on");
    }
    let options = SweepOptions {
        measures: vec![configuration.measure],
        taus: vec![configuration.tau],
        lambdas: vec![vec![configuration.lambda]],
        consistency,
        max_new_tokens,
        jobs,
        // The benchmark and the gate time decoding at batch 1, as the paper measures.
        batch_size: 1,
        traces: false,
    };
    let result = sweep(
        checkpoint,
        examples,
        &options,
        metric,
        &mut |_| false,
        &mut |_| {},
    )?;
    let rows = &result.records.rows;
    let losses: Vec<f64> = rows.iter().map(|r| r.loss).collect();
    let tokens: f64 = rows.iter().map(|r| r.tokens as f64).sum();
    let weighted: f64 = rows.iter().map(|r| r.layers * r.tokens as f64).sum();
    let mean_layers = if tokens > 0.0 {
        weighted / tokens
    } else {
        checkpoint.model.num_decoder_layers() as f64
    };
    let full_tokens_per_second = result.full_tokens as f64 / result.full_seconds.max(1e-9);
    let tokens_per_second = result.early_tokens as f64 / result.early_seconds.max(1e-9);
    Ok(ConfigurationRun {
        examples: examples.len(),
        risk: losses.iter().sum::<f64>() / losses.len() as f64,
        losses,
        example_layers: rows.iter().map(|r| r.layers).collect(),
        example_tokens: rows.iter().map(|r| r.tokens).collect(),
        mean_layers,
        full_tokens: result.full_tokens,
        full_seconds: result.full_seconds,
        tokens: result.early_tokens,
        seconds: result.early_seconds,
        full_tokens_per_second,
        tokens_per_second,
        wall_clock_speedup: if full_tokens_per_second > 0.0 {
            tokens_per_second / full_tokens_per_second
        } else {
            1.0
        },
        jobs,
    })
}
