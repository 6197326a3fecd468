//! The CALM model runtime on candle: a T5 encoder-decoder (Hugging Face layout) whose decoder
//! can exit early at any layer, with KV-cache state propagation for skipped layers.

pub mod checkpoint;
pub mod config;
pub mod cost;
pub mod decoder;
pub mod encoder;
pub mod exit;
pub mod generate;
pub mod init;
pub mod layers;
pub mod t5;

pub use checkpoint::Checkpoint;
pub use config::T5Config;
pub use exit::{decayed_threshold, ExitPolicy, Measure};
pub use generate::{
    generate, teacher_forced_logits, Generation, GenerationOptions, LayerRecord, TokenTrace,
};
pub use t5::T5Model;
