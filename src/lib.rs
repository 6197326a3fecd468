//! calm — Confident Adaptive Language Modeling with certified early exits.
//!
//! Data flows one way: data → [`model`] → [`record`] → [`calibrate`] → thresholds and reports;
//! [`pipeline`] runs the steps that involve a model as library calls.
//! The statistics never import the model. The library builds without the command line
//! (`default-features = false` drops clap).
//!
//! Certify thresholds from records made elsewhere (here the synthetic ones in
//! `datasets/example/`):
//!
//! ```
//! use calm::calibrate::{calibrate, CalibrationOptions, LossTable};
//! use calm::calibrate::{pvalues::PValueMethod, procedures::Procedure};
//!
//! let records = calm::record::read_records(&["datasets/example/records.parquet"])?;
//! let table = LossTable::from_records(&records)?;
//! let options = CalibrationOptions {
//!     delta: 0.1,
//!     epsilon: 0.05,
//!     pvalue: PValueMethod::Hb,
//!     procedure: Procedure::FixedSequence,
//!     seed: 0,
//! };
//! let calibration = calibrate(&table, &options)?;
//! // Every certified candidate's p-value is at most the per-test level.
//! for c in calibration.candidates.iter().filter(|c| c.certified) {
//!     assert!(c.p_value <= calibration.level);
//! }
//! if let Some(selected) = calibration.selected() {
//!     println!("{} τ={} λ={}: {:.2} layers", selected.measure, selected.tau, selected.lambda, selected.mean_layers);
//! }
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Run a model with early exits (any family: T5, Llama/Qwen2/Mistral, GGUF) through the one
//! engine:
//!
//! ```
//! use calm::model::{generate, Checkpoint, DType, Device, ExitPolicy, GenerationOptions, Measure};
//!
//! // The caller chooses the device and the compute dtype (f32, f16 or bf16).
//! let path = "tests/fixtures/llama/qwen2-bias".as_ref();
//! let checkpoint = Checkpoint::load(path, &Device::Cpu, DType::F32)?;
//! let prompt = checkpoint.encode("The quick fox")?;
//! let options = GenerationOptions {
//!     max_new_tokens: 8,
//!     policy: ExitPolicy::Threshold { measure: Measure::SoftmaxMax, lambda: 0.2, tau: 4.0, min_exit: 1 },
//!     record_all_layers: false,
//! };
//! let out = generate(&checkpoint.model, &[prompt], &options)?;
//! assert_eq!(out[0].traces.len(), out[0].tokens.len());
//! println!("{} ({:.2} layers per token)", checkpoint.decode(&out[0].tokens)?, out[0].mean_layers());
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Re-check a certified configuration on fresh data, as the CI gate does (here the committed
//! main job's thresholds on five test examples):
//!
//! ```
//! use calm::pipeline::{check, load_calibrated_model, CheckOptions};
//! use std::path::Path;
//!
//! let thresholds = Path::new("reports/bible-modernize-textual/thresholds.json");
//! let config = calm::calibrate::thresholds::read_thresholds(thresholds)?;
//! // Loaded as it was calibrated (weights, dtype, prompt format), on the device given.
//! let model = load_calibrated_model(&config, thresholds, None, &calm::model::Device::Cpu)?;
//! let options = CheckOptions { max_examples: Some(5), ..CheckOptions::new(None, 0.05, 0.1, 1)? };
//! let data = Path::new("datasets/bible/test.jsonl.gz");
//! let report = check(&config, thresholds, data, &model, &options)?;
//! assert_eq!(report.test.n, 5);
//! println!("{:?} (risk {:.3}, n = {}, δ = {})", report.verdict, report.test.risk, report.test.n, report.test.delta);
//! # Ok::<(), calm::pipeline::PipelineError>(())
//! ```

pub mod calibrate;
#[cfg(feature = "cli")]
pub mod cli;
pub mod data;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod record;
pub mod report;
pub mod train;
pub mod util;
