//! docs/ci.md's commands, run as written: the plain-shell block and the GitHub workflow's Gate
//! step, through scripts/ci_gate.sh, on a calibration of the fixture model. They pass on the
//! calibrated config, fail on a violation, and fail on "inconclusive" only when
//! CALM_REQUIRE_CERTIFIED=1.

use crate::common::scratch;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The body of the first fenced block of `language` in docs/ci.md.
fn fenced_block(language: &str) -> String {
    let doc = std::fs::read_to_string(repo().join("docs/ci.md")).unwrap();
    let start = doc
        .find(&format!("```{language}\n"))
        .unwrap_or_else(|| panic!("no ```{language} block in docs/ci.md"))
        + language.len()
        + 4;
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_string()
}

/// The shell block, and the workflow's `run:` of its step named Gate.
fn commands() -> Vec<String> {
    let shell = fenced_block("sh");
    let yaml = fenced_block("yaml");
    let gate = yaml
        .lines()
        .skip_while(|l| l.trim() != "- name: Gate")
        .nth(1)
        .and_then(|l| l.trim().strip_prefix("run: "))
        .expect("the workflow has a Gate step with a one-line run:")
        .to_string();
    vec![shell, gate]
}

fn run(command: &str, thresholds: &Path, fresh: &Path, work: &Path, strict: bool) -> Output {
    // The commands are written for the repository root (scripts/ci_gate.sh), with calm built.
    Command::new("bash")
        .args(["-euo", "pipefail", "-c", command])
        .current_dir(repo())
        .env("CALM", env!("CARGO_BIN_EXE_calm"))
        .env("THRESHOLDS", thresholds)
        .env("FRESH", fresh)
        .env("CALM_REQUIRE_CERTIFIED", if strict { "1" } else { "0" })
        .env("GITHUB_STEP_SUMMARY", work.join("step-summary.md"))
        .output()
        .unwrap()
}

#[test]
fn the_documented_gate_commands_pass_fail_and_summarise() {
    let dir = scratch("ci-docs");
    let (run_dir, fresh, json) = crate::cli_check::calibrated("ci-docs");
    let thresholds = run_dir.join("thresholds.json");
    let one = dir.join("one.jsonl");
    let first_line = std::fs::read_to_string(&fresh).unwrap();
    std::fs::write(&one, first_line.lines().next().unwrap().to_string() + "\n").unwrap();
    let mut violating = json.clone();
    violating["selected"]["never_exit"] = false.into();
    violating["selected"]["measure"] = "softmax-max".into();
    violating["selected"]["tau"] = 0.0.into();
    violating["selected"]["lambda"] = 0.0.into();
    violating["selected"]["mean_layers"] = 1.0.into();
    violating["inputs"]["delta"] = 0.01.into();
    let violating_path = dir.join("violating.json");
    std::fs::write(&violating_path, violating.to_string()).unwrap();

    for (index, command) in commands().iter().enumerate() {
        let work = dir.join(format!("step{index}"));
        std::fs::create_dir_all(&work).unwrap();
        // Clean up the gate's output folder (relative to the repository root) before each run.
        let out = repo().join("calm-check");
        let clean = || {
            let _ = std::fs::remove_dir_all(&out);
        };
        clean();
        let pass = run(command, &thresholds, &fresh, &work, false);
        let stdout = String::from_utf8_lossy(&pass.stdout).to_string();
        assert_eq!(
            pass.status.code(),
            Some(0),
            "{command}: {stdout} {}",
            String::from_utf8_lossy(&pass.stderr)
        );
        assert!(stdout.contains("calm gate passed"), "{stdout}");
        let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
        assert!(summary.starts_with("### calm check: passed"), "{summary}");
        let step_summary = std::fs::read_to_string(work.join("step-summary.md")).unwrap();
        assert_eq!(step_summary, summary);

        clean();
        let fail = run(command, &violating_path, &fresh, &work, false);
        assert_eq!(fail.status.code(), Some(1), "{command}");
        assert!(String::from_utf8_lossy(&fail.stderr).contains("violation-detected"));

        // One fresh example: inconclusive passes by default, fails with the opt-in.
        clean();
        let lenient = run(command, &thresholds, &one, &work, false);
        assert_eq!(lenient.status.code(), Some(0));
        let check: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("check.json")).unwrap())
                .unwrap();
        assert_eq!(check["verdict"], "inconclusive");
        clean();
        let strict = run(command, &thresholds, &one, &work, true);
        assert_eq!(strict.status.code(), Some(1));

        clean();
        let missing = run(command, &dir.join("nope.json"), &fresh, &work, false);
        assert_eq!(missing.status.code(), Some(2));
        clean();
    }
}
