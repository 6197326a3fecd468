//! Quality of the full model and of every exit layer on labelled data, for the model card:
//! corpus BLEU and mean ROUGE-L of the full model, of a forced exit at each layer and of the
//! oracle, the oracle's mean layers, and the share of tokens where layer i agrees with layer L.

use super::sweep::decode_all;
use crate::metrics::Metric;
use crate::model::{Checkpoint, ExitPolicy, GenerationOptions};
use anyhow::Result;
use serde::Serialize;

/// Quality of one decoding policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyQuality {
    pub policy: String,
    /// sacrebleu corpus BLEU (0–100).
    pub bleu: f64,
    /// Mean rouge-score ROUGE-L F (0–100).
    pub rouge_l: f64,
    pub mean_layers: f64,
    pub tokens: usize,
}

/// The evaluation of one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub examples: usize,
    pub full: PolicyQuality,
    /// Forced exit at layer 1..L (the last equals the full model).
    pub layers: Vec<PolicyQuality>,
    pub oracle: PolicyQuality,
    /// Per layer i = 1..L: share of the full model's tokens whose layer-i argmax equals layer L's.
    pub agreement: Vec<f64>,
    /// Corpus BLEU of the inputs (task prefix removed) against the references: the copy baseline.
    pub copy_bleu: f64,
}

fn quality(
    name: String,
    outputs: &[(crate::model::Generation, String)],
    references: &[String],
) -> PolicyQuality {
    let texts: Vec<&str> = outputs.iter().map(|(_, t)| t.as_str()).collect();
    let tokens: usize = outputs.iter().map(|(g, _)| g.tokens.len()).sum();
    let layer_sum: f64 = outputs
        .iter()
        .map(|(g, _)| g.mean_layers() * g.tokens.len() as f64)
        .sum();
    PolicyQuality {
        policy: name,
        bleu: Metric::Bleu.corpus_score(&texts, references) * 100.0,
        rouge_l: Metric::RougeL.corpus_score(&texts, references) * 100.0,
        mean_layers: if tokens > 0 {
            layer_sum / tokens as f64
        } else {
            0.0
        },
        tokens,
    }
}

/// Evaluate `inputs` (token ids; `sources` are the input texts without the task prefix, for the
/// copy baseline) against `references`.
pub fn evaluate(
    checkpoint: &Checkpoint,
    inputs: &[Vec<u32>],
    sources: &[String],
    references: &[String],
    max_new_tokens: usize,
    jobs: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Evaluation> {
    let depth = checkpoint.model.num_decoder_layers();
    let inputs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
    let run = |policy: ExitPolicy, record: bool| {
        let options = GenerationOptions {
            max_new_tokens,
            policy,
            record_all_layers: record,
        };
        decode_all(checkpoint, &inputs, &options, jobs, 1)
    };
    progress("full model");
    let full_outputs = run(ExitPolicy::Never, true)?;
    let mut agree = vec![0usize; depth];
    let mut total = 0usize;
    for (generation, _) in &full_outputs {
        for trace in &generation.traces {
            if let Some(layers) = &trace.layers {
                let top = layers[depth - 1].argmax;
                for (i, record) in layers.iter().enumerate() {
                    agree[i] += usize::from(record.argmax == top);
                }
                total += 1;
            }
        }
    }
    let full = quality("full".into(), &full_outputs, references);
    let mut layers = Vec::with_capacity(depth);
    for layer in 1..=depth {
        progress(&format!("exit at layer {layer}"));
        let outputs = if layer == depth {
            full_outputs.clone()
        } else {
            run(ExitPolicy::Fixed(layer), false)?
        };
        layers.push(quality(format!("layer {layer}"), &outputs, references));
    }
    progress("oracle");
    let oracle = quality(
        "oracle".into(),
        &run(ExitPolicy::Oracle, false)?,
        references,
    );
    Ok(Evaluation {
        examples: inputs.len(),
        full,
        layers,
        oracle,
        agreement: agree
            .iter()
            .map(|&a| a as f64 / total.max(1) as f64)
            .collect(),
        copy_bleu: Metric::Bleu.corpus_score(sources, references) * 100.0,
    })
}
