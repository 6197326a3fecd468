//! Writing records as Parquet or CSV (chosen by extension), atomically.

use super::{Records, CHAIN_COMPLETE_COLUMN, COLUMNS, RECORDS_VERSION};
use crate::util::atomic::write_file_atomically;
use anyhow::{bail, Context, Result};
use polars::prelude::{
    CsvWriter, DataFrame, IntoColumn, NamedFrom, ParquetWriter, SerWriter, Series,
};
use std::path::Path;

/// Write `records` to `path` (`.parquet` or `.csv`) with the canonical column order plus
/// `records_version` and, when every row knows it, `chain_complete`; then any `extra` text columns (one value per row, e.g. the early and full
/// outputs; readers ignore them). The file appears only once it is complete.
pub fn write_records(records: &Records, path: &Path, extra: &[(&str, &[String])]) -> Result<()> {
    let bytes = records_bytes(records, path, extra)?;
    write_file_atomically(path, &bytes)
}

/// The bytes of a records file in the format `path`'s extension names (see [`write_records`]).
pub fn records_bytes(
    records: &Records,
    path: &Path,
    extra: &[(&str, &[String])],
) -> Result<Vec<u8>> {
    let rows = &records.rows;
    let column = |name: &str, values: Series| values.with_name(name.into()).into_column();
    let columns = vec![
        column(
            COLUMNS[0],
            Series::new(
                "".into(),
                rows.iter()
                    .map(|r| records.examples[r.example as usize].as_str())
                    .collect::<Vec<_>>(),
            ),
        ),
        column(
            COLUMNS[1],
            Series::new(
                "".into(),
                rows.iter()
                    .map(|r| records.measures[r.measure as usize].as_str())
                    .collect::<Vec<_>>(),
            ),
        ),
        column(
            COLUMNS[2],
            Series::new("".into(), rows.iter().map(|r| r.tau).collect::<Vec<_>>()),
        ),
        column(
            COLUMNS[3],
            Series::new("".into(), rows.iter().map(|r| r.lambda).collect::<Vec<_>>()),
        ),
        column(
            COLUMNS[4],
            Series::new("".into(), rows.iter().map(|r| r.loss).collect::<Vec<_>>()),
        ),
        column(
            COLUMNS[5],
            Series::new("".into(), rows.iter().map(|r| r.layers).collect::<Vec<_>>()),
        ),
        column(
            COLUMNS[6],
            Series::new("".into(), rows.iter().map(|r| r.tokens).collect::<Vec<_>>()),
        ),
        column(
            COLUMNS[7],
            Series::new(
                "".into(),
                rows.iter().map(|r| r.num_layers).collect::<Vec<_>>(),
            ),
        ),
        column(
            "records_version",
            Series::new("".into(), vec![RECORDS_VERSION; rows.len()]),
        ),
    ];
    let mut columns = columns;
    // Completeness is written when every row knows it (a calm sweep), else left out.
    let complete: Option<Vec<bool>> = rows.iter().map(|r| r.chain_complete).collect();
    if let Some(complete) = complete.filter(|c| !c.is_empty()) {
        columns.push(column(
            CHAIN_COMPLETE_COLUMN,
            Series::new("".into(), complete),
        ));
    }
    for (name, values) in extra {
        if values.len() != rows.len() {
            bail!(
                "column {name} has {} values for {} rows",
                values.len(),
                rows.len()
            );
        }
        columns.push(column(name, Series::new("".into(), values.to_vec())));
    }
    let mut frame = DataFrame::new(rows.len(), columns)?;
    let mut bytes: Vec<u8> = Vec::new();
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".parquet") || name.ends_with(".pq") {
        ParquetWriter::new(&mut bytes)
            .finish(&mut frame)
            .with_context(|| format!("cannot encode Parquet for {}", path.display()))?;
    } else if name.ends_with(".csv") {
        CsvWriter::new(&mut bytes)
            .include_header(true)
            .finish(&mut frame)
            .with_context(|| format!("cannot encode CSV for {}", path.display()))?;
    } else {
        bail!(
            "{}: unknown records format (use a .csv or .parquet file name)",
            path.display()
        );
    }
    Ok(bytes)
}
