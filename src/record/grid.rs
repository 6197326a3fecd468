//! `--lambdas auto`: a λ grid per measure, placed by that measure's confidences so that its
//! steps are even in mean exit layer.
//!
//! One grid does not fit every measure: softmax-diff spreads over [0, 1], while hidden-state
//! saturation (a cosine) lives in 0.90–1.00, so a fixed 0.05 step jumps from "never exits" to
//! "exits at layer 2" in one step. Quantiles of the confidences do not fit either: they crowd
//! the λs where almost nothing exits (measured on the embedded model: ten of the state chain's
//! twelve λs above 4.9 layers, then a jump from 3.8 to 2.6). So the λs are placed by what they
//! do: even steps in mean exit layer on the grid examples. The grid is taken from a seeded share of the calibration
//! examples (the *grid examples*), decoded by the full model in record mode; those examples are
//! then left out of the records and the test. The grid is thus a function of data independent of
//! the examples Learn then Test uses, so it is fixed before the test sees its data, and the
//! guarantee (LTT Thm. 1, for any grid fixed in advance) holds unchanged.

use crate::util::rng::Rng;

/// λs per measure besides λ = 1: the grid's steps in mean exit layer.
pub const GRID_STEPS: usize = 11;

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

/// Mean exit layer on the full model's path if each token left at the first layer below the top
/// whose confidence reaches `threshold` (the top layer otherwise). `tokens[t][i]` is token t's
/// confidence at layer i + 1, None where the measure is undefined.
pub fn mean_exit_layer(tokens: &[Vec<Option<f32>>], depth: usize, threshold: f64) -> f64 {
    if tokens.is_empty() {
        return depth as f64;
    }
    let total: usize = tokens
        .iter()
        .map(|layers| {
            layers
                .iter()
                .position(|c| c.is_some_and(|c| c as f64 >= threshold))
                .map_or(depth, |i| i + 1)
        })
        .sum();
    total as f64 / tokens.len() as f64
}

/// The λ grid for one measure: λ = 1, then [`GRID_STEPS`] λs whose constant thresholds
/// 0.9·λ + 0.1 (Eq. 5 at τ = 0) take the mean exit layer on the grid examples' tokens to
/// L − k·(L − 1)/GRID_STEPS, k = 1 … GRID_STEPS: evenly spaced in layers saved, from "almost never
/// exits" to "exits at the first possible layer". Each threshold is found by bisection between
/// the smallest and largest confidence; λ is clipped to [0, 1], rounded to 4 decimals, and the
/// list is strictly descending (steps that round to the same λ merge).
pub fn auto_lambdas(tokens: &[Vec<Option<f32>>], depth: usize) -> Vec<f64> {
    let values: Vec<f64> = tokens
        .iter()
        .flatten()
        .flatten()
        .filter(|c| c.is_finite())
        .map(|&c| c as f64)
        .collect();
    let mut lambdas = vec![1.0];
    let (Some(low), Some(high)) = (
        values.iter().copied().reduce(f64::min),
        values.iter().copied().reduce(f64::max),
    ) else {
        return lambdas;
    };
    let depth_f = depth as f64;
    for k in 1..=GRID_STEPS {
        let target = depth_f - k as f64 * (depth_f - 1.0) / GRID_STEPS as f64;
        // The mean exit layer rises with the threshold: find the largest threshold at or below
        // the target.
        let (mut lo, mut hi) = (low, high + 1e-6);
        for _ in 0..50 {
            let mid = 0.5 * (lo + hi);
            if mean_exit_layer(tokens, depth, mid) <= target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let lambda = (((lo - 0.1) / 0.9).clamp(0.0, 1.0) * 1e4).round() / 1e4;
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
    fn the_grid_steps_evenly_through_the_mean_exit_layer() {
        // Cosines at layers 1..7 of 8 rising towards 1: layer i's confidence is 0.9 + 0.0142·i
        // plus a per-token offset, so thresholds in 0.90–1.00 decide everything.
        let tokens: Vec<Vec<Option<f32>>> = (0..500)
            .map(|t| {
                (1..8)
                    .map(|i| Some((0.9 + 0.0142 * i as f64 + 0.004 * (t % 5) as f64) as f32))
                    .collect()
            })
            .collect();
        let lambdas = auto_lambdas(&tokens, 8);
        assert_eq!(lambdas[0], 1.0);
        assert!(lambdas.windows(2).all(|w| w[0] > w[1]), "{lambdas:?}");
        assert!(lambdas.len() >= 8, "{lambdas:?}");
        // Every λ after the first lies where the cosines are (a fixed 0.05 grid has one there).
        assert!(
            lambdas[1..].iter().all(|&l| l > 0.88 && l < 1.0),
            "{lambdas:?}"
        );
        // The mean exit layers of consecutive λs fall in steps, from near 8 to near 1.
        let layers: Vec<f64> = lambdas
            .iter()
            .map(|&l| mean_exit_layer(&tokens, 8, 0.9 * l + 0.1))
            .collect();
        assert!(layers.windows(2).all(|w| w[0] >= w[1]), "{layers:?}");
        assert!(*layers.last().unwrap() <= 1.7, "{layers:?}");
        assert_eq!(auto_lambdas(&[], 8), vec![1.0]);
        assert_eq!(auto_lambdas(&[vec![None, Some(f32::NAN)]], 3), vec![1.0]);
    }

    #[test]
    fn mean_exit_layer_by_hand() {
        let tokens = vec![vec![Some(0.5), Some(0.9)], vec![None, Some(0.4)]];
        // Threshold 0.8: token 1 exits at layer 2, token 2 reaches the top (3): mean 2.5.
        assert_eq!(mean_exit_layer(&tokens, 3, 0.8), 2.5);
        assert_eq!(mean_exit_layer(&tokens, 3, 0.3), 1.5);
        assert_eq!(mean_exit_layer(&tokens, 3, 0.95), 3.0);
    }
}
