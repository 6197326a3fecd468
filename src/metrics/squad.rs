//! SQuAD v1.1 answer metrics exactly as the official `evaluate-v1.1.py`: `normalize_answer`,
//! token F1 (`f1_score`) and exact match (`exact_match_score`).
//!
//! `normalize_answer` = Python `str.lower()`, then delete the ASCII punctuation of
//! `string.punctuation` (including `_`; other characters such as `«»’` stay), then
//! `re.sub(r'\b(a|an|the)\b', ' ', text)` with Python's Unicode word boundaries (`l'a` becomes
//! `la` and stays, `thé` stays, `«the»` loses `the`), then collapse Python whitespace to single
//! spaces.
//!
//! Token F1 is computed on the whitespace tokens of the normalized strings with multiset
//! overlap; it is 0 when nothing overlaps, **including when both answers normalize to empty**
//! (v1.1 behaviour; v2.0 would give 1). Exact match compares the normalized strings, so two
//! empty answers match.

use std::collections::HashMap;

use super::pyunicode::{py_is_word, py_lower, py_split_whitespace};

/// `string.punctuation`.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
}

/// `re.sub(r'\b(a|an|the)\b', ' ', text)`.
fn remove_articles(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let word_at = |i: usize| i < chars.len() && py_is_word(chars[i]);
    // `\b` at position i: exactly one of chars[i-1], chars[i] is a word character.
    let boundary = |i: usize| (i > 0 && word_at(i - 1)) != word_at(i);
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let matched = if boundary(i) {
            ["a", "an", "the"].iter().find_map(|article| {
                let end = i + article.len();
                let fits = end <= chars.len() && chars[i..end].iter().copied().eq(article.chars());
                (fits && boundary(end)).then_some(end)
            })
        } else {
            None
        };
        match matched {
            Some(end) => {
                out.push(' ');
                i = end;
            }
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    out
}

/// The official SQuAD v1.1 `normalize_answer`.
pub fn normalize_answer(s: &str) -> String {
    let lowered = py_lower(s);
    let no_punct: String = lowered.chars().filter(|&c| !is_punctuation(c)).collect();
    let no_articles = remove_articles(&no_punct);
    py_split_whitespace(&no_articles)
        .collect::<Vec<_>>()
        .join(" ")
}

/// SQuAD v1.1 `f1_score(prediction, ground_truth)`, in [0, 1].
pub fn token_f1(prediction: &str, reference: &str) -> f64 {
    let pred_norm = normalize_answer(prediction);
    let ref_norm = normalize_answer(reference);
    let pred: Vec<&str> = py_split_whitespace(&pred_norm).collect();
    let refr: Vec<&str> = py_split_whitespace(&ref_norm).collect();
    let mut ref_counts: HashMap<&str, usize> = HashMap::new();
    for token in &refr {
        *ref_counts.entry(token).or_insert(0) += 1;
    }
    let mut pred_counts: HashMap<&str, usize> = HashMap::new();
    for token in &pred {
        *pred_counts.entry(token).or_insert(0) += 1;
    }
    let num_same: usize = pred_counts
        .iter()
        .map(|(token, &count)| count.min(ref_counts.get(token).copied().unwrap_or(0)))
        .sum();
    if num_same == 0 {
        return 0.0;
    }
    let precision = num_same as f64 / pred.len() as f64;
    let recall = num_same as f64 / refr.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// SQuAD v1.1 `exact_match_score(prediction, ground_truth)`: 1.0 or 0.0.
pub fn exact_match(prediction: &str, reference: &str) -> f64 {
    if normalize_answer(prediction) == normalize_answer(reference) {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        assert_eq!(
            normalize_answer("The  Cat, a dog & AN apple!"),
            "cat dog apple"
        );
        assert_eq!(
            normalize_answer("theater another a_b"),
            "theater another ab"
        );
        assert_eq!(normalize_answer("l'a thé «the»"), "la thé « »");
        assert_eq!(token_f1("", ""), 0.0);
        assert_eq!(exact_match("The", "a"), 1.0);
        assert_eq!(token_f1("the cat sat", "a cat sat down"), 0.8);
    }
}
