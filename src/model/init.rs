//! Building weights from scratch (random benchmark models, training) under canonical names.

use candle_core::Tensor;

use super::config::{ModelConfig, NormKind};
use super::weights::{AttnW, BlockW, LinearW, MlpW, NormW, Weight, Weights};
use crate::error::Result;

/// How a fresh tensor is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Normal(f64),
    Zeros,
    /// ones for ordinary norms; zeros for Gemma's `(1 + w)` norms
    NormScale,
}

/// Makes one tensor: `(canonical_name, shape, init)`.
pub type MakeTensor<'a> = dyn FnMut(&str, &[usize], Init) -> Result<Tensor> + 'a;

/// Make every weight of `cfg` with `make(canonical_name, shape, init)`.
pub fn init_weights(cfg: &ModelConfig, make: &mut MakeTensor) -> Result<Weights> {
    let (d, h, kv, dh, f) = (
        cfg.d_model,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.d_head,
        cfg.d_mlp,
    );
    let std = 0.02;
    let proj_std = 0.02 / (2.0 * cfg.n_layers as f64).sqrt();
    let mut lin = |name: &str, out: usize, inp: usize, bias: bool, s: f64| -> Result<LinearW> {
        Ok(LinearW {
            w: Weight::Tensor(make(
                &format!("{name}.weight"),
                &[out, inp],
                Init::Normal(s),
            )?),
            b: if bias {
                Some(make(&format!("{name}.bias"), &[out], Init::Zeros)?)
            } else {
                None
            },
        })
    };
    let mut blocks_lin = Vec::new();
    for l in 0..cfg.n_layers {
        let p = format!("blocks.{l}");
        blocks_lin.push((
            lin(&format!("{p}.attn.q"), h * dh, d, cfg.qkv_bias, std)?,
            lin(&format!("{p}.attn.k"), kv * dh, d, cfg.qkv_bias, std)?,
            lin(&format!("{p}.attn.v"), kv * dh, d, cfg.qkv_bias, std)?,
            lin(&format!("{p}.attn.o"), d, h * dh, cfg.o_bias, proj_std)?,
            if cfg.gated_mlp {
                Some(lin(&format!("{p}.mlp.gate"), f, d, cfg.mlp_bias, std)?)
            } else {
                None
            },
            lin(&format!("{p}.mlp.up"), f, d, cfg.mlp_bias, std)?,
            lin(&format!("{p}.mlp.down"), d, f, cfg.mlp_bias, proj_std)?,
        ));
    }
    let layer_norm = cfg.norm == NormKind::LayerNorm;
    let mut norm = |name: &str, n: usize| -> Result<NormW> {
        Ok(NormW {
            w: make(&format!("{name}.weight"), &[n], Init::NormScale)?,
            b: if layer_norm {
                Some(make(&format!("{name}.bias"), &[n], Init::Zeros)?)
            } else {
                None
            },
        })
    };
    let mut blocks = Vec::new();
    for (l, (q, k, v, o, gate, up, down)) in blocks_lin.into_iter().enumerate() {
        let p = format!("blocks.{l}");
        blocks.push(BlockW {
            ln1: norm(&format!("{p}.ln1"), d)?,
            attn: AttnW {
                q,
                k,
                v,
                o,
                q_norm: if cfg.qk_norm {
                    Some(norm(&format!("{p}.attn.q_norm"), dh)?)
                } else {
                    None
                },
                k_norm: if cfg.qk_norm {
                    Some(norm(&format!("{p}.attn.k_norm"), dh)?)
                } else {
                    None
                },
            },
            attn_post: if cfg.post_norms {
                Some(norm(&format!("{p}.attn_post"), d)?)
            } else {
                None
            },
            ln2: norm(&format!("{p}.ln2"), d)?,
            mlp: MlpW { gate, up, down },
            mlp_post: if cfg.post_norms {
                Some(norm(&format!("{p}.mlp_post"), d)?)
            } else {
                None
            },
        });
    }
    let ln_final = norm("ln_final", d)?;
    let embed = make("embed.weight", &[cfg.vocab_size, d], Init::Normal(std))?;
    let pos_embed = match cfg.positional {
        super::config::Positional::Learned => Some(make(
            "pos_embed.weight",
            &[cfg.n_ctx, d],
            Init::Normal(0.01),
        )?),
        _ => None,
    };
    let unembed = if cfg.tie_embeddings {
        embed.clone()
    } else {
        make("unembed.weight", &[cfg.vocab_size, d], Init::Normal(std))?
    };
    Ok(Weights {
        embed,
        pos_embed,
        blocks,
        ln_final,
        unembed,
    })
}
