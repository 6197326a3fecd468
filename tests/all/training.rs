//! Training: gradients reach every parameter, one step lowers the loss on a fixed batch, a saved
//! checkpoint reloads to identical outputs, a resumed run equals an uninterrupted one, and the
//! exit classifier learns consistency better than a trivial predictor on held-out data.

use crate::common::scratch;
use calm::model::config::T5Shape;
use calm::model::init::parameter_shapes;
use calm::model::{Checkpoint, T5Config};
use calm::train::batches::Pair;
use calm::train::loss::calm_loss;
use calm::train::optimizer::{AdamW, AdamWConfig};
use calm::train::{identity_pairs, train, trainable_model, StopAt, TrainOptions};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use std::path::{Path, PathBuf};

fn tiny_config() -> T5Config {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 40, "d_model": 16, "d_kv": 4, "d_ff": 32, "num_layers": 2,
        "num_decoder_layers": 3, "num_heads": 4, "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": false, "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1
    }))
    .unwrap()
}

/// A fixed batch: two sources and targets (the second target padded).
fn batch(device: &Device) -> (Tensor, Vec<usize>, Tensor, Tensor, Tensor) {
    let source = Tensor::new(&[[5u32, 6, 7, 1], [8, 9, 1, 0]], device).unwrap();
    let decoder_in = Tensor::new(&[[0u32, 10, 11, 12], [0, 13, 14, 0]], device).unwrap();
    let target = Tensor::new(&[[10u32, 11, 12, 1], [13, 14, 1, 0]], device).unwrap();
    let mask = Tensor::new(&[[1u32, 1, 1, 1], [1, 1, 1, 0]], device).unwrap();
    (source, vec![4, 3], decoder_in, target, mask)
}

#[test]
fn every_parameter_gets_a_gradient_and_a_step_lowers_the_loss() {
    let device = Device::Cpu;
    let config = tiny_config();
    let varmap = VarMap::new();
    let model = trainable_model(&config, &varmap, 1, &device).unwrap();
    let (source, lengths, decoder_in, target, mask) = batch(&device);
    let loss_of = || {
        let logits = model
            .forward_all_exits(&source, &lengths, &decoder_in)
            .unwrap();
        calm_loss(&logits, &target, &mask).unwrap().0
    };
    let loss = loss_of();
    let grads = loss.backward().unwrap();
    let vars = varmap.all_vars();
    assert_eq!(vars.len(), parameter_shapes(&config, false).unwrap().len());
    let data = varmap.data().lock().unwrap();
    for (name, var) in data.iter() {
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm = grad
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm > 0.0, "zero gradient for {name}");
    }
    let named: Vec<(String, candle_core::Var)> =
        data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    drop(data);
    let mut optimizer = AdamW::new(named, AdamWConfig::default()).unwrap();
    let before = loss.to_scalar::<f32>().unwrap();
    optimizer.update(&grads, 1e-2, 1.0).unwrap();
    let after = loss_of().to_scalar::<f32>().unwrap();
    assert!(after < before, "loss {before} -> {after}");
}

fn tiny_dataset(dir: &std::path::Path) -> PathBuf {
    let words = [
        "the", "cat", "sat", "on", "mat", "dog", "runs", "le", "chat", "chien",
    ];
    let mut lines = String::new();
    for i in 0..60 {
        let sentence: Vec<&str> = (0..4)
            .map(|j| words[(i * 3 + j * 7) % words.len()])
            .collect();
        let input = format!("modernize: {}", sentence.join(" "));
        let reference = sentence.iter().rev().cloned().collect::<Vec<_>>().join(" ");
        lines.push_str(&serde_json::json!({"id": format!("1.1.{i}"), "task": "modernize", "input": input, "reference": reference}).to_string());
        lines.push('\n');
    }
    let path = dir.join("train.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

fn options(data: PathBuf, steps: usize) -> TrainOptions {
    TrainOptions {
        data: vec![data],
        shape: T5Shape {
            vocab_size: 60,
            d_model: 16,
            d_ff: 32,
            heads: 4,
            encoder_layers: 1,
            decoder_layers: 3,
            tie_embeddings: false,
        },
        max_tokens_per_sequence: 32,
        batch_tokens: 256,
        steps,
        warmup: 2,
        learning_rate: 3e-3,
        weight_decay: 0.01,
        clip_norm: 1.0,
        seed: 5,
        checkpoint_every: 2,
        copy_share: 0.0,
        copy_tasks: Vec::new(),
        copy_curriculum_steps: 0,
        init_from: None,
    }
}

#[test]
fn a_saved_checkpoint_reloads_to_the_same_outputs_through_the_inference_path() {
    // Train-mode logits (composed ops, variables) of a model after one update equal the logits
    // of the saved-and-reloaded checkpoint computed by the cached decoding path (fused ops).
    let device = Device::Cpu;
    let dir = scratch("reload");
    let texts: Vec<String> = (0..50)
        .map(|i| format!("the cat sat {} on the mat dog runs", i % 7))
        .collect();
    let tokenizer = calm::train::tokenizer::train_tokenizer(&texts, 40).unwrap();
    let mut config = tiny_config();
    config.vocab_size = tokenizer.get_vocab_size(true);
    let varmap = VarMap::new();
    let model = trainable_model(&config, &varmap, 3, &device).unwrap();
    let (source, lengths, decoder_in, target, mask) = batch(&device);
    let logits = model
        .forward_all_exits(&source, &lengths, &decoder_in)
        .unwrap();
    let grads = calm_loss(&logits, &target, &mask)
        .unwrap()
        .0
        .backward()
        .unwrap();
    let named: Vec<(String, candle_core::Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let mut optimizer = AdamW::new(named, AdamWConfig::default()).unwrap();
    optimizer.update(&grads, 1e-2, 1.0).unwrap();
    let state = calm::train::TrainerState {
        options: options(dir.join("none.jsonl"), 1),
        step: 1,
        epoch: 0,
        batch_in_epoch: 1,
        tokens_seen: 7,
        elapsed_seconds: 0.0,
    };
    calm::train::save_checkpoint(&dir, &config, &tokenizer, &varmap, &optimizer, &state).unwrap();

    let reloaded = Checkpoint::load(&dir, &Device::Cpu, DType::F32).unwrap();
    let train_logits = model
        .forward_all_exits(&source, &lengths, &decoder_in)
        .unwrap();
    let source_ids: Vec<u32> = source.get(0).unwrap().to_vec1().unwrap();
    let decoder_ids: Vec<u32> = decoder_in.get(0).unwrap().to_vec1().unwrap();
    let inference = calm::model::teacher_forced_logits(
        reloaded.model.as_t5().unwrap(),
        &source_ids,
        &decoder_ids,
    )
    .unwrap();
    for (layer, layer_logits) in train_logits.iter().enumerate() {
        let rows: Vec<Vec<f32>> = layer_logits.get(0).unwrap().to_vec2().unwrap();
        for (t, row) in rows.iter().enumerate() {
            for (v, &value) in row.iter().enumerate() {
                let other = inference[t][layer][v];
                assert!(
                    (value - other).abs() < 1e-4,
                    "layer {} t {t} v {v}: {value} vs {other}",
                    layer + 1
                );
            }
        }
    }
}

#[test]
fn an_interrupted_run_resumes_exactly() {
    let dir = scratch("resume");
    let data = tiny_dataset(&dir);
    let straight = dir.join("straight");
    let resumed = dir.join("resumed");
    train(&options(data.clone(), 6), &straight, StopAt::default()).unwrap();
    let stopped = train(
        &options(data.clone(), 6),
        &resumed,
        StopAt {
            steps: Some(3),
            seconds: None,
        },
    )
    .unwrap();
    assert_eq!(stopped.step, 3);
    let finished = train(&options(data.clone(), 6), &resumed, StopAt::default()).unwrap();
    assert_eq!(finished.step, 6);
    for file in [
        "model.safetensors",
        "optimizer.safetensors",
        "tokenizer.json",
        "config.json",
    ] {
        assert_eq!(
            std::fs::read(straight.join(file)).unwrap(),
            std::fs::read(resumed.join(file)).unwrap(),
            "{file} differs after resuming"
        );
    }
    // The log has one row per step, whichever way the run went.
    let log = std::fs::read_to_string(resumed.join("train_log.csv")).unwrap();
    assert_eq!(log.lines().count(), 7);
    // A run killed between checkpoints logged steps past its checkpoint; resuming redoes
    // them and the log still holds each step once.
    let killed = dir.join("killed");
    train(
        &options(data.clone(), 6),
        &killed,
        StopAt {
            steps: Some(4),
            seconds: None,
        },
    )
    .unwrap();
    let log_path = killed.join("train_log.csv");
    let mut text = std::fs::read_to_string(&log_path).unwrap();
    text.push_str(log.lines().nth(5).unwrap());
    text.push('\n');
    std::fs::write(&log_path, text).unwrap();
    train(&options(data.clone(), 6), &killed, StopAt::default()).unwrap();
    let steps: Vec<String> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(steps, ["1", "2", "3", "4", "5", "6"]);
    // Different options refuse to resume into the same directory.
    let mut other = options(data, 6);
    other.learning_rate = 1e-2;
    assert!(train(&other, &resumed, StopAt::default()).is_err());
}

#[test]
fn the_exit_classifier_trains_on_a_frozen_model_and_is_saved() {
    use calm::train::classifier::{train_classifier, ClassifierOptions};
    let dir = scratch("classifier");
    let data = tiny_dataset(&dir);
    let run = dir.join("model");
    train(&options(data.clone(), 6), &run, StopAt::default()).unwrap();
    let before = std::fs::read(run.join("model.safetensors")).unwrap();
    let report = train_classifier(
        &run,
        &ClassifierOptions {
            data: vec![data.clone()],
            eval: vec![data],
            steps: 20,
            batch_tokens: 256,
            learning_rate: 1e-2,
            max_tokens_per_sequence: 32,
            seed: 1,
            prompt: calm::model::PromptFormat::Plain,
            task: None,
        },
    )
    .unwrap();
    assert_eq!(report.len(), 2);
    for row in &report {
        assert!((0.0..=1.0).contains(&row.consistent_share));
        assert!((0.0..=1.0).contains(&row.f1_exit) && (0.0..=1.0).contains(&row.f1_dont_exit));
    }
    let checkpoint = Checkpoint::load(&run, &Device::Cpu, DType::F32).unwrap();
    assert!(checkpoint.model.has_exit_classifier());
    // Every other tensor is unchanged.
    let old = candle_core::safetensors::load_buffer(&before, &Device::Cpu).unwrap();
    let new = candle_core::safetensors::load(run.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(new.len(), old.len() + 2);
    for (name, tensor) in &old {
        let a: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = new[name].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "{name} changed");
    }
}

#[test]
fn a_copy_curriculum_resumes_exactly_and_leaves_the_data_order_to_the_later_steps() {
    let dir = scratch("curriculum");
    let data = tiny_dataset(&dir);
    let mut curriculum = options(data.clone(), 5);
    curriculum.copy_curriculum_steps = 3;
    let straight = train(&curriculum, &dir.join("straight"), StopAt::default()).unwrap();
    // Only the two steps after the curriculum consumed data batches.
    assert_eq!((straight.epoch, straight.batch_in_epoch), (0, 2));
    let resumed = dir.join("resumed");
    let stop = StopAt {
        steps: Some(2),
        seconds: None,
    };
    assert_eq!(train(&curriculum, &resumed, stop).unwrap().step, 2);
    train(&curriculum, &resumed, StopAt::default()).unwrap();
    assert_eq!(
        std::fs::read(dir.join("straight/model.safetensors")).unwrap(),
        std::fs::read(resumed.join("model.safetensors")).unwrap()
    );
    // The curriculum changes the weights against a run without it.
    train(&options(data, 5), &dir.join("plain"), StopAt::default()).unwrap();
    assert_ne!(
        std::fs::read(dir.join("plain/model.safetensors")).unwrap(),
        std::fs::read(resumed.join("model.safetensors")).unwrap()
    );
}

#[test]
fn identity_pairs_train_and_old_states_still_resume() {
    let dir = scratch("copy");
    let data = tiny_dataset(&dir);
    let mut with_copies = options(data.clone(), 2);
    with_copies.copy_share = 0.5;
    let state = train(&with_copies, &dir.join("run"), StopAt::default()).unwrap();
    assert_eq!(state.step, 2);
    // A trainer state written before `copy_share` existed reads as copy_share = 0.
    let mut value = serde_json::to_value(options(data, 2)).unwrap();
    value.as_object_mut().unwrap().remove("copy_share");
    value
        .as_object_mut()
        .unwrap()
        .remove("copy_curriculum_steps");
    assert_eq!(value["d_model"], 16, "shape fields stay at the top level");
    let parsed: TrainOptions = serde_json::from_value(value).unwrap();
    assert_eq!(parsed.copy_share, 0.0);
    assert_eq!(parsed.copy_curriculum_steps, 0);
    let read_state = |relative: &str| -> calm::train::TrainerState {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    // A state written by an older calm (the first default model's stage 2: shape fields at the
    // top level, no curriculum) still reads.
    let state = read_state("tests/fixtures/train/trainer_state_v1.json");
    assert_eq!(state.options.shape.decoder_layers, 8);
    assert_eq!((state.step, state.options.copy_curriculum_steps), (1500, 0));
    // The default model's own states read and say how it was trained: a curriculum run from
    // scratch, then a run from its weights.
    let stage1 = read_state("datasets/bible/model/training/stage1/trainer_state.json");
    let stage2 = read_state("datasets/bible/model/training/stage2/trainer_state.json");
    assert_eq!(stage1.options.shape.decoder_layers, 8);
    assert!(stage1.options.copy_curriculum_steps > 0);
    assert_eq!(stage1.options.init_from, None);
    assert_eq!(stage2.options.shape, stage1.options.shape);
    assert_eq!(stage2.options.copy_curriculum_steps, 0);
    assert!(stage2.options.init_from.is_some());
    // Stage 1 gave identity pairs to every task, stage 2 to modernize only.
    assert!(stage1.options.copy_tasks.is_empty());
    assert_eq!(stage2.options.copy_tasks, ["modernize"]);
}

#[test]
fn identity_pairs_go_only_to_the_copy_tasks() {
    // Two tasks; every other example is a translation. The reference's words tell the tasks
    // apart: a modernize reference is English, a translation's is French.
    let dir = scratch("copy-tasks");
    let mut lines = String::new();
    let mut texts = Vec::new();
    for i in 0..40 {
        let (task, input, reference) = if i % 2 == 0 {
            (
                "modernize",
                "modernize: thou art the cat",
                "you are the cat",
            )
        } else {
            (
                "translate-en-fr",
                "translate English to French: the cat",
                "le chat",
            )
        };
        let row = serde_json::json!({"id": format!("1.1.{i}"), "task": task, "input": input, "reference": reference});
        lines.push_str(&format!("{row}\n"));
        texts.extend([input.to_string(), reference.to_string()]);
    }
    let data = dir.join("two-tasks.jsonl");
    std::fs::write(&data, lines).unwrap();
    let tokenizer = calm::train::tokenizer::train_tokenizer(&texts, 60).unwrap();
    let encode = |text: &str| tokenizer.encode(text, true).unwrap().get_ids().to_vec();
    let french_copy = Pair {
        source: encode("translate English to French: le chat"),
        target: encode("le chat"),
    };
    let english_copy = Pair {
        source: encode("modernize: you are the cat"),
        target: encode("you are the cat"),
    };

    let mut every_task = options(data.clone(), 2);
    every_task.copy_share = 1.0;
    let all = identity_pairs(&every_task, &tokenizer).unwrap();
    assert_eq!(all.len(), 40);
    assert_eq!(all.iter().filter(|p| **p == french_copy).count(), 20);

    let mut translation_only = every_task.clone();
    translation_only.copy_tasks = vec!["translate-en-fr".into()];
    let only = identity_pairs(&translation_only, &tokenizer).unwrap();
    assert_eq!(only, vec![french_copy.clone(); 20]);

    // With a share below 1 the draws stay per example: restricting the tasks keeps exactly
    // the unrestricted run's pairs of those tasks.
    every_task.copy_share = 0.5;
    translation_only.copy_share = 0.5;
    let half = identity_pairs(&every_task, &tokenizer).unwrap();
    let half_only = identity_pairs(&translation_only, &tokenizer).unwrap();
    let french: Vec<Pair> = half
        .iter()
        .filter(|p| **p != english_copy)
        .cloned()
        .collect();
    assert_eq!(half_only, french);
    assert!(!half_only.is_empty() && half_only.len() < 20);

    let mut unknown = every_task.clone();
    unknown.copy_tasks = vec!["summarize".into()];
    let error = identity_pairs(&unknown, &tokenizer)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"summarize\"") && error.contains("modernize, translate-en-fr"),
        "{error}"
    );
}

#[test]
fn a_run_can_start_from_another_checkpoint() {
    let dir = scratch("init-from");
    let data = tiny_dataset(&dir);
    let first = dir.join("first");
    train(&options(data.clone(), 4), &first, StopAt::default()).unwrap();
    // With a vanishing learning rate the continued model is the starting one (AdamW's weight
    // decay scales with the learning rate too) and the tokenizer is reused, not retrained.
    let mut continued = options(data.clone(), 1);
    continued.learning_rate = 1e-30;
    continued.seed = 9;
    continued.init_from = Some(first.clone());
    let second = dir.join("second");
    train(&continued, &second, StopAt::default()).unwrap();
    assert_eq!(
        std::fs::read(first.join("tokenizer.json")).unwrap(),
        std::fs::read(second.join("tokenizer.json")).unwrap()
    );
    let a = candle_core::safetensors::load(first.join("model.safetensors"), &Device::Cpu).unwrap();
    let b = candle_core::safetensors::load(second.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(a.len(), b.len());
    for (name, tensor) in &a {
        let x: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
        let y: Vec<f32> = b[name].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(x, y, "{name} differs from the starting checkpoint");
    }
    // A checkpoint of another shape is refused, naming what differs.
    let mut wider = options(data, 1);
    wider.shape.d_model = 32;
    wider.init_from = Some(first);
    let error = train(&wider, &dir.join("third"), StopAt::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("d_model is 16"), "{error}");
}

/// `count` seeded examples whose reference is a fixed template with one slot filled by a word
/// drawn independently of the input: every template token is predictable (the exits agree
/// with the top layer), the slot is not (they mostly disagree), and the decoder state before
/// the slot is recognisable, so consistency is learnable from the states.
fn template_dataset(dir: &Path, name: &str, seed: u64, count: usize) -> PathBuf {
    let words = [
        "cat", "dog", "bird", "fish", "horse", "sheep", "goat", "lion", "bear", "wolf", "fox",
        "deer",
    ];
    let mut rng = calm::util::rng::Rng::new(seed);
    let mut draw = || words[rng.below(words.len() as u64) as usize];
    let mut lines = String::new();
    for i in 0..count {
        let input = format!("modernize: thou art {} and {}", draw(), draw());
        let reference = format!("you are a {} so go home now", draw());
        let row = serde_json::json!({"id": format!("{seed}.1.{i}"), "task": "modernize",
            "input": input, "reference": reference});
        lines.push_str(&format!("{row}\n"));
    }
    let path = dir.join(name);
    std::fs::write(&path, lines).unwrap();
    path
}

/// The share of tokens that are true positives and true negatives, recovered from the two F1
/// scores of a report row. With tokens normalised to 1, P = s positives and Q = 1 − s
/// negatives: F1_exit = 2tp/(tp + P + fp) and F1_dont = 2tn/(tn + Q + fn), with fp = Q − tn and
/// fn = P − tp, give the linear system (2 − F1_exit)·tp + F1_exit·tn = F1_exit and
/// F1_dont·tp + (2 − F1_dont)·tn = F1_dont. Returns (true-positive rate, true-negative rate).
fn rates_from_f1(row: &calm::train::classifier::LayerF1) -> (f64, f64) {
    let (e, d, s) = (row.f1_exit, row.f1_dont_exit, row.consistent_share);
    let det = (2.0 - e) * (2.0 - d) - e * d;
    let tp = (e * (2.0 - d) - e * d) / det;
    let tn = ((2.0 - e) * d - d * e) / det;
    assert!(
        (-1e-9..=s + 1e-9).contains(&tp) && (-1e-9..=1.0 - s + 1e-9).contains(&tn),
        "{row:?}: tp {tp}, tn {tn}"
    );
    (tp / s, tn / (1.0 - s))
}

#[test]
fn the_exit_classifier_learns_consistency_better_than_a_trivial_predictor() {
    // A model trained briefly on the template task agrees with its top layer on the template
    // tokens but not on the random slot; the classifier must learn that from the layer states
    // and predict it on held-out examples better than any constant rule. The trivial
    // predictors: always exit (the majority: F1(don't exit) = 0, F1(exit) = 2s/(1+s)) and never
    // exit (F1(don't exit) = 2(1−s)/(2−s)), s the consistent share of the layer.
    // Measured on the held-out set: layer 1 s = 0.700, F1(don't exit) 0.820 against 0.461 for
    // never exit, TPR 0.887, TNR 0.880; layer 2 s = 0.848, F1(don't exit) 0.559 against 0.263,
    // TPR 0.760, TNR 0.910. The bounds below (F1 margin 0.05, informedness 0.25) held on all 15
    // variations tried while writing this test (model seeds 5–10, data seeds 1–6, 20–30
    // steps, cyclic or two slots), whose worst cases were a margin of 0.06 and an informedness of 0.34.
    use calm::train::classifier::{train_classifier, ClassifierOptions};
    let dir = scratch("classifier-learns");
    let train_data = template_dataset(&dir, "train.jsonl", 1, 200);
    let held_out = template_dataset(&dir, "held-out.jsonl", 2, 100);
    let mut model_options = options(train_data.clone(), 20);
    model_options.learning_rate = 1e-2;
    model_options.checkpoint_every = 20;
    let run = dir.join("model");
    train(&model_options, &run, StopAt::default()).unwrap();
    let classifier = |steps: usize| {
        train_classifier(
            &run,
            &ClassifierOptions {
                data: vec![train_data.clone()],
                eval: vec![held_out.clone()],
                steps,
                batch_tokens: 512,
                learning_rate: 1e-2,
                max_tokens_per_sequence: 32,
                seed: 1,
                prompt: calm::model::PromptFormat::Plain,
                task: None,
            },
        )
        .unwrap()
    };
    // Zero steps leave the weights at 0: the classifier says "exit" everywhere, which is the
    // always-exit predictor, measured through the same pipeline.
    let untrained = classifier(0);
    let trained = classifier(50);
    assert_eq!(trained.len(), 2);
    for (before, after) in untrained.iter().zip(&trained) {
        let s = after.consistent_share;
        assert_eq!(before.consistent_share, s);
        assert!(
            0.5 < s && s < 0.97,
            "layer {}: consistent share {s}",
            after.layer
        );
        assert_eq!(before.f1_dont_exit, 0.0);
        assert!((before.f1_exit - 2.0 * s / (1.0 + s)).abs() < 1e-12);
        let never_exit = 2.0 * (1.0 - s) / (2.0 - s);
        let (tpr, tnr) = rates_from_f1(after);
        eprintln!(
            "layer {}: consistent {s:.3}, F1(exit) {:.3} (always exit {:.3}), F1(don't exit) {:.3} (never exit {never_exit:.3}), TPR {tpr:.3}, TNR {tnr:.3}",
            after.layer,
            after.f1_exit,
            before.f1_exit,
            after.f1_dont_exit
        );
        // F1 of the minority "don't exit" class (CALM's Table D.1) beats both constant rules.
        assert!(
            after.f1_dont_exit > never_exit + 0.05,
            "layer {}: F1(don't exit) {} vs never exit {never_exit}",
            after.layer,
            after.f1_dont_exit
        );
        // Informedness TPR + TNR − 1 is 0 for any rule that ignores the states.
        assert!(
            tpr + tnr - 1.0 > 0.25,
            "layer {}: TPR {tpr} TNR {tnr}",
            after.layer
        );
    }
}
