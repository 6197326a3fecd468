//! The pipeline on a decoder-only model: generate, calibrate --model, check and evaluate on the
//! tiny Llama fixture with a prompt template, and the checks that keep a certificate tied to
//! the prompt format it was calibrated with.

use super::llama_parity::{llama_fixture, smollm2};
use crate::common::{calm, copy_examples, read_json, scratch, text};

const TEMPLATE: &str = "Q: {input}\nA:";

#[test]
fn generate_reports_generated_ids_only() {
    let model = llama_fixture("llama-gqa-tied");
    let out = calm(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt-template",
        TEMPLATE,
        "--input",
        "the cat sat",
        "--max-new-tokens",
        "6",
        "--json",
        "--exit-layer",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens = json["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 6);
    let layers: Vec<u64> = json["exit_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    // The prefill's token comes from the full model; exits apply from the second token on.
    assert_eq!(layers, [4, 2, 2, 2, 2, 2]);

    // A template without {input} and a chat request on a model without a template are refused.
    for (flag, value, needle) in [
        ("--prompt-template", "no slot", "{input}"),
        ("--chat", "", "no chat template"),
    ] {
        let mut args = vec![
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--input",
            "x",
            flag,
        ];
        if !value.is_empty() {
            args.push(value);
        }
        let out = calm(&args);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
    }
    // Prompt formats are for decoder-only models.
    let t5 = crate::common::model();
    let out = calm(&["generate", "--model", &t5, "--input", "x", "--chat"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("decoder-only"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn calibrate_check_and_evaluate_a_decoder_only_model() {
    let dir = scratch("decoder-only");
    let data = copy_examples(&dir, "data.jsonl", 0, 40);
    let fresh = copy_examples(&dir, "fresh.jsonl", 40, 30);
    let model = llama_fixture("llama-gqa-tied");
    let model = model.to_str().unwrap();
    let out = dir.join("run");
    let run = calm(&[
        "calibrate",
        "--model",
        model,
        "--prompt-template",
        TEMPLATE,
        "--data",
        data.to_str().unwrap(),
        "--delta",
        "0.3",
        "--epsilon",
        "0.1",
        "--lambdas",
        "1,0.9,0.5,0",
        "--taus",
        "0",
        "--measures",
        "softmax-diff,state",
        "--max-new-tokens",
        "6",
        "--jobs",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let thresholds = read_json(&out.join("thresholds.json"));
    assert_eq!(thresholds["run"]["prompt_template"], TEMPLATE);
    assert!(thresholds["run"].get("gguf_weights").is_none());
    assert!(out.join("records.parquet").is_file());

    // The gate re-runs the model with the calibrated prompt format.
    let thresholds_path = out.join("thresholds.json");
    let check = calm(&[
        "check",
        "--thresholds",
        thresholds_path.to_str().unwrap(),
        "--data",
        fresh.to_str().unwrap(),
        "--json",
    ]);
    let code = check.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "{}",
        text(&check.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(verdict["test"]["n"], 30, "{verdict}");
    // Another prompt format would test a different model input: refused.
    let wrong = calm(&[
        "check",
        "--thresholds",
        thresholds_path.to_str().unwrap(),
        "--data",
        fresh.to_str().unwrap(),
        "--prompt-template",
        "{input} =>",
    ]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        text(&wrong.stderr).contains("calibrated with prompt format"),
        "{}",
        text(&wrong.stderr)
    );

    let evaluate = calm(&[
        "evaluate",
        "--model",
        model,
        "--prompt-template",
        TEMPLATE,
        "--data",
        fresh.to_str().unwrap(),
        "--task",
        "copy",
        "--max-new-tokens",
        "6",
        "--json",
    ]);
    assert_eq!(
        evaluate.status.code(),
        Some(0),
        "{}",
        text(&evaluate.stderr)
    );
    let card: serde_json::Value = serde_json::from_slice(&evaluate.stdout).unwrap();
    let agreement = card["agreement"].as_array().unwrap();
    assert_eq!(agreement.len(), 4, "{card}");
    assert_eq!(agreement[3], 1.0);
    // Layer j's policy exits at j from the second token on; the first is the prefill's.
    let layer_one = card["layers"][0]["mean_layers"].as_f64().unwrap();
    assert!((layer_one - (4.0 + 5.0) / 6.0).abs() < 1e-9, "{card}");
}

#[test]
fn smollm2_chat_generation_from_the_cli() {
    let Some(path) = smollm2() else { return };
    let out = calm(&[
        "generate",
        "--model",
        path.to_str().unwrap(),
        "--chat",
        "--input",
        "modernize: And God said, Let there be light: and there was light.",
        "--max-new-tokens",
        "8",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // transformers' first greedy tokens for this prompt ("The ancient Greek proverb, ...").
    assert!(
        json["text"].as_str().unwrap().starts_with("The ancient"),
        "{json}"
    );
    assert_eq!(json["num_layers"], 30);
}

#[test]
fn train_classifier_on_a_decoder_only_model_then_exit_by_it() {
    let dir = scratch("decoder-only-classifier");
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(llama_fixture("llama-gqa-tied").join(file), model.join(file)).unwrap();
    }
    let data = copy_examples(&dir, "data.jsonl", 0, 40);
    let held_out = copy_examples(&dir, "held.jsonl", 40, 20);
    let out = calm(&[
        "train-classifier",
        "--model",
        model.to_str().unwrap(),
        "--prompt-template",
        TEMPLATE,
        "--data",
        data.to_str().unwrap(),
        "--eval",
        held_out.to_str().unwrap(),
        "--steps",
        "30",
        "--batch-tokens",
        "512",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.as_array().unwrap().len(), 3, "{report}");
    let generated = calm(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt-template",
        TEMPLATE,
        "--input",
        "the cat sat",
        "--measure",
        "classifier",
        "--lambda",
        "0.5",
        "--max-new-tokens",
        "6",
        "--json",
    ]);
    assert_eq!(
        generated.status.code(),
        Some(0),
        "{}",
        text(&generated.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&generated.stdout).unwrap();
    assert_eq!(
        json["confidences"][1].as_array().unwrap().len() as u64,
        json["exit_layers"][1].as_u64().unwrap().min(3)
    );
    // GGUF files are read-only to calm: refused with the reason.
    if let Some(gguf) = smollm2() {
        let out = calm(&[
            "train-classifier",
            "--model",
            gguf.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out.stderr).contains("GGUF"), "{}", text(&out.stderr));
    }
}

#[test]
fn bad_gguf_and_llama_files_give_clear_errors() {
    let dir = scratch("bad-gguf");
    let fake = dir.join("model.gguf");
    std::fs::write(&fake, b"not a gguf file at all").unwrap();
    let out = calm(&[
        "generate",
        "--model",
        fake.to_str().unwrap(),
        "--input",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a valid GGUF file"),
        "{}",
        text(&out.stderr)
    );
    // A Llama config with an architecture calm does not run names it.
    let model = dir.join("gpt2");
    std::fs::create_dir_all(&model).unwrap();
    for file in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(llama_fixture("llama-gqa-tied").join(file), model.join(file)).unwrap();
    }
    let config = std::fs::read_to_string(llama_fixture("llama-gqa-tied").join("config.json"))
        .unwrap()
        .replace("LlamaForCausalLM", "GPT2LMHeadModel");
    std::fs::write(model.join("config.json"), config).unwrap();
    let out = calm(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--input",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("GPT2LMHeadModel"),
        "{}",
        text(&out.stderr)
    );
}
