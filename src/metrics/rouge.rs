//! ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum exactly as Google's `rouge-score` 0.1.2
//! (`rouge_score.rouge_scorer.RougeScorer(..., split_summaries=False)` with its
//! `DefaultTokenizer`).
//!
//! - **Tokenizer** (`rouge_score/tokenize.py`): Python `str.lower()`, every character outside
//!   `[a-z0-9]` becomes a space, split on whitespace; with stemming, nltk's Porter stemmer (see
//!   [`super::porter`]) is applied to tokens of more than 3 characters. Non-ASCII letters are
//!   therefore dropped (`"café"` → `caf`, CJK text has no tokens at all); the only non-ASCII
//!   characters that survive are those whose lowercase is ASCII (`K` KELVIN SIGN → `k`, `İ` → `i`).
//! - **ROUGE-N**: clipped n-gram overlap; P = overlap / max(#prediction n-grams, 1),
//!   R = overlap / max(#reference n-grams, 1).
//! - **ROUGE-L**: token LCS; P = LCS / |prediction|, R = LCS / |reference|; 0 if either side has
//!   no tokens.
//! - **ROUGE-Lsum**: the texts are split into sentences on `'\n'` only (empty lines dropped) and
//!   scored with the summary-level union LCS of Lin (2004) §3.2, with rouge-score's particular
//!   LCS back-tracking (ties move up, i.e. shorten the reference) and per-token hit caps. Without
//!   newlines it equals ROUGE-L.
//! - **F** = 2PR / (P + R), or 0 when P + R = 0.
//!
//! Note the argument order: rouge-score's `score(target, prediction)` takes the reference
//! first; [`rouge`] takes the prediction first, like every function of [`super`].

use std::collections::HashMap;

use super::porter;
use super::pyunicode::py_lower;

/// Precision, recall and F-measure, each in [0, 1] (rouge-score's `Score`).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Score {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

impl Score {
    /// From precision and recall, with rouge-score's `scoring.fmeasure`.
    pub fn new(precision: f64, recall: f64) -> Score {
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Score {
            precision,
            recall,
            fmeasure,
        }
    }
}

/// The four ROUGE variants for one (prediction, reference) pair.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct RougeScores {
    pub rouge1: Score,
    pub rouge2: Score,
    pub rouge_l: Score,
    pub rouge_lsum: Score,
}

/// rouge-score's `tokenize.tokenize(text, stemmer)`.
pub fn tokenize(text: &str, stem: bool) -> Vec<String> {
    let lowered = py_lower(text);
    let cleaned: String = lowered
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split(' ')
        .filter(|token| !token.is_empty())
        .map(|token| {
            if stem && token.len() > 3 {
                porter::stem(token)
            } else {
                token.to_string()
            }
        })
        // rouge-score's final `^[a-z0-9]+$` filter (a stem is never empty, but keep the check).
        .filter(|token| !token.is_empty())
        .collect()
}

/// ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum of `prediction` against `reference`
/// (`RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=stem)
/// .score(reference, prediction)`).
pub fn rouge(prediction: &str, reference: &str, stem: bool) -> RougeScores {
    let pred = tokenize(prediction, stem);
    let refr = tokenize(reference, stem);
    RougeScores {
        rouge1: rouge_n_tokens(&pred, &refr, 1),
        rouge2: rouge_n_tokens(&pred, &refr, 2),
        rouge_l: rouge_l_tokens(&pred, &refr),
        rouge_lsum: rouge_lsum(prediction, reference, stem),
    }
}

/// ROUGE-N (`rougeN`, n ≥ 1) of `prediction` against `reference`.
pub fn rouge_n(prediction: &str, reference: &str, n: usize, stem: bool) -> Score {
    rouge_n_tokens(&tokenize(prediction, stem), &tokenize(reference, stem), n)
}

/// ROUGE-L of `prediction` against `reference`.
pub fn rouge_l(prediction: &str, reference: &str, stem: bool) -> Score {
    rouge_l_tokens(&tokenize(prediction, stem), &tokenize(reference, stem))
}

/// ROUGE-Lsum of `prediction` against `reference` (sentences split on `'\n'`).
pub fn rouge_lsum(prediction: &str, reference: &str, stem: bool) -> Score {
    let sentences = |text: &str| -> Vec<Vec<String>> {
        text.split('\n')
            .filter(|s| !s.is_empty())
            .map(|s| tokenize(s, stem))
            .collect()
    };
    summary_level_lcs(&sentences(reference), &sentences(prediction))
}

fn ngram_counts(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    if tokens.len() >= n {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// `_score_ngrams(_create_ngrams(target, n), _create_ngrams(prediction, n))`.
pub fn rouge_n_tokens(prediction: &[String], reference: &[String], n: usize) -> Score {
    assert!(n > 0, "rougeN requires positive n");
    let pred = ngram_counts(prediction, n);
    let refr = ngram_counts(reference, n);
    let overlap: usize = refr
        .iter()
        .map(|(gram, &count)| count.min(pred.get(gram).copied().unwrap_or(0)))
        .sum();
    let pred_total: usize = pred.values().sum();
    let ref_total: usize = refr.values().sum();
    Score::new(
        overlap as f64 / pred_total.max(1) as f64,
        overlap as f64 / ref_total.max(1) as f64,
    )
}

/// `_score_lcs(target, prediction)`.
pub fn rouge_l_tokens(prediction: &[String], reference: &[String]) -> Score {
    if prediction.is_empty() || reference.is_empty() {
        return Score::default();
    }
    let table = lcs_table(reference, prediction);
    let lcs = table[reference.len()][prediction.len()];
    Score::new(
        lcs as f64 / prediction.len() as f64,
        lcs as f64 / reference.len() as f64,
    )
}

/// `_lcs_table(ref, can)`: `t[i][j]` = LCS length of `ref[..i]` and `can[..j]`.
fn lcs_table<T: PartialEq>(reference: &[T], candidate: &[T]) -> Vec<Vec<usize>> {
    let mut table = vec![vec![0usize; candidate.len() + 1]; reference.len() + 1];
    for i in 1..=reference.len() {
        for j in 1..=candidate.len() {
            table[i][j] = if reference[i - 1] == candidate[j - 1] {
                table[i - 1][j - 1] + 1
            } else {
                table[i - 1][j].max(table[i][j - 1])
            };
        }
    }
    table
}

/// `lcs_ind(ref, can)`: the reference indices of one LCS, chosen by `_backtrack_norec`.
fn lcs_indices<T: PartialEq>(reference: &[T], candidate: &[T]) -> Vec<usize> {
    let table = lcs_table(reference, candidate);
    let (mut i, mut j) = (reference.len(), candidate.len());
    let mut indices = Vec::new();
    while i > 0 && j > 0 {
        if reference[i - 1] == candidate[j - 1] {
            indices.push(i - 1);
            i -= 1;
            j -= 1;
        } else if table[i][j - 1] > table[i - 1][j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    indices.reverse();
    indices
}

/// `_summary_level_lcs(ref_sent, can_sent)`.
fn summary_level_lcs(reference: &[Vec<String>], candidate: &[Vec<String>]) -> Score {
    if reference.is_empty() || candidate.is_empty() {
        return Score::default();
    }
    let m: usize = reference.iter().map(Vec::len).sum();
    let n: usize = candidate.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return Score::default();
    }
    let mut ref_counts: HashMap<&str, usize> = HashMap::new();
    let mut can_counts: HashMap<&str, usize> = HashMap::new();
    for token in reference.iter().flatten() {
        *ref_counts.entry(token).or_insert(0) += 1;
    }
    for token in candidate.iter().flatten() {
        *can_counts.entry(token).or_insert(0) += 1;
    }
    let mut hits = 0usize;
    for sentence in reference {
        // `_union_lcs`: the sorted union of the LCS indices against every candidate sentence.
        let mut union: Vec<usize> = candidate
            .iter()
            .flat_map(|can| lcs_indices(sentence, can))
            .collect();
        union.sort_unstable();
        union.dedup();
        for index in union {
            let token = sentence[index].as_str();
            let (Some(c), Some(r)) = (can_counts.get_mut(token), ref_counts.get_mut(token)) else {
                continue;
            };
            if *c > 0 && *r > 0 {
                hits += 1;
                *c -= 1;
                *r -= 1;
            }
        }
    }
    Score::new(hits as f64 / n as f64, hits as f64 / m as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-7
    }

    #[test]
    fn rouge_score_unit_cases() {
        // rouge_scorer_test.py: "testing one two" vs "testing".
        let s = rouge_n("testing", "testing one two", 1, false);
        assert_eq!((s.precision, s.recall, s.fmeasure), (1.0, 1.0 / 3.0, 0.5));
        assert_eq!(rouge("", "", false), RougeScores::default());
        assert_eq!(rouge("abc", "", true), RougeScores::default());
        // Summary-level LCS example of Lin (2004): R = 0.8, P = 0.4.
        let s = rouge_lsum("w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5", "w1 w2 w3 w4 w5", false);
        assert!(close(s.recall, 0.8) && close(s.precision, 0.4));
        assert!(close(s.fmeasure, 0.8 * 0.4 * 2.0 / 1.2));
        // All-punctuation lines contribute no tokens.
        let s = rouge_lsum("w1 w2\n.\n", "w1 w2", false);
        assert_eq!(s.fmeasure, 1.0);
    }

    #[test]
    fn tokenizer() {
        assert_eq!(
            tokenize("Hello, WORLD! café 42\u{212a}", false),
            ["hello", "world", "caf", "42k"]
        );
        assert_eq!(
            tokenize("running runners ran", true),
            ["run", "runner", "ran"]
        );
        assert!(tokenize("猫坐在垫子上", true).is_empty());
    }
}
