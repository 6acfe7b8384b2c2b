//! gim: GIM attributions and circuit hunting on Hugging Face causal language models.
//!
//! See ARCHITECTURE.md for the code map.

pub mod attribution;
pub mod bench;
pub mod circuit;
pub mod cli;
pub mod error;
pub mod eval;
pub mod interrupt;
pub mod kernel;
pub mod loader;
pub mod model;
pub mod render;
pub mod session;
pub mod tokenizer;
pub mod train;

pub use error::{GimError, Result};
pub use loader::{load, LoadOpts, LoadedModel};

/// The candle version gim is built against (provenance in `%gim info`).
pub const CANDLE_VERSION: &str = "0.11.1";
