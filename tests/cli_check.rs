//! `calm check`, the CI gate: holds on data like the calibration data, flags a violated
//! guarantee and a layer regression (exit 1), refuses a config from another model (exit 2).

mod common;

use common::{calm, model};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

fn data(dir: &Path, name: &str, offset: usize) -> PathBuf {
    let words = [
        "the", "cat", "sat", "on", "mat", "dog", "runs", "a", "bird", "sings", "tree", "house",
    ];
    let mut text = String::new();
    for i in offset..offset + 30 {
        let s: Vec<&str> = (0..3 + i % 4)
            .map(|j| words[(i * 5 + j * 3) % words.len()])
            .collect();
        text.push_str(&serde_json::json!({"id": format!("ex{i:03}"), "task": "copy", "input": s.join(" "), "reference": s.join(" ")}).to_string());
        text.push('\n');
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Calibrate once, then return the run folder, a fresh data file and the thresholds JSON.
fn calibrated(name: &str) -> (PathBuf, PathBuf, Value) {
    let dir = std::env::temp_dir().join(format!("calm-check-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cal = data(&dir, "cal.jsonl", 0);
    let fresh = data(&dir, "fresh.jsonl", 100);
    let out = dir.join("run");
    let run = calm(&[
        "calibrate",
        "--model",
        &model(),
        "--data",
        cal.to_str().unwrap(),
        "--delta",
        "0.3",
        "--epsilon",
        "0.1",
        "--out",
        out.to_str().unwrap(),
        "--lambdas",
        "1,0.9,0.8",
        "--taus",
        "0",
        "--measures",
        "state",
        "--max-new-tokens",
        "8",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("thresholds.json")).unwrap())
            .unwrap();
    (out, fresh, json)
}

fn check(thresholds: &Path, fresh: &Path) -> Output {
    calm(&[
        "check",
        "--thresholds",
        thresholds.to_str().unwrap(),
        "--data",
        fresh.to_str().unwrap(),
        "--json",
    ])
}

fn edited(out: &Path, json: &Value, edit: impl Fn(&mut Value)) -> PathBuf {
    let mut json = json.clone();
    edit(&mut json);
    let path = out.join("edited.json");
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

#[test]
fn the_gate_holds_flags_violations_and_regressions() {
    let (out, fresh, json) = calibrated("gate");
    let ok = check(&out.join("thresholds.json"), &fresh);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let report: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["holds"], true);
    assert!(out.join("check.json").exists());

    // The same model forced to exit at the first layer whatever it thinks (softmax-max, λ = 0)
    // against a near-zero bound: the fresh data must reject the guarantee.
    let aggressive = edited(&out, &json, |j| {
        j["selected"]["never_exit"] = false.into();
        j["selected"]["measure"] = "softmax-max".into();
        j["selected"]["tau"] = 0.0.into();
        j["selected"]["lambda"] = 0.0.into();
        j["selected"]["mean_layers"] = 1.0.into();
        j["inputs"]["delta"] = 0.01.into();
    });
    let violated = check(&aggressive, &fresh);
    assert_eq!(violated.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&violated.stdout).unwrap();
    assert_eq!(report["test"]["violated"], true);

    // A config that promised fewer layers than the model now needs.
    let optimistic = edited(&out, &json, |j| j["selected"]["mean_layers"] = 1.0.into());
    let regressed = check(&optimistic, &fresh);
    assert_eq!(regressed.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&regressed.stdout).unwrap();
    assert_eq!(report["layers_regressed"], true);
}

#[test]
fn a_config_from_another_model_is_refused() {
    let (out, fresh, json) = calibrated("sha");
    let other = edited(&out, &json, |j| {
        j["run"]["model_sha256"] = "0".repeat(64).into()
    });
    let run = check(&other, &fresh);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr)
        .contains("is not the model these thresholds were calibrated for"));
    let records_only = edited(&out, &json, |j| {
        j.as_object_mut().unwrap().remove("run");
    });
    let run = check(&records_only, &fresh);
    assert_eq!(run.status.code(), Some(2));
}
