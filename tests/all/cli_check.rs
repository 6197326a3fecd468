//! `calm check`, the CI gate: three verdicts (certified on fresh data, violation detected,
//! inconclusive), a layer regression with its sampling error, the Markdown summary for CI, and
//! refusals of configs from another model or with nothing to test (exit 2).

use crate::common::{calm, copy_examples, model};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Calibrate the fixture model on 30 copy examples (δ 0.3, ε 0.1, state at λ 1, 0.9, 0.8), then
/// return the run folder, 30 fresh examples and the thresholds JSON.
pub fn calibrated(name: &str) -> (PathBuf, PathBuf, Value) {
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
    check_with(thresholds, fresh, &[])
}

fn check_with(thresholds: &Path, fresh: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "check",
        "--thresholds",
        thresholds.to_str().unwrap(),
        "--data",
        fresh.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    calm(&args)
}

/// `json` edited and written to its own file (named after a counter, so that edits coexist).
fn edited(out: &Path, json: &Value, edit: impl Fn(&mut Value)) -> PathBuf {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut json = json.clone();
    edit(&mut json);
    let number = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = out.join(format!("edited-{number}.json"));
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

#[test]
fn the_gate_gives_three_verdicts_and_flags_regressions() {
    let (out, fresh, json) = calibrated("gate");
    // On this 3-layer fixture every certified configuration saves at most 0.1 layers, and the
    // exit checks cost more than that: the selection is never exit, said plainly.
    assert_eq!(json["selected"]["never_exit"], true);
    let reason = json["selected"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("none costs less than the full model"),
        "{reason}"
    );
    let certified: Vec<&Value> = json["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["certified"] == true)
        .collect();
    assert!(!certified.is_empty());
    assert!(certified
        .iter()
        .all(|c| c["cost_speedup"].as_f64().unwrap() <= 1.0));
    assert!(json["run"]["benchmark"].is_null());
    // The never-exit config passes the gate on the full model (its loss is 0 by construction).
    let full = check(&out.join("thresholds.json"), &fresh);
    assert_eq!(full.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&full.stdout).unwrap();
    assert_eq!(report["never_exit"], true);
    assert_eq!(report["test"]["risk"], 0.0);

    // Gate the certified configuration with the fewest layers (state τ 0 λ 0.8).
    let chosen = certified
        .iter()
        .min_by(|a, b| {
            a["mean_layers"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["mean_layers"].as_f64().unwrap())
        })
        .unwrap();
    let json = {
        let mut j = json.clone();
        j["selected"]["never_exit"] = false.into();
        j["selected"]["measure"] = chosen["measure"].clone();
        j["selected"]["tau"] = chosen["tau"].clone();
        j["selected"]["lambda"] = chosen["lambda"].clone();
        j["selected"]["mean_layers"] = chosen["mean_layers"].clone();
        j
    };
    let selected = edited(&out, &json, |_| {});
    let ok = check(&selected, &fresh);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let report: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(out.join("check.json").exists());
    let test = &report["test"];
    // The verdict follows the two p-values at their levels, and no other way.
    let certify = test["certify_p_value"].as_f64().unwrap();
    let violation = test["violation_p_value"].as_f64().unwrap();
    let expected = if violation <= 0.05 {
        "violation-detected"
    } else if certify <= json["inputs"]["epsilon"].as_f64().unwrap() {
        "certified"
    } else {
        "inconclusive"
    };
    assert_eq!(report["verdict"], expected);
    assert_ne!(report["verdict"], "violation-detected");
    assert_eq!(test["n"], 30);
    assert_eq!(test["alpha"], 0.05);
    assert_eq!(test["epsilon"], json["inputs"]["epsilon"]);
    assert!(report["full_tokens_per_second"].as_f64().unwrap() > 0.0);

    // One fresh example decides nothing: inconclusive, exit 0, and exit 1 with
    // --require-certified; the text names δ, both levels and n, and what n would decide.
    let one = check_with(&selected, &fresh, &["--max-examples", "1"]);
    assert_eq!(one.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(report["verdict"], "inconclusive");
    assert!(
        report["test"]["power"]["n_to_detect_twice_delta"]
            .as_u64()
            .unwrap()
            > 1
    );
    let strict = check_with(
        &selected,
        &fresh,
        &["--max-examples", "1", "--require-certified"],
    );
    assert_eq!(strict.status.code(), Some(1));
    let text = calm(&[
        "check",
        "--thresholds",
        selected.to_str().unwrap(),
        "--data",
        fresh.to_str().unwrap(),
        "--max-examples",
        "1",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("inconclusive"), "{text}");
    assert!(text.contains("n = 1, δ = 0.3, ε = 0.1, α = 0.05"), "{text}");
    assert!(!text.contains("holds"), "{text}");

    // The same model forced to exit at the first layer whatever it thinks (softmax-max, λ = 0)
    // against a near-zero bound: the fresh data detect the violation.
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
    // A reader that went away (`calm check … | head -0`) does not turn the failure into 0.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_calm"))
        .args([
            "check",
            "--thresholds",
            aggressive.to_str().unwrap(),
            "--data",
            fresh.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let closed = child.wait_with_output().unwrap();
    assert_eq!(
        closed.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
    let report: Value = serde_json::from_slice(&violated.stdout).unwrap();
    assert_eq!(report["verdict"], "violation-detected");
    assert!(report["test"]["violation_p_value"].as_f64().unwrap() <= 0.05);

    // A config that promised far fewer layers than the model now needs.
    let optimistic = edited(&out, &json, |j| j["selected"]["mean_layers"] = 1.0.into());
    let regressed = check(&optimistic, &fresh);
    assert_eq!(regressed.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&regressed.stdout).unwrap();
    assert_eq!(report["layers"]["regressed"], true);
    // A promise just below the measured mean is within the sampling error: not flagged.
    let measured = report["layers"]["mean_layers"].as_f64().unwrap();
    let error = report["layers"]["standard_error"].as_f64().unwrap();
    assert!(error > 0.0);
    let close = edited(&out, &json, |j| {
        j["selected"]["mean_layers"] = (measured - 0.5 * error).into()
    });
    let report: Value = serde_json::from_slice(
        &check_with(&close, &fresh, &["--max-layer-regression", "0"]).stdout,
    )
    .unwrap();
    assert_eq!(report["layers"]["regressed"], false);
}

#[test]
fn the_summary_is_written_and_appended_for_github() {
    let (out, fresh, _) = calibrated("summary");
    let summary = out.join("summary.md");
    let github = out.join("github-summary.md");
    std::fs::write(&github, "# earlier step\n").unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_calm"))
        .args([
            "check",
            "--thresholds",
            out.join("thresholds.json").to_str().unwrap(),
            "--data",
            fresh.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
        ])
        .env("GITHUB_STEP_SUMMARY", &github)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let written = std::fs::read_to_string(&summary).unwrap();
    assert!(written.starts_with("### calm check: passed"), "{written}");
    assert!(written.contains("| risk |"), "{written}");
    assert!(
        written.contains("n = 30, δ = 0.3, ε = 0.1, α = 0.05"),
        "{written}"
    );
    let appended = std::fs::read_to_string(&github).unwrap();
    assert_eq!(appended, format!("# earlier step\n{written}"));
}

#[test]
fn no_fresh_examples_is_an_error() {
    let (out, _, _) = calibrated("empty");
    let empty = out.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let before = std::fs::read_to_string(out.join("check.json")).ok();
    let run = check(&out.join("thresholds.json"), &empty);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("empty.jsonl"), "{stderr}");
    // Nothing written on the refusal.
    assert_eq!(std::fs::read_to_string(out.join("check.json")).ok(), before);
    assert!(!out.join("summary.md").exists());
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
    // An older or foreign schema is refused by name.
    let old = edited(&out, &json, |j| j["version"] = 1.into());
    let run = check(&old, &fresh);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("version 1 is not supported"));
    let foreign = edited(&out, &json, |j| j["schema"] = "something.else".into());
    let run = check(&foreign, &fresh);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("not a calm thresholds file"));
}
