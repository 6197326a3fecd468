//! `calm calibrate --model --data`: the sweep end to end on a tiny checkpoint.

use crate::common::{calm, copy_examples, model, read_json, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;

fn data_file(dir: &Path, n: usize) -> PathBuf {
    copy_examples(dir, "data.jsonl", 0, n)
}

#[test]
fn sweep_records_calibrate_to_the_same_answer_and_chains_stop_early() {
    let dir = scratch("e2e");
    let data = data_file(&dir, 30);
    let out = dir.join("run");
    let run = calm(&[
        "calibrate",
        "--model",
        &model(),
        "--data",
        data.to_str().unwrap(),
        "--delta",
        "0.2",
        "--epsilon",
        "0.1",
        "--out",
        out.to_str().unwrap(),
        "--lambdas",
        "1,0.9,0.7,0.5,0.2,0",
        "--taus",
        "0",
        "--max-new-tokens",
        "8",
        "--metric",
        "rouge-l",
        "--jobs",
        "2",
        "--early-stop",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let thresholds = read_json(&out.join("thresholds.json"));
    let sweep = &thresholds["run"]["sweep"];
    let evaluated = sweep["configurations_evaluated"].as_u64().unwrap();
    assert_eq!(sweep["configurations_in_grid"], 12);
    assert_eq!(thresholds["run"]["metric"], "rougeL");
    assert_eq!(
        thresholds["run"]["model_sha256"].as_str().unwrap().len(),
        64
    );
    assert_eq!(
        thresholds["summary"]["candidates"].as_u64().unwrap(),
        evaluated
    );
    // λ = 0 exits every token at the first possible layer, which a random model cannot certify
    // at δ = 0.2, so at least one chain stopped before the end of the grid.
    assert!(evaluated < 12, "no chain stopped early: {evaluated}");
    // Per-token traces: every full-model token in layers.parquet once per layer, and tokens of
    // every evaluated configuration (plus the full model) in tokens.parquet.
    use polars::prelude::{ParquetReader, SerReader};
    let read = |name: &str| {
        ParquetReader::new(std::fs::File::open(out.join(name)).unwrap())
            .finish()
            .unwrap()
    };
    let tokens = read("tokens.parquet");
    let layers = read("layers.parquet");
    let names: Vec<String> = tokens
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "example",
            "configuration",
            "position",
            "token",
            "piece",
            "exit_layer",
            "confidences"
        ]
    );
    let configurations = tokens
        .column("configuration")
        .unwrap()
        .as_materialized_series()
        .n_unique()
        .unwrap();
    assert_eq!(configurations as u64, evaluated + 1);
    let full_tokens = thresholds["run"]["sweep"]["full_tokens"].as_u64().unwrap() as usize;
    assert_eq!(layers.height(), full_tokens * 3);
    for name in [
        "confidence_by_layer.png",
        "examples_by_exit_layer.svg",
        "report.md",
    ] {
        assert!(out.join(name).exists(), "{name}");
    }
    // The records alone give the same calibration (and carry the texts).
    let again = dir.join("again");
    let rerun = calm(&[
        "calibrate",
        "--records",
        out.join("records.parquet").to_str().unwrap(),
        "--delta",
        "0.2",
        "--epsilon",
        "0.1",
        "--cost-model",
        out.join("thresholds.json").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let from_records = read_json(&again.join("thresholds.json"));
    assert_eq!(from_records["candidates"], thresholds["candidates"]);
    assert_eq!(from_records["selected"], thresholds["selected"]);
}

fn expect_error(args: &[&str], needles: &[&str], out: &Path) {
    let run = calm(args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    }
    assert!(!out.join("thresholds.json").exists());
}

#[test]
fn bad_sweep_input_is_rejected() {
    let dir = scratch("bad");
    let data = data_file(&dir, 5);
    let out = dir.join("run");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let m = model();
    let base = [
        "calibrate",
        "--model",
        m.as_str(),
        "--data",
        d,
        "--delta",
        "0.2",
        "--out",
        o,
    ];
    let with = |extra: &[&'static str]| -> Vec<String> {
        base.iter()
            .map(|s| s.to_string())
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let run = |extra: &[&'static str], needles: &[&str]| {
        let args = with(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        expect_error(&refs, needles, &out);
    };
    run(&["--metric", "meteor"], &["unknown metric", "meteor"]);
    // Duplicates would make duplicate records, found only after the sweep: refused at once.
    run(
        &["--taus", "0,4,0"],
        &["--taus must not list a value twice"],
    );
    run(
        &["--measures", "state,state"],
        &["--measures must not list a measure twice (got state)"],
    );
    run(
        &["--task", "summarize"],
        &["no examples of task", "summarize", "copy"],
    );
    run(&["--lambdas", "0.5,0.9"], &["descending"]);
    run(&["--measures", "classifier"], &["exit classifier"]);
    let broken = dir.join("broken.jsonl");
    std::fs::write(
        &broken,
        "{\"id\":\"a\",\"task\":\"t\",\"input\":\"x\",\"reference\":\"y\"}\nnot json\n",
    )
    .unwrap();
    expect_error(
        &[
            "calibrate",
            "--model",
            &model(),
            "--data",
            broken.to_str().unwrap(),
            "--delta",
            "0.2",
            "--out",
            o,
        ],
        &["broken.jsonl line 2"],
        &out,
    );
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    expect_error(
        &[
            "calibrate",
            "--model",
            &model(),
            "--data",
            empty.to_str().unwrap(),
            "--delta",
            "0.2",
            "--out",
            o,
        ],
        &["no examples"],
        &out,
    );
    // A bad benchmark file fails before the sweep, naming the file.
    let broken_path = broken.to_str().unwrap().to_string();
    let args = with(&[]);
    let mut refs: Vec<&str> = args.iter().map(String::as_str).collect();
    refs.extend(["--bench-data", broken_path.as_str()]);
    expect_error(&refs, &["broken.jsonl line 2"], &out);
}

#[test]
fn shards_swept_apart_calibrate_together() {
    let dir = scratch("shards");
    let data = data_file(&dir, 24);
    let shards = dir.join("shards");
    let common = |extra: &[&str]| {
        let mut args = vec![
            "calibrate".to_string(),
            "--model".into(),
            model(),
            "--data".into(),
            data.display().to_string(),
            "--delta".into(),
            "0.3".into(),
            "--epsilon".into(),
            "0.1".into(),
            "--lambdas".into(),
            "1,0.8,0.5".into(),
            "--taus".into(),
            "0".into(),
            "--max-new-tokens".into(),
            "6".into(),
            "--procedure".into(),
            "bonferroni".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = calm(&refs);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    };
    common(&["--shard", "1/2", "--out", shards.to_str().unwrap()]);
    common(&["--shard", "2/2", "--out", shards.to_str().unwrap()]);
    assert!(
        shards.join("records-1-of-2.parquet").exists()
            && shards.join("records-2-of-2.parquet").exists()
    );
    assert!(!shards.join("thresholds.json").exists());
    let whole = dir.join("whole");
    common(&["--out", whole.to_str().unwrap()]);
    let combined = dir.join("combined");
    let pattern = shards.join("records-*.parquet");
    let run = calm(&[
        "calibrate",
        "--records",
        pattern.to_str().unwrap(),
        "--delta",
        "0.3",
        "--epsilon",
        "0.1",
        "--procedure",
        "bonferroni",
        "--cost-model",
        whole.join("thresholds.json").to_str().unwrap(),
        "--out",
        combined.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let a = read_json(&whole.join("thresholds.json"));
    let b = read_json(&combined.join("thresholds.json"));
    assert_eq!(a["candidates"], b["candidates"]);
    assert_eq!(a["selected"], b["selected"]);
    assert_eq!(b["inputs"]["records"].as_array().unwrap().len(), 2);
    // A pattern that matches nothing is an error.
    let none = shards.join("nothing-*.parquet");
    let run = calm(&[
        "calibrate",
        "--records",
        none.to_str().unwrap(),
        "--delta",
        "0.3",
        "--out",
        combined.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("no records files match"));
}

#[test]
fn without_inputs_or_out_the_defaults_apply() {
    let dir = scratch("defaults");
    let data = data_file(&dir, 6);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_calm"))
            .current_dir(&dir)
            .args(args)
            .output()
            .unwrap()
    };
    // No model embedded in this directory: a clear error, nothing written.
    let bare = run(&["calibrate"]);
    assert_eq!(bare.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("embedded default model"));
    // A model without --out writes reports/<model>-<task>-<consistency>/ (δ defaults to 0.1).
    let with_model = run(&[
        "calibrate",
        "--model",
        &model(),
        "--data",
        data.to_str().unwrap(),
        "--task",
        "copy",
        "--lambdas",
        "1,0.5",
        "--taus",
        "0",
        "--max-new-tokens",
        "4",
    ]);
    assert!(
        with_model.status.success(),
        "{}",
        String::from_utf8_lossy(&with_model.stderr)
    );
    let thresholds = read_json(&dir.join("reports/gated-copy-textual/thresholds.json"));
    assert_eq!(thresholds["inputs"]["delta"], 0.1);

    // The README's main job: with datasets/bible/ in place, no arguments at all calibrate the
    // embedded model on the calibration split's modernize examples, sweep the classifier too
    // (the model has one) and benchmark on the test split.
    let bible = dir.join("datasets/bible");
    let embedded = bible.join("model");
    std::fs::create_dir_all(&embedded).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(
            crate::common::gated_fixture().join(file),
            embedded.join(file),
        )
        .unwrap();
    }
    let modernize = |name: &str, offset: usize| {
        let plain = copy_examples(&dir, "plain.jsonl", offset, 8);
        let text = std::fs::read_to_string(plain)
            .unwrap()
            .replace("\"task\":\"copy\"", "\"task\":\"modernize\"");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
        std::fs::write(bible.join(name), gz.finish().unwrap()).unwrap();
    };
    modernize("calibration.jsonl.gz", 0);
    modernize("test.jsonl.gz", 50);
    let classifier = run(&[
        "train-classifier",
        "--model",
        embedded.to_str().unwrap(),
        "--data",
        bible.join("calibration.jsonl.gz").to_str().unwrap(),
        "--steps",
        "3",
    ]);
    assert!(
        classifier.status.success(),
        "{}",
        String::from_utf8_lossy(&classifier.stderr)
    );
    let main_job = run(&["calibrate"]);
    assert!(
        main_job.status.success(),
        "{}",
        String::from_utf8_lossy(&main_job.stderr)
    );
    let thresholds = read_json(&dir.join("reports/bible-modernize-textual/thresholds.json"));
    let run_info = &thresholds["run"];
    assert_eq!(run_info["task"], "modernize");
    // --lambdas auto: one of the eight examples (a seeded 10%, rounded up) placed the grid and
    // is not tested; the records hold the other seven.
    assert_eq!(run_info["examples"], 7);
    let grid_examples = run_info["grid"]["examples"].as_array().unwrap();
    assert_eq!(grid_examples.len(), 1);
    let tested =
        calm::record::read_records(&[dir.join("reports/bible-modernize-textual/records.parquet")])
            .unwrap()
            .examples;
    assert_eq!(tested.len(), 7);
    assert!(grid_examples
        .iter()
        .all(|g| !tested.contains(&g.as_str().unwrap().to_string())));
    assert_eq!(
        run_info["measures"],
        serde_json::json!(["softmax-diff", "state", "classifier"])
    );
    // One grid per measure, each starting at λ = 1 and strictly descending.
    let grids = run_info["lambdas"].as_array().unwrap();
    assert_eq!(grids.len(), 3);
    for grid in grids {
        let grid: Vec<f64> = grid
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_f64().unwrap())
            .collect();
        assert_eq!(grid[0], 1.0);
        assert!(grid.windows(2).all(|w| w[0] > w[1]), "{grid:?}");
    }
    // Nothing selected on eight examples (never exit): then there is nothing to benchmark.
    if thresholds["selected"]["never_exit"] == true {
        assert!(run_info["benchmark"].is_null());
    } else {
        assert_eq!(run_info["benchmark"]["examples"], 8);
        assert!(dir
            .join("reports/bible-modernize-textual/frontier.json")
            .exists());
        assert!(run_info["benchmark"]["data"]
            .as_str()
            .unwrap()
            .ends_with("test.jsonl.gz"));
    }
}

fn sweep_run(dir: &Path, data: &Path, name: &str, extra: &[&str]) -> serde_json::Value {
    let out = dir.join(name);
    let mut args = vec![
        "calibrate",
        "--model",
        &MODEL_ARG,
        "--data",
        data.to_str().unwrap(),
        "--delta",
        "0.2",
        "--epsilon",
        "0.1",
        "--lambdas",
        "1,0.9,0.8,0.7,0.5,0.2,0",
        "--taus",
        "0,4",
        "--max-new-tokens",
        "8",
    ];
    let out_text = out.to_str().unwrap().to_string();
    args.extend_from_slice(&["--out", &out_text]);
    args.extend_from_slice(extra);
    let run = calm(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    read_json(&out.join("thresholds.json"))
}

static MODEL_ARG: std::sync::LazyLock<String> = std::sync::LazyLock::new(model);

/// Records of a run as (example, measure, tau, lambda) -> (loss, layers, tokens), plus the
/// early outputs, read back from records.parquet.
fn records_of(dir: &Path) -> Vec<(String, String, String)> {
    let records = calm::record::read_records(&[dir.join("records.parquet")]).unwrap();
    let mut rows: Vec<(String, String, String)> = records
        .rows
        .iter()
        .map(|r| {
            (
                records.examples[r.example as usize].clone(),
                format!(
                    "{} {} {}",
                    records.measures[r.measure as usize], r.tau, r.lambda
                ),
                format!(
                    "{} {} {} {:?}",
                    r.loss, r.layers, r.tokens, r.chain_complete
                ),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn an_early_stopped_sweep_equals_the_full_grid_tested_by_fixed_sequence() {
    // Issue 17: the fixed-sequence sweep stops each chain at its first failure; sweeping the whole
    // grid (bonferroni) and then testing the same records by fixed sequence must certify the same
    // candidates and select the same configuration.
    let dir = scratch("equivalence");
    let data = data_file(&dir, 30);
    let early = sweep_run(&dir, &data, "early", &["--early-stop"]);
    let full = sweep_run(&dir, &data, "full", &["--procedure", "bonferroni"]);
    let evaluated = early["run"]["sweep"]["configurations_evaluated"]
        .as_u64()
        .unwrap();
    assert!(
        evaluated < 28,
        "some chain must stop early to make this test bite"
    );
    assert_eq!(full["run"]["sweep"]["configurations_evaluated"], 28);
    let again = dir.join("again");
    let run = calm(&[
        "calibrate",
        "--records",
        dir.join("full/records.parquet").to_str().unwrap(),
        "--delta",
        "0.2",
        "--epsilon",
        "0.1",
        "--cost-model",
        dir.join("full/thresholds.json").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let retested = read_json(&again.join("thresholds.json"));
    let certified = |json: &serde_json::Value| -> Vec<String> {
        json["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["certified"] == true)
            .map(|c| format!("{} {} {}", c["measure"], c["tau"], c["lambda"]))
            .collect()
    };
    assert_eq!(certified(&early), certified(&retested));
    assert_eq!(early["selected"], retested["selected"]);
    // Issue 16: every frontier row of the whole-grid run is `calibrate --records … --delta D`.
    let frontier: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("full/frontier.json")).unwrap())
            .unwrap();
    let frontier = frontier.as_array().unwrap();
    assert_eq!(frontier.len(), 12);
    for row in frontier
        .iter()
        .filter(|r| [0.05, 0.2, 0.5].contains(&r["delta"].as_f64().unwrap()))
    {
        let delta = row["delta"].to_string();
        let out = dir.join(format!("delta-{delta}"));
        let run = calm(&[
            "calibrate",
            "--records",
            dir.join("full/records.parquet").to_str().unwrap(),
            "--delta",
            &delta,
            "--epsilon",
            "0.1",
            "--procedure",
            "bonferroni",
            "--cost-model",
            dir.join("full/thresholds.json").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let selected = read_json(&out.join("thresholds.json"))["selected"].clone();
        assert_eq!(selected["measure"], row["measure"], "δ = {delta}");
        assert_eq!(selected["lambda"], row["lambda"], "δ = {delta}");
        assert_eq!(selected["mean_layers"], row["mean_layers"], "δ = {delta}");
    }
    // The early-stopped records mark their cut chains; the full grid's are all complete.
    let early_rows = records_of(&dir.join("early"));
    assert!(early_rows.iter().any(|r| r.2.ends_with("Some(false)")));
    assert!(records_of(&dir.join("full"))
        .iter()
        .all(|r| r.2.ends_with("Some(true)")));
}

#[test]
fn batched_sweeping_gives_the_records_of_batch_one() {
    // Issue 12: the sweep decodes length-bucketed batches; its records (loss, layers, tokens of
    // every example and configuration) and outputs equal batch-1 decoding's.
    let dir = scratch("batched");
    let data = data_file(&dir, 40);
    let one = sweep_run(
        &dir,
        &data,
        "one",
        &["--batch-size", "1", "--procedure", "bonferroni"],
    );
    let many = sweep_run(
        &dir,
        &data,
        "many",
        &["--batch-size", "8", "--procedure", "bonferroni"],
    );
    assert_eq!(one["candidates"], many["candidates"]);
    assert_eq!(one["selected"], many["selected"]);
    assert_eq!(records_of(&dir.join("one")), records_of(&dir.join("many")));
    // The fixture's inputs come in 4 lengths, so batches of 8 really hold several rows.
    let lengths: std::collections::BTreeSet<usize> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["input"]
                .as_str()
                .unwrap()
                .split(' ')
                .count()
        })
        .collect();
    assert!(lengths.len() < 10, "{lengths:?}");
}
