//! The whole path through the library only, no CLI: a model → records → certified thresholds
//! (`pipeline::calibrate_model`) → the CI gate on fresh data (`pipeline::check`).

use super::llama_parity::llama_fixture;
use crate::common::{copy_examples, scratch};
use calm::calibrate::{CalibrationOptions, PValueMethod, Procedure};
use calm::model::{Checkpoint, DType, Device, PromptFormat};
use calm::pipeline::{
    calibrate_model, check, load_calibrated_model, CheckOptions, LambdaGrid, PipelineError,
    SweepSettings,
};

#[test]
fn model_to_thresholds_to_gate_through_the_library() {
    let dir = scratch("library-pipeline");
    let data = copy_examples(&dir, "data.jsonl", 0, 40);
    let fresh = copy_examples(&dir, "fresh.jsonl", 40, 30);
    let model_dir = llama_fixture("llama-gqa-tied");
    let mut checkpoint = Checkpoint::load(&model_dir, &Device::Cpu, DType::F32).unwrap();
    checkpoint.prompt = PromptFormat::Template("Q: {input}\nA:".into());
    let settings = SweepSettings {
        measures: vec![
            calm::model::Measure::SoftmaxDiff,
            calm::model::Measure::State,
        ],
        taus: vec![0.0],
        lambdas: LambdaGrid::Values(vec![1.0, 0.9, 0.5, 0.0]),
        max_new_tokens: 6,
        ..SweepSettings::new(&data)
    };
    let options = CalibrationOptions {
        delta: 0.3,
        epsilon: 0.1,
        pvalue: PValueMethod::Hb,
        procedure: Procedure::FixedSequence,
        seed: 0,
    };
    let out = dir.join("run");
    let run = calibrate_model(checkpoint, &model_dir, &settings, &options, &out).unwrap();
    assert!(out.join("thresholds.json").is_file() && out.join("records.parquet").is_file());
    // Four λs for each of two measures, 40 examples each.
    assert_eq!(run.records.rows.len(), 2 * 4 * 40);
    let recorded = run.thresholds.run.as_ref().unwrap();
    assert_eq!(recorded.prompt_template.as_deref(), Some("Q: {input}\nA:"));
    assert_eq!(recorded.examples, 40);

    // The gate loads the model as it was calibrated (prompt format included) and re-checks.
    let thresholds = out.join("thresholds.json");
    let model = load_calibrated_model(&run.thresholds, &thresholds, None, &Device::Cpu).unwrap();
    assert_eq!(
        model.prompt,
        PromptFormat::Template("Q: {input}\nA:".into())
    );
    let report = check(
        &run.thresholds,
        &thresholds,
        &fresh,
        &model,
        &CheckOptions::default(),
    )
    .unwrap();
    assert_eq!(report.test.n, 30);
    assert_eq!(report.test.delta, 0.3);

    // Settings are validated in the library's words, before any decoding.
    let twice = SweepSettings {
        taus: vec![0.0, 0.0],
        ..settings.clone()
    };
    let reloaded = Checkpoint::load(&model_dir, &Device::Cpu, DType::F32).unwrap();
    match calibrate_model(reloaded, &model_dir, &twice, &options, &dir.join("bad")) {
        Err(PipelineError::InvalidOption { name: "taus", .. }) => {}
        other => panic!("expected an invalid taus error, got {:?}", other.err()),
    }
    assert!(
        !dir.join("bad").exists(),
        "nothing written for bad settings"
    );
}
