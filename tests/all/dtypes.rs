//! Device and dtype are the caller's: checkpoints stored in f16/bf16 load into f32 exactly as
//! their values are, and a model computes in f16 or bf16 with logits that track f32's within
//! the rounding of the narrower type.

use super::common::scratch;
use super::llama_parity::llama_fixture;
use calm::model::{
    generate, teacher_forced_logits, Checkpoint, DType, Device, ExitPolicy, GenerationOptions,
    Measure, Model,
};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn t5_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/t5")
        .join(name)
}

/// A copy of checkpoint `source` whose weights are `convert`ed (config and tokenizer as
/// they are).
fn converted_copy(source: &Path, name: &str, convert: impl Fn(&Tensor) -> Tensor) -> PathBuf {
    let dir = scratch(name);
    for file in ["config.json", "tokenizer.json", "generation_config.json"] {
        if source.join(file).is_file() {
            std::fs::copy(source.join(file), dir.join(file)).unwrap();
        }
    }
    let tensors =
        candle_core::safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
    let converted: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), convert(t)))
        .collect();
    candle_core::safetensors::save(&converted, dir.join("model.safetensors")).unwrap();
    dir
}

fn load(dir: &Path, dtype: DType) -> Checkpoint {
    Checkpoint::load(dir, &Device::Cpu, dtype).unwrap()
}

/// Every layer's exit-head logits of a teacher-forced pass, flattened, as f32.
fn logits(checkpoint: &Checkpoint) -> Vec<f32> {
    let input = checkpoint.encode("the quick brown fox jumps").unwrap();
    match &checkpoint.model {
        Model::T5(m) => teacher_forced_logits(m, &input, &[0, 5, 9, 14, 3, 7])
            .unwrap()
            .into_iter()
            .flatten()
            .flatten()
            .collect(),
        Model::Llama(m) => {
            let ids = Tensor::new(input.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let mut all = Vec::new();
            for h in m.forward_states(&ids).unwrap() {
                let l = m.head_logits(&h).unwrap().to_dtype(DType::F32).unwrap();
                all.extend(l.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            }
            all
        }
    }
}

fn max_abs_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().map(|x| x.abs()).fold(0.0, f32::max)
}

const FIXTURES: [(&str, bool); 4] = [
    ("gated", true),
    ("tied-relu", true),
    ("qwen2-bias", false),
    ("llama-gqa-tied", false),
];

fn fixture(name: &str, t5: bool) -> PathBuf {
    if t5 {
        t5_fixture(name)
    } else {
        llama_fixture(name)
    }
}

/// A checkpoint stored in f16 or bf16 and loaded as f32 is the f32 model of the rounded weights:
/// its logits are bit-identical to those of an f32 checkpoint holding the same rounded values
/// (the widening is exact), and differ from the unrounded model's.
#[test]
fn half_precision_checkpoints_load_as_their_exact_values() {
    for (name, t5) in FIXTURES {
        let source = fixture(name, t5);
        let original = logits(&load(&source, DType::F32));
        for dtype in [DType::F16, DType::BF16] {
            let stored = converted_copy(&source, &format!("dtype-{name}-{dtype:?}"), |t| {
                t.to_dtype(dtype).unwrap()
            });
            let rounded = converted_copy(&source, &format!("dtype-{name}-{dtype:?}-f32"), |t| {
                t.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap()
            });
            let from_half = logits(&load(&stored, DType::F32));
            assert_eq!(
                from_half,
                logits(&load(&rounded, DType::F32)),
                "{name} {dtype:?}"
            );
            // Negative control: the rounding is visible, so equality above is not vacuous.
            assert!(
                max_abs_difference(&from_half, &original) > 0.0,
                "{name} {dtype:?}"
            );
        }
    }
}

/// Computing in f16 or bf16: every exit head's logits stay within 32 unit roundoffs (f16 2⁻¹¹,
/// bf16 2⁻⁸) of f32's, relative to the largest logit. Measured on these fixtures: f16 2.7–6.6e-3
/// (bound 1.6e-2), bf16 1.0–8.3e-2 (bound 0.125). Control: bf16's error exceeds f16's on every
/// fixture, so the comparison sees the precision the model computed in.
#[test]
fn half_precision_compute_tracks_f32() {
    for (name, t5) in FIXTURES {
        let dir = fixture(name, t5);
        let reference = logits(&load(&dir, DType::F32));
        let scale = max_abs(&reference);
        let f16 = logits(&load(&dir, DType::F16));
        let bf16 = logits(&load(&dir, DType::BF16));
        let (f16_error, bf16_error) = (
            max_abs_difference(&f16, &reference) / scale,
            max_abs_difference(&bf16, &reference) / scale,
        );
        eprintln!("{name}: relative max error f16 {f16_error:.2e}, bf16 {bf16_error:.2e}");
        assert!(f16_error < 32.0 * 2f32.powi(-11), "{name} f16 {f16_error}");
        assert!(
            bf16_error < 32.0 * 2f32.powi(-8),
            "{name} bf16 {bf16_error}"
        );
        assert!(bf16_error > f16_error, "{name}");
    }
}

/// The engine runs in the model's dtype end to end: early-exit generation in bf16 and f16 with
/// each measure, confidences read in f32; a model computing in another dtype is refused.
#[test]
fn early_exit_generation_runs_in_half_precision() {
    for dtype in [DType::F16, DType::BF16] {
        for (name, t5) in [("gated", true), ("qwen2-bias", false)] {
            let checkpoint = load(&fixture(name, t5), dtype);
            assert_eq!(checkpoint.model.dtype(), dtype);
            let input = checkpoint.encode("the quick brown fox").unwrap();
            for measure in [Measure::SoftmaxDiff, Measure::SoftmaxMax, Measure::State] {
                let options = GenerationOptions {
                    max_new_tokens: 6,
                    policy: ExitPolicy::Threshold {
                        measure,
                        lambda: 0.5,
                        tau: 4.0,
                        min_exit: 1,
                    },
                    record_all_layers: true,
                };
                let out =
                    generate(&checkpoint.model, &[input.clone(), input.clone()], &options).unwrap();
                assert!(!out[0].tokens.is_empty(), "{name} {dtype:?} {measure:?}");
                assert_eq!(out[0].tokens, out[1].tokens);
                for trace in &out[0].traces {
                    for c in trace.confidences.iter().flatten() {
                        assert!(c.is_finite(), "{name} {dtype:?} {measure:?}: {c}");
                    }
                }
            }
        }
    }
    let error = Checkpoint::load(&t5_fixture("gated"), &Device::Cpu, DType::F64)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(error, "cannot compute in f64 (calm runs f32, f16 or bf16)");
}

/// `calibrate --dtype bf16` records the dtype; the gate then runs bf16 without being told, and
/// refuses another --dtype (the certificate holds for the model as calibrated).
#[test]
fn a_calibration_records_its_dtype_and_the_gate_runs_it() {
    use super::common::{calm, copy_examples, model, read_json, text};
    let dir = scratch("dtype-cli");
    let data = copy_examples(&dir, "data.jsonl", 0, 30);
    let fresh = copy_examples(&dir, "fresh.jsonl", 30, 20);
    let out = dir.join("run");
    let run = calm(&[
        "calibrate",
        "--model",
        &model(),
        "--dtype",
        "bf16",
        "--data",
        data.to_str().unwrap(),
        "--delta",
        "0.3",
        "--lambdas",
        "1,0.5",
        "--taus",
        "0",
        "--measures",
        "softmax-diff",
        "--max-new-tokens",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let thresholds = out.join("thresholds.json");
    let config = read_json(&thresholds);
    assert_eq!(config["run"]["dtype"], "bf16", "{config}");
    assert!(config["run"].get("gguf_weights").is_none());

    let parsed = calm::calibrate::thresholds::read_thresholds(&thresholds).unwrap();
    let model =
        calm::pipeline::load_calibrated_model(&parsed, &thresholds, None, &Device::Cpu).unwrap();
    assert_eq!(model.model.dtype(), DType::BF16);

    let args = [
        "check",
        "--thresholds",
        thresholds.to_str().unwrap(),
        "--data",
        fresh.to_str().unwrap(),
        "--json",
    ];
    let check = calm(&args);
    assert!(
        matches!(check.status.code(), Some(0 | 1)),
        "{}",
        text(&check.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(verdict["test"]["n"], 20, "{verdict}");
    // Naming the calibrated dtype is the same run.
    let same = calm(&[&args[..], &["--dtype", "bf16"]].concat());
    assert!(
        matches!(same.status.code(), Some(0 | 1)),
        "{}",
        text(&same.stderr)
    );
    let wrong = calm(&[&args[..], &["--dtype", "f32"]].concat());
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        text(&wrong.stderr).contains("calibrated with --dtype bf16, not --dtype f32"),
        "{}",
        text(&wrong.stderr)
    );
}

/// A real GGUF (SmolLM2-135M-Instruct, Q4_1) in half precision: de-quantized to f16 it writes
/// the f32 model's greedy ids, and its quantized blocks run with f16 activations (widened to
/// f32 for candle's quantized product) write the f32-activation ids.
#[test]
fn smollm2_gguf_in_half_precision() {
    use calm::model::LoadOptions;
    let Some(path) = super::llama_parity::smollm2() else {
        return;
    };
    let options = GenerationOptions {
        max_new_tokens: 12,
        policy: ExitPolicy::Never,
        record_all_layers: false,
    };
    let text = "modernize: And God said, Let there be light: and there was light.";
    let ids = |dtype: DType, dequantize: bool| {
        let mut checkpoint = Checkpoint::load_with(
            &path,
            &Device::Cpu,
            dtype,
            &LoadOptions {
                dequantize,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(checkpoint.model.dtype(), dtype);
        checkpoint.prompt = checkpoint.chat_format().unwrap();
        let prompt = checkpoint.encode(text).unwrap();
        generate(&checkpoint.model, &[prompt], &options).unwrap()[0]
            .tokens
            .clone()
    };
    let (f32_ids, f16_ids) = (ids(DType::F32, true), ids(DType::F16, true));
    eprintln!("f32 {f32_ids:?}\nf16 {f16_ids:?}");
    assert_eq!(f16_ids, f32_ids);
    let (quantized, quantized_f16) = (ids(DType::F32, false), ids(DType::F16, false));
    eprintln!("quantized {quantized:?}\nquantized f16 {quantized_f16:?}");
    assert_eq!(quantized_f16, quantized);
}
