//! calm's integration tests, in one binary (as ripgrep does): one link of candle, polars and
//! plotters instead of one per file. Each module is one former test file; `cargo test NAME`
//! still selects by module or test name.

mod common;

mod bible_llama;
mod calibration_validity;
mod ci_docs;
mod cli_calibrate;
mod cli_calibrate_model;
mod cli_check;
mod cli_decoder_only;
mod cli_evaluate;
mod cli_generate;
mod cli_score;
mod cli_trials;
mod dataset;
mod dtypes;
mod early_exit;
mod gate_validity;
mod grid_validity;
mod library_pipeline;
mod llama_early_exit;
mod llama_parity;
mod llama_training;
mod metrics_golden;
mod model_parity;
mod pvalue_golden;
mod statrs_reference;
mod training;
