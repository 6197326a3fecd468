//! Labelled examples: JSON lines (optionally gzip-compressed), CSV or Parquet with `input` (with
//! its task prefix) and `reference`, and optionally `id` (default: the 1-based line or row) and
//! `task` (default: empty). The format of `datasets/bible/*.jsonl.gz`.

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

/// A JSON line as written, before the defaults apply.
#[derive(Deserialize)]
struct JsonExample {
    id: Option<String>,
    task: Option<String>,
    input: String,
    reference: String,
}

/// Read examples from a `.jsonl`, `.jsonl.gz`, `.csv` or `.parquet` file. Errors name the file
/// and line or row.
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".csv") || name.ends_with(".parquet") || name.ends_with(".pq") {
        return read_table_examples(path);
    }
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
        let example: JsonExample = serde_json::from_str(&line).with_context(|| {
            format!(
                "{} line {}: expected a JSON object with string fields input and reference (and optional id, task)",
                path.display(),
                index + 1
            )
        })?;
        examples.push(Example {
            id: example.id.unwrap_or_else(|| (index + 1).to_string()),
            task: example.task.unwrap_or_default(),
            input: example.input,
            reference: example.reference,
        });
    }
    if examples.is_empty() {
        bail!("{}: no examples", path.display());
    }
    Ok(examples)
}

/// Examples from a CSV or Parquet table with columns `input`, `reference` and optional `id`, `task`.
fn read_table_examples(path: &Path) -> Result<Vec<Example>> {
    use crate::util::table::{read_table, text_column};
    let frame = read_table(path, "examples")?;
    for required in ["input", "reference"] {
        if frame.column(required).is_err() {
            bail!(
                "{}: missing column `{required}` (examples need input and reference)",
                path.display()
            );
        }
    }
    let inputs = text_column(&frame, "input", path)?;
    let references = text_column(&frame, "reference", path)?;
    let ids = match frame.column("id") {
        Ok(_) => text_column(&frame, "id", path)?,
        Err(_) => (1..=frame.height()).map(|row| row.to_string()).collect(),
    };
    let tasks = match frame.column("task") {
        Ok(_) => text_column(&frame, "task", path)?,
        Err(_) => vec![String::new(); frame.height()],
    };
    let examples: Vec<Example> = ids
        .into_iter()
        .zip(tasks)
        .zip(inputs.into_iter().zip(references))
        .map(|((id, task), (input, reference))| Example {
            id,
            task,
            input,
            reference,
        })
        .collect();
    if examples.is_empty() {
        bail!("{}: no examples", path.display());
    }
    Ok(examples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str, content: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("calm-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn id_and_task_are_optional_in_every_format() {
        let jsonl = scratch("a.jsonl", "{\"input\": \"x y\", \"reference\": \"y\"}\n\n{\"id\": \"b\", \"task\": \"t\", \"input\": \"z\", \"reference\": \"w\"}\n");
        let examples = read_examples(&jsonl).unwrap();
        assert_eq!(
            examples[0],
            Example {
                id: "1".into(),
                task: String::new(),
                input: "x y".into(),
                reference: "y".into()
            }
        );
        assert_eq!(examples[1].id, "b");
        let csv = scratch("a.csv", "input,reference\n\"a, b\",c\nd,e\n");
        let examples = read_examples(&csv).unwrap();
        assert_eq!(examples.len(), 2);
        assert_eq!(
            (examples[0].id.as_str(), examples[0].input.as_str()),
            ("1", "a, b")
        );
        let missing = scratch("b.csv", "input,answer\nx,y\n");
        let error = read_examples(&missing).unwrap_err().to_string();
        assert!(error.contains("missing column `reference`"), "{error}");
        let bad = scratch("c.jsonl", "{\"input\": \"x\"}\n");
        let error = format!("{:#}", read_examples(&bad).unwrap_err());
        assert!(error.contains("c.jsonl line 1"), "{error}");
    }
}
