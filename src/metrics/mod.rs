//! Text metrics for consistency losses and reports: ROUGE (rouge-score conventions), sentence
//! BLEU and chrF (sacrebleu defaults), SQuAD token F1 and exact match.
//!
//! Every metric is a port of a Python reference, matched value for value on the golden fixture
//! `tests/fixtures/metrics/metrics_golden.json` (written by `make_metrics_golden.py` next to it):
//!
//! | module | reference |
//! |---|---|
//! | [`rouge`] | `rouge-score` 0.1.2 (`RougeScorer`, default tokenizer, `split_summaries=False`) |
//! | [`porter`] | `nltk` 3.10.4 `PorterStemmer()` (`NLTK_EXTENSIONS` mode), as rouge-score uses it |
//! | [`bleu`] | `sacrebleu` 2.6.0 `sentence_bleu` / `corpus_bleu` with default arguments |
//! | [`chrf`] | `sacrebleu` 2.6.0 `sentence_chrf` / `corpus_chrf` with default arguments |
//! | [`squad`] | SQuAD v1.1 `evaluate-v1.1.py` (`normalize_answer`, `f1_score`, `exact_match_score`) |
//!
//! The Python string semantics these rely on (`str.lower()`, `str.split()`, `re`'s `\w`) are in
//! [`pyunicode`], taken from CPython 3.11 (Unicode 14.0).
//!
//! [`Metric`] names one score in [0, 1] per (prediction, reference) pair, for `calm score
//! --metric M` and for consistency losses `1 − score`.

pub mod bleu;
pub mod chrf;
pub mod porter;
pub mod pyunicode;
pub mod rouge;
pub mod squad;

use std::fmt;
use std::str::FromStr;

/// A per-example text metric with values in [0, 1] (higher is better).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// ROUGE-1 F-measure, no stemming (rouge-score's default).
    Rouge1,
    /// ROUGE-2 F-measure, no stemming.
    Rouge2,
    /// ROUGE-L F-measure, no stemming.
    RougeL,
    /// ROUGE-Lsum F-measure (sentences split on `'\n'`), no stemming.
    RougeLsum,
    /// ROUGE-1 F-measure with the Porter stemmer (`use_stemmer=True`).
    Rouge1Stem,
    /// ROUGE-2 F-measure with the Porter stemmer.
    Rouge2Stem,
    /// ROUGE-L F-measure with the Porter stemmer.
    RougeLStem,
    /// ROUGE-Lsum F-measure with the Porter stemmer.
    RougeLsumStem,
    /// sacrebleu sentence BLEU / 100.
    Bleu,
    /// sacrebleu sentence chrF / 100.
    Chrf,
    /// SQuAD v1.1 token F1.
    TokenF1,
    /// SQuAD v1.1 exact match (0 or 1).
    ExactMatch,
}

impl Metric {
    /// Every metric, in the order of [`Metric::name`]'s table.
    pub const ALL: [Metric; 12] = [
        Metric::Rouge1,
        Metric::Rouge2,
        Metric::RougeL,
        Metric::RougeLsum,
        Metric::Rouge1Stem,
        Metric::Rouge2Stem,
        Metric::RougeLStem,
        Metric::RougeLsumStem,
        Metric::Bleu,
        Metric::Chrf,
        Metric::TokenF1,
        Metric::ExactMatch,
    ];

    /// The canonical name: `rouge1`, `rouge2`, `rougeL`, `rougeLsum` (rouge-score's names), the
    /// same with `-stem`, `bleu`, `chrf`, `token-f1`, `exact-match`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Rouge1 => "rouge1",
            Metric::Rouge2 => "rouge2",
            Metric::RougeL => "rougeL",
            Metric::RougeLsum => "rougeLsum",
            Metric::Rouge1Stem => "rouge1-stem",
            Metric::Rouge2Stem => "rouge2-stem",
            Metric::RougeLStem => "rougeL-stem",
            Metric::RougeLsumStem => "rougeLsum-stem",
            Metric::Bleu => "bleu",
            Metric::Chrf => "chrf",
            Metric::TokenF1 => "token-f1",
            Metric::ExactMatch => "exact-match",
        }
    }

    /// Parses a name: the canonical names case-insensitively, with `_` for `-` and an optional
    /// hyphen after `rouge` (`rouge-l`, `ROUGE-Lsum_stem`), plus the aliases `f1` (token F1) and
    /// `em` / `exact` (exact match).
    pub fn from_name(name: &str) -> Option<Metric> {
        let mut wanted = name.trim().to_ascii_lowercase().replace('_', "-");
        if let Some(rest) = wanted.strip_prefix("rouge-") {
            wanted = format!("rouge{rest}");
        }
        match wanted.as_str() {
            "f1" => return Some(Metric::TokenF1),
            "em" | "exact" => return Some(Metric::ExactMatch),
            _ => {}
        }
        Metric::ALL
            .into_iter()
            .find(|metric| metric.name().to_ascii_lowercase() == wanted)
    }

    /// The score of `prediction` against `reference`, in [0, 1]. BLEU and chrF are sacrebleu's
    /// 0–100 values divided by 100 and clamped to [0, 1] (sacrebleu gives an exact match
    /// `exp(ln 100) = 100.00000000000004`).
    pub fn score(self, prediction: &str, reference: &str) -> f64 {
        let (p, r) = (prediction, reference);
        let value = match self {
            Metric::Rouge1 => rouge::rouge_n(p, r, 1, false).fmeasure,
            Metric::Rouge2 => rouge::rouge_n(p, r, 2, false).fmeasure,
            Metric::RougeL => rouge::rouge_l(p, r, false).fmeasure,
            Metric::RougeLsum => rouge::rouge_lsum(p, r, false).fmeasure,
            Metric::Rouge1Stem => rouge::rouge_n(p, r, 1, true).fmeasure,
            Metric::Rouge2Stem => rouge::rouge_n(p, r, 2, true).fmeasure,
            Metric::RougeLStem => rouge::rouge_l(p, r, true).fmeasure,
            Metric::RougeLsumStem => rouge::rouge_lsum(p, r, true).fmeasure,
            Metric::Bleu => bleu::sentence_bleu(p, r).score / 100.0,
            Metric::Chrf => chrf::sentence_chrf(p, r) / 100.0,
            Metric::TokenF1 => squad::token_f1(p, r),
            Metric::ExactMatch => squad::exact_match(p, r),
        };
        value.clamp(0.0, 1.0)
    }

    /// The consistency loss `1 − score`, in [0, 1].
    pub fn loss(self, prediction: &str, reference: &str) -> f64 {
        1.0 - self.score(prediction, reference)
    }

    /// A corpus-level score in [0, 1]: sacrebleu's `corpus_bleu` / `corpus_chrf` (statistics
    /// summed over segments) divided by 100 for BLEU and chrF, the mean of the per-example
    /// scores for the others; 0 for an empty corpus. Panics if the lengths differ.
    pub fn corpus_score<P: AsRef<str>, R: AsRef<str>>(
        self,
        predictions: &[P],
        references: &[R],
    ) -> f64 {
        assert_eq!(
            predictions.len(),
            references.len(),
            "one reference per prediction"
        );
        if predictions.is_empty() {
            return 0.0;
        }
        let value = match self {
            Metric::Bleu => bleu::corpus_bleu(predictions, references).score / 100.0,
            Metric::Chrf => chrf::corpus_chrf(predictions, references) / 100.0,
            _ => {
                let sum: f64 = predictions
                    .iter()
                    .zip(references)
                    .map(|(p, r)| self.score(p.as_ref(), r.as_ref()))
                    .sum();
                sum / predictions.len() as f64
            }
        };
        value.clamp(0.0, 1.0)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Serialized by its canonical name (`rougeL`, `bleu`, …); read back by [`Metric::from_name`].
impl serde::Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Metric, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Metric, String> {
        Metric::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            format!(
                "unknown metric {s:?} (expected one of: {})",
                names.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for metric in Metric::ALL {
            assert_eq!(Metric::from_name(metric.name()), Some(metric));
            assert_eq!(metric.to_string().parse::<Metric>(), Ok(metric));
        }
        assert_eq!(Metric::from_name("ROUGEL"), Some(Metric::RougeL));
        assert_eq!(
            Metric::from_name("rougeLsum_stem"),
            Some(Metric::RougeLsumStem)
        );
        assert_eq!(Metric::from_name("chrF"), Some(Metric::Chrf));
        assert_eq!(Metric::from_name("token_f1"), Some(Metric::TokenF1));
        assert_eq!(Metric::from_name("em"), Some(Metric::ExactMatch));
        assert_eq!(Metric::from_name("exact"), Some(Metric::ExactMatch));
        assert_eq!(Metric::from_name("ROUGE-L"), Some(Metric::RougeL));
        assert_eq!(Metric::from_name("rouge-l-stem"), Some(Metric::RougeLStem));
        assert_eq!(Metric::from_name("rouge-2"), Some(Metric::Rouge2));
        assert!(Metric::from_name("bleurt").is_none());
        assert!("meteor"
            .parse::<Metric>()
            .unwrap_err()
            .contains("rougeLsum"));
    }

    #[test]
    fn identical_strings_score_one() {
        for metric in Metric::ALL {
            let text = "The quick brown fox jumps over the lazy dog.\nIt was fast.";
            assert_eq!(metric.score(text, text), 1.0, "{metric}");
            assert_eq!(metric.loss(text, text), 0.0, "{metric}");
        }
    }

    /// `example_pairs.json` of /work/shared/reference/learn-then-test.md §4 (values printed to
    /// 6 decimals by rouge-score 0.1.2 and sacrebleu 2.6.0).
    #[test]
    fn reference_example_pairs() {
        let close = |got: f64, want: f64, what: &str| {
            assert!((got - want).abs() <= 5e-7, "{what}: got {got}, want {want}");
        };
        let rouge_f = |s: rouge::RougeScores| {
            [
                s.rouge1.fmeasure,
                s.rouge2.fmeasure,
                s.rouge_l.fmeasure,
                s.rouge_lsum.fmeasure,
            ]
        };
        let check_rouge = |p: &str, r: &str, stem: bool, want: [f64; 4]| {
            for (got, want) in rouge_f(rouge::rouge(p, r, stem)).into_iter().zip(want) {
                close(got, want, &format!("rouge {p:?} stem={stem}"));
            }
        };

        // [1]
        let (p, r) = (
            "The cats were sitting on the mats",
            "The cat sat on the mat.",
        );
        check_rouge(p, r, false, [0.461538, 0.181818, 0.461538, 0.461538]);
        check_rouge(p, r, true, [0.769231, 0.545455, 0.769231, 0.769231]);
        let b = bleu::sentence_bleu(p, r);
        close(b.score, 14.535768, "bleu [1]");
        for (got, want) in b.precisions.into_iter().zip([42.8571, 16.6667, 10.0, 6.25]) {
            assert!((got - want).abs() < 5e-5, "precision {got} vs {want}");
        }
        assert_eq!((b.bp, b.sys_len, b.ref_len), (1.0, 7, 7));
        close(chrf::sentence_chrf(p, r), 57.253079, "chrf [1]");

        // [2]
        let p = "A quick brown fox jumps over the lazy dog.\nIt was fast.";
        let r = "The quick brown fox jumped over the lazy dog.\nIt was very fast.";
        check_rouge(p, r, false, [0.8, 0.608696, 0.8, 0.8]);
        check_rouge(p, r, true, [0.88, 0.782609, 0.88, 0.88]);
        let b = bleu::sentence_bleu(p, r);
        close(b.score, 53.361298, "bleu [2]");
        close(b.bp, 0.931063, "bp [2]");
        assert_eq!((b.sys_len, b.ref_len), (14, 15));
        close(chrf::sentence_chrf(p, r), 72.949972, "chrf [2]");

        // [3]
        let (p, r) = ("", "Nothing was generated.");
        check_rouge(p, r, false, [0.0; 4]);
        check_rouge(p, r, true, [0.0; 4]);
        let b = bleu::sentence_bleu(p, r);
        assert_eq!((b.score, b.bp), (0.0, 0.0));
        assert_eq!(chrf::sentence_chrf(p, r), 0.0);

        // [4] CJK: no rouge-score tokens at all, but one 13a token and six characters.
        let t = "猫坐在垫子上";
        check_rouge(t, t, false, [0.0; 4]);
        check_rouge(t, t, true, [0.0; 4]);
        close(bleu::sentence_bleu(t, t).score, 100.0, "bleu [4]");
        close(chrf::sentence_chrf(t, t), 100.0, "chrf [4]");

        // [5]
        let (p, r) = ("running runner runs", "run runs ran");
        close(
            rouge::rouge(p, r, false).rouge1.fmeasure,
            0.333333,
            "r1 [5]",
        );
        close(
            rouge::rouge(p, r, true).rouge1.fmeasure,
            0.666667,
            "r1 stem [5]",
        );
        let b = bleu::sentence_bleu(p, r);
        close(b.score, 27.516060, "bleu [5]");
        for (got, want) in b.precisions.into_iter().zip([100.0 / 3.0, 25.0, 25.0, 0.0]) {
            close(got, want, "precisions [5]");
        }
        close(chrf::sentence_chrf(p, r), 28.488631, "chrf [5]");

        // [0] identical strings.
        let t = "The cat sat on the mat.";
        check_rouge(t, t, true, [1.0; 4]);
        close(bleu::sentence_bleu(t, t).score, 100.0, "bleu [0]");
        close(chrf::sentence_chrf(t, t), 100.0, "chrf [0]");
    }
}
