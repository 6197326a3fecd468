//! chrF exactly as sacrebleu 2.6.0 with its defaults: character n-grams of order 1..=6, no word
//! n-grams (chrF, not chrF++), β = 2, whitespace removed, case-sensitive,
//! `eps_smoothing=False`, on a 0–100 scale.
//!
//! - [`sentence_chrf`] = `sacrebleu.sentence_chrf(hyp, [ref])`;
//!   [`corpus_chrf`] = `sacrebleu.corpus_chrf(hyps, [refs])` (statistics summed over segments).
//! - Characters are Unicode scalar values (Python code points); every Python-whitespace
//!   character is deleted before the n-grams are taken, so n-grams span word boundaries.
//! - Per order: P = matches / hypothesis n-grams, R = matches / reference n-grams, where the
//!   hypothesis count is reported as **0 when the reference has no n-gram of that order** (a
//!   quirk of sacrebleu's `_get_match_statistics`). The orders where both counts are positive
//!   (the "effective order") are averaged: P̄, R̄ are the plain means of their P and R, and
//!   chrF = 100 · (1 + β²) P̄ R̄ / (β² P̄ + R̄), or 0 when P̄ + R̄ = 0 or no order is effective.
//! - With several references (`_multi`) each segment keeps the statistics of the reference with
//!   the highest sentence chrF (the first one on ties).

use std::collections::HashMap;

use super::pyunicode::py_isspace;

/// Character n-gram order (sacrebleu's `CHRF.CHAR_ORDER`).
pub const CHAR_ORDER: usize = 6;
/// β (sacrebleu's `CHRF.BETA`): recall is weighted β² = 4 times as much as precision.
pub const BETA: u32 = 2;

/// `[hyp, ref, match]` counts for each order.
type Stats = [[u64; 3]; CHAR_ORDER];

fn char_ngrams(chars: &[char], n: usize) -> HashMap<&[char], u64> {
    let mut counts = HashMap::new();
    if chars.len() >= n {
        for gram in chars.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

fn strip_whitespace(text: &str) -> Vec<char> {
    text.chars().filter(|&c| !py_isspace(c)).collect()
}

/// `_compute_segment_statistics` against one reference.
fn statistics(hyp: &[char], reference: &[char]) -> Stats {
    let mut stats = [[0u64; 3]; CHAR_ORDER];
    for (n, row) in (1..=CHAR_ORDER).zip(stats.iter_mut()) {
        let hyp_ngrams = char_ngrams(hyp, n);
        let ref_ngrams = char_ngrams(reference, n);
        let mut matches = 0;
        let mut hyp_count = 0;
        for (gram, &count) in &hyp_ngrams {
            hyp_count += count;
            if let Some(&ref_count) = ref_ngrams.get(gram) {
                matches += count.min(ref_count);
            }
        }
        *row = [
            if ref_ngrams.is_empty() { 0 } else { hyp_count },
            ref_ngrams.values().sum(),
            matches,
        ];
    }
    stats
}

/// `CHRF._compute_f_score` without epsilon smoothing (0–100).
fn f_score(stats: &Stats) -> f64 {
    let factor = f64::from(BETA * BETA);
    let (mut avg_prec, mut avg_rec) = (0.0f64, 0.0f64);
    let mut effective_order = 0usize;
    for &[n_hyp, n_ref, n_match] in stats {
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += n_match as f64 / n_hyp as f64;
            avg_rec += n_match as f64 / n_ref as f64;
            effective_order += 1;
        }
    }
    if effective_order == 0 {
        return 0.0;
    }
    avg_prec /= effective_order as f64;
    avg_rec /= effective_order as f64;
    if avg_prec + avg_rec == 0.0 {
        return 0.0;
    }
    let mut score = (1.0 + factor) * avg_prec * avg_rec;
    score /= factor * avg_prec + avg_rec;
    100.0 * score
}

/// Best statistics of one segment over its references.
fn segment_statistics(hypothesis: &str, references: &[&str]) -> Stats {
    let hyp = strip_whitespace(hypothesis);
    let mut best = [[0u64; 3]; CHAR_ORDER];
    let mut best_f = -1.0;
    for reference in references {
        let stats = statistics(&hyp, &strip_whitespace(reference));
        let f = f_score(&stats);
        if f > best_f {
            best_f = f;
            best = stats;
        }
    }
    best
}

/// `sacrebleu.sentence_chrf(hypothesis, [reference]).score` (0–100).
pub fn sentence_chrf(hypothesis: &str, reference: &str) -> f64 {
    sentence_chrf_multi(hypothesis, &[reference])
}

/// `sacrebleu.sentence_chrf(hypothesis, references).score` (0–100).
pub fn sentence_chrf_multi(hypothesis: &str, references: &[&str]) -> f64 {
    f_score(&segment_statistics(hypothesis, references))
}

/// `sacrebleu.corpus_chrf(hypotheses, [references]).score`: one reference per hypothesis
/// (0–100). Panics if the lengths differ.
pub fn corpus_chrf<H: AsRef<str>, R: AsRef<str>>(hypotheses: &[H], references: &[R]) -> f64 {
    assert_eq!(
        hypotheses.len(),
        references.len(),
        "corpus_chrf: one reference per hypothesis"
    );
    let refs: Vec<[&str; 1]> = references.iter().map(|r| [r.as_ref()]).collect();
    let refs: Vec<&[&str]> = refs.iter().map(|r| r.as_slice()).collect();
    corpus_chrf_multi(hypotheses, &refs)
}

/// `sacrebleu.corpus_chrf` where segment i has the references `references[i]` (0–100).
/// Panics if the lengths differ.
pub fn corpus_chrf_multi<H: AsRef<str>>(hypotheses: &[H], references: &[&[&str]]) -> f64 {
    assert_eq!(
        hypotheses.len(),
        references.len(),
        "corpus_chrf: references per hypothesis"
    );
    let mut total = [[0u64; 3]; CHAR_ORDER];
    for (hypothesis, refs) in hypotheses.iter().zip(references) {
        let stats = segment_statistics(hypothesis.as_ref(), refs);
        for (t, s) in total.iter_mut().flatten().zip(stats.iter().flatten()) {
            *t += s;
        }
    }
    f_score(&total)
}
