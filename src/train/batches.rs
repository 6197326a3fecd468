//! Token-budget batches of tokenized pairs, in a seeded order that a resumed run reproduces.

use crate::util::rng::Rng;

/// A tokenized training pair: source ids (ending with `</s>`) and target ids (ending with `</s>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub source: Vec<u32>,
    pub target: Vec<u32>,
}

/// Indices of `pairs` grouped into batches for one epoch: shuffled with (seed, epoch), sorted by
/// length within windows of 64 batches to limit padding, each batch within `max_tokens` padded
/// tokens (source + target), batch order shuffled again.
pub fn epoch_batches(pairs: &[Pair], max_tokens: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
    let mut rng = Rng::new(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    rng.shuffle(&mut order);
    let cost = |i: usize| pairs[i].source.len().max(pairs[i].target.len());
    let window = 64 * (max_tokens / 32).max(1);
    let mut batches = Vec::new();
    for chunk in order.chunks(window) {
        let mut chunk = chunk.to_vec();
        chunk.sort_by_key(|&i| (cost(i), i));
        let mut current: Vec<usize> = Vec::new();
        let mut longest = 0;
        for i in chunk {
            let longer = longest.max(cost(i));
            if !current.is_empty() && 2 * longer * (current.len() + 1) > max_tokens {
                batches.push(std::mem::take(&mut current));
                longest = 0;
            }
            longest = longest.max(cost(i));
            current.push(i);
        }
        if !current.is_empty() {
            batches.push(current);
        }
    }
    rng.shuffle(&mut batches);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_pair_once_within_budget_and_are_reproducible() {
        let pairs: Vec<Pair> = (0..500)
            .map(|i| Pair {
                source: vec![5; 3 + i % 17],
                target: vec![6; 2 + i % 23],
            })
            .collect();
        let batches = epoch_batches(&pairs, 256, 3, 1);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..500).collect::<Vec<_>>());
        for batch in &batches {
            let longest = batch
                .iter()
                .map(|&i| pairs[i].source.len().max(pairs[i].target.len()))
                .max()
                .unwrap();
            assert!(batch.len() == 1 || 2 * longest * batch.len() <= 256);
        }
        assert_eq!(batches, epoch_batches(&pairs, 256, 3, 1));
        assert_ne!(batches, epoch_batches(&pairs, 256, 3, 2));
    }
}
