//! Text metrics against golden values from the Python reference packages (rouge-score 0.1.2,
//! sacrebleu 2.6.0, nltk 3.10.4, the official SQuAD v1.1 script, CPython 3.11):
//! tests/fixtures/metrics/make_metrics_golden.py → metrics_golden.json.
//!
//! Tolerances: ROUGE, token F1 and exact match to 1e-9; BLEU and chrF to 1e-7 on their 0–100
//! scale; counts, lengths, tokens and stems exactly. (The port reproduces the reference
//! arithmetic operation for operation, so in practice the values agree bit for bit; the test
//! reports the largest difference seen; `CALM_METRICS_DEBUG=1` prints every inexact value.)
//! Two ignored tests run the larger checks: `porter_full_word_list` (226,499 words) and
//! `fuzz_pairs` (random tokenizer-stress pairs); see their doc comments.

use std::cell::Cell;

use calm::metrics::{bleu, chrf, porter, pyunicode, rouge, squad, Metric};
use serde_json::Value;

const TOL_UNIT: f64 = 1e-9;
const TOL_100: f64 = 1e-7;

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metrics/metrics_golden.json"
    );
    let text = std::fs::read_to_string(path).expect("golden file");
    serde_json::from_str(&quote_floats(&text)).expect("json")
}

/// Turns every non-integer JSON number into a string holding its literal, so that [`f`] parses
/// it with Rust's correctly rounded `str::parse` (serde_json without its `float_roundtrip`
/// feature may be 1 ulp off, which would hide whether the port is bit-exact).
fn quote_floats(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 8);
    let mut chars = json.chars().peekable();
    let (mut in_string, mut escaped) = (false, false);
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '-' || c.is_ascii_digit() {
            let mut number = c.to_string();
            while let Some(&next) = chars.peek() {
                if next.is_ascii_digit() || matches!(next, '.' | 'e' | 'E' | '+' | '-') {
                    number.push(next);
                    chars.next();
                } else {
                    break;
                }
            }
            if number.contains(['.', 'e', 'E']) {
                out.push('"');
                out.push_str(&number);
                out.push('"');
            } else {
                out.push_str(&number);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A float of the fixture (see [`quote_floats`]) or an integer.
fn f(v: &Value) -> f64 {
    match v {
        Value::String(literal) => literal
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {v}")),
        _ => v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")),
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Asserts |got − want| ≤ tol and records the largest difference.
struct Checker {
    max_diff: Cell<f64>,
    checked: Cell<usize>,
}

impl Checker {
    fn new() -> Checker {
        Checker {
            max_diff: Cell::new(0.0),
            checked: Cell::new(0),
        }
    }

    fn close(&self, got: f64, want: f64, tol: f64, what: &dyn Fn() -> String) {
        let diff = (got - want).abs();
        if diff > 0.0 && std::env::var("CALM_METRICS_DEBUG").is_ok() {
            eprintln!("inexact {}: {got:?} vs {want:?}", what());
        }
        assert!(diff <= tol, "{}: got {got:?}, want {want:?}", what());
        self.max_diff.set(self.max_diff.get().max(diff));
        self.checked.set(self.checked.get() + 1);
    }
}

fn check_bleu(c: &Checker, got: &bleu::BleuScore, want: &Value, what: &dyn Fn() -> String) {
    c.close(got.score, f(&want["score"]), TOL_100, &|| {
        format!("{} BLEU", what())
    });
    c.close(got.bp, f(&want["bp"]), TOL_UNIT, &|| {
        format!("{} BP", what())
    });
    assert_eq!(got.sys_len, u(&want["sys_len"]), "{} sys_len", what());
    assert_eq!(got.ref_len, u(&want["ref_len"]), "{} ref_len", what());
    for n in 0..bleu::MAX_NGRAM_ORDER {
        assert_eq!(got.counts[n], u(&want["counts"][n]), "{} counts", what());
        assert_eq!(got.totals[n], u(&want["totals"][n]), "{} totals", what());
        c.close(
            got.precisions[n],
            f(&want["precisions"][n]),
            TOL_100,
            &|| format!("{} precision {}", what(), n + 1),
        );
    }
}

/// Checks every metric of every (prediction, reference) pair; returns a one-line summary.
fn check_pairs(pairs: &[Value]) -> String {
    let (c_unit, c_100) = (Checker::new(), Checker::new());
    let mut bit_exact = true;
    for (i, pair) in pairs.iter().enumerate() {
        let (p, r) = (s(&pair["p"]), s(&pair["r"]));
        let what = || format!("pair {i} (p={p:?}, r={r:?})");
        for (stem, key) in [(false, "rouge"), (true, "rouge_stem")] {
            let got = rouge::rouge(p, r, stem);
            let scores = [got.rouge1, got.rouge2, got.rouge_l, got.rouge_lsum];
            for (k, (score, name)) in scores
                .iter()
                .zip(["rouge1", "rouge2", "rougeL", "rougeLsum"])
                .enumerate()
            {
                let want = &pair[key][k];
                for (j, (value, field)) in [score.precision, score.recall, score.fmeasure]
                    .into_iter()
                    .zip(["P", "R", "F"])
                    .enumerate()
                {
                    let w = f(&want[j]);
                    bit_exact &= value == w;
                    c_unit.close(value, w, TOL_UNIT, &|| {
                        format!("{} {name} {field} stem={stem}", what())
                    });
                }
            }
        }
        let b = bleu::sentence_bleu(p, r);
        bit_exact &= b.score == f(&pair["bleu"]["score"]);
        check_bleu(&c_100, &b, &pair["bleu"], &what);
        let chrf = chrf::sentence_chrf(p, r);
        bit_exact &= chrf == f(&pair["chrf"]);
        c_100.close(chrf, f(&pair["chrf"]), TOL_100, &|| {
            format!("{} chrF", what())
        });
        let f1 = squad::token_f1(p, r);
        bit_exact &= f1 == f(&pair["f1"]);
        c_unit.close(f1, f(&pair["f1"]), TOL_UNIT, &|| format!("{} F1", what()));
        c_unit.close(squad::exact_match(p, r), f(&pair["em"]), 0.0, &|| {
            format!("{} EM", what())
        });

        // The Metric facade is the same numbers on a 0–1 scale.
        let facade = [
            (Metric::Rouge1, f(&pair["rouge"][0][2])),
            (Metric::RougeL, f(&pair["rouge"][2][2])),
            (Metric::RougeLsumStem, f(&pair["rouge_stem"][3][2])),
            (Metric::Bleu, f(&pair["bleu"]["score"]) / 100.0),
            (Metric::Chrf, f(&pair["chrf"]) / 100.0),
            (Metric::TokenF1, f(&pair["f1"])),
            (Metric::ExactMatch, f(&pair["em"])),
        ];
        for (metric, want) in facade {
            let want = want.clamp(0.0, 1.0);
            c_unit.close(metric.score(p, r), want, TOL_UNIT, &|| {
                format!("{} {metric}", what())
            });
        }
    }
    format!(
        "{} pairs: {} values on [0,1] (max |diff| {:e}), {} on [0,100] (max |diff| {:e}); \
         bit-exact: {bit_exact}",
        pairs.len(),
        c_unit.checked.get(),
        c_unit.max_diff.get(),
        c_100.checked.get(),
        c_100.max_diff.get()
    )
}

#[test]
fn pairs_match_python() {
    let golden = golden();
    let pairs = golden["pairs"].as_array().unwrap();
    assert!(pairs.len() >= 300, "{} pairs", pairs.len());
    eprintln!("{}", check_pairs(pairs));
}

/// Random pairs built from tokenizer-sensitive pieces:
/// `python3 tests/fixtures/metrics/make_metrics_golden.py --fuzz /tmp/fuzz.jsonl` then
/// `CALM_METRICS_FUZZ=/tmp/fuzz.jsonl cargo test --test metrics_golden -- --ignored`.
#[test]
#[ignore = "needs CALM_METRICS_FUZZ=<JSON lines> from make_metrics_golden.py --fuzz"]
fn fuzz_pairs() {
    let path = std::env::var("CALM_METRICS_FUZZ").expect("set CALM_METRICS_FUZZ");
    let text = std::fs::read_to_string(&path).expect("fuzz file");
    let pairs: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(&quote_floats(line)).expect("json line"))
        .collect();
    assert!(!pairs.is_empty());
    eprintln!("fuzz: {}", check_pairs(&pairs));
}

#[test]
fn multi_reference_and_corpus_match_python() {
    let golden = golden();
    let c = Checker::new();
    for (i, case) in golden["multi_ref"].as_array().unwrap().iter().enumerate() {
        let hyp = s(&case["hyp"]);
        let refs: Vec<&str> = case["refs"].as_array().unwrap().iter().map(s).collect();
        let what = || format!("multi_ref {i} ({hyp:?} vs {refs:?})");
        check_bleu(
            &c,
            &bleu::sentence_bleu_multi(hyp, &refs),
            &case["bleu"],
            &what,
        );
        c.close(
            chrf::sentence_chrf_multi(hyp, &refs),
            f(&case["chrf"]),
            TOL_100,
            &what,
        );
    }
    let pairs = golden["pairs"].as_array().unwrap();
    let corpora = golden["corpus"].as_array().unwrap();
    assert!(corpora.len() >= 5);
    for case in corpora {
        let name = s(&case["name"]);
        let idx: Vec<usize> = case["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| u(v) as usize)
            .collect();
        let hyps: Vec<&str> = idx.iter().map(|&i| s(&pairs[i]["p"])).collect();
        let refs: Vec<&str> = idx.iter().map(|&i| s(&pairs[i]["r"])).collect();
        let what = || format!("corpus {name}");
        check_bleu(&c, &bleu::corpus_bleu(&hyps, &refs), &case["bleu"], &what);
        let chrf = chrf::corpus_chrf(&hyps, &refs);
        c.close(chrf, f(&case["chrf"]), TOL_100, &what);
        let bleu_unit = Metric::Bleu.corpus_score(&hyps, &refs);
        c.close(
            bleu_unit,
            (f(&case["bleu"]["score"]) / 100.0).min(1.0),
            TOL_UNIT,
            &what,
        );
        c.close(
            Metric::Chrf.corpus_score(&hyps, &refs),
            chrf / 100.0,
            TOL_UNIT,
            &what,
        );
    }
    eprintln!("multi-ref and corpus: max |diff| {:e}", c.max_diff.get());
}

#[test]
fn tokenizers_and_normalization_match_python() {
    let golden = golden();
    let rows = golden["tokens"].as_array().unwrap();
    assert!(rows.len() >= 100);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| s(t).to_string())
            .collect()
    };
    for row in rows {
        let text = s(&row["s"]);
        assert_eq!(
            rouge::tokenize(text, false),
            strings(&row["rouge"]),
            "rouge tokens {text:?}"
        );
        assert_eq!(
            rouge::tokenize(text, true),
            strings(&row["rouge_stem"]),
            "stemmed {text:?}"
        );
        let rstripped = pyunicode::py_rstrip(text);
        assert_eq!(
            bleu::tokenize_13a(rstripped),
            strings(&row["13a"]),
            "13a {text:?}"
        );
        assert_eq!(
            squad::normalize_answer(text),
            s(&row["squad"]),
            "normalize {text:?}"
        );
    }
}

#[test]
fn porter_sample_matches_nltk() {
    let golden = golden();
    let words = golden["porter"].as_object().unwrap();
    assert!(words.len() >= 2000, "{} words", words.len());
    for (word, want) in words {
        assert_eq!(porter::stem(word), s(want), "stem({word:?})");
    }
}

/// The full check behind the sample: every Bible token and 200,000 synthetic suffix-stress
/// words. `python3 tests/fixtures/metrics/make_metrics_golden.py --porter-words /tmp/words.tsv`
/// then `CALM_PORTER_WORDS=/tmp/words.tsv cargo test --test metrics_golden -- --ignored`.
#[test]
#[ignore = "needs CALM_PORTER_WORDS=<word<TAB>stem file> from make_metrics_golden.py"]
fn porter_full_word_list() {
    let path = std::env::var("CALM_PORTER_WORDS").expect("set CALM_PORTER_WORDS");
    let text = std::fs::read_to_string(&path).expect("word list");
    let mut mismatches = Vec::new();
    let mut n = 0;
    for line in text.lines() {
        let (word, want) = line.split_once('\t').expect("word<TAB>stem");
        n += 1;
        let got = porter::stem(word);
        if got != want {
            mismatches.push(format!("{word}: got {got}, want {want}"));
        }
    }
    assert!(n > 0);
    assert!(
        mismatches.is_empty(),
        "{} of {n} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    eprintln!("{n} words stem identically");
}

/// `pyunicode` against CPython 3.11 on every Unicode scalar value.
#[test]
fn python_unicode_tables() {
    let golden = golden();
    let table = &golden["unicode"];
    let all = (0u32..0x11_0000).filter_map(char::from_u32);

    let mut word = vec![false; 0x11_0000];
    for range in table["word_ranges"].as_array().unwrap() {
        for cp in u(&range[0])..=u(&range[1]) {
            word[cp as usize] = true;
        }
    }
    let wrong: Vec<String> = all
        .clone()
        .filter(|&c| pyunicode::py_is_word(c) != word[c as usize])
        .map(|c| format!("U+{:04X}", c as u32))
        .collect();
    assert!(
        wrong.is_empty(),
        "py_is_word differs from Python's \\w at {wrong:?}"
    );

    let mut space = vec![false; 0x11_0000];
    for cp in table["isspace"].as_array().unwrap() {
        space[u(cp) as usize] = true;
    }
    let wrong: Vec<u32> = all
        .clone()
        .filter(|&c| pyunicode::py_isspace(c) != space[c as usize])
        .map(|c| c as u32)
        .collect();
    assert!(wrong.is_empty(), "py_isspace differs at {wrong:x?}");

    let mut lower: Vec<Option<String>> = vec![None; 0x11_0000];
    for run in table["lower_runs"].as_array().unwrap() {
        let (first, last, step) = (u(&run[0]), u(&run[1]), u(&run[2]) as usize);
        let delta = run[3].as_i64().unwrap();
        for cp in (first..=last).step_by(step) {
            let to = char::from_u32((cp as i64 + delta) as u32).unwrap();
            lower[cp as usize] = Some(to.to_string());
        }
    }
    for special in table["lower_special"].as_array().unwrap() {
        lower[u(&special[0]) as usize] = Some(s(&special[1]).to_string());
    }
    let wrong: Vec<String> = all
        .filter(|&c| {
            let want = lower[c as usize].clone().unwrap_or_else(|| c.to_string());
            pyunicode::py_lower_char(c) != want || pyunicode::py_lower(&c.to_string()) != want
        })
        .map(|c| format!("U+{:04X}", c as u32))
        .collect();
    assert!(
        wrong.is_empty(),
        "py_lower differs from str.lower() at {wrong:?}"
    );
}

#[test]
fn fixture_provenance() {
    let golden = golden();
    let v = &golden["versions"];
    assert_eq!(s(&v["rouge-score"]), "0.1.2");
    assert_eq!(s(&v["sacrebleu"]), "2.6.0");
    assert_eq!(s(&v["nltk"]), "3.10.4");
    assert!(s(&v["python"]).starts_with("3.11."));
}
