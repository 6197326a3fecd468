//! Reading tabular files (CSV with a header, Parquet) into polars frames, with errors that name
//! the file, row and column. Shared by the records and example readers.

use anyhow::{bail, Context, Result};
use polars::prelude::{CsvReadOptions, DataFrame, DataType, ParquetReader, SerReader};
use std::path::Path;

/// Read a `.csv` (every column as text, parsed by the caller so errors can name the row) or
/// `.parquet`/`.pq` file. `what` names the kind of file in errors.
pub fn read_table(path: &Path, what: &str) -> Result<DataFrame> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if metadata.len() == 0 {
        bail!("{}: the file is empty", path.display());
    }
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".parquet") || name.ends_with(".pq") {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        ParquetReader::new(file)
            .finish()
            .with_context(|| format!("{}: not a readable Parquet file", path.display()))
    } else if name.ends_with(".csv") {
        CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|reader| reader.finish())
            .with_context(|| format!("{}: not a readable CSV file", path.display()))
    } else {
        bail!(
            "{}: unknown {what} format (expected a .csv or .parquet file)",
            path.display()
        )
    }
}

/// A column as non-empty text; errors name the file, row and column.
pub fn text_column(frame: &DataFrame, name: &str, path: &Path) -> Result<Vec<String>> {
    let column = frame.column(name)?.as_materialized_series();
    let text = column
        .cast(&DataType::String)
        .with_context(|| format!("{}: column `{name}` cannot be read as text", path.display()))?;
    text.str()?
        .iter()
        .enumerate()
        .map(|(row, value)| match value {
            Some(value) if !value.trim().is_empty() => Ok(value.to_string()),
            _ => bail!(
                "{} row {}: field `{name}` is empty",
                path.display(),
                row + 1
            ),
        })
        .collect()
}
