//! Per-token traces of a sweep: `tokens.parquet` (every generated token of every configuration:
//! position, token, exit layer, the confidences at the layers it evaluated) and `layers.parquet`
//! (record mode on the full model: every layer's confidences and whether its prediction equals
//! the top layer's, per token).

use anyhow::{Context, Result};
use polars::prelude::{
    DataFrame, DataType, Float32Type, IntoColumn, IntoSeries, ListBuilderTrait,
    ListPrimitiveChunkedBuilder, NamedFrom, ParquetWriter, Series,
};

/// One generated token of one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    /// Index into the sweep's examples.
    pub example: u32,
    /// "full" or "measure tau=… lambda=…".
    pub configuration: String,
    pub position: u32,
    pub token: u32,
    /// The token's text piece (sentencepiece-style `▁` shown as a space).
    pub piece: String,
    pub exit_layer: u32,
    /// The policy measure's confidence at each evaluated layer (NaN where undefined).
    pub confidences: Vec<f32>,
}

/// One decoder layer's view of one full-model token.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRow {
    pub example: u32,
    pub position: u32,
    pub layer: u32,
    pub softmax_diff: f32,
    pub softmax_max: f32,
    /// NaN at layer 1.
    pub state: f32,
    /// NaN without a classifier.
    pub classifier: f32,
    /// The layer's argmax equals the top layer's.
    pub consistent: bool,
}

fn parquet(mut frame: DataFrame, what: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .finish(&mut frame)
        .map_err(|e| anyhow::anyhow!("cannot encode {what}: {e}"))?;
    Ok(bytes)
}

/// A named column from a vector of values (any type polars builds a series from).
fn column<V, P: ?Sized>(name: &str, values: V) -> polars::prelude::Column
where
    Series: NamedFrom<V, P>,
{
    Series::new(name.into(), values).into_column()
}

/// The example id of every row (`examples` maps example indices to ids).
fn example_ids(indices: impl Iterator<Item = u32>, examples: &[String]) -> Vec<&str> {
    indices.map(|i| examples[i as usize].as_str()).collect()
}

/// `tokens.parquet` bytes; `examples` maps example indices to ids.
pub fn tokens_parquet(rows: &[TokenRow], examples: &[String]) -> Result<Vec<u8>> {
    let mut confidences = ListPrimitiveChunkedBuilder::<Float32Type>::new(
        "confidences".into(),
        rows.len(),
        rows.iter().map(|r| r.confidences.len()).sum(),
        DataType::Float32,
    );
    for row in rows {
        confidences.append_slice(&row.confidences);
    }
    let columns = vec![
        column(
            "example",
            example_ids(rows.iter().map(|r| r.example), examples),
        ),
        column(
            "configuration",
            rows.iter()
                .map(|r| r.configuration.as_str())
                .collect::<Vec<_>>(),
        ),
        column(
            "position",
            rows.iter().map(|r| r.position).collect::<Vec<_>>(),
        ),
        column("token", rows.iter().map(|r| r.token).collect::<Vec<_>>()),
        column(
            "piece",
            rows.iter().map(|r| r.piece.as_str()).collect::<Vec<_>>(),
        ),
        column(
            "exit_layer",
            rows.iter().map(|r| r.exit_layer).collect::<Vec<_>>(),
        ),
        confidences.finish().into_series().into_column(),
    ];
    let frame = DataFrame::new(rows.len(), columns).context("tokens table")?;
    parquet(frame, "tokens.parquet")
}

/// `layers.parquet` bytes.
pub fn layers_parquet(rows: &[LayerRow], examples: &[String]) -> Result<Vec<u8>> {
    let floats = |value: fn(&LayerRow) -> f32| rows.iter().map(value).collect::<Vec<_>>();
    let columns = vec![
        column(
            "example",
            example_ids(rows.iter().map(|r| r.example), examples),
        ),
        column(
            "position",
            rows.iter().map(|r| r.position).collect::<Vec<_>>(),
        ),
        column("layer", rows.iter().map(|r| r.layer).collect::<Vec<_>>()),
        column("softmax_diff", floats(|r| r.softmax_diff)),
        column("softmax_max", floats(|r| r.softmax_max)),
        column("state", floats(|r| r.state)),
        column("classifier", floats(|r| r.classifier)),
        column(
            "consistent",
            rows.iter().map(|r| r.consistent).collect::<Vec<_>>(),
        ),
    ];
    let frame = DataFrame::new(rows.len(), columns).context("layers table")?;
    parquet(frame, "layers.parquet")
}
