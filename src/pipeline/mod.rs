//! The pipelines that involve a model, as a library: typed options in, typed results out, so
//! that a service or CI tool runs them without the CLI, which only parses, calls and prints.
//!
//! - [`calibrate_model`]: calibration from a model, the whole run folder;
//! - [`sweep`]: a model over labelled examples for a grid of exit configurations, into records;
//! - [`replay`]: one configuration against the full model (losses, layers, wall clock);
//! - [`evaluate`]: the model-card numbers (full model, every exit layer, the oracle);
//! - [`check`]: the CI gate, a certified configuration re-run on fresh labelled data;
//! - [`trials`]: random calibration/test splits of recorded losses (the validity protocol).

pub mod calibrate_model;
pub mod check;
pub mod error;
pub mod evaluate;
pub mod replay;
pub mod sweep;
pub mod trials;

pub use calibrate_model::{
    calibrate_model, sweep_shard, LambdaGrid, ModelCalibration, SweepSettings,
};
pub use check::{check, load_calibrated_model, CheckOptions, CheckReport, LayerCheck};
pub use error::PipelineError;
pub use trials::{trials, TrialsOptions};
