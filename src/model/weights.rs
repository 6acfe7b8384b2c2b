//! Per-family weight maps: checkpoint tensor names → the canonical transformer's weights.
//!
//! Adding an architecture means adding a map here and a few flags in `config.rs`.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use super::config::{ModelConfig, NormKind, WeightLayout};
use super::strips::Strips;
use crate::error::{GimError, Result};

/// `y = x @ wᵀ + b`, `w: [out, in]`.
#[derive(Clone, Debug)]
pub struct LinearW {
    pub w: Weight,
    pub b: Option<Tensor>,
}

/// A linear layer's weight `[out, in]`: a tensor, or (f32 on the CPU, for inference) in strips of
/// 64 columns for gim's products (`strips.rs`).
#[derive(Clone, Debug)]
pub enum Weight {
    Tensor(Tensor),
    Strips(Arc<Strips>),
}

impl Weight {
    /// `(out, in)`.
    pub fn dims(&self) -> candle_core::Result<(usize, usize)> {
        match self {
            Weight::Tensor(t) => t.dims2(),
            Weight::Strips(s) => Ok(s.dims()),
        }
    }

    pub fn elem_count(&self) -> usize {
        match self {
            Weight::Tensor(t) => t.elem_count(),
            Weight::Strips(s) => s.dims().0 * s.dims().1,
        }
    }

    /// The weight as a `[out, in]` tensor: itself, or a copy out of the strips.
    pub fn tensor(&self) -> candle_core::Result<Tensor> {
        match self {
            Weight::Tensor(t) => Ok(t.clone()),
            Weight::Strips(s) => s.tensor(),
        }
    }

    /// Into strips where gim's products run on it ([`Strips::of`]); else left as it is.
    fn pack(&mut self) -> Result<()> {
        if let Weight::Tensor(t) = self {
            if let Some(s) = Strips::of(t)? {
                *self = Weight::Strips(Arc::new(s));
            }
        }
        Ok(())
    }
}

impl Weights {
    /// Every linear layer's weight in strips where gim's products run on it (f32 weights on the
    /// CPU that autograd does not train), one layer at a time (each row-major copy is dropped as
    /// its strips are made).
    pub fn pack(&mut self) -> Result<()> {
        for b in &mut self.blocks {
            let a = &mut b.attn;
            let m = &mut b.mlp;
            let mut all = vec![
                &mut a.q,
                &mut a.k,
                &mut a.v,
                &mut a.o,
                &mut m.up,
                &mut m.down,
            ];
            if let Some(g) = m.gate.as_mut() {
                all.push(g);
            }
            for l in all {
                l.w.pack()?;
            }
        }
        Ok(())
    }
}

/// LayerNorm (weight + bias) or RMSNorm (weight; Gemma stores `w` for a `(1 + w)` scale).
#[derive(Clone, Debug)]
pub struct NormW {
    pub w: Tensor,
    pub b: Option<Tensor>,
}

#[derive(Clone, Debug)]
pub struct AttnW {
    pub q: LinearW,
    pub k: LinearW,
    pub v: LinearW,
    pub o: LinearW,
    pub q_norm: Option<NormW>,
    pub k_norm: Option<NormW>,
}

/// Gated: `down(act(gate(x)) * up(x))`; plain: `down(act(up(x)))` (`gate` is `None`).
#[derive(Clone, Debug)]
pub struct MlpW {
    pub gate: Option<LinearW>,
    pub up: LinearW,
    pub down: LinearW,
}

#[derive(Clone, Debug)]
pub struct BlockW {
    pub ln1: NormW,
    pub attn: AttnW,
    pub attn_post: Option<NormW>,
    pub ln2: NormW,
    pub mlp: MlpW,
    pub mlp_post: Option<NormW>,
}

#[derive(Clone, Debug)]
pub struct Weights {
    pub embed: Tensor,
    pub pos_embed: Option<Tensor>,
    pub blocks: Vec<BlockW>,
    pub ln_final: NormW,
    /// `[vocab, d_model]`; the same tensor as `embed` when tied.
    pub unembed: Tensor,
}

/// Where tensors come from: a name → tensor lookup (safetensors files, or a VarMap when training).
pub trait TensorSource {
    fn get(&self, name: &str) -> Result<Tensor>;
    fn contains(&self, name: &str) -> bool;
}

struct Loader<'a> {
    src: &'a dyn TensorSource,
    prefix: String,
    dtype: DType,
    device: &'a Device,
}

impl Loader<'_> {
    fn raw(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{}", self.prefix, name);
        let t = self.src.get(&full)?;
        if t.dims() != shape {
            return Err(GimError::Load(format!(
                "tensor `{full}` has shape {:?} but the config implies {:?}; the checkpoint does not match its config (config.json or GGUF metadata)",
                t.dims(),
                shape
            )));
        }
        Ok(t.to_device(self.device)?.to_dtype(self.dtype)?)
    }
    fn has(&self, name: &str) -> bool {
        self.src.contains(&format!("{}{}", self.prefix, name))
    }
    fn linear(&self, name: &str, out: usize, inp: usize, bias: bool) -> Result<LinearW> {
        Ok(LinearW {
            w: Weight::Tensor(self.raw(&format!("{name}.weight"), &[out, inp])?),
            b: if bias {
                Some(self.raw(&format!("{name}.bias"), &[out])?)
            } else {
                None
            },
        })
    }
    fn norm(&self, name: &str, d: usize, kind: NormKind) -> Result<NormW> {
        Ok(NormW {
            w: self.raw(&format!("{name}.weight"), &[d])?,
            b: if kind == NormKind::LayerNorm {
                Some(self.raw(&format!("{name}.bias"), &[d])?)
            } else {
                None
            },
        })
    }
}

/// Split rows `[start, start+len)` of a weight (and bias) — fused projections.
fn rows(l: &LinearW, start: usize, len: usize) -> Result<LinearW> {
    Ok(LinearW {
        w: Weight::Tensor(l.w.tensor()?.narrow(0, start, len)?.contiguous()?),
        b: match &l.b {
            Some(b) => Some(b.narrow(0, start, len)?.contiguous()?),
            None => None,
        },
    })
}

/// Load the canonical weights for `cfg` from `src`, the linear layers' in strips where gim's
/// products run on them ([`Weights::pack`]).
pub fn load_weights(
    cfg: &ModelConfig,
    src: &dyn TensorSource,
    dtype: DType,
    device: &Device,
) -> Result<Weights> {
    let mut w = if cfg.weights == WeightLayout::Gpt2 {
        gpt2(cfg, src, dtype, device)?
    } else {
        families(cfg, src, dtype, device)?
    };
    w.pack()?;
    Ok(w)
}

/// Every family's weights but GPT-2's, row-major.
fn families(
    cfg: &ModelConfig,
    src: &dyn TensorSource,
    dtype: DType,
    device: &Device,
) -> Result<Weights> {
    let ld = Loader {
        src,
        prefix: "model.".into(),
        dtype,
        device,
    };
    let (d, h, kv, dh, f) = (
        cfg.d_model,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.d_head,
        cfg.d_mlp,
    );
    let rms = NormKind::RmsNorm;
    let embed = ld.raw("embed_tokens.weight", &[cfg.vocab_size, d])?;
    let mut blocks = Vec::with_capacity(cfg.n_layers);
    for l in 0..cfg.n_layers {
        let p = format!("layers.{l}");
        let a = format!("{p}.self_attn");
        let (q, k, v) = if cfg.weights == WeightLayout::Fused {
            let qkv = ld.linear(&format!("{a}.qkv_proj"), (h + 2 * kv) * dh, d, cfg.qkv_bias)?;
            (
                rows(&qkv, 0, h * dh)?,
                rows(&qkv, h * dh, kv * dh)?,
                rows(&qkv, (h + kv) * dh, kv * dh)?,
            )
        } else {
            (
                ld.linear(&format!("{a}.q_proj"), h * dh, d, cfg.qkv_bias)?,
                ld.linear(&format!("{a}.k_proj"), kv * dh, d, cfg.qkv_bias)?,
                ld.linear(&format!("{a}.v_proj"), kv * dh, d, cfg.qkv_bias)?,
            )
        };
        let attn = AttnW {
            q,
            k,
            v,
            o: ld.linear(&format!("{a}.o_proj"), d, h * dh, cfg.o_bias)?,
            q_norm: if cfg.qk_norm {
                Some(ld.norm(&format!("{a}.q_norm"), dh, rms)?)
            } else {
                None
            },
            k_norm: if cfg.qk_norm {
                Some(ld.norm(&format!("{a}.k_norm"), dh, rms)?)
            } else {
                None
            },
        };
        let m = format!("{p}.mlp");
        let (gate, up) = if cfg.weights == WeightLayout::Fused {
            let gu = ld.linear(&format!("{m}.gate_up_proj"), 2 * f, d, cfg.mlp_bias)?;
            (rows(&gu, 0, f)?, rows(&gu, f, f)?)
        } else {
            (
                ld.linear(&format!("{m}.gate_proj"), f, d, cfg.mlp_bias)?,
                ld.linear(&format!("{m}.up_proj"), f, d, cfg.mlp_bias)?,
            )
        };
        let mlp = MlpW {
            gate: Some(gate),
            up,
            down: ld.linear(&format!("{m}.down_proj"), d, f, cfg.mlp_bias)?,
        };
        let block = if cfg.post_norms {
            BlockW {
                ln1: ld.norm(&format!("{p}.input_layernorm"), d, rms)?,
                attn,
                attn_post: Some(ld.norm(&format!("{p}.post_attention_layernorm"), d, rms)?),
                ln2: ld.norm(&format!("{p}.pre_feedforward_layernorm"), d, rms)?,
                mlp,
                mlp_post: Some(ld.norm(&format!("{p}.post_feedforward_layernorm"), d, rms)?),
            }
        } else {
            BlockW {
                ln1: ld.norm(&format!("{p}.input_layernorm"), d, rms)?,
                attn,
                attn_post: None,
                ln2: ld.norm(&format!("{p}.post_attention_layernorm"), d, rms)?,
                mlp,
                mlp_post: None,
            }
        };
        blocks.push(block);
    }
    let ln_final = ld.norm("norm", d, rms)?;
    let top = Loader {
        src,
        prefix: String::new(),
        dtype,
        device,
    };
    let unembed = if top.has("lm_head.weight") && !cfg.tie_embeddings {
        top.raw("lm_head.weight", &[cfg.vocab_size, d])?
    } else if cfg.tie_embeddings {
        embed.clone()
    } else {
        return Err(GimError::Load(
            "the checkpoint has no `lm_head.weight` and config.json says tie_word_embeddings is false".into(),
        ));
    };
    Ok(Weights {
        embed,
        pos_embed: None,
        blocks,
        ln_final,
        unembed,
    })
}

/// GPT-2: Conv1D weights are stored `[in, out]`; keys with or without the `transformer.` prefix.
fn gpt2(
    cfg: &ModelConfig,
    src: &dyn TensorSource,
    dtype: DType,
    device: &Device,
) -> Result<Weights> {
    let prefix = if src.contains("transformer.wte.weight") {
        "transformer."
    } else {
        ""
    };
    let ld = Loader {
        src,
        prefix: prefix.into(),
        dtype,
        device,
    };
    let d = cfg.d_model;
    let f = cfg.d_mlp;
    let ln = NormKind::LayerNorm;
    let conv = |name: &str, inp: usize, out: usize| -> Result<LinearW> {
        Ok(LinearW {
            w: Weight::Tensor(
                ld.raw(&format!("{name}.weight"), &[inp, out])?
                    .t()?
                    .contiguous()?,
            ),
            b: Some(ld.raw(&format!("{name}.bias"), &[out])?),
        })
    };
    let embed = ld.raw("wte.weight", &[cfg.vocab_size, d])?;
    let pos_embed = ld.raw("wpe.weight", &[cfg.n_ctx, d])?;
    let mut blocks = Vec::with_capacity(cfg.n_layers);
    for l in 0..cfg.n_layers {
        let p = format!("h.{l}");
        let qkv = conv(&format!("{p}.attn.c_attn"), d, 3 * d)?;
        blocks.push(BlockW {
            ln1: ld.norm(&format!("{p}.ln_1"), d, ln)?,
            attn: AttnW {
                q: rows(&qkv, 0, d)?,
                k: rows(&qkv, d, d)?,
                v: rows(&qkv, 2 * d, d)?,
                o: conv(&format!("{p}.attn.c_proj"), d, d)?,
                q_norm: None,
                k_norm: None,
            },
            attn_post: None,
            ln2: ld.norm(&format!("{p}.ln_2"), d, ln)?,
            mlp: MlpW {
                gate: None,
                up: conv(&format!("{p}.mlp.c_fc"), d, f)?,
                down: conv(&format!("{p}.mlp.c_proj"), f, d)?,
            },
            mlp_post: None,
        });
    }
    let ln_final = ld.norm("ln_f", d, ln)?;
    let top = Loader {
        src,
        prefix: String::new(),
        dtype,
        device,
    };
    let unembed = if !cfg.tie_embeddings && top.has("lm_head.weight") {
        top.raw("lm_head.weight", &[cfg.vocab_size, d])?
    } else {
        embed.clone()
    };
    Ok(Weights {
        embed,
        pos_embed: Some(pos_embed),
        blocks,
        ln_final,
        unembed,
    })
}
