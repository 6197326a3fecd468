//! Labelled examples: JSON lines (optionally gzip-compressed) with `id`, `task`, `input` (with its
//! task prefix) and `reference`. The format of `datasets/bible/*.jsonl.gz`.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// One labelled example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub id: String,
    pub task: String,
    pub input: String,
    pub reference: String,
}

/// Read the examples of `path`, keep those of `task` (all when None), then the first `max`.
/// Errors name the file and, for an unknown task, the tasks it holds.
pub fn read_task_examples(
    path: &Path,
    task: Option<&str>,
    max: Option<usize>,
) -> Result<Vec<Example>> {
    let mut examples = read_examples(path)?;
    if let Some(task) = task {
        let known: std::collections::BTreeSet<String> =
            examples.iter().map(|e| e.task.clone()).collect();
        examples.retain(|e| e.task == task);
        if examples.is_empty() {
            bail!(
                "{}: no examples of task {task:?} (tasks there: {known:?})",
                path.display()
            );
        }
    }
    if let Some(max) = max {
        examples.truncate(max);
    }
    Ok(examples)
}

/// Read examples from a `.jsonl` or `.jsonl.gz` file. Errors name the file and line.
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut examples = Vec::new();
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let line =
            line.with_context(|| format!("{} line {}: cannot read", path.display(), index + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let example: Example = serde_json::from_str(&line).with_context(|| {
            format!(
                "{} line {}: expected a JSON object with string fields id, task, input, reference",
                path.display(),
                index + 1
            )
        })?;
        examples.push(example);
    }
    if examples.is_empty() {
        bail!("{}: no examples", path.display());
    }
    Ok(examples)
}
