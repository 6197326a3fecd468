//! Learn then Test calibration: per-candidate p-values, family-wise error control and selection.
//! Given n calibration examples, returns a configuration whose risk is ≤ δ with probability ≥ 1 − ε
//! (Angelopoulos et al., "Learn then Test", Thm. 1; CALM §4).
//! This module reads records only; it never touches the model.

pub mod binomial;
pub mod bounds;
pub mod check;
pub mod frontier;
pub mod procedures;
pub mod pvalues;
mod stats;
mod table;
pub mod thresholds;
pub mod trials;

pub use procedures::Procedure;
pub use pvalues::PValueMethod;
pub use stats::LossStats;
pub use table::{Candidate, LossTable};

use crate::util::rng::Rng;
use anyhow::{bail, Result};

/// What to certify and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationOptions {
    /// Risk bound δ in (0, 1): the tolerated expected loss.
    pub delta: f64,
    /// Failure probability ε in (0, 1): P(risk > δ) ≤ ε over the draw of calibration data.
    pub epsilon: f64,
    pub pvalue: PValueMethod,
    pub procedure: Procedure,
    /// Seed of the example order used by order-dependent p-values (WSR).
    pub seed: u64,
}

impl CalibrationOptions {
    pub fn validate(&self) -> Result<()> {
        if !(self.delta > 0.0 && self.delta < 1.0) {
            bail!(
                "--delta must lie strictly between 0 and 1 (got {})",
                self.delta
            );
        }
        if !(self.epsilon > 0.0 && self.epsilon < 1.0) {
            bail!(
                "--epsilon must lie strictly between 0 and 1 (got {})",
                self.epsilon
            );
        }
        Ok(())
    }
}

/// The test result for one candidate configuration (a row of `thresholds.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CandidateResult {
    pub measure: String,
    pub tau: f64,
    pub lambda: f64,
    pub n: u64,
    pub risk: f64,
    pub p_value: f64,
    /// Whether the procedure looked at this hypothesis (fixed-sequence stops early).
    pub tested: bool,
    pub certified: bool,
    pub mean_layers: f64,
    /// Cost per generated token by the table's cost model (`record::cost`; its unit there).
    pub cost_per_token: f64,
    /// The full model's cost over this candidate's, for outputs of the same length (> 1: faster).
    pub cost_speedup: f64,
}

/// The chosen configuration, or the a-priori safe fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Index into [`Calibration::candidates`].
    Candidate(usize),
    /// Nothing was certified: run the full model (zero consistency loss by construction).
    NeverExit,
}

/// The complete outcome of a calibration run.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub options: CalibrationOptions,
    pub n: u64,
    pub num_layers: u32,
    pub chains: usize,
    /// The per-test level: ε/K for fixed-sequence, ε/N for Bonferroni, ε/(N−r) stepping for Holm.
    pub level: f64,
    pub candidates: Vec<CandidateResult>,
    pub selection: Selection,
    /// The cost model that priced the candidates.
    pub cost: crate::record::cost::CostModel,
}

impl Calibration {
    pub fn certified_count(&self) -> usize {
        self.candidates.iter().filter(|c| c.certified).count()
    }

    pub fn selected(&self) -> Option<&CandidateResult> {
        match self.selection {
            Selection::Candidate(index) => self.candidates.get(index),
            Selection::NeverExit => None,
        }
    }
}

/// The p-value of one candidate from its losses in example-id order (the order of
/// [`LossTable::examples`]); order-dependent p-values (WSR) visit them in a `seed`ed permutation.
pub fn candidate_p_value(losses: &[f64], options: &CalibrationOptions) -> f64 {
    let summary = LossStats::from_losses(losses);
    match options.pvalue {
        PValueMethod::Hb => pvalues::hoeffding_bentkus_p_value(
            summary.n,
            summary.risk,
            summary.bentkus_count,
            options.delta,
        ),
        PValueMethod::Hoeffding => {
            pvalues::hoeffding_p_value(summary.n, summary.risk, options.delta)
        }
        PValueMethod::Bentkus => {
            pvalues::bentkus_p_value(summary.n, summary.bentkus_count, options.delta)
        }
        PValueMethod::Binomial => {
            pvalues::binomial_p_value(summary.n, summary.bentkus_count, options.delta)
        }
        PValueMethod::Wsr => {
            let mut order: Vec<usize> = (0..losses.len()).collect();
            Rng::new(options.seed).shuffle(&mut order);
            let ordered: Vec<f64> = order.iter().map(|&i| losses[i]).collect();
            pvalues::wsr_p_value(&ordered, options.delta, options.epsilon)
        }
    }
}

/// Why results on chains cut short are not trustworthy, for refusals and warnings.
pub const TRUNCATION_BIAS: &str = "a fixed-sequence sweep stops each chain at its first failure, judged on all n examples, so the records lack exactly the near-boundary configurations that cause violations, and every example (including any later held out) has already shaped which configurations exist: random-split trials and Bonferroni/Holm on such records are biased optimistic. Sweep the whole grid instead (calm calibrate --model … without --early-stop, or --shard)";

/// The refusal (or, with `allow`, the warning) for records whose chains do not cover their
/// grid, when `what` (trials, Bonferroni, Holm) needs every candidate. Ok(None): all complete.
/// Records that do not say (no `chain_complete` column) get a warning, not a refusal.
pub fn truncation_check(table: &LossTable, what: &str, allow: bool) -> Result<Option<String>> {
    let (truncated, unknown) = table.truncated_chains();
    if !truncated.is_empty() {
        let message = format!(
            "{} of {} chains were not swept to the end of their λ grid ({}); {what} on them is not valid: {TRUNCATION_BIAS}",
            truncated.len(),
            table.chains().len(),
            truncated.join(", ")
        );
        if !allow {
            bail!("{message} (to proceed anyway, pass --allow-truncated)");
        }
        return Ok(Some(format!("warning: {message}")));
    }
    if unknown {
        return Ok(Some(format!(
            "warning: the records do not say whether every chain covers its λ grid (no `chain_complete` column); if a sweep stopped chains early, {what} is biased optimistic: {TRUNCATION_BIAS}"
        )));
    }
    Ok(None)
}

/// Compute every candidate's p-value, run the FWER procedure and select a configuration.
pub fn calibrate(table: &LossTable, options: &CalibrationOptions) -> Result<Calibration> {
    options.validate()?;
    let n = table.examples.len() as u64;
    let mut p_values = Vec::with_capacity(table.candidates.len());
    let mut stats = Vec::with_capacity(table.candidates.len());
    for candidate in &table.candidates {
        if options.pvalue == PValueMethod::Binomial {
            if let Some(slot) = candidate.losses.iter().position(|&l| l != 0.0 && l != 1.0) {
                bail!(
                    "--pvalue binomial needs 0/1 losses, but candidate (measure {:?}, tau {}, lambda {}) has loss {} for example {:?}; use --pvalue hb for fractional losses",
                    candidate.measure,
                    candidate.tau,
                    candidate.lambda,
                    candidate.losses[slot],
                    table.examples[slot]
                );
            }
        }
        p_values.push(candidate_p_value(&candidate.losses, options));
        stats.push(LossStats::from_losses(&candidate.losses));
    }

    let chains = table.chains();
    let (outcome, level) = match options.procedure {
        Procedure::FixedSequence => (
            procedures::chained_fixed_sequence(&chains, &p_values, options.epsilon),
            options.epsilon / chains.len().max(1) as f64,
        ),
        Procedure::Bonferroni => (
            procedures::bonferroni(&p_values, options.epsilon),
            options.epsilon / p_values.len().max(1) as f64,
        ),
        Procedure::Holm => (
            procedures::holm(&p_values, options.epsilon),
            options.epsilon / p_values.len().max(1) as f64,
        ),
    };

    let candidates: Vec<CandidateResult> = table
        .candidates
        .iter()
        .enumerate()
        .map(|(j, candidate)| CandidateResult {
            measure: candidate.measure.clone(),
            tau: candidate.tau,
            lambda: candidate.lambda,
            n,
            risk: stats[j].risk,
            p_value: p_values[j],
            tested: outcome.tested[j],
            certified: outcome.rejected[j],
            mean_layers: candidate.mean_layers,
            cost_per_token: table.cost.cost_per_token(
                &candidate.measure,
                candidate.mean_layers,
                candidate.tokens_per_example(),
            ),
            cost_speedup: table.cost.speedup(
                &candidate.measure,
                candidate.mean_layers,
                candidate.tokens_per_example(),
            ),
        })
        .collect();
    let selection = select(&candidates);
    Ok(Calibration {
        options: *options,
        n,
        num_layers: table.num_layers,
        chains: chains.len(),
        level,
        candidates,
        selection,
        cost: table.cost.clone(),
    })
}

/// Among certified candidates pick the lowest cost per token (the table's cost model: layers
/// run, exit checks, propagated K/V, the per-example encoder); ties go to the larger λ (the more
/// conservative threshold), then to the earlier candidate in table order. A candidate that costs
/// at least as much as the full model is never chosen: then the answer is never exit. Any rule
/// over the certified set keeps the guarantee (LTT Thm. 1). `calibrate`, the trials and the
/// report all select through this one function.
pub fn select(candidates: &[CandidateResult]) -> Selection {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.certified && c.cost_speedup > 1.0)
        .min_by(|(ia, a), (ib, b)| {
            a.cost_per_token
                .total_cmp(&b.cost_per_token)
                .then(b.lambda.total_cmp(&a.lambda))
                .then(ia.cmp(ib))
        })
        .map_or(Selection::NeverExit, |(index, _)| {
            Selection::Candidate(index)
        })
}
