//! gim: GIM attributions and circuit hunting on Hugging Face causal language models.
//!
//! See ARCHITECTURE.md for the code map.

pub mod attribution;
pub mod cli;
pub mod error;
pub mod kernel;
pub mod loader;
pub mod model;
pub mod session;
pub mod tokenizer;

pub use error::{GimError, Result};
pub use loader::{load, LoadOpts, LoadedModel};
