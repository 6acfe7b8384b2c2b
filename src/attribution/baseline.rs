//! Baselines: one token repeated (default: a single space, else pad, else unk) or zero embeddings.

use crate::error::{GimError, Result};
use crate::loader::LoadedModel;

#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// the spec's default token: `" "` → pad → unk
    Default,
    Id(u32),
    /// a text that must encode to exactly one token
    Text(String),
    /// the zero embedding
    Zero,
}

/// The spec's default baseline token: the tokenizer's encoding of a single space (first id),
/// else the pad token, else the unknown token.
pub fn default_baseline_id(m: &LoadedModel) -> Result<u32> {
    if let Ok(ids) = m.tok.encode(" ", false) {
        if let Some(&id) = ids.first() {
            return Ok(id);
        }
    }
    if let Some(p) = m.model.cfg.pad_token_id.or_else(|| m.tok.pad_id()) {
        return Ok(p);
    }
    if let Some(u) = m.tok.unk_id() {
        return Ok(u);
    }
    Err(GimError::input(
        "this tokenizer has no space, pad or unk token to use as a baseline; pass one with --baseline-id",
    ))
}

impl Baseline {
    /// The baseline token id (`None` for the zero baseline).
    pub fn resolve(&self, m: &LoadedModel) -> Result<Option<u32>> {
        let vocab = m.model.cfg.vocab_size;
        match self {
            Baseline::Zero => Ok(None),
            Baseline::Default => Ok(Some(default_baseline_id(m)?)),
            Baseline::Id(id) => {
                if *id as usize >= vocab {
                    return Err(GimError::input(format!(
                        "baseline id {id} is outside the vocabulary (size {vocab})"
                    )));
                }
                Ok(Some(*id))
            }
            Baseline::Text(t) => {
                let ids = m.tok.encode(t, false)?;
                match ids.as_slice() {
                    [id] => Ok(Some(*id)),
                    _ => Err(GimError::input(format!(
                        "baseline text {t:?} is {} tokens; it must be exactly one (or use --baseline-id)",
                        ids.len()
                    ))),
                }
            }
        }
    }
}
