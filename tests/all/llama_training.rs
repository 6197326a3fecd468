//! Fine-tuning a decoder-only model with the CALM loss (`calm train --init-from`), and GGUF
//! written out in Hugging Face layout.

use super::llama_parity::{llama_fixture, smollm2};
use crate::common::{calm, copy_examples, scratch, text};
use calm::model::{generate, Checkpoint, ExitPolicy, GenerationOptions, LoadOptions, PromptFormat};
use candle_core::{DType, Device};
use std::path::Path;

fn nll_columns(log: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let columns: Vec<usize> = (0..header.len())
        .filter(|&i| header[i].starts_with("nll_layer"))
        .collect();
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            columns
                .iter()
                .map(|&i| fields[i].parse().unwrap())
                .collect()
        })
        .collect()
}

fn fine_tune(dir: &Path, data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let fixture = llama_fixture("llama-gqa-tied");
    let mut args = vec![
        "train",
        "--init-from",
        fixture.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--prompt-template",
        "Q: {input}\nA:",
        "--exit-layers",
        "2,4",
        "--steps",
        "16",
        "--warmup",
        "2",
        "--learning-rate",
        "3e-3",
        "--batch-tokens",
        "600",
        "--max-tokens-per-sequence",
        "80",
        "--checkpoint-every",
        "4",
    ];
    args.extend_from_slice(extra);
    let _ = dir;
    calm(&args)
}

#[test]
fn calm_loss_fine_tuning_learns_updates_every_weight_and_resumes_exactly() {
    let dir = scratch("llama-fine-tune");
    let data = copy_examples(&dir, "data.jsonl", 0, 24);
    let straight = dir.join("straight");
    let out = fine_tune(&dir, &data, &straight, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Only the chosen exits are in the loss, and it falls at both.
    let nll = nll_columns(&straight.join("train_log.csv"));
    assert_eq!(nll.len(), 16);
    assert_eq!(nll[0].len(), 2);
    for layer in 0..2 {
        let first: f64 = nll[..4].iter().map(|r| r[layer]).sum::<f64>() / 4.0;
        let last: f64 = nll[12..].iter().map(|r| r[layer]).sum::<f64>() / 4.0;
        assert!(last < first, "layer {layer}: NLL {first} → {last}");
    }
    // Every weight moved (the gradient reached all of them; fused kernels would stop it).
    let before = candle_core::safetensors::load(
        llama_fixture("llama-gqa-tied").join("model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let after =
        candle_core::safetensors::load(straight.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(before.len(), after.len());
    for (name, tensor) in &before {
        let a: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = after[name].flatten_all().unwrap().to_vec1().unwrap();
        assert_ne!(a, b, "{name} did not change");
    }
    // The result is a checkpoint calm (and transformers) loads.
    let mut checkpoint = Checkpoint::load(&straight, &Device::Cpu, DType::F32).unwrap();
    checkpoint.prompt = PromptFormat::Template("Q: {input}\nA:".into());
    let prompt = checkpoint.encode("the cat").unwrap();
    let options = GenerationOptions {
        max_new_tokens: 4,
        policy: ExitPolicy::Fixed(2),
        record_all_layers: false,
    };
    assert!(
        !generate(&checkpoint.model, &[prompt], &options).unwrap()[0]
            .tokens
            .is_empty()
    );

    // Stopped at step 6 and resumed: the same weights as the straight run.
    let resumed = dir.join("resumed");
    let first = fine_tune(&dir, &data, &resumed, &["--stop-after-steps", "6"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let second = fine_tune(&dir, &data, &resumed, &[]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    let resumed_weights =
        candle_core::safetensors::load(resumed.join("model.safetensors"), &Device::Cpu).unwrap();
    for (name, tensor) in &after {
        let a: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = resumed_weights[name]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(a, b, "{name} differs after resuming");
    }
    // Other options on the same --out are refused; a layer outside the model too.
    let other = fine_tune(&dir, &data, &resumed, &["--seed", "9"]);
    assert_eq!(other.status.code(), Some(2));
    let bad = fine_tune(&dir, &data, &dir.join("bad"), &["--exit-layers", "9"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("outside 1..=4"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn gguf_written_in_hf_layout_decodes_like_the_gguf() {
    let Some(path) = smollm2() else { return };
    let dir = scratch("gguf-export");
    let out = dir.join("hf");
    calm::model::llama::export::export_gguf_to_hf(&path, &out).unwrap();
    let mut gguf = Checkpoint::load_with(
        &path,
        &Device::Cpu,
        DType::F32,
        &LoadOptions {
            dequantize: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut hf = Checkpoint::load(&out, &Device::Cpu, DType::F32).unwrap();
    gguf.prompt = gguf.chat_format().unwrap();
    hf.prompt = hf.chat_format().unwrap();
    assert_eq!(gguf.prompt, hf.prompt);
    let options = GenerationOptions {
        max_new_tokens: 12,
        policy: ExitPolicy::Never,
        record_all_layers: false,
    };
    let text = "modernize: And God said, Let there be light: and there was light.";
    let a = generate(&gguf.model, &[gguf.encode(text).unwrap()], &options).unwrap();
    let b = generate(&hf.model, &[hf.encode(text).unwrap()], &options).unwrap();
    assert_eq!(gguf.encode(text).unwrap(), hf.encode(text).unwrap());
    assert_eq!(a[0].tokens, b[0].tokens);
    let _ = std::fs::remove_dir_all(&dir);
}

fn train_from_scratch(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--architecture",
        "llama",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--vocab-size",
        "60",
        "--d-model",
        "32",
        "--d-ff",
        "48",
        "--heads",
        "4",
        "--decoder-layers",
        "3",
        "--tie-embeddings",
        "--max-positions",
        "64",
        "--steps",
        "30",
        "--warmup",
        "3",
        "--learning-rate",
        "1e-2",
        "--batch-tokens",
        "400",
        "--checkpoint-every",
        "10",
        "--copy-share",
        "0.5",
    ];
    args.extend_from_slice(extra);
    calm(&args)
}

#[test]
fn llama_from_scratch_learns_records_its_prompt_format_and_resumes_exactly() {
    let dir = scratch("llama-scratch");
    let data = copy_examples(&dir, "data.jsonl", 0, 40);
    let straight = dir.join("straight");
    let out = train_from_scratch(&data, &straight, &["--kv-heads", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The CALM loss over every layer: three NLL columns, each falling.
    let nll = nll_columns(&straight.join("train_log.csv"));
    assert_eq!((nll.len(), nll[0].len()), (30, 3));
    for layer in 0..3 {
        let first: f64 = nll[..5].iter().map(|r| r[layer]).sum::<f64>() / 5.0;
        let last: f64 = nll[25..].iter().map(|r| r[layer]).sum::<f64>() / 5.0;
        assert!(last < first - 0.5, "layer {layer}: NLL {first} → {last}");
    }
    // A LlamaForCausalLM directory of the asked shape with its own tokenizer, whose prompts end
    // with <sep> (id 3): the directory alone says how inputs become prompts.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(straight.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert_eq!(config["num_hidden_layers"], 3);
    assert_eq!(config["num_key_value_heads"], 2);
    assert_eq!(config["eos_token_id"], 1);
    let checkpoint = Checkpoint::load(&straight, &Device::Cpu, DType::F32).unwrap();
    let prompt = checkpoint.encode("the cat sat").unwrap();
    assert_eq!(*prompt.last().unwrap(), 3);
    assert_eq!(checkpoint.decode(&prompt).unwrap(), "the cat sat");
    // `calm generate` needs no prompt flag for it and prints the completion only.
    let generated = calm(&[
        "generate",
        "--model",
        straight.to_str().unwrap(),
        "--input",
        "the cat sat",
        "--never-exit",
        "--max-new-tokens",
        "8",
    ]);
    assert_eq!(
        generated.status.code(),
        Some(0),
        "{}",
        text(&generated.stderr)
    );
    assert!(!text(&generated.stdout).contains("<sep>"));

    // Stopped at step 12 and resumed: the same weights as the straight run.
    let resumed = dir.join("resumed");
    let first = train_from_scratch(
        &data,
        &resumed,
        &["--kv-heads", "2", "--stop-after-steps", "12"],
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let second = train_from_scratch(&data, &resumed, &["--kv-heads", "2"]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    let a =
        candle_core::safetensors::load(straight.join("model.safetensors"), &Device::Cpu).unwrap();
    let b =
        candle_core::safetensors::load(resumed.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(a.len(), b.len());
    for (name, tensor) in &a {
        let x: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
        let y: Vec<f32> = b[name].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(x, y, "{name} differs after resuming");
    }
    // Another shape on the same --out is refused, naming the base; so are T5-only options.
    let other = train_from_scratch(&data, &resumed, &["--kv-heads", "4"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(
        text(&other.stderr).contains("scratch.json"),
        "{}",
        text(&other.stderr)
    );
    let curriculum = train_from_scratch(&data, &dir.join("c"), &["--copy-curriculum-steps", "5"]);
    assert_eq!(curriculum.status.code(), Some(2));
    let bad_heads = train_from_scratch(&data, &dir.join("h"), &["--kv-heads", "3"]);
    assert_eq!(bad_heads.status.code(), Some(2));
    assert!(
        text(&bad_heads.stderr).contains("key/value heads"),
        "{}",
        text(&bad_heads.stderr)
    );
}
