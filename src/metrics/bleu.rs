//! BLEU exactly as sacrebleu 2.6.0 with its defaults: the `13a` tokenizer (mteval-v13a, the WMT
//! standard), case-sensitive, `exp` smoothing (NIST / Chen & Cherry method 3), 4-gram, on a
//! 0–100 scale.
//!
//! - [`sentence_bleu`] = `sacrebleu.sentence_bleu(hyp, [ref])`: `use_effective_order=True`, so a
//!   hypothesis shorter than 4 tokens is scored on the orders it has (a 1-token exact match is
//!   100).
//! - [`corpus_bleu`] = `sacrebleu.corpus_bleu(hyps, [refs])`: statistics summed over segments,
//!   `use_effective_order=False`.
//!
//! Conventions that are easy to get wrong: the inputs are right-stripped (Python `str.rstrip()`)
//! before tokenizing; `"-\n"` is deleted and other newlines become spaces; `&quot; &amp; &lt;
//! &gt;` are unescaped; when no n-gram of any order matches the score is 0 (even with
//! smoothing); with exp smoothing the k-th order without matches gets precision
//! 100 / (2^k · total); the brevity penalty is exp(1 − r/c) when c < r (0 when c = 0).
//! With several references (the `_multi` functions) the n-gram counts are clipped by the
//! maximum count over the references and r is the reference length closest to c (ties: the
//! shorter).

use std::collections::HashMap;

use super::pyunicode::{py_rstrip, py_split_whitespace};

/// The maximum n-gram order (sacrebleu's `MAX_NGRAM_ORDER`).
pub const MAX_NGRAM_ORDER: usize = 4;

/// A BLEU score with its sufficient statistics (sacrebleu's `BLEUScore`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BleuScore {
    /// BLEU on the 0–100 scale.
    pub score: f64,
    /// Clipped n-gram matches for n = 1..=4.
    pub counts: [u64; MAX_NGRAM_ORDER],
    /// Hypothesis n-grams for n = 1..=4.
    pub totals: [u64; MAX_NGRAM_ORDER],
    /// n-gram precisions (0–100, smoothed); 0 for orders not used.
    pub precisions: [f64; MAX_NGRAM_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    /// Hypothesis length in tokens.
    pub sys_len: u64,
    /// Reference length in tokens.
    pub ref_len: u64,
}

/// sacrebleu's `Tokenizer13a` (`tokenizers/tokenizer_13a.py` + `tokenizer_re.py`): returns the
/// tokens of the space-joined tokenized line.
pub fn tokenize_13a(line: &str) -> Vec<String> {
    let mut line = line.replace("<skipped>", "");
    line = line.replace("-\n", "");
    line = line.replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"");
        line = line.replace("&amp;", "&");
        line = line.replace("&lt;", "<");
        line = line.replace("&gt;", ">");
    }
    let mut chars: Vec<char> = Vec::with_capacity(line.len() + 2);
    chars.push(' ');
    chars.extend(line.chars());
    chars.push(' ');

    // ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 ": ASCII punctuation and symbols except ' , - .
    // (the class includes the space itself).
    let mut out = Vec::with_capacity(chars.len() * 2);
    for &c in &chars {
        if matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/') {
            out.extend([' ', c, ' ']);
        } else {
            out.push(c);
        }
    }
    let digit = |c: char| c.is_ascii_digit();
    let period_or_comma = |c: char| c == '.' || c == ',';
    // ([^0-9])([\.,]) -> "\1 \2 "
    let out = substitute_pairs(
        &out,
        |a, b| !digit(a) && period_or_comma(b),
        |a, b| vec![a, ' ', b, ' '],
    );
    // ([\.,])([^0-9]) -> " \1 \2"
    let out = substitute_pairs(
        &out,
        |a, b| period_or_comma(a) && !digit(b),
        |a, b| vec![' ', a, ' ', b],
    );
    // ([0-9])(-) -> "\1 \2 "
    let out = substitute_pairs(
        &out,
        |a, b| digit(a) && b == '-',
        |a, b| vec![a, ' ', b, ' '],
    );
    let joined: String = out.into_iter().collect();
    py_split_whitespace(&joined).map(str::to_string).collect()
}

/// Python `re.sub` of a two-character pattern: scan left to right, replace each non-overlapping
/// match and resume after it.
fn substitute_pairs(
    chars: &[char],
    matches: impl Fn(char, char) -> bool,
    replace: impl Fn(char, char) -> Vec<char>,
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 2);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && matches(chars[i], chars[i + 1]) {
            out.extend(replace(chars[i], chars[i + 1]));
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// BLEU's `_preprocess_segment`: `tokenize_13a(sent.rstrip())` (no lowercasing by default).
fn preprocess(sentence: &str) -> Vec<String> {
    tokenize_13a(py_rstrip(sentence))
}

fn ngram_counts(tokens: &[String]) -> HashMap<&[String], u64> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_NGRAM_ORDER {
        if tokens.len() >= n {
            for gram in tokens.windows(n) {
                *counts.entry(gram).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Sufficient statistics of one segment: `[sys_len, ref_len, correct × 4, total × 4]`.
fn segment_statistics(hypothesis: &str, references: &[&str]) -> [u64; 2 + 2 * MAX_NGRAM_ORDER] {
    let ref_tokens: Vec<Vec<String>> = references.iter().map(|r| preprocess(r)).collect();
    let mut ref_ngrams: HashMap<&[String], u64> = HashMap::new();
    for tokens in &ref_tokens {
        for (gram, count) in ngram_counts(tokens) {
            let entry = ref_ngrams.entry(gram).or_insert(0);
            *entry = (*entry).max(count);
        }
    }
    let hyp_tokens = preprocess(hypothesis);
    let hyp_len = hyp_tokens.len() as u64;
    // `_get_closest_ref_len`.
    let mut closest: Option<(u64, u64)> = None;
    for tokens in &ref_tokens {
        let len = tokens.len() as u64;
        let diff = hyp_len.abs_diff(len);
        closest = match closest {
            None => Some((diff, len)),
            Some((d, l)) if diff < d || (diff == d && len < l) => Some((diff, len)),
            keep => keep,
        };
    }
    let ref_len = closest.map_or(0, |(_, len)| len);
    let mut stats = [0u64; 2 + 2 * MAX_NGRAM_ORDER];
    stats[0] = hyp_len;
    stats[1] = ref_len;
    for (gram, count) in ngram_counts(&hyp_tokens) {
        let n = gram.len() - 1;
        stats[2 + MAX_NGRAM_ORDER + n] += count;
        if let Some(&ref_count) = ref_ngrams.get(gram) {
            stats[2 + n] += count.min(ref_count);
        }
    }
    stats
}

/// sacrebleu's `BLEU.compute_bleu` with `smooth_method='exp'`.
fn compute_bleu(stats: &[u64; 2 + 2 * MAX_NGRAM_ORDER], effective_order: bool) -> BleuScore {
    let (sys_len, ref_len) = (stats[0], stats[1]);
    let mut counts = [0u64; MAX_NGRAM_ORDER];
    let mut totals = [0u64; MAX_NGRAM_ORDER];
    counts.copy_from_slice(&stats[2..2 + MAX_NGRAM_ORDER]);
    totals.copy_from_slice(&stats[2 + MAX_NGRAM_ORDER..]);
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0f64; MAX_NGRAM_ORDER];
    let score = if counts.iter().all(|&c| c == 0) {
        0.0
    } else {
        let mut smooth_mteval = 1.0f64;
        let mut eff_order = MAX_NGRAM_ORDER;
        for n in 1..=MAX_NGRAM_ORDER {
            if totals[n - 1] == 0 {
                break;
            }
            if effective_order {
                eff_order = n;
            }
            precisions[n - 1] = if counts[n - 1] == 0 {
                smooth_mteval *= 2.0;
                100.0 / (smooth_mteval * totals[n - 1] as f64)
            } else {
                100.0 * counts[n - 1] as f64 / totals[n - 1] as f64
            };
        }
        // `my_log`: log(0) is floored to -9999999999 (orders with no hypothesis n-grams).
        let log_sum = precisions[..eff_order].iter().fold(0.0f64, |acc, &p| {
            acc + if p == 0.0 { -9_999_999_999.0 } else { p.ln() }
        });
        bp * (log_sum / eff_order as f64).exp()
    };
    BleuScore {
        score,
        counts,
        totals,
        precisions,
        bp,
        sys_len,
        ref_len,
    }
}

/// `sacrebleu.sentence_bleu(hypothesis, [reference])` (0–100).
pub fn sentence_bleu(hypothesis: &str, reference: &str) -> BleuScore {
    sentence_bleu_multi(hypothesis, &[reference])
}

/// `sacrebleu.sentence_bleu(hypothesis, references)` with one or more references (0–100).
pub fn sentence_bleu_multi(hypothesis: &str, references: &[&str]) -> BleuScore {
    compute_bleu(&segment_statistics(hypothesis, references), true)
}

/// `sacrebleu.corpus_bleu(hypotheses, [references])`: one reference per hypothesis (0–100).
/// Panics if the lengths differ.
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(hypotheses: &[H], references: &[R]) -> BleuScore {
    assert_eq!(
        hypotheses.len(),
        references.len(),
        "corpus_bleu: one reference per hypothesis"
    );
    let refs: Vec<[&str; 1]> = references.iter().map(|r| [r.as_ref()]).collect();
    let refs: Vec<&[&str]> = refs.iter().map(|r| r.as_slice()).collect();
    corpus_bleu_multi(hypotheses, &refs)
}

/// `sacrebleu.corpus_bleu` where segment i has the references `references[i]` (0–100).
/// Panics if the lengths differ.
pub fn corpus_bleu_multi<H: AsRef<str>>(hypotheses: &[H], references: &[&[&str]]) -> BleuScore {
    assert_eq!(
        hypotheses.len(),
        references.len(),
        "corpus_bleu: references per hypothesis"
    );
    let mut total = [0u64; 2 + 2 * MAX_NGRAM_ORDER];
    for (hypothesis, refs) in hypotheses.iter().zip(references) {
        let stats = segment_statistics(hypothesis.as_ref(), refs);
        for (t, s) in total.iter_mut().zip(stats) {
            *t += s;
        }
    }
    compute_bleu(&total, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a() {
        assert_eq!(
            tokenize_13a("Hello, world! It's 3.14 or 1,000-2 (e.g. x-y).").join(" "),
            "Hello , world ! It's 3.14 or 1,000 - 2 ( e . g . x-y ) ."
        );
        assert_eq!(
            tokenize_13a("a &amp;quot; b&lt;c well-\nknown").join(" "),
            "a & quot ; b < c wellknown"
        );
    }

    #[test]
    fn sacrebleu_test_suite_value() {
        // Value printed by sacrebleu 2.6.0 (80.0/55.6/25.0/14.3, BP = 1).
        let s = sentence_bleu(
            "Iraq is to spend $ 50 million on bridge project",
            "Iraq is spending $ 50 million on the bridge project",
        );
        assert!((s.score - 35.494_810_560_100_525).abs() < 1e-9, "{s:?}");
    }
}
