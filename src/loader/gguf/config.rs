//! GGUF metadata → a Hugging Face style `config.json`, translated by `model/config.rs` like any
//! other (what transformers' GGUF loader builds too); llama 3 rope factors from their tensor.

use candle_core::quantized::gguf_file::Value;
use serde_json::{json, Map, Value as Json};

use super::GgufFile;
use crate::error::{GimError, Result};
use crate::model::config::Positional;
use crate::model::ModelConfig;

/// GGUF architectures (`general.architecture`) we load; each is the `model_type` of the same name.
pub const SUPPORTED_ARCHS: &[&str] = &[
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "gpt2",
];

impl GgufFile {
    /// The model config, built as a Hugging Face `config.json` and translated by
    /// [`ModelConfig::from_hf`].
    pub fn config(&self) -> Result<ModelConfig> {
        let hf = self.hf_config()?;
        let mut cfg = ModelConfig::from_hf(&hf).map_err(|e| match e {
            GimError::Unsupported(m) => {
                GimError::Unsupported(format!("{}: {m}", self.path.display()))
            }
            GimError::Config(m) => GimError::Config(format!("{}: {m}", self.path.display())),
            other => other,
        })?;
        self.apply_rope_freqs(&mut cfg)?;
        Ok(cfg)
    }

    /// The metadata as a Hugging Face config (what transformers' GGUF loader builds too).
    pub fn hf_config(&self) -> Result<Json> {
        let a = self.arch.as_str();
        let k = |s: &str| format!("{a}.{s}");
        let mut c = Map::new();
        c.insert("model_type".into(), json!(a));
        let layers = self.need_usize(&k("block_count"))?;
        let d = self.need_usize(&k("embedding_length"))?;
        let heads = self.need_usize(&k("attention.head_count"))?;
        if heads == 0 || d == 0 || layers == 0 {
            return Err(self.err("has zero layers, heads or width in its metadata"));
        }
        // Sizes that get allocated before any tensor is checked against them.
        if layers > self.content.tensor_infos.len() || d > 1 << 20 || heads > d {
            return Err(self.err(&format!(
                "is inconsistent: {layers} layers, width {d} and {heads} heads do not fit its {} tensors",
                self.content.tensor_infos.len()
            )));
        }
        let vocab = match self.meta_usize(&k("vocab_size"))? {
            Some(v) => v,
            None => match self.meta("tokenizer.ggml.tokens") {
                Some(Value::Array(t)) => t.len(),
                _ => self
                    .dims("token_embd.weight")
                    .and_then(|d| d.first().copied())
                    .ok_or_else(|| self.err("has no vocabulary size and no `token_embd.weight`"))?,
            },
        };
        let ctx = self.meta_usize(&k("context_length"))?;
        let ffn = self.meta_usize(&k("feed_forward_length"))?;
        for id in ["bos", "eos", "padding"] {
            if let Some(v) = self.meta_usize(&format!("tokenizer.ggml.{id}_token_id"))? {
                let key = if id == "padding" { "pad" } else { id };
                c.insert(format!("{key}_token_id"), json!(v));
            }
        }
        c.insert("vocab_size".into(), json!(vocab));
        c.insert(
            "tie_word_embeddings".into(),
            json!(!self.has_tensor("output.weight")),
        );
        if a == "gpt2" {
            c.insert("n_layer".into(), json!(layers));
            c.insert("n_embd".into(), json!(d));
            c.insert("n_head".into(), json!(heads));
            if let Some(f) = ffn {
                c.insert("n_inner".into(), json!(f));
            }
            if let Some(n) = ctx {
                c.insert("n_positions".into(), json!(n));
            }
            if let Some(e) = self.meta_f64(&k("attention.layer_norm_epsilon"))? {
                c.insert("layer_norm_epsilon".into(), json!(e));
            }
            return Ok(Json::Object(c));
        }
        c.insert("num_hidden_layers".into(), json!(layers));
        c.insert("hidden_size".into(), json!(d));
        c.insert("num_attention_heads".into(), json!(heads));
        let kv = self
            .meta_usize(&k("attention.head_count_kv"))?
            .unwrap_or(heads);
        c.insert("num_key_value_heads".into(), json!(kv));
        let ffn = ffn.ok_or_else(|| {
            self.err(&format!(
                "lacks the metadata field `{}`",
                k("feed_forward_length")
            ))
        })?;
        c.insert("intermediate_size".into(), json!(ffn));
        if let Some(n) = ctx {
            c.insert("max_position_embeddings".into(), json!(n));
        }
        let head_dim = self
            .meta_usize(&k("attention.key_length"))?
            .unwrap_or(d / heads);
        if head_dim == 0 || head_dim > 1 << 16 || kv == 0 || kv > heads {
            return Err(self.err(&format!(
                "is inconsistent: heads of width {head_dim}, {heads} query and {kv} key/value heads"
            )));
        }
        if let Some(v) = self.meta_usize(&k("attention.value_length"))? {
            if v != head_dim {
                return Err(GimError::Unsupported(format!(
                    "{}: value heads of width {v} differ from key heads of width {head_dim}; not supported",
                    self.path.display()
                )));
            }
        }
        c.insert("head_dim".into(), json!(head_dim));
        if let Some(e) = self.meta_f64(&k("attention.layer_norm_rms_epsilon"))? {
            c.insert("rms_norm_eps".into(), json!(e));
        }
        let mut rope = Map::new();
        rope.insert(
            "rope_theta".into(),
            json!(self.meta_f64(&k("rope.freq_base"))?.unwrap_or(10000.0)),
        );
        rope.insert("rope_type".into(), json!("default"));
        if let Some(n) = self.meta_usize(&k("rope.dimension_count"))? {
            if n > head_dim {
                return Err(self.err(&format!(
                    "is inconsistent: rope over {n} dimensions of heads {head_dim} wide"
                )));
            }
            if n != head_dim {
                rope.insert(
                    "partial_rotary_factor".into(),
                    json!(n as f64 / head_dim as f64),
                );
            }
        }
        // Rope scaling other than llama3's (which llama.cpp stores as `rope_freqs.weight`, see
        // `apply_rope_freqs`) is passed on by type, so config.rs names what it does not support.
        if let Some(t) = self
            .meta_str(&k("rope.scaling.type"))?
            .filter(|t| t != "none")
        {
            rope.insert("rope_type".into(), json!(t));
            if let Some(f) = self.meta_f64(&k("rope.scaling.factor"))? {
                rope.insert("factor".into(), json!(f));
            }
        }
        if self.has_tensor("rope_factors_long.weight") {
            rope.insert("rope_type".into(), json!("longrope"));
        }
        c.insert("rope_parameters".into(), Json::Object(rope));
        // llama.cpp writes 0 for a model without a window.
        if let Some(w) = self
            .meta_usize(&k("attention.sliding_window"))?
            .filter(|w| *w > 0)
        {
            c.insert("sliding_window".into(), json!(w));
        }
        if a == "llama" {
            c.insert(
                "attention_bias".into(),
                json!(self.has_tensor("blk.0.attn_q.bias")),
            );
            c.insert(
                "mlp_bias".into(),
                json!(self.has_tensor("blk.0.ffn_up.bias")),
            );
        }
        if a == "gemma2" {
            // llama.cpp's and transformers' defaults when the file does not say.
            let attn = self.meta_f64(&k("attn_logit_softcapping"))?.unwrap_or(50.0);
            let last = self
                .meta_f64(&k("final_logit_softcapping"))?
                .unwrap_or(30.0);
            c.insert("attn_logit_softcapping".into(), json!(attn));
            c.insert("final_logit_softcapping".into(), json!(last));
            // GGUF has no query_pre_attn_scalar: llama.cpp scales by 1/sqrt(head_dim), except
            // for Gemma-2 27B (46 layers), whose scalar is hidden_size / heads.
            let scalar = match self.meta_f64(&k("attention.scale"))? {
                Some(s) if s > 0.0 => 1.0 / (s * s),
                _ if layers == 46 => (d / heads) as f64,
                _ => head_dim as f64,
            };
            c.insert("query_pre_attn_scalar".into(), json!(scalar));
        }
        Ok(Json::Object(c))
    }

    /// Llama 3.1+ rope scaling: llama.cpp stores the per-frequency divisors it computed from
    /// the `llama3` rope parameters as the tensor `rope_freqs.weight`.
    fn apply_rope_freqs(&self, cfg: &mut ModelConfig) -> Result<()> {
        if !self.has_tensor("rope_freqs.weight") {
            return Ok(());
        }
        let factors: Vec<f32> = self.read("rope_freqs.weight")?.flatten_all()?.to_vec1()?;
        let Positional::Rotary { inv_freq, .. } = &mut cfg.positional else {
            return Ok(());
        };
        if factors.len() != inv_freq.len() || factors.iter().any(|f| !f.is_finite() || *f <= 0.0) {
            return Err(self.err(&format!(
                "is inconsistent: `rope_freqs.weight` has {} factors for {} rotary frequencies",
                factors.len(),
                inv_freq.len()
            )));
        }
        for (f, s) in inv_freq.iter_mut().zip(factors) {
            *f = ((*f as f32) / s) as f64;
        }
        Ok(())
    }
}
