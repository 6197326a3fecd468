//! The loss table: records grouped into candidates, each evaluated on the same n examples.

use crate::record::cost::CostModel;
use crate::record::{mean_layers_per_token, Records};
use anyhow::{bail, Result};
use std::collections::HashMap;

/// One configuration (measure, τ, λ) with its per-example losses in a fixed example order.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub measure: String,
    pub tau: f64,
    pub lambda: f64,
    /// Loss of example i (examples sorted by id).
    pub losses: Vec<f64>,
    /// Mean decoder layers per token of example i.
    pub layers: Vec<f64>,
    /// Generated tokens of example i.
    pub tokens: Vec<u32>,
    /// Mean decoder layers per generated token: Σ layers·tokens / Σ tokens over examples
    /// (the plain mean when no example generated a token).
    pub mean_layers: f64,
    /// Whether the candidate's chain was swept to the end of its λ grid (None: not recorded).
    pub chain_complete: Option<bool>,
}

impl Candidate {
    /// Mean generated tokens per example.
    pub fn tokens_per_example(&self) -> f64 {
        self.tokens.iter().map(|&t| t as f64).sum::<f64>() / self.tokens.len().max(1) as f64
    }

    /// This candidate restricted to the examples at `keep` (in that order), its mean layers
    /// recomputed by the same token-weighted rule.
    pub fn subset(&self, keep: &[usize]) -> Candidate {
        let layers: Vec<f64> = keep.iter().map(|&i| self.layers[i]).collect();
        let tokens: Vec<u32> = keep.iter().map(|&i| self.tokens[i]).collect();
        Candidate {
            measure: self.measure.clone(),
            tau: self.tau,
            lambda: self.lambda,
            losses: keep.iter().map(|&i| self.losses[i]).collect(),
            mean_layers: mean_layers_per_token(&layers, &tokens),
            layers,
            tokens,
            chain_complete: self.chain_complete,
        }
    }
}

/// Candidates sorted by measure, τ ascending, λ descending; examples sorted by id.
#[derive(Debug, Clone, PartialEq)]
pub struct LossTable {
    pub examples: Vec<String>,
    pub num_layers: u32,
    pub candidates: Vec<Candidate>,
    /// How selection prices a candidate ([`CostModel::layers_only`] unless a model's is given).
    pub cost: CostModel,
}

/// Treat −0.0 as 0.0 so that both spellings name the same candidate.
fn canonical(x: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else {
        x
    }
}

impl LossTable {
    /// Group records into candidates. Fails on mixed model depths, duplicate rows and candidates
    /// evaluated on different example sets (LTT needs the same n examples for every candidate).
    pub fn from_records(records: &Records) -> Result<Self> {
        let first = match records.rows.first() {
            Some(first) => first,
            None => bail!("no records to calibrate"),
        };
        if let Some(other) = records
            .rows
            .iter()
            .find(|row| row.num_layers != first.num_layers)
        {
            bail!(
                "{}: num_layers is {} but {} has {}; all records must come from one model",
                records.describe(other.origin),
                other.num_layers,
                records.describe(first.origin),
                first.num_layers
            );
        }

        // Examples in id order, so results do not depend on file or row order.
        let mut example_order: Vec<u32> = (0..records.examples.len() as u32).collect();
        example_order
            .sort_by(|&a, &b| records.examples[a as usize].cmp(&records.examples[b as usize]));
        let mut position = vec![0usize; records.examples.len()];
        for (slot, &example) in example_order.iter().enumerate() {
            position[example as usize] = slot;
        }
        let n = example_order.len();

        struct Slots {
            losses: Vec<f64>,
            layers: Vec<f64>,
            tokens: Vec<u32>,
            origin: Vec<Option<usize>>,
            complete: Option<bool>,
            complete_known: bool,
        }
        let mut keys: HashMap<(u32, u64, u64), usize> = HashMap::new();
        let mut groups: Vec<((u32, f64, f64), Slots)> = Vec::new();
        for (row_index, row) in records.rows.iter().enumerate() {
            let tau = canonical(row.tau);
            let lambda = canonical(row.lambda);
            let key = (row.measure, tau.to_bits(), lambda.to_bits());
            let group = *keys.entry(key).or_insert_with(|| {
                groups.push((
                    (row.measure, tau, lambda),
                    Slots {
                        losses: vec![0.0; n],
                        layers: vec![0.0; n],
                        tokens: vec![0; n],
                        origin: vec![None; n],
                        complete: None,
                        complete_known: true,
                    },
                ));
                groups.len() - 1
            });
            let slot = position[row.example as usize];
            let slots = &mut groups[group].1;
            if let Some(previous) = slots.origin[slot] {
                bail!(
                    "duplicate record for example {:?}, measure {:?}, tau {}, lambda {}: {} and {}",
                    records.examples[row.example as usize],
                    records.measures[row.measure as usize],
                    row.tau,
                    row.lambda,
                    records.describe(records.rows[previous].origin),
                    records.describe(row.origin)
                );
            }
            slots.origin[slot] = Some(row_index);
            slots.losses[slot] = row.loss;
            slots.layers[slot] = row.layers;
            slots.tokens[slot] = row.tokens;
            // A candidate is complete only if every row says so; unknown if any row is silent.
            match row.chain_complete {
                None => slots.complete_known = false,
                Some(flag) => slots.complete = Some(slots.complete.unwrap_or(true) && flag),
            }
        }

        let mut candidates = Vec::with_capacity(groups.len());
        for ((measure, tau, lambda), slots) in groups {
            let measure = records.measures[measure as usize].clone();
            let covered = slots.origin.iter().filter(|o| o.is_some()).count();
            if covered < n {
                let missing = slots
                    .origin
                    .iter()
                    .position(|o| o.is_none())
                    .map(|slot| records.examples[example_order[slot] as usize].clone())
                    .unwrap_or_default();
                bail!(
                    "candidate (measure {measure:?}, tau {tau}, lambda {lambda}) was evaluated on {covered} of the {n} examples \
                     (e.g. no record for example {missing:?}); Learn then Test needs every candidate evaluated on the same examples"
                );
            }
            let mean_layers = mean_layers_per_token(&slots.layers, &slots.tokens);
            candidates.push(Candidate {
                measure,
                tau,
                lambda,
                losses: slots.losses,
                layers: slots.layers,
                tokens: slots.tokens,
                mean_layers,
                // A row that says "cut short" wins over rows that do not say.
                chain_complete: match slots.complete {
                    Some(false) => Some(false),
                    complete => complete.filter(|_| slots.complete_known),
                },
            });
        }
        candidates.sort_by(|a, b| {
            a.measure
                .cmp(&b.measure)
                .then(a.tau.total_cmp(&b.tau))
                .then(b.lambda.total_cmp(&a.lambda))
        });
        Ok(LossTable {
            examples: example_order
                .iter()
                .map(|&e| records.examples[e as usize].clone())
                .collect(),
            num_layers: first.num_layers,
            candidates,
            cost: CostModel::layers_only(first.num_layers),
        })
    }

    /// Price candidates with `cost` (a model's, from its shapes) instead of by layers alone.
    pub fn with_cost(mut self, cost: CostModel) -> Result<Self> {
        if let Err(problem) = cost.validate(self.num_layers) {
            bail!("invalid cost model: {problem}");
        }
        self.cost = cost;
        Ok(self)
    }

    /// The candidates of one measure, on the same examples and with the same cost model.
    pub fn only_measure(&self, measure: &str) -> LossTable {
        LossTable {
            examples: self.examples.clone(),
            num_layers: self.num_layers,
            candidates: self
                .candidates
                .iter()
                .filter(|c| c.measure == measure)
                .cloned()
                .collect(),
            cost: self.cost.clone(),
        }
    }

    /// The rows of this table restricted to the examples at `keep` (in that order).
    pub fn subset(&self, keep: &[usize]) -> LossTable {
        LossTable {
            examples: keep.iter().map(|&i| self.examples[i].clone()).collect(),
            num_layers: self.num_layers,
            candidates: self.candidates.iter().map(|c| c.subset(keep)).collect(),
            cost: self.cost.clone(),
        }
    }

    /// Chains not swept to the end of their λ grid, as "measure tau=…" (empty when all are
    /// complete), and whether any chain's completeness is unknown.
    pub fn truncated_chains(&self) -> (Vec<String>, bool) {
        let mut truncated = Vec::new();
        let mut unknown = false;
        for chain in self.chains() {
            let head = &self.candidates[chain[0]];
            let flags = chain.iter().map(|&j| self.candidates[j].chain_complete);
            if flags.clone().any(|f| f == Some(false)) {
                truncated.push(format!("{} tau={}", head.measure, head.tau));
            } else if flags.into_iter().any(|f| f.is_none()) {
                unknown = true;
            }
        }
        (truncated, unknown)
    }

    /// Fixed-sequence chains: candidate indices grouped by (measure, τ), λ from largest down.
    pub fn chains(&self) -> Vec<Vec<usize>> {
        let mut chains: Vec<Vec<usize>> = Vec::new();
        for (index, candidate) in self.candidates.iter().enumerate() {
            let same_chain = chains.last().is_some_and(|chain| {
                let head = &self.candidates[chain[0]];
                head.measure == candidate.measure && head.tau.to_bits() == candidate.tau.to_bits()
            });
            if same_chain {
                if let Some(chain) = chains.last_mut() {
                    chain.push(index);
                }
            } else {
                chains.push(vec![index]);
            }
        }
        chains
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{simulate_records, SimulationSpec};

    #[test]
    fn a_cut_chain_is_known_cut_even_when_some_rows_do_not_say() {
        let mut records = simulate_records(&SimulationSpec::grid(4, 3, 1));
        // Merged shards: one file marks the first chain cut, the other says nothing.
        let first = (records.rows[0].measure, records.rows[0].tau);
        for (i, row) in records.rows.iter_mut().enumerate() {
            row.chain_complete = if (row.measure, row.tau) == first {
                if i % 2 == 0 {
                    Some(false)
                } else {
                    None
                }
            } else {
                Some(true)
            };
        }
        let table = LossTable::from_records(&records).unwrap();
        let (truncated, unknown) = table.truncated_chains();
        assert_eq!(truncated.len(), 1, "{truncated:?}");
        assert!(!unknown);
        // Rows that do not say, with no row saying "cut": unknown, not complete.
        for row in records.rows.iter_mut() {
            if (row.measure, row.tau) == first {
                row.chain_complete = row.chain_complete.and(Some(true));
            }
        }
        let (truncated, unknown) = LossTable::from_records(&records)
            .unwrap()
            .truncated_chains();
        assert!(truncated.is_empty());
        assert!(unknown);
    }
}
