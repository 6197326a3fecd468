//! `calm check`, the CI gate: holds on data like the calibration data, flags a violated
//! guarantee and a layer regression (exit 1), refuses a config from another model (exit 2).

mod common;

use common::{calm, copy_examples, model};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Calibrate once, then return the run folder, a fresh data file and the thresholds JSON.
fn calibrated(name: &str) -> (PathBuf, PathBuf, Value) {
    let dir = std::env::temp_dir().join(format!("calm-check-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cal = copy_examples(&dir, "cal.jsonl", 0, 30);
    let fresh = copy_examples(&dir, "fresh.jsonl", 100, 30);
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
        "--bench-data",
        fresh.to_str().unwrap(),
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
    // The calibration's held-out benchmark (--bench-data) decoded the same fresh data with the
    // same configuration: the gate's risk and layers agree with it, and the report shows it.
    assert_eq!(json["selected"]["never_exit"], false);
    let bench = &json["run"]["benchmark"];
    assert_eq!(bench["examples"], 30);
    assert_eq!(bench["risk"], report["test"]["risk"]);
    assert_eq!(bench["mean_layers"], report["mean_layers"]);
    assert!(bench["full_tokens_per_second"].as_f64().unwrap() > 0.0);
    assert!(bench["tokens_per_second"].as_f64().unwrap() > 0.0);
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(markdown.contains("| benchmark |"), "{markdown}");
    assert!(markdown.contains("on 30 held-out examples"), "{markdown}");

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
