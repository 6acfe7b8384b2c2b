//! GGUF tensors under the Hugging Face names `model/weights.rs` asks for: llama.cpp's names,
//! its row permutation of llama's q/k projections undone, Gemma's `1 + w` norms, GPT-2's Conv1D
//! weights transposed.

use candle_core::Tensor;

use super::GgufFile;
use crate::error::Result;
use crate::model::config::WeightLayout;
use crate::model::weights::TensorSource;
use crate::model::ModelConfig;

impl GgufFile {
    /// The tensors under Hugging Face names, for [`crate::model::weights::load_weights`].
    pub fn source(&self, cfg: &ModelConfig) -> GgufSource<'_> {
        GgufSource {
            file: self,
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
            weights: cfg.weights,
            norm_one_plus: cfg.norm_one_plus,
            post_norms: cfg.post_norms,
        }
    }
}

/// What must be done to a GGUF tensor to get the Hugging Face one.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fix {
    None,
    /// Undo llama.cpp's row permutation of llama's q/k projections (over this many heads).
    Unpermute(usize),
    /// GPT-2's Conv1D weights are `[in, out]` in transformers, `[out, in]` in GGUF.
    Transpose,
    /// Gemma's RMSNorm weights are stored as `1 + w`.
    MinusOne,
}

/// Serves the Hugging Face tensor names of a GGUF file.
pub struct GgufSource<'a> {
    file: &'a GgufFile,
    n_heads: usize,
    n_kv_heads: usize,
    /// The config's family flags: which names are asked for, and how norms are stored.
    weights: WeightLayout,
    norm_one_plus: bool,
    post_norms: bool,
}

impl GgufSource<'_> {
    /// The GGUF name of a Hugging Face tensor and how to convert it.
    fn map(&self, hf: &str) -> Option<(String, Fix)> {
        let (stem, kind) = hf.rsplit_once('.')?;
        if kind != "weight" && kind != "bias" {
            return None;
        }
        let norm_fix = if self.norm_one_plus && kind == "weight" {
            Fix::MinusOne
        } else {
            Fix::None
        };
        let top = |name: &str, fix: Fix| Some((format!("{name}.{kind}"), fix));
        if self.weights == WeightLayout::Gpt2 {
            match stem {
                "wte" => return top("token_embd", Fix::None),
                "wpe" => return top("position_embd", Fix::None),
                "ln_f" => return top("output_norm", Fix::None),
                "lm_head" => return top("output", Fix::None),
                _ => {}
            }
            let rest = stem.strip_prefix("h.")?;
            let (layer, part) = rest.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let conv = if kind == "weight" {
                Fix::Transpose
            } else {
                Fix::None
            };
            let (name, fix) = match part {
                "ln_1" => ("attn_norm", Fix::None),
                "ln_2" => ("ffn_norm", Fix::None),
                "attn.c_attn" => ("attn_qkv", conv),
                "attn.c_proj" => ("attn_output", conv),
                "mlp.c_fc" => ("ffn_up", conv),
                "mlp.c_proj" => ("ffn_down", conv),
                _ => return None,
            };
            return Some((format!("blk.{layer}.{name}.{kind}"), fix));
        }
        match stem {
            "model.embed_tokens" => return top("token_embd", Fix::None),
            "model.norm" => return top("output_norm", norm_fix),
            "lm_head" => return top("output", Fix::None),
            _ => {}
        }
        let rest = stem.strip_prefix("model.layers.")?;
        let (layer, part) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        // llama.cpp permutes q/k rows for the architectures it runs with interleaved rope.
        // (transformers undoes it for `llama` files only, so a `mistral` one is not permuted.)
        let permuted = self.file.arch() == "llama";
        let (name, fix) = match part {
            "input_layernorm" => ("attn_norm", norm_fix),
            "post_attention_layernorm" if self.post_norms => ("post_attention_norm", norm_fix),
            "post_attention_layernorm" => ("ffn_norm", norm_fix),
            "pre_feedforward_layernorm" => ("ffn_norm", norm_fix),
            "post_feedforward_layernorm" => ("post_ffw_norm", norm_fix),
            "self_attn.q_proj" if permuted => ("attn_q", Fix::Unpermute(self.n_heads)),
            "self_attn.k_proj" if permuted => ("attn_k", Fix::Unpermute(self.n_kv_heads)),
            "self_attn.q_proj" => ("attn_q", Fix::None),
            "self_attn.k_proj" => ("attn_k", Fix::None),
            "self_attn.v_proj" => ("attn_v", Fix::None),
            "self_attn.o_proj" => ("attn_output", Fix::None),
            "self_attn.qkv_proj" => ("attn_qkv", Fix::None),
            "self_attn.q_norm" => ("attn_q_norm", norm_fix),
            "self_attn.k_norm" => ("attn_k_norm", norm_fix),
            "mlp.gate_proj" => ("ffn_gate", Fix::None),
            "mlp.up_proj" => ("ffn_up", Fix::None),
            "mlp.gate_up_proj" => ("ffn_up", Fix::None),
            "mlp.down_proj" => ("ffn_down", Fix::None),
            _ => return None,
        };
        Some((format!("blk.{layer}.{name}.{kind}"), fix))
    }
}

impl TensorSource for GgufSource<'_> {
    fn get(&self, hf: &str) -> Result<Tensor> {
        let Some((name, fix)) = self.map(hf).filter(|(n, _)| self.file.has_tensor(n)) else {
            let gguf = self.map(hf).map(|(n, _)| n).unwrap_or_else(|| "?".into());
            return Err(self.file.err(&format!(
                "has no tensor `{gguf}` (for `{hf}`); it does not match its `{}` architecture",
                self.file.arch()
            )));
        };
        let t = self.file.read(&name)?;
        let bad_shape = || {
            self.file.err(&format!(
                "is inconsistent: tensor `{name}` has shape {:?}, which does not fit {} heads",
                t.dims(),
                match fix {
                    Fix::Unpermute(n) => n,
                    _ => 0,
                }
            ))
        };
        Ok(match fix {
            Fix::None => t,
            Fix::MinusOne => (t - 1.0)?,
            Fix::Transpose => t.t()?.contiguous()?,
            Fix::Unpermute(n) => {
                let rows = t.dims().first().copied().unwrap_or(0);
                if n == 0 || rows % (2 * n) != 0 {
                    return Err(bad_shape());
                }
                let half = rows / n / 2;
                match t.dims() {
                    [_, cols] => t
                        .reshape((n, half, 2, *cols))?
                        .transpose(1, 2)?
                        .contiguous()?
                        .reshape((rows, *cols))?,
                    [_] => t
                        .reshape((n, half, 2))?
                        .transpose(1, 2)?
                        .contiguous()?
                        .reshape(rows)?,
                    _ => return Err(bad_shape()),
                }
            }
        })
    }

    fn contains(&self, hf: &str) -> bool {
        self.map(hf)
            .map(|(n, _)| self.file.has_tensor(&n))
            .unwrap_or(false)
    }
}
