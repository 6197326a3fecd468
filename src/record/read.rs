//! Reading records from CSV and Parquet files (polars), with row-level validation.

use super::{
    RecordRow, Records, RowOrigin, SourceFile, CHAIN_COMPLETE_COLUMN, COLUMNS, RECORDS_VERSION,
};
use crate::util::sha256_file;
use crate::util::table::{read_table, text_column};
use anyhow::{bail, Context, Result};
use polars::prelude::{DataFrame, DataType, Series};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Whether `name` matches a shell-style `pattern` with `*` (any run) and `?` (any character).
fn wildcard_match(pattern: &[char], name: &[char]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some('*'), _) => {
            wildcard_match(&pattern[1..], name)
                || (!name.is_empty() && wildcard_match(pattern, &name[1..]))
        }
        (Some('?'), Some(_)) => wildcard_match(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => wildcard_match(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// Expand `*` / `?` in the file-name part of each path (e.g. `'runs/shards/*.parquet'`, quoted
/// so the shell leaves it alone), in sorted order. A pattern that matches nothing is an error.
pub fn expand_record_paths(paths: &[impl AsRef<Path>]) -> Result<Vec<PathBuf>> {
    let mut expanded = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains(['*', '?']) {
            expanded.push(path.to_path_buf());
            continue;
        }
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let pattern: Vec<char> = name.chars().collect();
        let mut matches: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list {} for {}", dir.display(), path.display()))?
            .filter_map(|entry| entry.ok())
            .filter(|entry| {
                let file = entry
                    .file_name()
                    .to_string_lossy()
                    .chars()
                    .collect::<Vec<_>>();
                wildcard_match(&pattern, &file)
            })
            .map(|entry| entry.path())
            .collect();
        if matches.is_empty() {
            bail!("{}: no records files match", path.display());
        }
        matches.sort();
        expanded.extend(matches);
    }
    Ok(expanded)
}

/// Read and validate records from every file, combining them (shards from several machines).
/// Paths may use `*` and `?` in their file names. Errors name the file, the row (1-based,
/// counting data rows) and the field.
pub fn read_records(paths: &[impl AsRef<Path>]) -> Result<Records> {
    if paths.is_empty() {
        bail!("no records files given");
    }
    let paths = expand_record_paths(paths)?;
    let mut records = Records::default();
    let mut example_index: HashMap<String, u32> = HashMap::new();
    let mut measure_index: HashMap<String, u32> = HashMap::new();
    for (file_number, path) in paths.iter().enumerate() {
        let path = path.as_path();
        let frame = read_table(path, "records")?;
        if frame.height() == 0 {
            bail!("{}: the file has no records (empty)", path.display());
        }
        let columns = FileColumns::extract(&frame, path)?;
        let file = file_number as u32;
        for row in 0..frame.height() {
            let origin = RowOrigin {
                file,
                row: row as u32 + 1,
            };
            let example = intern(
                &mut example_index,
                &mut records.examples,
                &columns.example[row],
            );
            let measure = intern(
                &mut measure_index,
                &mut records.measures,
                &columns.measure[row],
            );
            let record = RecordRow {
                example,
                measure,
                tau: columns.tau[row],
                lambda: columns.lambda[row],
                loss: columns.loss[row],
                layers: columns.layers[row],
                tokens: columns.tokens[row],
                num_layers: columns.num_layers[row],
                chain_complete: columns.chain_complete.as_ref().map(|c| c[row]),
                origin,
            };
            validate_row(&record).map_err(|problem| {
                anyhow::anyhow!("{} row {}: {problem}", path.display(), origin.row)
            })?;
            records.rows.push(record);
        }
        records.sources.push(SourceFile {
            path: path.to_path_buf(),
            sha256: sha256_file(path).with_context(|| format!("cannot read {}", path.display()))?,
            rows: frame.height() as u64,
        });
    }
    Ok(records)
}

fn intern(index: &mut HashMap<String, u32>, names: &mut Vec<String>, name: &str) -> u32 {
    if let Some(&id) = index.get(name) {
        return id;
    }
    let id = names.len() as u32;
    names.push(name.to_string());
    index.insert(name.to_string(), id);
    id
}

/// Range checks of one row; the message names the field.
fn validate_row(row: &RecordRow) -> std::result::Result<(), String> {
    let finite = |name: &str, value: f64| {
        if value.is_finite() {
            Ok(())
        } else {
            Err(format!(
                "field `{name}` is {value}, expected a finite number"
            ))
        }
    };
    finite("loss", row.loss)?;
    finite("layers", row.layers)?;
    finite("tau", row.tau)?;
    finite("lambda", row.lambda)?;
    if !(0.0..=1.0).contains(&row.loss) {
        return Err(format!("field `loss` is {}, outside [0, 1]", row.loss));
    }
    if !(0.0..=1.0).contains(&row.lambda) {
        return Err(format!("field `lambda` is {}, outside [0, 1]", row.lambda));
    }
    if row.tau < 0.0 {
        return Err(format!("field `tau` is {}, must be ≥ 0", row.tau));
    }
    if row.layers < 0.0 {
        return Err(format!("field `layers` is {}, must be ≥ 0", row.layers));
    }
    if row.num_layers == 0 {
        return Err("field `num_layers` is 0, must be ≥ 1".to_string());
    }
    if row.layers > row.num_layers as f64 {
        return Err(format!(
            "field `layers` is {}, more than `num_layers` = {}",
            row.layers, row.num_layers
        ));
    }
    Ok(())
}

/// The schema's columns of one file, decoded to Rust values.
struct FileColumns {
    example: Vec<String>,
    measure: Vec<String>,
    tau: Vec<f64>,
    lambda: Vec<f64>,
    loss: Vec<f64>,
    layers: Vec<f64>,
    tokens: Vec<u32>,
    num_layers: Vec<u32>,
    chain_complete: Option<Vec<bool>>,
}

impl FileColumns {
    fn extract(frame: &DataFrame, path: &Path) -> Result<Self> {
        let missing: Vec<&str> = COLUMNS
            .iter()
            .copied()
            .filter(|name| frame.column(name).is_err())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{}: missing column(s) {} (the records schema needs {})",
                path.display(),
                missing.join(", "),
                COLUMNS.join(", ")
            );
        }
        if frame.column("records_version").is_ok() {
            for (row, version) in count_column(frame, "records_version", path)?
                .into_iter()
                .enumerate()
            {
                if version != RECORDS_VERSION {
                    bail!(
                        "{} row {}: records_version {version} is not supported (this calm reads version {RECORDS_VERSION})",
                        path.display(),
                        row + 1
                    );
                }
            }
        }
        Ok(FileColumns {
            example: text_column(frame, "example", path)?,
            measure: text_column(frame, "measure", path)?,
            tau: number_column(frame, "tau", path)?,
            lambda: number_column(frame, "lambda", path)?,
            loss: number_column(frame, "loss", path)?,
            layers: number_column(frame, "layers", path)?,
            tokens: count_column(frame, "tokens", path)?,
            num_layers: count_column(frame, "num_layers", path)?,
            chain_complete: if frame.column(CHAIN_COMPLETE_COLUMN).is_ok() {
                Some(flag_column(frame, CHAIN_COMPLETE_COLUMN, path)?)
            } else {
                None
            },
        })
    }
}

fn series<'a>(frame: &'a DataFrame, name: &str) -> Result<&'a Series> {
    Ok(frame.column(name)?.as_materialized_series())
}

fn number_column(frame: &DataFrame, name: &str, path: &Path) -> Result<Vec<f64>> {
    let column = series(frame, name)?;
    match column.dtype() {
        DataType::String => column
            .str()?
            .iter()
            .enumerate()
            .map(|(row, value)| {
                let value = value.unwrap_or("").trim();
                value.parse::<f64>().map_err(|_| {
                    anyhow::anyhow!(
                        "{} row {}: field `{name}` is {value:?}, expected a number",
                        path.display(),
                        row + 1
                    )
                })
            })
            .collect(),
        dtype if dtype.is_primitive_numeric() => {
            let numbers = column.cast(&DataType::Float64)?;
            numbers
                .f64()?
                .iter()
                .enumerate()
                .map(|(row, value)| {
                    value.with_context(|| {
                        format!("{} row {}: field `{name}` is null", path.display(), row + 1)
                    })
                })
                .collect()
        }
        dtype => bail!(
            "{}: column `{name}` has type {dtype}, expected numbers",
            path.display()
        ),
    }
}

fn count_column(frame: &DataFrame, name: &str, path: &Path) -> Result<Vec<u32>> {
    number_column(frame, name, path)?
        .into_iter()
        .enumerate()
        .map(|(row, value)| {
            if value.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&value) {
                Ok(value as u32)
            } else {
                bail!(
                    "{} row {}: field `{name}` is {value}, expected a non-negative integer",
                    path.display(),
                    row + 1
                )
            }
        })
        .collect()
}

/// A true/false column (Parquet booleans, or `true`/`false`/`1`/`0` text in CSV).
fn flag_column(frame: &DataFrame, name: &str, path: &Path) -> Result<Vec<bool>> {
    let column = series(frame, name)?;
    let text = column
        .cast(&DataType::String)
        .with_context(|| format!("{}: column `{name}` cannot be read", path.display()))?;
    text.str()?
        .iter()
        .enumerate()
        .map(
            |(row, value)| match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
                Some("true") | Some("1") => Ok(true),
                Some("false") | Some("0") => Ok(false),
                other => bail!(
                    "{} row {}: field `{name}` is {:?}, expected true or false",
                    path.display(),
                    row + 1,
                    other.unwrap_or("")
                ),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    fn matches(pattern: &str, name: &str) -> bool {
        wildcard_match(
            &pattern.chars().collect::<Vec<_>>(),
            &name.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn wildcards() {
        assert!(matches("records-*.parquet", "records-1-of-2.parquet"));
        assert!(matches("*", "anything"));
        assert!(matches("r?.csv", "r1.csv"));
        assert!(!matches("r?.csv", "r12.csv"));
        assert!(!matches("records-*.parquet", "records-1.csv"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
    }
}
