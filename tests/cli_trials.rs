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
