//! Typed errors of the pipelines, worded without command-line flags: a caller (the CLI, a
//! service) maps them to its own option names and exit codes.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// An option outside its domain; `name` is the option's field name.
    #[error("{name} must {expected} (got {value})")]
    InvalidOption {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    /// A thresholds file made from records: nothing says which model to run.
    #[error(
        "{0}: made from records without a model run; this needs a config from a model calibration"
    )]
    NoModelRun(PathBuf),
    /// The data hold no example to run (of the calibrated task, when it names one).
    #[error("{}: no examples{} to check (the gate needs at least one)", .data.display(), .task.as_ref().map_or(String::new(), |t| format!(" of task {t:?}")))]
    NoExamples { data: PathBuf, task: Option<String> },
    /// Anything else (files, model, decoding), with its context.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl PipelineError {
    pub(crate) fn invalid(
        name: &'static str,
        value: impl ToString,
        expected: &'static str,
    ) -> Self {
        PipelineError::InvalidOption {
            name,
            value: value.to_string(),
            expected,
        }
    }
}

impl From<candle_core::Error> for PipelineError {
    fn from(error: candle_core::Error) -> Self {
        PipelineError::Other(error.into())
    }
}

impl From<std::io::Error> for PipelineError {
    fn from(error: std::io::Error) -> Self {
        PipelineError::Other(error.into())
    }
}
