//! `calm trials`: the random-split protocol on synthetic records whose losses are exchangeable.

use serde_json::Value;
use std::process::Command;

#[test]
fn random_splits_rarely_violate_the_bound() {
    let dir = std::env::temp_dir().join(format!("calm-trials-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let records = dir.join("r.parquet");
    let calm = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_calm"))
            .args(args)
            .output()
            .unwrap()
    };
    assert!(calm(&[
        "simulate-records",
        "--out",
        records.to_str().unwrap(),
        "--examples",
        "1500",
        "--lambdas",
        "20",
        "--seed",
        "4"
    ])
    .status
    .success());
    let out = dir.join("trials");
    let run = calm(&[
        "trials",
        "--records",
        records.to_str().unwrap(),
        "--delta",
        "0.1",
        "--epsilon",
        "0.1",
        "--runs",
        "100",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["runs"], 100);
    assert_eq!(summary["calibration_examples"], 1200);
    let rate = summary["violation_rate"].as_f64().unwrap();
    // Valid calibration keeps violations near or below ε = 0.1 (the 300-example test part adds
    // its own noise, hence the margin).
    assert!(
        rate <= 0.1 + 3.0 * (0.1f64 * 0.9 / 100.0).sqrt(),
        "violation rate {rate}"
    );
    assert!(summary["mean_test_risk"].as_f64().unwrap() <= 0.1);
    let trials = summary["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 100);
    assert!(trials
        .iter()
        .all(|t| t["violated"].as_bool().unwrap() == (t["test_risk"].as_f64().unwrap() > 0.1)));
    assert_eq!(
        &std::fs::read(out.join("trials.png")).unwrap()[..4],
        b"\x89PNG"
    );
    assert!(out.join("trials.json").exists() && out.join("trials.svg").exists());
}

/// A CSV of two chains (softmax-diff and state, τ 0) over 200 exchangeable examples, with the
/// `chain_complete` column set to `complete` for the state chain (None: no column at all).
fn two_chain_csv(path: &std::path::Path, complete: Option<&str>) {
    let mut text = String::from("example,measure,tau,lambda,loss,layers,tokens,num_layers");
    if complete.is_some() {
        text.push_str(",chain_complete");
    }
    text.push('\n');
    for measure in ["softmax-diff", "state"] {
        for (j, lambda) in [0.9, 0.6, 0.3].iter().enumerate() {
            for i in 0..200 {
                let loss = u8::from((i * 7 + j * 13) % 100 < 3 * (j + 1));
                text.push_str(&format!(
                    "e{i:03},{measure},0,{lambda},{loss},{},10,8",
                    6 - 2 * j
                ));
                match (complete, measure) {
                    (Some(flag), "state") => text.push_str(&format!(",{flag}")),
                    (Some(_), _) => text.push_str(",true"),
                    (None, _) => {}
                }
                text.push('\n');
            }
        }
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn truncated_chains_are_refused_unless_allowed() {
    let dir = std::env::temp_dir().join(format!("calm-trials-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let calm = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_calm"))
            .args(args)
            .output()
            .unwrap()
    };
    let trials = |records: &std::path::Path, out: &str, extra: &[&str]| {
        let out = dir.join(out);
        let mut args = vec![
            "trials",
            "--records",
            records.to_str().unwrap(),
            "--delta",
            "0.1",
            "--runs",
            "5",
            "--json",
            "--out",
        ];
        let out_text = out.to_str().unwrap().to_string();
        args.push(&out_text);
        args.extend_from_slice(extra);
        (calm(&args), out)
    };
    let truncated = dir.join("truncated.csv");
    two_chain_csv(&truncated, Some("false"));
    let (run, out) = trials(&truncated, "t1", &[]);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("state tau=0"), "{stderr}");
    assert!(stderr.contains("biased optimistic"), "{stderr}");
    assert!(stderr.contains("without --early-stop"), "{stderr}");
    assert!(stderr.contains("--allow-truncated"), "{stderr}");
    assert!(!out.exists());
    // Allowed: runs, warns, and marks trials.json.
    let (run, _) = trials(&truncated, "t2", &["--allow-truncated"]);
    assert!(run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).starts_with("warning:"));
    let summary: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(summary["warning"]
        .as_str()
        .unwrap()
        .contains("biased optimistic"));
    // Complete chains: no refusal, no warning.
    let complete = dir.join("complete.csv");
    two_chain_csv(&complete, Some("true"));
    let (run, _) = trials(&complete, "t3", &[]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.stderr.is_empty());
    let summary: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(summary.get("warning").is_none());
    // Records that do not say (older files, other tools) run with a warning.
    let silent = dir.join("silent.csv");
    two_chain_csv(&silent, None);
    let (run, _) = trials(&silent, "t4", &[]);
    assert!(run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("do not say"));
    // Bonferroni and Holm on truncated records are refused the same way; fixed-sequence is not.
    for procedure in ["bonferroni", "holm"] {
        let run = calm(&[
            "calibrate",
            "--records",
            truncated.to_str().unwrap(),
            "--delta",
            "0.1",
            "--procedure",
            procedure,
            "--out",
            dir.join(format!("c-{procedure}")).to_str().unwrap(),
        ]);
        assert_eq!(run.status.code(), Some(2), "{procedure}");
        assert!(String::from_utf8_lossy(&run.stderr).contains("biased optimistic"));
    }
    let run = calm(&[
        "calibrate",
        "--records",
        truncated.to_str().unwrap(),
        "--delta",
        "0.1",
        "--out",
        dir.join("c-fst").to_str().unwrap(),
    ]);
    assert!(run.status.success());
}
