//! Library errors: each one reads as a one-line message saying what is wrong and what to do.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GimError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Load(String),
    #[error("{0}")]
    Input(String),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    Io(String),
    #[error("interrupted by the user")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, GimError>;

impl GimError {
    /// An error about something the user gave (prompt, flag value, id).
    pub fn input(msg: impl Into<String>) -> Self {
        GimError::Input(msg.into())
    }
}

/// Shorthand for `Err(GimError::Input(..))`.
#[macro_export]
macro_rules! bail_input {
    ($($arg:tt)*) => { return Err($crate::error::GimError::Input(format!($($arg)*))) };
}

/// The text of a caught panic (`std::panic::catch_unwind`'s payload).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}
