//! Parity of calm's T5 with Hugging Face transformers on two tiny random checkpoints
//! (tests/fixtures/t5, made by make_fixtures.py): tokenization, encoder output, greedy output,
//! logits of every exit head, and the hidden-state cosine used by the `state` measure.

use calm::model::{
    generate, teacher_forced_logits, Checkpoint, DType, Device, ExitPolicy, GenerationOptions,
};
use serde_json::Value;
use std::path::Path;

fn fixture(name: &str) -> (Checkpoint, Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/t5")
        .join(name);
    let checkpoint =
        Checkpoint::load(&dir, &Device::Cpu, DType::F32).expect("fixture checkpoint loads");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    (checkpoint, reference)
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn assert_close(got: f64, want: f64, tolerance: f64, what: &str) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: got {got}, want {want}"
    );
}

fn logsumexp(values: &[f32]) -> f64 {
    let max = values.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + values
        .iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln()
}

fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

fn check_model(name: &str) {
    let (checkpoint, reference) = fixture(name);
    let model = &checkpoint.model;
    let depth = model.num_decoder_layers();
    for case in reference["cases"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let input_ids = checkpoint.encode(input).unwrap();
        assert_eq!(
            input_ids,
            ids(&case["input_ids"]),
            "{name}: tokenization of {input:?}"
        );

        // Encoder output.
        let encoded = model
            .as_t5()
            .unwrap()
            .encode(std::slice::from_ref(&input_ids))
            .unwrap();
        let hidden = encoded
            .hidden
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (i, want) in floats(&case["encoder_output_first"]).iter().enumerate() {
            assert_close(
                hidden[i] as f64,
                *want,
                1e-4,
                &format!("{name} encoder[{i}]"),
            );
        }
        let sum: f64 = hidden.iter().map(|&v| v as f64).sum();
        let want_sum = case["encoder_output_sum"].as_f64().unwrap();
        assert_close(sum, want_sum, 1e-3, &format!("{name} encoder sum"));

        // Greedy decoding, never exit: the same ids as transformers' generate.
        let greedy = ids(&case["greedy_ids"]);
        let options = GenerationOptions {
            max_new_tokens: 12,
            policy: ExitPolicy::Never,
            record_all_layers: true,
        };
        let out = &generate(model, std::slice::from_ref(&input_ids), &options).unwrap()[0];
        assert_eq!(
            out.tokens,
            greedy[1..].to_vec(),
            "{name}: greedy output for {input:?}"
        );
        assert!(out.exit_layers().iter().all(|&l| l == depth));

        // Teacher-forced logits of every exit head.
        let decoder_ids = ids(&case["decoder_input_ids"]);
        let logits =
            teacher_forced_logits(model.as_t5().unwrap(), &input_ids, &decoder_ids).unwrap();
        for t in 0..decoder_ids.len() {
            let top = &logits[t][depth - 1];
            for (k, want) in floats(&case["logits_first8"][t]).iter().enumerate() {
                assert_close(
                    top[k] as f64,
                    *want,
                    1e-4,
                    &format!("{name} logits[{t}][{k}]"),
                );
            }
            assert_eq!(
                argmax(top),
                case["logits_argmax"][t].as_u64().unwrap() as u32
            );
            assert_close(
                logsumexp(top),
                case["logits_logsumexp"][t].as_f64().unwrap(),
                1e-4,
                "logsumexp",
            );
            for layer in 0..depth {
                let head = &logits[t][layer];
                for (k, want) in floats(&case["layer_logits_first4"][layer][t])
                    .iter()
                    .enumerate()
                {
                    assert_close(
                        head[k] as f64,
                        *want,
                        1e-4,
                        &format!("{name} layer {} logits[{t}][{k}]", layer + 1),
                    );
                }
                assert_eq!(
                    argmax(head),
                    case["layer_logits_argmax"][layer][t].as_u64().unwrap() as u32
                );
                assert_close(
                    logsumexp(head),
                    case["layer_logits_logsumexp"][layer][t].as_f64().unwrap(),
                    1e-4,
                    "layer logsumexp",
                );
            }
        }

        // Record mode: state cosines of layers 2..L match cos(h_i, h_{i−1}) from transformers.
        for (t, trace) in out.traces.iter().enumerate() {
            let layers = trace
                .layers
                .as_ref()
                .expect("record mode keeps every layer");
            assert_eq!(layers.len(), depth);
            assert!(layers[0].state.is_none());
            for layer in 2..=depth {
                let want = case["state_cosine"][layer - 2][t].as_f64().unwrap();
                let got = layers[layer - 1].state.unwrap() as f64;
                assert_close(
                    got,
                    want,
                    1e-5,
                    &format!("{name} state cosine layer {layer} t {t}"),
                );
                assert_eq!(
                    layers[layer - 1].argmax,
                    case["layer_logits_argmax"][layer - 1][t].as_u64().unwrap() as u32
                );
            }
        }
    }
}

#[test]
fn gated_v1_1_layout_matches_transformers() {
    check_model("gated");
}

#[test]
fn tied_relu_layout_matches_transformers() {
    check_model("tied-relu");
}
