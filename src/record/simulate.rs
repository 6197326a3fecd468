//! Synthetic records with a CALM-like shape, for demos, benchmarks and tests of the calibrator
//! when no model has been run. Clearly synthetic: nothing here comes from a real model.
//!
//! Per (example, measure, τ) a latent uniform v decides the loss at every λ, so each example's loss
//! is monotone in λ as with real early exit: lower thresholds exit earlier and disagree more.
//! With the effective threshold θ = 0.9·λ + 0.1·e^{−τ/2} (Eq. 5 averaged over the output):
//! P(inconsistent) = min(1, (1−θ)^1.5 · (0.3 + 0.7·d) / q_m) and
//! layers = 1 + (L−1)·min(1, θ²·(0.6 + 0.8·d)), with d the example's difficulty and q_m the measure's quality.

use super::{RecordRow, Records, RowOrigin};
use crate::util::rng::Rng;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulationSpec {
    pub examples: usize,
    /// (name, quality in (0, 1]); higher quality means fewer inconsistencies at the same threshold.
    pub measures: Vec<(String, f64)>,
    pub taus: Vec<f64>,
    pub lambdas: Vec<f64>,
    pub num_layers: u32,
    /// 0/1 losses (risk consistency) when true, fractional losses (textual distance) otherwise.
    pub binary_loss: bool,
    pub seed: u64,
}

impl SimulationSpec {
    /// A grid of `candidates` configurations: 3 measures × 2 τ × ⌈candidates/6⌉ lambdas, trimmed.
    pub fn grid(examples: usize, lambdas_per_chain: usize, seed: u64) -> Self {
        let lambdas = (0..lambdas_per_chain)
            .map(|i| 1.0 - i as f64 / lambdas_per_chain as f64)
            .collect();
        SimulationSpec {
            examples,
            measures: vec![
                ("softmax-diff".to_string(), 1.0),
                ("classifier".to_string(), 0.8),
                ("state".to_string(), 0.5),
            ],
            taus: vec![0.0, 4.0],
            lambdas,
            num_layers: 8,
            binary_loss: true,
            seed,
        }
    }
}

/// Generate records for every (example, measure, τ, λ) of `spec`, deterministically from its seed.
pub fn simulate_records(spec: &SimulationSpec) -> Records {
    let mut rng = Rng::new(spec.seed);
    let examples: Vec<String> = (0..spec.examples).map(|i| format!("ex{i:06}")).collect();
    let measures: Vec<String> = spec.measures.iter().map(|(name, _)| name.clone()).collect();
    let mut rows = Vec::with_capacity(
        spec.examples * spec.measures.len() * spec.taus.len() * spec.lambdas.len(),
    );
    let depth = spec.num_layers as f64;
    for example in 0..spec.examples {
        let difficulty = rng.uniform();
        let tokens = 5 + rng.below(40) as u32;
        for (measure, &(_, quality)) in spec.measures.iter().enumerate() {
            for &tau in &spec.taus {
                let latent = rng.uniform();
                let severity = rng.uniform();
                for &lambda in &spec.lambdas {
                    let theta = (0.9 * lambda + 0.1 * (-tau / 2.0).exp()).clamp(0.0, 1.0);
                    let p_inconsistent =
                        ((1.0 - theta).powf(1.5) * (0.3 + 0.7 * difficulty) / quality).min(1.0);
                    let inconsistent = latent < p_inconsistent;
                    let loss = match (inconsistent, spec.binary_loss) {
                        (false, _) => 0.0,
                        (true, true) => 1.0,
                        (true, false) => (0.2 + 0.8 * severity) * p_inconsistent.sqrt(),
                    };
                    let layers =
                        1.0 + (depth - 1.0) * (theta * theta * (0.6 + 0.8 * difficulty)).min(1.0);
                    rows.push(RecordRow {
                        example: example as u32,
                        measure: measure as u32,
                        tau,
                        lambda,
                        loss,
                        layers,
                        tokens,
                        num_layers: spec.num_layers,
                        chain_complete: Some(true),
                        origin: RowOrigin {
                            file: 0,
                            row: rows.len() as u32 + 1,
                        },
                    });
                }
            }
        }
    }
    Records {
        examples,
        measures,
        rows,
        sources: Vec::new(),
    }
}
