//! The decoder-only default, `datasets/bible/model-llama` (trained from scratch by `calm train
//! --architecture llama`, see its MODEL.md), through the whole pipeline from the CLI: its
//! directory alone gives the prompt format, the main job's defaults apply to it without
//! --data, and the certificate it writes is checked on fresh data. No network needed.

use crate::common::{calm, read_json, scratch, text};
use std::path::{Path, PathBuf};

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/bible/model-llama")
}

#[test]
fn generate_needs_no_prompt_flag_and_prints_the_completion() {
    let out = calm(&[
        "generate",
        "--model",
        model().to_str().unwrap(),
        "--input",
        "modernize: And God said, Let there be light: and there was light.",
        "--never-exit",
        "--max-new-tokens",
        "40",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let completion = text(&out.stdout);
    // The completion only: neither the task prefix nor a special token is echoed.
    assert!(!completion.contains("modernize:"), "{completion}");
    assert!(!completion.contains("<sep>"), "{completion}");
    assert!(completion.contains("light"), "{completion}");
}

#[test]
fn the_decoder_only_default_calibrates_end_to_end_and_the_gate_checks_it() {
    let dir = scratch("bible-llama");
    let out = dir.join("run");
    // No --data: the main job's defaults (calibration split, modernize, test split for the
    // benchmark); a small slice of them so that the test stays short.
    let run = calm(&[
        "calibrate",
        "--model",
        model().to_str().unwrap(),
        "--max-examples",
        "60",
        "--lambdas",
        "1,0.95,0.8,0.5",
        "--taus",
        "0",
        "--measures",
        "softmax-diff,state",
        "--max-new-tokens",
        "24",
        "--bench-examples",
        "4",
        "--delta",
        "0.3",
        "--epsilon",
        "0.1",
        "--jobs",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let thresholds = read_json(&out.join("thresholds.json"));
    assert_eq!(thresholds["run"]["task"], "modernize", "{thresholds}");
    assert_eq!(thresholds["run"]["examples"], 60, "{thresholds}");
    assert_eq!(thresholds["cost_model"]["num_layers"], 8, "{thresholds}");
    assert!(out.join("records.parquet").is_file());
    assert!(out.join("report.md").is_file());

    // The gate re-runs the model on fresh data (the test split) and gives a verdict with n.
    let check = calm(&[
        "check",
        "--thresholds",
        out.join("thresholds.json").to_str().unwrap(),
        "--data",
        "datasets/bible/test.jsonl.gz",
        "--max-examples",
        "30",
        "--json",
    ]);
    let code = check.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "{}",
        text(&check.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(verdict["test"]["n"], 30, "{verdict}");

    // The same gate through the library only: the calibrated model loaded as it ran, then
    // pipeline::check; the verdict, risk and layers equal the CLI's (speeds are timings).
    let thresholds_path = out.join("thresholds.json");
    let thresholds = calm::calibrate::thresholds::read_thresholds(&thresholds_path).unwrap();
    let checkpoint = calm::pipeline::load_calibrated_model(
        &thresholds,
        &thresholds_path,
        None,
        &calm::model::Device::Cpu,
    )
    .unwrap();
    let options = calm::pipeline::CheckOptions {
        max_examples: Some(30),
        ..calm::pipeline::CheckOptions::default()
    };
    let report = calm::pipeline::check(
        &thresholds,
        &thresholds_path,
        Path::new("datasets/bible/test.jsonl.gz"),
        &checkpoint,
        &options,
    )
    .unwrap();
    // Through text as the CLI's was (serde_json's float parsing is not exact to the last bit).
    let library: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    for field in [
        "test",
        "layers",
        "verdict",
        "passed",
        "configuration",
        "model_sha256",
    ] {
        assert_eq!(library[field], verdict[field], "{field}");
    }
    // Options are checked in the library's own words.
    let bad = calm::pipeline::CheckOptions {
        alpha: 1.0,
        ..options
    };
    let error = calm::pipeline::check(
        &thresholds,
        &thresholds_path,
        Path::new("datasets/bible/test.jsonl.gz"),
        &checkpoint,
        &bad,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "alpha must lie strictly between 0 and 1 (got 1)"
    );
}
