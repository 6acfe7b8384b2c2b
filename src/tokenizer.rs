//! Thin wrapper over a Hugging Face `tokenizer.json`.

use std::path::Path;

use crate::error::{GimError, Result};

/// A tokenizer loaded from `tokenizer.json`.
pub struct Tok {
    inner: tokenizers::Tokenizer,
}

impl Tok {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(GimError::Load(format!(
                "{} has no tokenizer.json (only fast tokenizers are supported; save one with transformers' save_pretrained)",
                dir.display()
            )));
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| GimError::Load(format!("cannot read {}: {e}", path.display())))?;
        Ok(Tok { inner })
    }

    pub fn from_tokenizer(inner: tokenizers::Tokenizer) -> Self {
        Tok { inner }
    }

    /// Encode text; `special` adds the tokenizer's special tokens (e.g. BOS) as transformers does.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, special)
            .map_err(|e| GimError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The vocabulary piece of an id (e.g. `Ġthe`).
    pub fn piece(&self, id: u32) -> String {
        self.inner
            .id_to_token(id)
            .unwrap_or_else(|| format!("<{id}>"))
    }

    /// The text an id decodes to on its own (e.g. ` the`).
    pub fn decode_one(&self, id: u32) -> String {
        self.inner
            .decode(&[id], false)
            .unwrap_or_else(|_| self.piece(id))
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }

    pub fn token_to_id(&self, piece: &str) -> Option<u32> {
        self.inner.token_to_id(piece)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The padding token configured in tokenizer.json, if any.
    pub fn pad_id(&self) -> Option<u32> {
        self.inner.get_padding().map(|p| p.pad_id)
    }

    /// Common names of the unknown token.
    pub fn unk_id(&self) -> Option<u32> {
        ["<unk>", "[UNK]", "<|unk|>"]
            .iter()
            .find_map(|t| self.inner.token_to_id(t))
    }
}
