//! The interactive session behind `%gim` magics: loaded models stay hot, settings persist,
//! results are kept by name. Shared by the Jupyter kernel, the REPL and tests.

pub mod output;

use std::collections::BTreeMap;

pub use output::{MimeBundle, Output, Recorder};

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

/// Session state: models by name, the current one, GIM settings and saved results.
pub struct Session {
    pub models: BTreeMap<String, LoadedModel>,
    pub current: Option<String>,
    pub rules: GimRules,
    pub vars: BTreeMap<String, serde_json::Value>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    pub fn new() -> Self {
        Session {
            models: BTreeMap::new(),
            current: None,
            rules: GimRules::gim(),
            vars: BTreeMap::new(),
        }
    }

    /// Run one magic line (the text after `%gim`). Progress and intermediate pictures go to
    /// `out`; the returned bundle (if any) is the cell's result.
    pub fn run_magic(
        &mut self,
        line: &str,
        _out: &mut dyn Output,
    ) -> Result<Option<MimeBundle>, MagicError> {
        let line = line.trim();
        let cmd = line.split_whitespace().next().unwrap_or("help");
        match cmd {
            "help" => Ok(Some(MimeBundle::text("%gim magics: help, demo"))),
            "demo" => Ok(Some(
                MimeBundle::text("demo").with("text/html", "<b>demo</b>"),
            )),
            other => Err(MagicError {
                message: format!("unknown magic `{other}`; `%gim help` lists them"),
                usage: "%gim <command> [args]".into(),
            }),
        }
    }

    /// Completions for a magic line; `cursor` is a byte offset into `line`.
    pub fn complete(&self, line: &str, cursor: usize) -> Completion {
        let before = &line[..cursor.min(line.len())];
        let word_start = before
            .rfind(char::is_whitespace)
            .map(|i| i + 1)
            .unwrap_or(0);
        let word = &before[word_start..];
        let matches = ["help", "demo"]
            .iter()
            .filter(|c| c.starts_with(word))
            .map(|c| c.to_string())
            .collect();
        Completion {
            matches,
            cursor_start: word_start,
            cursor_end: cursor,
        }
    }

    /// Documentation for the word under the cursor of a magic line.
    pub fn inspect(&self, line: &str, _cursor: usize) -> Option<MimeBundle> {
        let _ = line;
        None
    }
}
