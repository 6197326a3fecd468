//! `calm score`: text metrics on (prediction, reference) pairs, one score per line.

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Metrics: rouge1 rouge2 rouge-l rougeLsum (add -stem for Porter stemming), bleu, chrf, token-f1, exact.\n\
Example:\n  echo '{\"prediction\": \"the cat sat\", \"reference\": \"the cat sat down\"}' | calm score --metric rouge-l --pairs -"
)]
pub struct ScoreArgs {
    /// Metric (rouge-score / sacrebleu / SQuAD conventions); scores are in [0, 1].
    #[arg(long)]
    pub metric: crate::metrics::Metric,
    /// JSON lines with `prediction` and `reference` strings (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub pairs: PathBuf,
    /// Print JSON lines ({"score": …}) instead of plain numbers.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Deserialize)]
struct Pair {
    prediction: String,
    reference: String,
}

pub fn run(args: ScoreArgs) -> Result<u8> {
    let metric = args.metric;
    let reader: Box<dyn Read> = if args.pairs.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&args.pairs)
                .with_context(|| format!("cannot open {}", args.pairs.display()))?,
        )
    };
    let name = args.pairs.display().to_string();
    // Score everything first, so a bad line produces no partial output.
    let mut scores = Vec::new();
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.with_context(|| format!("{name} line {}: cannot read", index + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let pair: Pair = serde_json::from_str(&line)
            .with_context(|| format!("{name} line {}: expected a JSON object with string fields prediction and reference", index + 1))?;
        scores.push(metric.score(&pair.prediction, &pair.reference));
    }
    if scores.is_empty() {
        bail!("{name}: no pairs to score");
    }
    let mut out = std::io::stdout().lock();
    for score in scores {
        if args.json {
            writeln!(
                out,
                "{}",
                serde_json::json!({ "metric": metric.name(), "score": score })
            )?;
        } else {
            writeln!(out, "{score}")?;
        }
    }
    Ok(0)
}
