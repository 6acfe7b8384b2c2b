//! The interactive session behind `%gim` magics: loaded models stay hot, settings persist,
//! results are kept by name. Shared by the Jupyter kernel, the REPL and tests.
//!
//! Each magic is one file in `magics/` with its clap arguments, doc and run function.

pub mod argv;
pub mod magics;
pub mod output;
pub mod views;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use output::{MimeBundle, Output, Recorder, RESULT_MIME};

use crate::attribution::Method;
use crate::error::GimError;
use crate::loader::LoadedModel;
use crate::model::GimRules;

/// A magic failed: a one-line message plus the usage of the magic involved.
#[derive(Debug, Clone, PartialEq)]
pub struct MagicError {
    pub message: String,
    pub usage: String,
}

impl std::fmt::Display for MagicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

/// Completion candidates for the text before the cursor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub matches: Vec<String>,
    pub cursor_start: usize,
    pub cursor_end: usize,
}

/// Session-wide defaults, changed with `%gim config key=value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub rules: GimRules,
    /// default attribution method
    pub method: Method,
    pub ig_steps: usize,
    pub seed: u64,
    /// where `--png`/`--svg` files go in the REPL
    pub out_dir: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rules: GimRules::gim(),
            method: Method::Gim,
            ig_steps: 32,
            seed: 0,
            out_dir: "gim-out".into(),
        }
    }
}

/// Session state: models by name, the current one, settings and saved results.
#[derive(Default)]
pub struct Session {
    pub models: BTreeMap<String, LoadedModel>,
    pub current: Option<String>,
    pub settings: Settings,
    pub vars: BTreeMap<String, serde_json::Value>,
}

impl Session {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current model, or an error telling how to load one.
    pub fn model(&self) -> Result<&LoadedModel, GimError> {
        let name = self.current.as_ref().ok_or_else(|| {
            GimError::input("no model is loaded: run `%gim load <folder|repo-id|toy-ioi>` first")
        })?;
        self.models.get(name).ok_or_else(|| {
            GimError::input(format!(
                "model `{name}` is not loaded; `%gim models` lists them"
            ))
        })
    }

    /// Run one magic line (the text after `%gim`). Progress and intermediate pictures go to
    /// `out`; the returned bundle (if any) is the cell's result.
    pub fn run_magic(
        &mut self,
        line: &str,
        out: &mut dyn Output,
    ) -> Result<Option<MimeBundle>, MagicError> {
        crate::interrupt::clear();
        let args = argv::split(line).map_err(|m| MagicError {
            message: m,
            usage: "%gim <command> [args]".into(),
        })?;
        let Some(name) = args.first() else {
            return magics::run(self, "help", &["help".to_string()], out);
        };
        magics::run(self, &name.clone(), &args, out)
    }

    /// Completions for a magic line (text after `%gim`); `cursor` is a byte offset into `line`.
    pub fn complete(&self, line: &str, cursor: usize) -> Completion {
        magics::complete(self, line, cursor)
    }

    /// Documentation for the word under the cursor of a magic line.
    pub fn inspect(&self, line: &str, cursor: usize) -> Option<MimeBundle> {
        magics::inspect(self, line, cursor)
    }
}
