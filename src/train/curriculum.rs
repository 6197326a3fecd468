//! A synthetic copy curriculum: batches of random token sequences that the model must copy
//! (source = target). T5 has no absolute positions, so copying needs a learned content-matching
//! circuit (an encoder head that looks at the neighbouring token plus a cross-attention head
//! that matches it). On natural text a small model learns the language model first and the copy
//! circuit late or never; on random tokens copying is the only thing to learn, and the circuit
//! forms within about a thousand steps of short sequences. The first `--copy-curriculum-steps`
//! steps of a run train on these batches, the rest on the data.

use super::batches::Pair;
use crate::util::rng::Rng;

/// Ids below this are T5's specials (`<pad>` 0, `</s>` 1, `<unk>` 2) and never sampled.
const FIRST_ORDINARY_ID: u32 = 3;
/// Sequence lengths (without `</s>`) are uniform in [4, 16]: short sequences have few
/// distractors, so the matching circuit is found fast, and it carries over to longer text.
const MIN_LENGTH: usize = 4;
const MAX_LENGTH: usize = 16;
/// Pairs per curriculum batch: small batches of short sequences make a curriculum step under half
/// a data step's cost (0.85 s against 2 s on the default model), and the circuit still forms.
const PAIRS_PER_BATCH: usize = 48;

/// The copy pairs of curriculum step `step`: 48 pairs, lengths uniform in [4, 16] (at most
/// `max_tokens - 1`), token ids uniform over the ordinary vocabulary. A function of
/// (seed, step) only, so a resumed run gets the same batches.
pub fn copy_batch(vocab_size: usize, max_tokens: usize, seed: u64, step: usize) -> Vec<Pair> {
    let mut rng = Rng::new(seed ^ 0x5EED_C0B1 ^ (step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let longest = MAX_LENGTH.min(max_tokens.saturating_sub(1)).max(1);
    let shortest = MIN_LENGTH.min(longest);
    let ordinary = (vocab_size as u64)
        .saturating_sub(FIRST_ORDINARY_ID as u64)
        .max(1);
    (0..PAIRS_PER_BATCH)
        .map(|_| {
            let length = shortest + rng.below((longest - shortest + 1) as u64) as usize;
            let mut ids: Vec<u32> = (0..length)
                .map(|_| FIRST_ORDINARY_ID + rng.below(ordinary) as u32)
                .collect();
            ids.push(1);
            Pair {
                source: ids.clone(),
                target: ids,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_copy_short_runs_of_ordinary_tokens_and_are_reproducible() {
        let batch = copy_batch(100, 64, 7, 3);
        assert_eq!(batch.len(), PAIRS_PER_BATCH);
        for pair in &batch {
            assert_eq!(pair.source, pair.target);
            let (last, body) = pair.source.split_last().unwrap();
            assert_eq!(*last, 1);
            assert!((MIN_LENGTH..=MAX_LENGTH).contains(&body.len()));
            assert!(body.iter().all(|&id| (3..100).contains(&id)));
        }
        assert_eq!(batch, copy_batch(100, 64, 7, 3));
        assert_ne!(batch, copy_batch(100, 64, 7, 4));
        assert_ne!(batch, copy_batch(100, 64, 8, 3));
        // A pair limit below 17 tokens caps the lengths.
        assert!(copy_batch(100, 8, 7, 3)
            .iter()
            .all(|pair| pair.source.len() <= 8));
    }
}
