//! End-to-end tests of `calm calibrate` and `calm simulate-records` through the binary.

use crate::common::{calm, read_json, scratch, text};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const HEADER: &str = "example,measure,tau,lambda,loss,layers,tokens,num_layers";

/// A chain of three lambdas over `n` examples with `ones[j]` losses equal to 1 at lambda j.
fn chain_csv(n: usize, ones: [usize; 3]) -> String {
    let mut out = format!("{HEADER}\n");
    for (j, (lambda, layers)) in [(0.9, 6.0), (0.8, 4.0), (0.7, 2.0)].iter().enumerate() {
        for i in 0..n {
            let loss = u8::from(i < ones[j]);
            out.push_str(&format!(
                "e{i},softmax-diff,0,{lambda},{loss},{layers},10,8\n"
            ));
        }
    }
    out
}

#[test]
fn hand_computed_chain() {
    // n = 100, δ = 0.1: k = 0 gives HB = 0.9^100 = 2.656140e-05 (certified at ε = 0.05);
    // k = 5 gives HB = 1.565102e-01 (not certified), so fixed-sequence stops there and the
    // third lambda (k = 0 again) is never tested.
    let dir = scratch("hand");
    let file = dir.join("r.csv");
    std::fs::write(&file, chain_csv(100, [0, 5, 0])).unwrap();
    let out = dir.join("out");
    let run = calm(&[
        "calibrate",
        "--records",
        file.to_str().unwrap(),
        "--delta",
        "0.1",
        "--epsilon",
        "0.05",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let json: Value = serde_json::from_slice(&run.stdout).expect("--json prints JSON");
    assert_eq!(json, read_json(&out.join("thresholds.json")));
    assert_eq!(json["schema"], "calm.thresholds");
    assert_eq!(json["version"], 2);
    let rows = json["candidates"].as_array().unwrap();
    let p0 = rows[0]["p_value"].as_f64().unwrap();
    let p1 = rows[1]["p_value"].as_f64().unwrap();
    assert!((p0 / 2.656140e-05 - 1.0).abs() < 1e-6, "{p0}");
    assert!((p1 / 1.565102e-01 - 1.0).abs() < 1e-6, "{p1}");
    assert_eq!(rows[0]["certified"], true);
    assert_eq!(rows[1]["certified"], false);
    assert_eq!(rows[2]["tested"], false);
    assert_eq!(rows[2]["certified"], false);
    assert_eq!(json["selected"]["lambda"], 0.9);
    assert_eq!(json["selected"]["never_exit"], false);
    assert_eq!(json["selected"]["mean_layers"], 6.0);
    assert_eq!(json["inputs"]["n"], 100);
    let sha = json["inputs"]["records"][0]["sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);
    let csv = std::fs::read_to_string(out.join("candidates.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);
    assert!(csv.starts_with(
        "measure,tau,lambda,n,risk,p_value,tested,certified,mean_layers,cost_per_token,cost_speedup\n"
    ));
    // Without a model's cost model, cost is mean layers: 8 / 6 layers.
    assert_eq!(rows[0]["cost_per_token"], 6.0);
    assert!((rows[0]["cost_speedup"].as_f64().unwrap() - 8.0 / 6.0).abs() < 1e-15);

    // Bonferroni tests everything at 0.05/3: the third lambda (k = 0) is certified too and,
    // having fewer layers, is selected.
    let run = calm(&[
        "calibrate",
        "--records",
        file.to_str().unwrap(),
        "--delta",
        "0.1",
        "--epsilon",
        "0.05",
        "--out",
        out.to_str().unwrap(),
        "--procedure",
        "bonferroni",
        "--json",
    ]);
    let json: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(json["selected"]["lambda"], 0.7);
}

#[test]
fn nothing_certified_falls_back_to_never_exit() {
    // n = 5 at δ = 0.2: the best possible p-value is 0.8^5 = 0.328 > ε.
    let dir = scratch("tiny");
    let file = dir.join("r.csv");
    std::fs::write(&file, chain_csv(5, [0, 0, 0])).unwrap();
    let out = dir.join("out");
    let args = [
        "calibrate",
        "--records",
        file.to_str().unwrap(),
        "--delta",
        "0.2",
        "--epsilon",
        "0.1",
        "--out",
        out.to_str().unwrap(),
    ];
    let run = calm(&args);
    assert!(run.status.success());
    assert!(text(&run.stdout).contains("never exit"));
    let json = read_json(&out.join("thresholds.json"));
    assert_eq!(json["selected"]["never_exit"], true);
    assert_eq!(json["selected"]["mean_layers"], 8.0);
    let mut strict = args.to_vec();
    strict.push("--require-certified");
    assert_eq!(calm(&strict).status.code(), Some(1));
}

#[test]
fn parquet_csv_and_shards_agree_and_output_is_deterministic() {
    let dir = scratch("formats");
    let parquet = dir.join("r.parquet");
    let csv = dir.join("r.csv");
    for file in [&parquet, &csv] {
        let run = calm(&[
            "simulate-records",
            "--out",
            file.to_str().unwrap(),
            "--examples",
            "400",
            "--lambdas",
            "10",
            "--seed",
            "3",
        ]);
        assert!(run.status.success(), "{}", text(&run.stderr));
    }
    let calibrate_to = |files: &[&Path], out: &Path| {
        let mut args = vec!["calibrate".to_string(), "--records".to_string()];
        args.extend(files.iter().map(|f| f.to_str().unwrap().to_string()));
        args.extend(
            [
                "--delta",
                "0.15",
                "--epsilon",
                "0.1",
                "--out",
                out.to_str().unwrap(),
            ]
            .map(String::from),
        );
        let run = Command::new(env!("CARGO_BIN_EXE_calm"))
            .args(&args)
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", text(&run.stderr));
        read_json(&out.join("thresholds.json"))
    };
    let from_parquet = calibrate_to(&[&parquet], &dir.join("a"));
    let from_csv = calibrate_to(&[&csv], &dir.join("b"));
    assert_eq!(from_parquet["candidates"], from_csv["candidates"]);
    assert_eq!(from_parquet["selected"], from_csv["selected"]);
    assert_eq!(from_parquet["candidates"].as_array().unwrap().len(), 60);

    // Shards: the CSV split into two files by rows, in reverse order.
    let body = std::fs::read_to_string(&csv).unwrap();
    let mut lines = body.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    let (first, second) = rows.split_at(rows.len() / 3);
    let shard_a = dir.join("shard-a.csv");
    let shard_b = dir.join("shard-b.csv");
    std::fs::write(&shard_a, format!("{header}\n{}\n", first.join("\n"))).unwrap();
    std::fs::write(&shard_b, format!("{header}\n{}\n", second.join("\n"))).unwrap();
    let from_shards = calibrate_to(&[&shard_b, &shard_a], &dir.join("c"));
    assert_eq!(from_shards["candidates"], from_csv["candidates"]);
    assert_eq!(
        from_shards["inputs"]["records"].as_array().unwrap().len(),
        2
    );

    // Byte-identical output for identical inputs.
    calibrate_to(&[&parquet], &dir.join("d"));
    for name in ["thresholds.json", "candidates.csv"] {
        assert_eq!(
            std::fs::read(dir.join("a").join(name)).unwrap(),
            std::fs::read(dir.join("d").join(name)).unwrap()
        );
    }
}

/// Run calibrate on `content` and expect exit 2, an error naming `needles`, and no output files.
fn expect_rejected(name: &str, file_name: &str, content: &str, extra: &[&str], needles: &[&str]) {
    let dir = scratch(name);
    let file = dir.join(file_name);
    std::fs::write(&file, content).unwrap();
    let out = dir.join("out");
    let mut args = vec![
        "calibrate",
        "--records",
        file.to_str().unwrap(),
        "--delta",
        "0.1",
        "--epsilon",
        "0.05",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = calm(&args);
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{name}: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{name}: {needle:?} not in {stderr:?}"
        );
    }
    assert!(
        !out.join("thresholds.json").exists(),
        "{name}: partial output"
    );
    assert!(
        !out.join("candidates.csv").exists(),
        "{name}: partial output"
    );
}

#[test]
fn bad_input_is_rejected_with_a_clear_error() {
    let ok_row = "e1,softmax-diff,0,0.9,0,5,10,8";
    expect_rejected(
        "missing-column",
        "r.csv",
        "example,measure,tau,lambda,loss,layers,tokens\ne1,m,0,0.9,0,5,10\n",
        &[],
        &["r.csv", "missing column", "num_layers"],
    );
    expect_rejected(
        "nan-loss",
        "r.csv",
        &format!("{HEADER}\n{ok_row}\ne2,softmax-diff,0,0.9,NaN,5,10,8\n"),
        &[],
        &["r.csv row 2", "loss"],
    );
    expect_rejected(
        "inf-loss",
        "r.csv",
        &format!("{HEADER}\n{ok_row}\ne2,softmax-diff,0,0.9,inf,5,10,8\n"),
        &[],
        &["row 2", "loss"],
    );
    expect_rejected(
        "loss-range",
        "r.csv",
        &format!("{HEADER}\n{ok_row}\ne2,softmax-diff,0,0.9,1.5,5,10,8\n"),
        &[],
        &["row 2", "loss", "outside [0, 1]"],
    );
    expect_rejected(
        "text-loss",
        "r.csv",
        &format!("{HEADER}\n{ok_row}\ne2,softmax-diff,0,0.9,high,5,10,8\n"),
        &[],
        &["row 2", "loss", "\"high\""],
    );
    expect_rejected(
        "negative-layers",
        "r.csv",
        &format!("{HEADER}\n{ok_row}\ne2,softmax-diff,0,0.9,0,-1,10,8\n"),
        &[],
        &["row 2", "layers"],
    );
    expect_rejected(
        "lambda-range",
        "r.csv",
        &format!("{HEADER}\ne2,softmax-diff,0,1.2,0,5,10,8\n"),
        &[],
        &["row 1", "lambda"],
    );
    expect_rejected(
        "duplicate",
        "r.csv",
        &format!("{HEADER}\n{ok_row}\ne2,softmax-diff,0,0.9,0,5,10,8\n{ok_row}\n"),
        &[],
        &["duplicate", "\"e1\"", "row 1", "row 3"],
    );
    expect_rejected(
        "different-examples",
        "r.csv",
        &format!(
            "{HEADER}\n{ok_row}\ne2,softmax-diff,0,0.9,0,5,10,8\ne1,softmax-diff,0,0.8,0,4,10,8\n"
        ),
        &[],
        &["lambda 0.8", "1 of the 2 examples", "\"e2\""],
    );
    expect_rejected(
        "mixed-depth",
        "r.csv",
        &format!("{HEADER}\n{ok_row}\ne2,softmax-diff,0,0.9,0,5,10,12\n"),
        &[],
        &["row 2", "num_layers"],
    );
    expect_rejected("empty", "r.csv", "", &[], &["r.csv", "empty"]);
    expect_rejected(
        "header-only",
        "r.csv",
        &format!("{HEADER}\n"),
        &[],
        &["r.csv", "no records"],
    );
    expect_rejected(
        "extension",
        "r.txt",
        "x",
        &[],
        &["r.txt", "unknown records format"],
    );
    expect_rejected(
        "bad-delta",
        "r.csv",
        &format!("{HEADER}\n{ok_row}\n"),
        &["--delta", "1.5"],
        &["--delta"],
    );
    expect_rejected(
        "bad-epsilon",
        "r.csv",
        &format!("{HEADER}\n{ok_row}\n"),
        &["--epsilon", "0"],
        &["--epsilon"],
    );
    expect_rejected(
        "binomial-fractional",
        "r.csv",
        &format!("{HEADER}\n{ok_row}\ne2,softmax-diff,0,0.9,0.25,5,10,8\n"),
        &["--pvalue", "binomial"],
        &["binomial", "0/1 losses", "\"e2\""],
    );
    expect_rejected(
        "not-parquet",
        "r.parquet",
        "not parquet",
        &[],
        &["r.parquet", "Parquet"],
    );
}

#[test]
fn missing_file_is_an_error() {
    let run = calm(&[
        "calibrate",
        "--records",
        "/nonexistent/records.csv",
        "--delta",
        "0.1",
        "--out",
        "/tmp/x",
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(text(&run.stderr).contains("/nonexistent/records.csv"));
}

#[test]
fn the_run_folder_has_a_report_with_plots() {
    let dir = scratch("report");
    let file = dir.join("r.parquet");
    let made = calm(&[
        "simulate-records",
        "--out",
        file.to_str().unwrap(),
        "--examples",
        "300",
        "--lambdas",
        "8",
    ]);
    assert!(made.status.success());
    let out = dir.join("out");
    let run = calm(&[
        "calibrate",
        "--records",
        file.to_str().unwrap(),
        "--delta",
        "0.15",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    for name in [
        "risk_vs_lambda",
        "layers_vs_lambda",
        "frontier",
        "layers_histogram",
    ] {
        let png = std::fs::read(out.join(format!("{name}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}.png");
        let svg = std::fs::read_to_string(out.join(format!("{name}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<text"),
            "{name}.svg has no text"
        );
    }
    let svg = std::fs::read_to_string(out.join("risk_vs_lambda.svg")).unwrap();
    assert!(svg.contains("λ") && svg.contains("δ = 0.15"));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("**Verdict"));
    assert!(report.contains("![frontier](frontier.png)"));
    assert!(report.contains("| measure | τ |"));
}
