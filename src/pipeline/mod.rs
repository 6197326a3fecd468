//! The pipelines that involve a model, as a library: typed options in, typed results out, so
//! that a service or CI tool runs them without the CLI, which only parses, calls and prints.
//!
//! - [`sweep`]: a model over labelled examples for a grid of exit configurations, into records;
//! - [`replay`]: one configuration against the full model (losses, layers, wall clock);
//! - [`evaluate`]: the model-card numbers (full model, every exit layer, the oracle);
//! - [`check`]: the CI gate, a certified configuration re-run on fresh labelled data.

pub mod check;
pub mod error;
pub mod evaluate;
pub mod replay;
pub mod sweep;

pub use check::{check, load_calibrated_model, CheckOptions, CheckReport, LayerCheck};
pub use error::PipelineError;
