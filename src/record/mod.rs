//! Per-candidate evaluation records: the stable, versioned interface between whatever ran the model
//! (calm itself, PyTorch, JAX) and the calibrator. See docs/records.md for the schema.

pub mod evaluate;
mod read;
pub mod replay;
mod simulate;
pub mod sweep;
pub mod tokens;
mod write;

pub use read::read_records;
pub use simulate::{simulate_records, SimulationSpec};
pub use write::{records_bytes, write_records};

use std::path::PathBuf;

/// Version of the records schema this build reads and writes (column `records_version`, optional).
pub const RECORDS_VERSION: u32 = 1;

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
    /// "file.csv row 17", for error messages.
    pub fn describe(&self, origin: RowOrigin) -> String {
        let path = &self.sources[origin.file as usize].path;
        format!("{} row {}", path.display(), origin.row)
    }
}
