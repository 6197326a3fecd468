//! Decoder-only parity with transformers: tiny random Llama, Qwen2 and Mistral checkpoints made
//! by `tests/fixtures/make_llama_fixtures.py` (GQA, tied and untied heads, q/k/v biases, llama3
//! rope scaling, non-default rope bases), and SmolLM2-135M-Instruct from its GGUF file when
//! `scripts/fetch_smollm2.sh` has fetched it.

use calm::model::{
    generate, Checkpoint, ExitPolicy, GenerationOptions, LoadOptions, Measure, PromptFormat,
};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub const LLAMA_FIXTURES: [&str; 4] = [
    "llama-gqa-tied",
    "llama-untied-rope",
    "qwen2-bias",
    "mistral",
];

pub fn llama_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llama")
        .join(name)
}

fn reference(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn full(max_new_tokens: usize) -> GenerationOptions {
    GenerationOptions {
        max_new_tokens,
        policy: ExitPolicy::Never,
        record_all_layers: false,
    }
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exp: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

#[test]
fn tiny_llama_family_checkpoints_match_transformers() {
    for name in LLAMA_FIXTURES {
        let dir = llama_fixture(name);
        let checkpoint = Checkpoint::load(&dir, &Device::Cpu, DType::F32).unwrap();
        let reference = reference(&dir);
        let model = checkpoint.model.as_llama().unwrap();
        let depth = model.num_layers();
        assert_eq!(
            depth,
            reference["num_layers"].as_u64().unwrap() as usize,
            "{name}"
        );
        let cases = reference["cases"].as_array().unwrap();
        let max_new = reference["max_new_tokens"].as_u64().unwrap() as usize;
        let mut prompts = Vec::new();
        for case in cases {
            let prompt_ids = ids(&case["prompt_ids"]);
            let greedy = ids(&case["greedy_new_ids"]);
            // The tokenizer gives transformers' ids (the fixtures prepend BOS by hand).
            let text = case["prompt"].as_str().unwrap();
            assert_eq!(
                checkpoint.encode(text).unwrap(),
                prompt_ids[1..],
                "{name}: {text}"
            );

            // Greedy decoding through the cached engine.
            let mut out = generate(
                &checkpoint.model,
                std::slice::from_ref(&prompt_ids),
                &full(max_new),
            )
            .unwrap();
            assert_eq!(out[0].tokens, greedy, "{name}: greedy ids of {text:?}");
            assert!(out[0].exit_layers().iter().all(|&l| l == depth));

            // Every exit head's logits, teacher-forced, within 1e-4 of transformers'.
            let mut sequence = prompt_ids.clone();
            sequence.extend_from_slice(&greedy[..greedy.len() - 1]);
            let input =
                Tensor::from_vec(sequence.clone(), (1, sequence.len()), &Device::Cpu).unwrap();
            let states = model.forward_states(&input).unwrap();
            let positions: Vec<usize> = case["layer_logits_positions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_u64().unwrap() as usize)
                .collect();
            let expected = case["layer_logits"].as_array().unwrap();
            // Record mode (the cached step) gives each layer's softmax maximum at these positions.
            let recorded = generate(
                &checkpoint.model,
                std::slice::from_ref(&prompt_ids),
                &GenerationOptions {
                    record_all_layers: true,
                    ..full(max_new)
                },
            )
            .unwrap();
            for (row, &position) in positions.iter().enumerate() {
                let output_index = position + 1 - prompt_ids.len();
                let trace_layers = recorded[0].traces[output_index].layers.as_ref().unwrap();
                for layer in 0..depth {
                    let logits: Vec<f32> = model
                        .head_logits(&states[layer].narrow(1, position, 1).unwrap())
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap();
                    let want: Vec<f32> = expected[row][layer]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap() as f32)
                        .collect();
                    let worst = logits
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| ((a - b) / b.abs().max(1.0)).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        worst < 1e-4,
                        "{name} layer {} position {position}: {worst}",
                        layer + 1
                    );
                    let p = softmax(&want);
                    let top = p.iter().cloned().fold(0.0, f64::max);
                    let record = &trace_layers[layer];
                    assert!(
                        (record.softmax_max as f64 - top).abs() < 1e-4,
                        "{name} cached layer {}: {} vs {top}",
                        layer + 1,
                        record.softmax_max
                    );
                }
            }
            prompts.push((prompt_ids, out.remove(0)));
        }

        // A batch of prompts of different lengths (and a repeated one) gives each its own
        // batch-1 output.
        let mut batch: Vec<Vec<u32>> = prompts.iter().map(|(p, _)| p.clone()).collect();
        batch.push(prompts[0].0.clone());
        let batched = generate(&checkpoint.model, &batch, &full(max_new)).unwrap();
        for (i, generation) in batched.iter().enumerate() {
            assert_eq!(
                generation.tokens,
                prompts[i % prompts.len()].1.tokens,
                "{name} batch row {i}"
            );
        }
    }
}

#[test]
fn exits_apply_to_generated_tokens_only() {
    let checkpoint =
        Checkpoint::load(&llama_fixture("llama-gqa-tied"), &Device::Cpu, DType::F32).unwrap();
    let prompt = checkpoint.encode("The quick fox").unwrap();
    let options = GenerationOptions {
        max_new_tokens: 6,
        policy: ExitPolicy::Threshold {
            measure: Measure::SoftmaxMax,
            lambda: 0.0,
            tau: 0.0,
            min_exit: 1,
        },
        record_all_layers: false,
    };
    let out = generate(&checkpoint.model, &[prompt], &options).unwrap();
    let layers = out[0].exit_layers();
    // The first token is the prefill's (full model); every later one exits at layer 1.
    assert_eq!(layers[0], 4);
    assert!(layers[1..].iter().all(|&l| l == 1), "{layers:?}");
}

#[test]
fn prompt_templates_and_bad_models() {
    let mut checkpoint =
        Checkpoint::load(&llama_fixture("qwen2-bias"), &Device::Cpu, DType::F32).unwrap();
    let plain = checkpoint.encode("fox").unwrap();
    checkpoint.prompt = PromptFormat::Template("The quick {input}".into());
    assert_eq!(
        checkpoint.encode("fox").unwrap(),
        checkpoint
            .tokenizer
            .encode("The quick fox", true)
            .unwrap()
            .get_ids()
    );
    assert_ne!(plain, checkpoint.encode("fox").unwrap());
    // No chat template in the fixture: a clear error that says what to do.
    let err = checkpoint.chat_format().unwrap_err().to_string();
    assert!(
        err.contains("no chat template") && err.contains("--prompt-template"),
        "{err}"
    );
    // An empty prompt cannot be prefilled.
    let err = generate(&checkpoint.model, &[vec![]], &full(2))
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least one token"), "{err}");
}

/// SmolLM2-135M-Instruct, if fetched (`scripts/fetch_smollm2.sh`).
pub fn smollm2() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "skipped: {} is absent (run scripts/fetch_smollm2.sh)",
            path.display()
        );
        None
    }
}

fn smollm2_reference() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn smollm2_gguf_matches_transformers() {
    let Some(path) = smollm2() else { return };
    let reference = smollm2_reference();
    let mut checkpoint = Checkpoint::load_with(
        &path,
        &Device::Cpu,
        DType::F32,
        &LoadOptions {
            dequantize: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        checkpoint.model_sha256,
        reference["model_sha256"].as_str().unwrap()
    );
    assert_eq!(checkpoint.model.num_decoder_layers(), 30);

    // The tokenizer built from the GGUF metadata.
    for case in reference["test_strings"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let got = checkpoint
            .tokenizer
            .encode(text, false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(got, ids(&case["ids"]), "tokens of {text:?}");
        let decoded = checkpoint.tokenizer.decode(&got, false).unwrap();
        assert_eq!(
            decoded,
            case["decoded"].as_str().unwrap(),
            "text of {text:?}"
        );
    }

    // The chat format, greedy ids equal to transformers' (f32) up to its natural end.
    checkpoint.prompt = checkpoint.chat_format().unwrap();
    let max_new = reference["max_new_tokens"].as_u64().unwrap() as usize;
    let cases = reference["cases"].as_array().unwrap();
    let mut prompts = Vec::new();
    let mut compared = 0;
    for case in cases {
        let content = case["content"].as_str().unwrap();
        let prompt = checkpoint.encode(content).unwrap();
        assert_eq!(
            prompt,
            ids(&case["prompt_ids"]),
            "chat prompt of {content:?}"
        );
        let mut out = generate(
            &checkpoint.model,
            std::slice::from_ref(&prompt),
            &full(max_new),
        )
        .unwrap();
        let greedy = ids(&case["greedy_new_ids"]);
        let expected = match case["first_raw_eos_index"].as_u64() {
            Some(stop) => {
                let mut e = greedy[..stop as usize].to_vec();
                e.push(2);
                e
            }
            None => greedy,
        };
        assert_eq!(out[0].tokens, expected, "greedy ids of {content:?}");
        compared += out[0].tokens.len();
        prompts.push((prompt, out.remove(0).tokens));
    }
    assert!(compared >= 5 * 32, "{compared} tokens compared");

    // The quantized path: agreement with the f32 ids, reported.
    let mut quantized = Checkpoint::load(&path, &Device::Cpu, DType::F32).unwrap();
    quantized.prompt = checkpoint.prompt.clone();
    let (mut same, mut total) = (0, 0);
    for (prompt, tokens) in &prompts {
        let out = generate(
            &quantized.model,
            std::slice::from_ref(prompt),
            &full(max_new),
        )
        .unwrap();
        let agree = out[0]
            .tokens
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        same += agree;
        total += tokens.len();
        assert!(agree >= 1, "the quantized model's first token differs");
    }
    eprintln!(
        "SmolLM2 Q4_1 vs f32: {same} of {total} greedy tokens equal before the first difference"
    );
}

#[test]
fn sharded_safetensors_load_like_one_file() {
    let source = llama_fixture("mistral");
    let dir = std::env::temp_dir().join(format!("calm-test-{}-sharded", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let tensors =
        candle_core::safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (shard, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        let subset: std::collections::HashMap<String, Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), tensors[*n].clone()))
            .collect();
        candle_core::safetensors::save(&subset, dir.join(shard)).unwrap();
        for name in part.iter() {
            map.insert((*name).clone(), Value::String(shard.into()));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let sharded = Checkpoint::load(&dir, &Device::Cpu, DType::F32).unwrap();
    let single = Checkpoint::load(&source, &Device::Cpu, DType::F32).unwrap();
    let prompt = single.encode("The quick fox").unwrap();
    let a = generate(&single.model, std::slice::from_ref(&prompt), &full(8)).unwrap();
    let b = generate(&sharded.model, std::slice::from_ref(&prompt), &full(8)).unwrap();
    assert_eq!(a[0].tokens, b[0].tokens);
    assert_ne!(
        sharded.model_sha256, single.model_sha256,
        "the shards' hash covers both files"
    );
    // A shard the index names but the directory lacks: the error names it.
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let err = Checkpoint::load(&dir, &Device::Cpu, DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model-00002-of-00002.safetensors"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
