//! Per-candidate evaluation records: the stable, versioned interface between whatever ran the model
//! (calm itself, PyTorch, JAX) and the calibrator. See docs/records.md for the schema.

pub mod cost;
pub mod grid;
pub mod measure;
mod read;
pub mod run;
mod simulate;
pub mod tokens;
mod write;

pub use read::read_records;
pub use simulate::{simulate_records, SimulationSpec};
pub use write::{records_bytes, write_records};

use std::path::PathBuf;

/// Version of the records schema this build reads and writes (column `records_version`, optional).
pub const RECORDS_VERSION: u32 = 1;

/// Optional column: whether the row's (measure, τ) chain was swept to the end of its λ grid.
/// A fixed-sequence sweep stops a chain at its first failure and marks its rows `false`.
pub const CHAIN_COMPLETE_COLUMN: &str = "chain_complete";

/// Column names of the records schema, in their canonical order.
pub const COLUMNS: [&str; 8] = [
    "example",
    "measure",
    "tau",
    "lambda",
    "loss",
    "layers",
    "tokens",
    "num_layers",
];

/// Mean decoder layers per generated token over examples: Σ layers·tokens / Σ tokens, the plain
/// mean of per-example layers when no example generated a token (docs/records.md).
pub fn mean_layers_per_token(layers: &[f64], tokens: &[u32]) -> f64 {
    let total_tokens: f64 = tokens.iter().map(|&t| t as f64).sum();
    if total_tokens > 0.0 {
        layers
            .iter()
            .zip(tokens)
            .map(|(&l, &t)| l * t as f64)
            .sum::<f64>()
            / total_tokens
    } else {
        layers.iter().sum::<f64>() / layers.len().max(1) as f64
    }
}

/// Where a row came from, for error messages: the file (index into [`Records::sources`]) and the
/// 1-based data row within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowOrigin {
    pub file: u32,
    pub row: u32,
}

/// One evaluated (example, measure, τ, λ) configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordRow {
    /// Index into [`Records::examples`].
    pub example: u32,
    /// Index into [`Records::measures`].
    pub measure: u32,
    pub tau: f64,
    pub lambda: f64,
    /// Per-example consistency loss in [0, 1].
    pub loss: f64,
    /// Mean decoder layers per generated token.
    pub layers: f64,
    /// Generated tokens.
    pub tokens: u32,
    /// Decoder depth L of the model that produced the row.
    pub num_layers: u32,
    /// Whether the row's chain covers its whole λ grid; None when the records do not say
    /// (files without the `chain_complete` column, e.g. from other tools or older calm).
    pub chain_complete: Option<bool>,
    pub origin: RowOrigin,
}

/// An input file and its checksum, as recorded in the calibration output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceFile {
    pub path: PathBuf,
    pub sha256: String,
    pub rows: u64,
}

/// Records from one or more files, with example ids and measure names interned.
#[derive(Debug, Clone, Default)]
pub struct Records {
    pub examples: Vec<String>,
    pub measures: Vec<String>,
    pub rows: Vec<RecordRow>,
    pub sources: Vec<SourceFile>,
}

impl Records {
    /// "file.csv row 17" for error messages; "row 17" for records made in memory (a sweep or a
    /// simulation), which have no source file.
    pub fn describe(&self, origin: RowOrigin) -> String {
        match self.sources.get(origin.file as usize) {
            Some(source) => format!("{} row {}", source.path.display(), origin.row),
            None => format!("row {}", origin.row),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_without_source_files_describe_rows_without_panicking() {
        let mut records = simulate_records(&SimulationSpec::grid(3, 2, 1));
        assert!(records.sources.is_empty());
        let origin = records.rows[0].origin;
        assert_eq!(records.describe(origin), "row 1");
        // A duplicate row in in-memory records is an error naming the rows, not a panic.
        let duplicate = records.rows[0];
        records.rows.push(duplicate);
        let error = crate::calibrate::LossTable::from_records(&records).unwrap_err();
        assert!(error.to_string().contains("duplicate record"), "{error}");
        assert!(error.to_string().contains("row 1"), "{error}");
    }

    #[test]
    fn token_weighted_mean_layers() {
        assert_eq!(mean_layers_per_token(&[2.0, 8.0], &[3, 1]), 3.5);
        assert_eq!(mean_layers_per_token(&[2.0, 8.0], &[0, 0]), 5.0);
    }
}
