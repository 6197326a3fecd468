//! Helpers shared by the end-to-end tests: run the binary, scratch directories, fixtures.
#![allow(dead_code)] // each test binary uses a different subset

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Run `calm` with `args`.
pub fn calm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_calm"))
        .args(args)
        .output()
        .expect("calm binary runs")
}

/// Run `calm` with `args`, feeding `stdin` (closed at once when None).
pub fn calm_with_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_calm"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("calm binary runs");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // calm may stop reading early (bad input ends the run), so a broken
        // pipe here is the child's answer, not a test failure.
        if let Err(e) = pipe.write_all(text.as_bytes()) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "writing stdin: {e}"
            );
        }
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("calm finishes")
}

/// A fresh, empty directory for one test (unique per test binary run and `name`).
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("calm-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("json file")).expect("valid json")
}

/// The tiny gated (T5 v1.1 layout) fixture checkpoint made by transformers.
pub fn gated_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/t5/gated")
}

/// [`gated_fixture`] as a command-line argument.
pub fn model() -> String {
    gated_fixture().display().to_string()
}

/// `n` labelled copy-task examples (ids ex<offset>…) written as JSONL to `dir/name`.
#[allow(dead_code)]
pub fn copy_examples(dir: &Path, name: &str, offset: usize, n: usize) -> PathBuf {
    let words = [
        "the", "cat", "sat", "on", "mat", "dog", "runs", "a", "bird", "sings", "tree", "house",
    ];
    let mut text = String::new();
    for i in offset..offset + n {
        let sentence: Vec<&str> = (0..3 + i % 4)
            .map(|j| words[(i * 5 + j * 3) % words.len()])
            .collect();
        let line = serde_json::json!({
            "id": format!("ex{i:03}"),
            "task": "copy",
            "input": sentence.join(" "),
            "reference": sentence.join(" "),
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("test data written");
    path
}
