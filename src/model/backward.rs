//! An explicit backward pass with the GIM rules built in.
//!
//! The forward is the ordinary hooked forward (no autograd graph) with a cache of the hook points
//! the backward needs; the backward is written out op by op. It computes exactly what autograd
//! computes through `ops.rs` (tests compare the two on every family and rule set), but without
//! candle's per-node gradient bookkeeping, and it can hand out the gradient at any hook point
//! and at every receiver input (per head, for q, k and v separately) for edge attribution.

use std::collections::HashMap;

use candle_core::{DType, Tensor, D};

use super::config::{ModelConfig, NormKind, Positional};
use super::gemm::matmul;
use super::hooks::{Cache, HookPoint};
use super::kernels::{self, scale};
use super::layers::{lin, norm, position_ids, stack_groups, Rope};
use super::row_kernels;
use super::rules::GimRules;
use super::transpose;
use super::weights::{LinearW, NormW};
use super::{ForwardOpts, Positions, Transformer};
use crate::error::{GimError, Result};

/// What the backward should keep besides the embedding gradient.
#[derive(Debug, Clone, Copy, Default)]
pub struct Want {
    /// gradient at every hook_z, hook_attn_out, hook_mlp_out and hook_resid_pre
    pub nodes: bool,
    /// gradient at each receiver input: per-head q/k/v residual inputs and each MLP input
    pub receivers: bool,
}

/// The forward activations the backward reads.
pub struct Traced {
    pub acts: HashMap<HookPoint, Tensor>,
    pub positions: Positions,
    pub attention_mask: Option<Vec<Vec<u8>>>,
    pub rules: GimRules,
    pub shape: (usize, usize, usize),
    /// final-norm output at the selected positions `[b, n, d]`
    pub hidden: Tensor,
}

/// Gradients from one backward pass.
#[derive(Debug, Default)]
pub struct Grads {
    /// with respect to the token embeddings (unscaled) `[b, s, d]`
    pub embed: Option<Tensor>,
    pub at: HashMap<HookPoint, Tensor>,
    /// per layer: `[b, s, heads, d]` gradient at head h's query input (the residual stream
    /// before the layer norm), and likewise for key/value heads
    pub q_input: Vec<Tensor>,
    pub k_input: Vec<Tensor>,
    pub v_input: Vec<Tensor>,
    /// per layer: `[b, s, d]` gradient at the MLP's residual input (through its norm only)
    pub mlp_input: Vec<Tensor>,
    /// `[b, s, d]` gradient at the final residual stream (the logits receiver)
    pub logits_input: Option<Tensor>,
}

fn needed(cfg: &ModelConfig, p: HookPoint) -> bool {
    // Z, AttnOut and MlpOut are not needed by the backward itself but are the node activations
    // of circuit work; caching them keeps one traced forward enough.
    use HookPoint::*;
    match p {
        ResidPre(_) | Q(_) | K(_) | V(_) | AttnScores(_) | Pattern(_) | MlpIn(_) | MlpPre(_)
        | MlpUp(_) | MlpPost(_) | Z(_) | AttnOut(_) | MlpOut(_) => true,
        ResidPost(l) => l + 1 == cfg.n_layers,
        _ => false,
    }
}

impl Transformer {
    /// Forward without an autograd graph, keeping what [`Transformer::backward`] needs.
    pub fn forward_traced(
        &self,
        tok_embeds: &Tensor,
        rules: GimRules,
        positions: Positions,
        attention_mask: Option<Vec<Vec<u8>>>,
    ) -> Result<Traced> {
        let cfg = self.cfg.clone();
        let mut cache = Cache::new(move |p| needed(&cfg, p));
        let e = tok_embeds.detach();
        let mut opts = ForwardOpts {
            rules,
            hooks: Some(&mut cache),
            positions: positions.clone(),
            split_qkv_input: false,
            attention_mask: attention_mask.clone(),
            prefix: None,
        };
        let hidden = self.forward_hidden(&e, &mut opts)?;
        Ok(Traced {
            acts: cache.acts,
            positions,
            attention_mask,
            rules,
            shape: e.dims3()?,
            hidden,
        })
    }

    /// Backpropagate `d_hidden` (gradient at the final-norm output of the selected positions)
    /// through the whole model with the traced rules.
    pub fn backward(&self, t: &Traced, d_hidden: &Tensor, want: Want) -> Result<Grads> {
        let cfg = &self.cfg;
        let (b, s, d) = t.shape;
        let get = |p: HookPoint| -> Result<&Tensor> {
            t.acts
                .get(&p)
                .ok_or_else(|| GimError::input(format!("internal: {p} was not traced")))
        };
        let freeze = t.rules.freeze_norm;
        let dtype = d_hidden.dtype();
        // final norm, at the selected positions
        let last = get(HookPoint::ResidPost(cfg.n_layers - 1))?;
        let (x_sel, scatter): (Tensor, Box<dyn Fn(Tensor) -> Result<Tensor>>) = match &t.positions {
            Positions::All => (last.clone(), Box::new(Ok)),
            Positions::Last => (
                last.narrow(1, s - 1, 1)?,
                Box::new(move |g: Tensor| -> Result<Tensor> {
                    if s == 1 {
                        return Ok(g);
                    }
                    let z = Tensor::zeros((b, s - 1, d), g.dtype(), g.device())?;
                    Ok(Tensor::cat(&[&z, &g], 1)?)
                }),
            ),
            Positions::At(ps) => {
                let idx = Tensor::from_vec(
                    ps.iter().map(|&p| p as u32).collect::<Vec<_>>(),
                    ps.len(),
                    &self.device,
                )?;
                let x = last.index_select(&idx, 1)?;
                (
                    x,
                    Box::new(move |g: Tensor| -> Result<Tensor> {
                        let z = Tensor::zeros((b, s, d), g.dtype(), g.device())?;
                        Ok(z.index_add(&idx, &g, 1)?)
                    }),
                )
            }
        };
        let mut d_resid = scatter(norm_bwd(cfg, &self.w.ln_final, &x_sel, d_hidden, freeze)?)?;
        let mut grads = Grads::default();
        if want.receivers {
            grads.logits_input = Some(d_resid.clone());
        }
        let positions = position_ids(b, s, t.attention_mask.as_deref())?;
        let rope = match &cfg.positional {
            Positional::Rotary {
                rotary_dim,
                inv_freq,
            } => Some(Rope::new(
                &positions,
                inv_freq,
                *rotary_dim,
                dtype,
                &self.device,
            )?),
            Positional::Learned => None,
        };
        let n = cfg.n_layers;
        let mut q_in = Vec::new();
        let mut k_in = Vec::new();
        let mut v_in = Vec::new();
        let mut mlp_in = Vec::new();
        for l in (0..n).rev() {
            let lb = LayerBwd {
                m: self,
                l,
                get: &get,
                rules: t.rules,
                rope: rope.as_ref(),
                want,
            };
            let (d_pre, recv) = lb.run(d_resid, &mut grads.at)?;
            if let Some((q, k, v, mi)) = recv {
                q_in.push(q);
                k_in.push(k);
                v_in.push(v);
                mlp_in.push(mi);
            }
            d_resid = d_pre;
        }
        q_in.reverse();
        k_in.reverse();
        v_in.reverse();
        mlp_in.reverse();
        grads.q_input = q_in;
        grads.k_input = k_in;
        grads.v_input = v_in;
        grads.mlp_input = mlp_in;
        // resid_pre(0) = embed·scale (+ positions)
        let d_embed = match cfg.embed_scale {
            Some(sc) => (d_resid.to_dtype(DType::F64)? * sc)?.to_dtype(dtype)?,
            None => d_resid,
        };
        grads.embed = Some(d_embed);
        Ok(grads)
    }
}

struct LayerBwd<'a, F: Fn(HookPoint) -> Result<&'a Tensor>> {
    m: &'a Transformer,
    l: usize,
    get: &'a F,
    rules: GimRules,
    rope: Option<&'a Rope>,
    want: Want,
}

type Receivers = (Tensor, Tensor, Tensor, Tensor);

impl<'a, F: Fn(HookPoint) -> Result<&'a Tensor>> LayerBwd<'a, F> {
    fn run(
        &self,
        d_post: Tensor,
        at: &mut HashMap<HookPoint, Tensor>,
    ) -> Result<(Tensor, Option<Receivers>)> {
        let cfg = &self.m.cfg;
        let l = self.l;
        let w = &self.m.w.blocks[l];
        let get = self.get;
        let freeze = self.rules.freeze_norm;
        let (b, s, _) = d_post.dims3()?;
        let (h, kv, dh) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head);
        if self.want.nodes {
            at.insert(HookPoint::ResidPost(l), d_post.clone());
            at.insert(HookPoint::MlpOut(l), d_post.clone());
        }
        // ---- MLP
        let post = get(HookPoint::MlpPost(l))?;
        let d_raw = match &w.mlp_post {
            Some(nw) => norm_bwd(cfg, nw, &lin(post, &w.mlp.down)?, &d_post, freeze)?,
            None => d_post.clone(),
        };
        let d_hidden = lin_bwd(&d_raw, &w.mlp.down)?;
        let pre = get(HookPoint::MlpPre(l))?;
        let dx2 = match &w.mlp.gate {
            Some(gate) => {
                let u = get(HookPoint::MlpUp(l))?;
                let (d_g, d_u) = kernels::gated_bwd(
                    cfg.act,
                    pre,
                    u,
                    &d_hidden,
                    self.rules.gate_scale,
                    self.rules.up_scale,
                )?;
                kernels::add(&lin_bwd(&d_g, gate)?, &lin_bwd(&d_u, &w.mlp.up)?)?
            }
            None => lin_bwd(&kernels::act_bwd(cfg.act, pre, &d_hidden)?, &w.mlp.up)?,
        };
        let mlp_x = get(HookPoint::MlpIn(l))?;
        let d_mlp_in = norm_bwd(cfg, &w.ln2, mlp_x, &dx2, freeze)?;
        let d_mid = kernels::add(&d_post, &d_mlp_in)?;
        if self.want.nodes {
            at.insert(HookPoint::ResidMid(l), d_mid.clone());
            at.insert(HookPoint::AttnOut(l), d_mid.clone());
        }
        // ---- attention
        let resid_pre = get(HookPoint::ResidPre(l))?;
        let d_attn_raw = match &w.attn_post {
            Some(nw) => {
                let z = get(HookPoint::Z(l))?.reshape((b, s, h * dh))?;
                norm_bwd(cfg, nw, &lin(&z, &w.attn.o)?, &d_mid, freeze)?
            }
            None => d_mid.clone(),
        };
        let dz = lin_bwd(&d_attn_raw, &w.attn.o)?.reshape((b, s, h, dh))?;
        if self.want.nodes {
            at.insert(HookPoint::Z(l), dz.clone());
        }
        let dz = transpose::contiguous(&dz.transpose(1, 2)?)?; // [b, h, s, dh]
        let pattern = get(HookPoint::Pattern(l))?;
        let scores = get(HookPoint::AttnScores(l))?;
        let q = transpose::contiguous(&get(HookPoint::Q(l))?.transpose(1, 2)?)?;
        let k = transpose::contiguous(&get(HookPoint::K(l))?.transpose(1, 2)?)?; // [b, kv, s, dh]
        let v = transpose::contiguous(&get(HookPoint::V(l))?.transpose(1, 2)?)?;
        // a group's query heads stacked as rows (`stack_groups`): the products with their one
        // key/value head, and, transposed, the sums over the group's heads
        let dz_g = stack_groups(&dz, kv)?;
        let d_pattern = matmul(&dz_g, &v.t()?)?.reshape((b, h, s, s))?;
        let dv = matmul(&stack_groups(pattern, kv)?.t()?, &dz_g)?;
        // the attention scale folds into the softmax backward unless soft-capping comes between
        let (inner, outer) = match cfg.attn_softcap {
            Some(_) => (1.0, cfg.attn_scale),
            None => (cfg.attn_scale, 1.0),
        };
        let d_scores = super::ops::tempered_softmax_bwd(
            scores,
            pattern,
            &d_pattern,
            self.rules.temperature(),
            inner,
        )?;
        let d_scores = match cfg.attn_softcap {
            Some(c) => {
                let t = (scores.to_dtype(super::ops::compute_dtype(scores.dtype()))? / c)?
                    .clamp(-1.0, 1.0)?;
                let f = (1.0 - t.sqr()?)?.to_dtype(d_scores.dtype())?;
                ((d_scores * f)? * outer)?
            }
            None => d_scores,
        };
        let ds_g = stack_groups(&d_scores, kv)?;
        let dq = matmul(&ds_g, &k)?.reshape((b, h, s, dh))?;
        let dk = matmul(&ds_g.t()?, &stack_groups(&q, kv)?)?; // [b, kv, s, dh]
        let dq = scale(&dq, self.rules.q_scale)?.transpose(1, 2)?; // [b, s, h, dh]
        let dk = scale(&dk, self.rules.k_scale)?.transpose(1, 2)?;
        let dv = transpose::contiguous(&scale(&dv, self.rules.v_scale)?.transpose(1, 2)?)?;
        if self.want.nodes {
            at.insert(HookPoint::Q(l), dq.contiguous()?);
            at.insert(HookPoint::K(l), dk.contiguous()?);
            at.insert(HookPoint::V(l), dv.clone());
        }
        let (mut dq, mut dk) = match self.rope {
            Some(r) => (
                r.apply_transpose(&transpose::contiguous(&dq)?)?,
                r.apply_transpose(&transpose::contiguous(&dk)?)?,
            ),
            None => (transpose::contiguous(&dq)?, transpose::contiguous(&dk)?),
        };
        if w.attn.q_norm.is_some() || w.attn.k_norm.is_some() {
            let x1 = norm(cfg, &w.ln1, resid_pre, freeze)?;
            if let Some(qn) = &w.attn.q_norm {
                let q_raw = lin(&x1, &w.attn.q)?.reshape((b, s, h, dh))?;
                dq = norm_bwd(cfg, qn, &q_raw, &dq, freeze)?;
            }
            if let Some(kn) = &w.attn.k_norm {
                let k_raw = lin(&x1, &w.attn.k)?.reshape((b, s, kv, dh))?;
                dk = norm_bwd(cfg, kn, &k_raw, &dk, freeze)?;
            }
        }
        let dq_flat = dq.reshape((b, s, h * dh))?;
        let dk_flat = dk.reshape((b, s, kv * dh))?;
        let dv_flat = dv.reshape((b, s, kv * dh))?;
        let receivers = if self.want.receivers {
            let per_head = |dx: &Tensor, lw: &LinearW, n: usize| -> Result<Tensor> {
                // [b, s, n, dh] @ [n, dh, d] → [b, s, n, d], then through the norm (per position)
                let wv = lw.w.tensor()?.reshape((n, dh, cfg.d_model))?;
                let g = matmul(&dx.permute((2, 0, 1, 3))?.reshape((n, b * s, dh))?, &wv)?;
                let g = g
                    .reshape((n, b, s, cfg.d_model))?
                    .permute((1, 2, 0, 3))?
                    .contiguous()?;
                // the norm statistics are per position: x stays [b, s, 1, d] and broadcasts
                norm_bwd(cfg, &w.ln1, &resid_pre.unsqueeze(2)?, &g, freeze)
            };
            Some((
                per_head(&dq, &w.attn.q, h)?,
                per_head(&dk, &w.attn.k, kv)?,
                per_head(&dv, &w.attn.v, kv)?,
                d_mlp_in,
            ))
        } else {
            None
        };
        let dx1 = kernels::add(
            &kernels::add(
                &lin_bwd(&dq_flat, &w.attn.q)?,
                &lin_bwd(&dk_flat, &w.attn.k)?,
            )?,
            &lin_bwd(&dv_flat, &w.attn.v)?,
        )?;
        let d_pre = kernels::add(&d_mid, &norm_bwd(cfg, &w.ln1, resid_pre, &dx1, freeze)?)?;
        if self.want.nodes {
            at.insert(HookPoint::ResidPre(l), d_pre.clone());
        }
        Ok((d_pre, receivers))
    }
}

/// Input gradient of a linear layer (see [`super::ops::input_grad`]).
fn lin_bwd(dy: &Tensor, l: &LinearW) -> Result<Tensor> {
    Ok(super::ops::input_grad(dy, &l.w)?)
}

/// Backward of [`norm`]; `freeze` treats the statistic as a constant (the GIM rule). `x` may
/// broadcast against `dy` (one residual stream read by several heads).
fn norm_bwd(cfg: &ModelConfig, w: &NormW, x: &Tensor, dy: &Tensor, freeze: bool) -> Result<Tensor> {
    let spec = row_kernels::NormSpec::of(cfg, freeze);
    if let Some(dx) = row_kernels::norm_bwd(spec, x, dy, &w.w)? {
        return Ok(dx);
    }
    let dtype = dy.dtype();
    let ft = super::ops::compute_dtype(dtype);
    let xf = x.to_dtype(ft)?;
    let g = dy.to_dtype(ft)?;
    let ww = w.w.to_dtype(ft)?;
    let g = if cfg.norm_one_plus {
        g.broadcast_mul(&(ww + 1.0)?)?
    } else {
        g.broadcast_mul(&ww)?
    };
    let eps = cfg.norm_eps;
    let dx = match cfg.norm {
        NormKind::RmsNorm => {
            let inv = (xf.sqr()?.mean_keepdim(D::Minus1)? + eps)?
                .sqrt()?
                .recip()?;
            if freeze {
                g.broadcast_mul(&inv)?
            } else {
                let xhat = xf.broadcast_mul(&inv)?;
                let m = g.broadcast_mul(&xhat)?.mean_keepdim(D::Minus1)?;
                (g - xhat.broadcast_mul(&m)?)?.broadcast_mul(&inv)?
            }
        }
        NormKind::LayerNorm => {
            let xc = xf.broadcast_sub(&xf.mean_keepdim(D::Minus1)?)?;
            let inv = (xc.sqr()?.mean_keepdim(D::Minus1)? + eps)?
                .sqrt()?
                .recip()?;
            let gc = g.broadcast_sub(&g.mean_keepdim(D::Minus1)?)?;
            if freeze {
                gc.broadcast_mul(&inv)?
            } else {
                let xhat = xc.broadcast_mul(&inv)?;
                let m = g.broadcast_mul(&xhat)?.mean_keepdim(D::Minus1)?;
                (gc - xhat.broadcast_mul(&m)?)?.broadcast_mul(&inv)?
            }
        }
    };
    Ok(dx.to_dtype(dtype)?)
}
