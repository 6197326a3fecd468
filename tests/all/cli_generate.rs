//! `calm generate` through the binary: JSON output, stdin mode, and clear errors for bad checkpoints.

use crate::common::{calm_with_stdin as calm, gated_fixture as fixture};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn reference_case(index: usize) -> Value {
    let text = std::fs::read_to_string(fixture().join("reference.json")).unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    reference["cases"][index].clone()
}

/// A copy of the fixture checkpoint whose config.json is edited by `edit`.
fn broken_checkpoint(name: &str, edit: impl Fn(&mut Value)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("calm-gen-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture().join(file), dir.join(file)).unwrap();
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("config.json")).unwrap())
            .unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

#[test]
fn json_output_matches_transformers_greedy() {
    let case = reference_case(2);
    let model = fixture();
    let out = calm(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--input",
            case["input"].as_str().unwrap(),
            "--never-exit",
            "--max-new-tokens",
            "12",
            "--json",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let greedy: Vec<u64> = case["greedy_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let tokens: Vec<u64> = json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(tokens, greedy[1..].to_vec());
    assert!(json["exit_layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l == 3));
    assert_eq!(json["num_layers"], 3);
    assert!(json["text"].is_string());

    // Plain output (not a terminal) is the text alone.
    let plain = calm(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--input",
            case["input"].as_str().unwrap(),
            "--max-new-tokens",
            "12",
        ],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&plain.stdout).trim(),
        json["text"].as_str().unwrap().trim()
    );
}

#[test]
fn stdin_mode_answers_one_json_line_per_input() {
    let model = fixture();
    let out = calm(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--input",
            "-",
            "--measure",
            "softmax-diff",
            "--lambda",
            "0.5",
            "--tau",
            "4",
        ],
        Some("a dog runs\nthe cat sat on the mat\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        let tokens = line["tokens"].as_array().unwrap().len();
        assert_eq!(line["exit_layers"].as_array().unwrap().len(), tokens);
        // One confidence per evaluated layer below the exit.
        for (layers, conf) in line["exit_layers"]
            .as_array()
            .unwrap()
            .iter()
            .zip(line["confidences"].as_array().unwrap())
        {
            let exit = layers.as_u64().unwrap() as usize;
            assert_eq!(conf.as_array().unwrap().len(), exit.min(2));
        }
    }
}

fn expect_error(args: &[&str], needles: &[&str]) {
    let out = calm(args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    }
}

#[test]
fn bad_checkpoints_and_inputs_give_clear_errors() {
    let model = fixture();
    let model = model.to_str().unwrap();
    expect_error(
        &["generate", "--model", "/nonexistent/model", "--input", "x"],
        &["/nonexistent/model", "not a directory"],
    );
    let empty = std::env::temp_dir().join(format!("calm-gen-{}-empty", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    expect_error(
        &[
            "generate",
            "--model",
            empty.to_str().unwrap(),
            "--input",
            "x",
        ],
        &["missing config.json"],
    );

    let shape = broken_checkpoint("shape", |c| c["d_ff"] = 100.into());
    expect_error(
        &[
            "generate",
            "--model",
            shape.to_str().unwrap(),
            "--input",
            "x",
        ],
        &["model.safetensors", "does not match", "shape"],
    );
    let vocab = broken_checkpoint("vocab", |c| c["vocab_size"] = 100.into());
    expect_error(
        &[
            "generate",
            "--model",
            vocab.to_str().unwrap(),
            "--input",
            "x",
        ],
        &["tokenizer.json", "200 tokens", "vocab_size is 100"],
    );
    let activation = broken_checkpoint("act", |c| c["feed_forward_proj"] = "swiglu".into());
    expect_error(
        &[
            "generate",
            "--model",
            activation.to_str().unwrap(),
            "--input",
            "x",
        ],
        &["config.json", "swiglu"],
    );
    let long = broken_checkpoint("long", |c| c["n_positions"] = 4.into());
    expect_error(
        &[
            "generate",
            "--model",
            long.to_str().unwrap(),
            "--input",
            "the cat sat on the mat",
        ],
        &["8 tokens", "maximum of 4"],
    );
    let malformed = broken_checkpoint("malformed", |_| {});
    std::fs::write(malformed.join("config.json"), "{").unwrap();
    expect_error(
        &[
            "generate",
            "--model",
            malformed.to_str().unwrap(),
            "--input",
            "x",
        ],
        &["config.json", "not valid JSON"],
    );
    let truncated = broken_checkpoint("truncated", |_| {});
    std::fs::write(truncated.join("model.safetensors"), b"\x10\x00\x00\x00").unwrap();
    expect_error(
        &[
            "generate",
            "--model",
            truncated.to_str().unwrap(),
            "--input",
            "x",
        ],
        &["model.safetensors"],
    );

    expect_error(
        &[
            "generate",
            "--model",
            model,
            "--input",
            "x",
            "--measure",
            "classifier",
            "--lambda",
            "0.5",
        ],
        &["classifier"],
    );
    expect_error(
        &[
            "generate",
            "--model",
            model,
            "--input",
            "x",
            "--measure",
            "state",
            "--lambda",
            "1.5",
        ],
        &["--lambda"],
    );
    expect_error(
        &[
            "generate",
            "--model",
            model,
            "--input",
            "x",
            "--exit-layer",
            "9",
        ],
        &["exit layer 9"],
    );
}

#[test]
fn a_certified_config_drives_generation_and_must_match_the_model() {
    let dir = std::env::temp_dir().join(format!("calm-gen-{}-certified", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data.jsonl");
    let lines: Vec<String> = (0..8)
        .map(|i| serde_json::json!({"id": format!("{i}"), "task": "t", "input": "the cat sat on the mat", "reference": "the cat"}).to_string())
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let model = fixture();
    let out = dir.join("run");
    let calibrated = calm(
        &[
            "calibrate",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--delta",
            "0.5",
            "--epsilon",
            "0.3",
            "--lambdas",
            "0.5",
            "--taus",
            "0",
            "--measures",
            "state",
            "--max-new-tokens",
            "5",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        calibrated.status.success(),
        "{}",
        String::from_utf8_lossy(&calibrated.stderr)
    );
    let thresholds: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("thresholds.json")).unwrap())
            .unwrap();
    let generated = calm(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--thresholds",
            out.join("thresholds.json").to_str().unwrap(),
            "--input",
            "the cat sat on the mat",
            "--json",
        ],
        None,
    );
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let json: Value = serde_json::from_slice(&generated.stdout).unwrap();
    // The calibrated horizon N = 5 applies, and the selected configuration's layers are used.
    assert!(json["tokens"].as_array().unwrap().len() <= 5);
    if thresholds["selected"]["never_exit"] == true {
        assert!(json["exit_layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l == 3));
    }
    let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/t5/tied-relu");
    expect_error(
        &[
            "generate",
            "--model",
            other.to_str().unwrap(),
            "--thresholds",
            out.join("thresholds.json").to_str().unwrap(),
            "--input",
            "x",
        ],
        &["is not the model these thresholds were calibrated for"],
    );
}

#[test]
fn a_closed_stdout_is_a_normal_end() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let model = fixture();
    // `calm generate --input - --json | head -1`: the reader goes away after one line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_calm"))
        .args([
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--input",
            "-",
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "the cat sat").unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with('{'), "{line}");
    drop(stdout);
    // More input after the reader left: calm's next write meets a closed pipe.
    for _ in 0..50 {
        if writeln!(stdin, "a dog runs").is_err() {
            break;
        }
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The same with a single --input answer printed through println!.
    let mut child = Command::new(env!("CARGO_BIN_EXE_calm"))
        .args([
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--input",
            "the cat",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
