//! `calm score` through the binary, on values from the reference packages
//! (shared/reference/learn-then-test.md §4: rouge-score 0.1.2, sacrebleu 2.6.0).

use std::process::Output;

fn score(args: &[&str], stdin: &str) -> Output {
    let mut all = vec!["score"];
    all.extend_from_slice(args);
    crate::common::calm_with_stdin(&all, Some(stdin))
}

const PAIRS: &str = concat!(
    "{\"prediction\": \"The cats were sitting on the mats\", \"reference\": \"The cat sat on the mat.\"}\n",
    "{\"prediction\": \"\", \"reference\": \"Nothing was generated.\"}\n"
);

fn numbers(out: &Output) -> Vec<f64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn scores_match_the_reference_packages() {
    let rouge = numbers(&score(&["--metric", "rouge-l", "--pairs", "-"], PAIRS));
    assert!(
        (rouge[0] - 0.461538).abs() < 1e-6 && rouge[1] == 0.0,
        "{rouge:?}"
    );
    let stem = numbers(&score(&["--metric", "rougeL-stem", "--pairs", "-"], PAIRS));
    assert!((stem[0] - 0.769231).abs() < 1e-6, "{stem:?}");
    let bleu = numbers(&score(&["--metric", "bleu", "--pairs", "-"], PAIRS));
    assert!(
        (bleu[0] - 0.14535768).abs() < 1e-8 && bleu[1] == 0.0,
        "{bleu:?}"
    );
    let chrf = numbers(&score(&["--metric", "chrf", "--pairs", "-"], PAIRS));
    assert!((chrf[0] - 0.57253079).abs() < 1e-8, "{chrf:?}");
    let json = score(&["--metric", "token-f1", "--pairs", "-", "--json"], PAIRS);
    let first: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&json.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["metric"], "token-f1");
}

#[test]
fn bad_input_names_the_line_and_prints_nothing() {
    let out = score(
        &["--metric", "bleu", "--pairs", "-"],
        "{\"prediction\": \"a\", \"reference\": \"a\"}\n{\"prediction\": 3}\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    assert!(out.stdout.is_empty());
    let out = score(&["--metric", "meteor", "--pairs", "-"], PAIRS);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown metric"));
    let out = score(&["--metric", "bleu", "--pairs", "-"], "\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pairs"));
}
