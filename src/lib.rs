//! calm — Confident Adaptive Language Modeling with certified early exits.
//!
//! Data flows one way: records → [`calibrate`] → thresholds. The statistics never import the model.

pub mod calibrate;
pub mod cli;
pub mod data;
pub mod metrics;
pub mod model;
pub mod record;
pub mod report;
pub mod train;
pub mod util;
