//! `calm evaluate`: model-card numbers on a tiny checkpoint.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

#[test]
fn evaluation_reports_every_layer_the_oracle_and_the_copy_baseline() {
    let dir = std::env::temp_dir().join(format!("calm-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let words = ["the", "cat", "sat", "on", "mat", "dog", "runs", "a"];
    let mut text = String::new();
    for i in 0..12 {
        let s: Vec<&str> = (0..4).map(|j| words[(i * 3 + j) % words.len()]).collect();
        let line = serde_json::json!({"id": format!("{i}"), "task": "copy", "input": format!("copy: {}", s.join(" ")), "reference": s.join(" ")});
        text.push_str(&format!("{line}\n"));
    }
    text.push_str(&format!(
        "{}\n",
        serde_json::json!({"id": "x", "task": "other", "input": "a", "reference": "b"})
    ));
    let data = dir.join("data.jsonl");
    std::fs::write(&data, text).unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/t5/gated");
    let out = Command::new(env!("CARGO_BIN_EXE_calm"))
        .args([
            "evaluate",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--task",
            "copy",
            "--max-new-tokens",
            "6",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["examples"], 12);
    let layers = result["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[2]["bleu"], result["full"]["bleu"]);
    for (i, layer) in layers.iter().enumerate() {
        assert_eq!(layer["mean_layers"].as_f64().unwrap(), (i + 1) as f64);
    }
    let oracle_layers = result["oracle"]["mean_layers"].as_f64().unwrap();
    assert!((1.0..=3.0).contains(&oracle_layers));
    let agreement = result["agreement"].as_array().unwrap();
    assert_eq!(agreement[2].as_f64().unwrap(), 1.0);
    // The inputs without their prefix are the references: copying scores BLEU 100.
    assert!((result["copy_bleu"].as_f64().unwrap() - 100.0).abs() < 1e-9);
}
