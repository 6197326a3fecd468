//! The CALM model runtime on candle: model families (a T5 encoder-decoder; decoder-only
//! Llama, Qwen2 and Mistral in Hugging Face layout or GGUF) behind one early-exit engine
//! (`generate`), whose decoder can exit at any layer with KV-cache state propagation for
//! skipped layers.

pub mod checkpoint;
pub mod config;
pub mod cost;
pub mod decoder;
pub mod encoder;
pub mod exit;
pub mod family;
pub mod generate;
pub mod init;
pub mod layers;
pub mod llama;
pub mod loaded;
pub mod profile;
pub mod prompt;
pub mod t5;

/// The device and dtype types a caller passes to [`Checkpoint::load`].
pub use candle_core::{DType, Device};
pub use checkpoint::{
    dtype_from_name, dtype_name, Checkpoint, LoadOptions, PromptFormat, COMPUTE_DTYPES,
};
pub use config::T5Config;
pub use exit::{decayed_threshold, ExitPolicy, Measure};
pub use generate::{
    generate, generate_with, teacher_forced_logits, Generation, GenerationOptions, LayerRecord,
    TokenTrace,
};
pub use llama::LlamaModel;
pub use loaded::Model;
pub use t5::T5Model;
