//! `--lambdas auto`: a λ grid per measure, placed at quantiles of that measure's confidences.
//!
//! One grid does not fit every measure: softmax-diff spreads over [0, 1], while hidden-state
//! saturation (a cosine) lives in 0.90–1.00, so a fixed 0.05 step jumps from "never exits" to
//! "exits at layer 2" in one step. The grid is taken from a seeded share of the calibration
//! examples (the *grid examples*), decoded by the full model in record mode; those examples are
//! then left out of the records and the test. The grid is thus a function of data independent of
//! the examples Learn then Test uses, so it is fixed before the test sees its data, and the
//! guarantee (LTT Thm. 1, for any grid fixed in advance) holds unchanged.

use crate::util::rng::Rng;

/// Quantiles of the pooled confidences (layers below the top, every token) at which thresholds
/// are placed, from the most conservative down. Dense near the top, where certification happens.
/// Eleven quantiles (twelve λs with λ = 1) keep the whole grid of three measures and two τs at 72
/// configurations, which the main job sweeps completely.
pub const GRID_QUANTILES: [f64; 11] =
    [0.999, 0.995, 0.99, 0.98, 0.95, 0.9, 0.8, 0.7, 0.5, 0.3, 0.1];

/// Split example indices 0..n into (grid, test) by a seeded permutation: ⌈share·n⌉ grid examples
/// (at least one when share > 0, never all), both in increasing order.
pub fn grid_split(n: usize, share: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    if n < 2 || share <= 0.0 {
        return (Vec::new(), (0..n).collect());
    }
    let count = ((share * n as f64).ceil() as usize).clamp(1, n - 1);
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed ^ 0x6772_6964).shuffle(&mut order);
    let mut grid = order[..count].to_vec();
    let mut test = order[count..].to_vec();
    grid.sort_unstable();
    test.sort_unstable();
    (grid, test)
}

/// The λ grid for one measure from its confidences: λ = 1, then for each quantile q the λ whose
/// constant threshold 0.9·λ + 0.1 (Eq. 5 at τ = 0) equals the q-quantile, clipped to [0, 1],
/// rounded to 4 decimals, strictly descending. Empty confidences give λ = 1 alone.
pub fn auto_lambdas(confidences: &[f32]) -> Vec<f64> {
    let mut values: Vec<f64> = confidences
        .iter()
        .filter(|c| c.is_finite())
        .map(|&c| c as f64)
        .collect();
    values.sort_by(f64::total_cmp);
    let mut lambdas = vec![1.0];
    if values.is_empty() {
        return lambdas;
    }
    for q in GRID_QUANTILES {
        // Nearest-rank quantile.
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
        let threshold = values[rank];
        let lambda = (((threshold - 0.1) / 0.9).clamp(0.0, 1.0) * 1e4).round() / 1e4;
        if lambdas.last().is_some_and(|&last| lambda < last) {
            lambdas.push(lambda);
        }
    }
    lambdas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_disjoint_seeded_and_complete() {
        let (grid, test) = grid_split(100, 0.1, 7);
        assert_eq!(grid.len(), 10);
        assert_eq!(test.len(), 90);
        assert!(grid.iter().all(|g| !test.contains(g)));
        let mut all: Vec<usize> = grid.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(grid_split(100, 0.1, 7), (grid.clone(), test));
        assert_ne!(grid_split(100, 0.1, 8).0, grid);
        assert_eq!(grid_split(5, 0.0, 1).0, Vec::<usize>::new());
        assert_eq!(grid_split(3, 0.99, 1).1.len(), 1);
    }

    #[test]
    fn a_cosine_gets_a_fine_grid_near_one() {
        // Cosines in [0.9, 1): a fixed 0.05-step grid has one λ there; the auto grid has many.
        let cosines: Vec<f32> = (0..1000)
            .map(|i| 0.9 + 0.0999 * i as f32 / 1000.0)
            .collect();
        let lambdas = auto_lambdas(&cosines);
        assert_eq!(lambdas[0], 1.0);
        assert!(lambdas.windows(2).all(|w| w[0] > w[1]));
        let in_range = lambdas.iter().filter(|&&l| l > 0.88 && l < 1.0).count();
        assert_eq!(in_range, GRID_QUANTILES.len(), "{lambdas:?}");
        // The nearest-rank 0.5 quantile is element 499: λ = (c − 0.1)/0.9, rounded.
        let median = cosines[499] as f64;
        let expected = (((median - 0.1) / 0.9) * 1e4).round() / 1e4;
        assert!(lambdas.contains(&expected), "{expected} not in {lambdas:?}");
        assert_eq!(auto_lambdas(&[]), vec![1.0]);
        assert_eq!(auto_lambdas(&[f32::NAN]), vec![1.0]);
    }
}
