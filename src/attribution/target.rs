//! Targets: which token's logit (or log-probability) is explained, and against what foil.

use serde::{Deserialize, Serialize};

use crate::error::{GimError, Result};
use crate::tokenizer::Tok;

/// The target or foil token.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSpec {
    /// the model's top prediction at the position
    Argmax,
    Id(u32),
    /// text such as `" Paris"`; several tokens mean a teacher-forced sequence target
    Text(String),
    /// token ids (e.g. the model's own continuation); several mean a teacher-forced sequence
    Ids(Vec<u32>),
}

/// The scalar being attributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    Logit,
    LogProb,
}

impl Objective {
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "logit" => Ok(Objective::Logit),
            "logprob" | "log-prob" | "log_prob" => Ok(Objective::LogProb),
            other => Err(GimError::input(format!(
                "unknown objective `{other}` (use logit or logprob)"
            ))),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Objective::Logit => "logit",
            Objective::LogProb => "log-prob",
        }
    }
}

/// Tokens of a target text (no special tokens); errors when it is empty or unknown.
pub fn text_ids(tok: &Tok, text: &str, what: &str) -> Result<Vec<u32>> {
    if text.is_empty() {
        return Err(GimError::input(format!(
            "the {what} text is empty; give a token such as \" Paris\""
        )));
    }
    let ids = tok.encode(text, false)?;
    if ids.is_empty() {
        return Err(GimError::input(format!(
            "the {what} text {text:?} is not in the vocabulary (it encodes to no token); give an id with --{what}-id"
        )));
    }
    if let Some(unk) = tok.unk_id() {
        if ids.contains(&unk) {
            return Err(GimError::input(format!(
                "the {what} text {text:?} is not in the vocabulary (it maps to the unknown token); give an id with --{what}-id"
            )));
        }
    }
    Ok(ids)
}
