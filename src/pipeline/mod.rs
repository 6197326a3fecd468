//! The pipelines that involve a model, as a library: typed options in, typed results out, so
//! that a service or CI tool runs them without the CLI, which only parses, calls and prints.
//!
//! - [`check`]: the CI gate, a certified configuration re-run on fresh labelled data.

pub mod check;
pub mod error;

pub use check::{check, load_calibrated_model, CheckOptions, CheckReport, LayerCheck};
pub use error::PipelineError;
