//! The one hooked decoder-only transformer, driven by [`ModelConfig`].
//!
//! Built only from differentiable candle primitives plus the custom ops of `ops.rs`, so the
//! same forward serves inference, GIM attribution (embedding `Var` as input) and training
//! (weights as `Var`s).

use candle_core::{DType, Device, Tensor};

use super::config::{ModelConfig, Positional};
use super::gemm::matmul;
use super::hooks::{Cache, Hook, HookPoint};
use super::kernels;
use super::layers::{
    lin, min_value, norm, per_head_linear, position_ids, stack_groups, Masks, Rope,
};
use super::ops::{linear, scale_grad, tempered_softmax};
use super::rules::GimRules;
use super::transpose;
use super::weights::{BlockW, Weights};
use crate::error::{GimError, Result};

/// Which positions reach the final norm and unembedding.
#[derive(Debug, Clone, PartialEq)]
pub enum Positions {
    All,
    Last,
    /// the same positions for every batch row
    At(Vec<usize>),
}

/// Options of one forward pass.
pub struct ForwardOpts<'a> {
    pub rules: GimRules,
    pub hooks: Option<&'a mut dyn Hook>,
    /// Which positions are returned.
    pub positions: Positions,
    /// Feed each head's q/k/v from its own copy of the residual stream (`hook_q_input` etc.), so
    /// gradients and patches can address one head's input (edge attribution).
    pub split_qkv_input: bool,
    /// `[b, s]` 1 = token, 0 = padding (left padding); `None` = no padding.
    pub attention_mask: Option<Vec<Vec<u8>>>,
    /// Keys and values of positions before the given embeddings, computed once on a prompt
    /// these rows share a prefix with: the embeddings are then positions `offset..`.
    pub prefix: Option<&'a Prefix>,
}

/// A shared prompt prefix's keys and values, per layer `[1, offset, kv_heads, d_head]` as seen at
/// `hook_k` / `hook_v` (after q/k-norm and rotary). Rows that differ from a prompt only from
/// position `offset` on need not recompute the positions before it (occlusion).
pub struct Prefix {
    pub offset: usize,
    pub kv: Vec<(Tensor, Tensor)>,
}

impl Prefix {
    /// The first `offset` positions of the keys and values cached at every layer's `hook_k` and
    /// `hook_v` of a one-row forward.
    pub fn from_cache(cache: &Cache, n_layers: usize, offset: usize) -> Result<Self> {
        let mut kv = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let k = cache.get(HookPoint::K(l))?.narrow(1, 0, offset)?;
            let v = cache.get(HookPoint::V(l))?.narrow(1, 0, offset)?;
            kv.push((k, v));
        }
        Ok(Prefix { offset, kv })
    }
}

impl Default for ForwardOpts<'_> {
    fn default() -> Self {
        ForwardOpts {
            rules: GimRules::off(),
            hooks: None,
            positions: Positions::All,
            split_qkv_input: false,
            attention_mask: None,
            prefix: None,
        }
    }
}

/// A loaded model: canonical config and weights on one device.
pub struct Transformer {
    pub cfg: ModelConfig,
    pub w: Weights,
    pub device: Device,
    pub dtype: DType,
}

struct Ctx<'a, 'h> {
    cfg: &'a ModelConfig,
    rules: GimRules,
    hooks: Option<&'a mut (dyn Hook + 'h)>,
    split: bool,
    prefix: Option<&'a Prefix>,
}

impl Ctx<'_, '_> {
    fn hook(&mut self, p: HookPoint, x: Tensor) -> Result<Tensor> {
        match self.hooks.as_deref_mut() {
            Some(h) if h.wants(p) => h.apply(p, x),
            _ => Ok(x),
        }
    }
}

impl Transformer {
    pub fn new(cfg: ModelConfig, w: Weights, device: Device, dtype: DType) -> Self {
        Transformer {
            cfg,
            w,
            device,
            dtype,
        }
    }

    /// Token embeddings `[b, s, d]` (unscaled table rows) for ids `[b][s]`.
    pub fn embed_ids(&self, ids: &[Vec<u32>]) -> Result<Tensor> {
        let b = ids.len();
        let s = ids.first().map(|r| r.len()).unwrap_or(0);
        if ids.iter().any(|r| r.len() != s) {
            return Err(GimError::input(
                "all rows of a batch must have the same length",
            ));
        }
        for &id in ids.iter().flatten() {
            if id as usize >= self.cfg.vocab_size {
                return Err(GimError::input(format!(
                    "token id {id} is outside the vocabulary (size {})",
                    self.cfg.vocab_size
                )));
            }
        }
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let t = Tensor::from_vec(flat, b * s, &self.device)?;
        Ok(self
            .w
            .embed
            .index_select(&t, 0)?
            .reshape((b, s, self.cfg.d_model))?)
    }

    /// Forward from token embeddings `[b, s, d]` to the final-norm hidden state at the
    /// selected positions, `[b, n_pos, d]`.
    pub fn forward_hidden(&self, tok_embeds: &Tensor, opts: &mut ForwardOpts) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (b, s, d) = tok_embeds.dims3()?;
        if d != cfg.d_model {
            return Err(GimError::input(format!(
                "embedding width {d} != d_model {}",
                cfg.d_model
            )));
        }
        if s == 0 {
            return Err(GimError::input(
                "the prompt is empty: give at least one token",
            ));
        }
        let offset = match opts.prefix {
            Some(p) => {
                if opts.attention_mask.is_some() || opts.split_qkv_input {
                    return Err(GimError::input(
                        "internal: a cached prefix works only on unpadded, unsplit rows",
                    ));
                }
                if p.kv.len() != cfg.n_layers {
                    return Err(GimError::input(
                        "internal: the cached prefix has the wrong number of layers",
                    ));
                }
                p.offset
            }
            None => 0,
        };
        if offset + s > cfg.n_ctx {
            return Err(GimError::input(format!(
                "the prompt has {} tokens but the model's context is {} tokens; shorten it",
                offset + s,
                cfg.n_ctx
            )));
        }
        opts.rules.validate()?;
        let positions = match opts.prefix {
            Some(_) => vec![(offset..offset + s).collect(); b],
            None => position_ids(b, s, opts.attention_mask.as_deref())?,
        };
        let mut cx = Ctx {
            cfg,
            rules: opts.rules,
            hooks: opts.hooks.as_deref_mut(),
            split: opts.split_qkv_input,
            prefix: opts.prefix,
        };
        let mut x = match cfg.embed_scale {
            Some(sc) => {
                let sc = Tensor::new(sc as f32, &self.device)?.to_dtype(tok_embeds.dtype())?;
                tok_embeds.broadcast_mul(&sc)?
            }
            None => tok_embeds.clone(),
        };
        x = cx.hook(HookPoint::Embed, x)?;
        let rope = match &cfg.positional {
            Positional::Learned => {
                let pe = self.w.pos_embed.as_ref().ok_or_else(|| {
                    GimError::Load("model has learned positions but no position embedding".into())
                })?;
                let flat: Vec<u32> = positions.iter().flatten().map(|&p| p as u32).collect();
                let idx = Tensor::from_vec(flat, b * s, &self.device)?;
                let pos = pe.index_select(&idx, 0)?.reshape((b, s, d))?;
                let pos = cx.hook(HookPoint::PosEmbed, pos)?;
                x = (x + pos)?;
                None
            }
            Positional::Rotary {
                rotary_dim,
                inv_freq,
            } => Some(Rope::new(
                &positions,
                inv_freq,
                *rotary_dim,
                x.dtype(),
                &self.device,
            )?),
        };
        let masks = Masks::new(
            cfg,
            &positions,
            opts.attention_mask.as_deref(),
            offset,
            &self.device,
        )?;
        for (l, blk) in self.w.blocks.iter().enumerate() {
            x = block(&mut cx, l, blk, x, rope.as_ref(), masks.for_layer(l))?;
        }
        let x = match &opts.positions {
            Positions::All => x,
            Positions::Last => x.narrow(1, s - 1, 1)?,
            Positions::At(ps) => {
                if let Some(&p) = ps.iter().find(|&&p| p >= s) {
                    return Err(GimError::input(format!(
                        "position {p} is out of range for a prompt of {s} tokens"
                    )));
                }
                let idx = Tensor::from_vec(
                    ps.iter().map(|&p| p as u32).collect::<Vec<_>>(),
                    ps.len(),
                    &self.device,
                )?;
                x.index_select(&idx, 1)?
            }
        };
        let h = norm(cfg, &self.w.ln_final, &x, cx.rules.freeze_norm)?;
        cx.hook(HookPoint::LnFinal, h)
    }

    /// Logits for final hidden states `[b, n, d]` → `[b, n, vocab]` (with final soft-capping).
    pub fn unembed(&self, h: &Tensor) -> Result<Tensor> {
        self.softcap_final(linear(h, &self.w.unembed, None)?)
    }

    /// Logits of chosen vocabulary rows only: `[b, n, ids.len()]`.
    pub fn unembed_rows(&self, h: &Tensor, ids: &[u32]) -> Result<Tensor> {
        for &id in ids {
            if id as usize >= self.cfg.vocab_size {
                return Err(GimError::input(format!(
                    "token id {id} is outside the vocabulary (size {})",
                    self.cfg.vocab_size
                )));
            }
        }
        let idx = Tensor::from_vec(ids.to_vec(), ids.len(), &self.device)?;
        let w = self.w.unembed.index_select(&idx, 0)?;
        self.softcap_final(linear(h, &w, None)?)
    }

    fn softcap_final(&self, logits: Tensor) -> Result<Tensor> {
        match self.cfg.final_softcap {
            Some(c) => Ok(((logits / c)?.tanh()? * c)?),
            None => Ok(logits),
        }
    }

    /// Convenience: logits `[b, n, vocab]` for ids with the given positions, no hooks.
    pub fn logits(&self, ids: &[Vec<u32>], positions: Positions) -> Result<Tensor> {
        let e = self.embed_ids(ids)?;
        let mut opts = ForwardOpts {
            positions,
            ..Default::default()
        };
        let h = self.forward_hidden(&e, &mut opts)?;
        self.unembed(&h)
    }
}

fn block(
    cx: &mut Ctx,
    l: usize,
    w: &BlockW,
    resid: Tensor,
    rope: Option<&Rope>,
    mask: &Tensor,
) -> Result<Tensor> {
    let cfg = cx.cfg;
    let freeze = cx.rules.freeze_norm;
    let resid = cx.hook(HookPoint::ResidPre(l), resid)?;
    let attn_out = attention(cx, l, w, &resid, rope, mask)?;
    let attn_out = match &w.attn_post {
        Some(n) => norm(cfg, n, &attn_out, freeze)?,
        None => attn_out,
    };
    let attn_out = cx.hook(HookPoint::AttnOut(l), attn_out)?;
    let mid = kernels::add(&resid, &attn_out)?;
    let mid = cx.hook(HookPoint::ResidMid(l), mid)?;
    let mlp_in = cx.hook(HookPoint::MlpIn(l), mid.clone())?;
    let x = norm(cfg, &w.ln2, &mlp_in, freeze)?;
    let out = match &w.mlp.gate {
        Some(gate) => {
            let g = scale_grad(&lin(&x, gate)?, cx.rules.gate_scale.unwrap_or(1.0))?;
            let u = scale_grad(&lin(&x, &w.mlp.up)?, cx.rules.up_scale.unwrap_or(1.0))?;
            let g = cx.hook(HookPoint::MlpPre(l), g)?;
            let u = cx.hook(HookPoint::MlpUp(l), u)?;
            let post = kernels::gated(cfg.act, &g, &u)?;
            let post = cx.hook(HookPoint::MlpPost(l), post)?;
            lin(&post, &w.mlp.down)?
        }
        None => {
            let pre = cx.hook(HookPoint::MlpPre(l), lin(&x, &w.mlp.up)?)?;
            let post = cx.hook(HookPoint::MlpPost(l), kernels::act(cfg.act, &pre)?)?;
            lin(&post, &w.mlp.down)?
        }
    };
    let out = match &w.mlp_post {
        Some(n) => norm(cfg, n, &out, freeze)?,
        None => out,
    };
    let out = cx.hook(HookPoint::MlpOut(l), out)?;
    let post = kernels::add(&mid, &out)?;
    cx.hook(HookPoint::ResidPost(l), post)
}

fn attention(
    cx: &mut Ctx,
    l: usize,
    w: &BlockW,
    resid: &Tensor,
    rope: Option<&Rope>,
    mask: &Tensor,
) -> Result<Tensor> {
    let cfg = cx.cfg;
    let freeze = cx.rules.freeze_norm;
    let (b, s, d) = resid.dims3()?;
    let (h, kv, dh) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head);
    let a = &w.attn;
    let (q, k, v) = if cx.split {
        // One residual copy per query head for q, and per key/value head for k and v.
        let rep = |p: HookPoint, n: usize, cx: &mut Ctx| -> Result<Tensor> {
            let x = resid
                .unsqueeze(2)?
                .broadcast_as((b, s, n, d))?
                .contiguous()?;
            let x = cx.hook(p, x)?;
            norm(cfg, &w.ln1, &x, freeze)
        };
        let xq = rep(HookPoint::QInput(l), h, cx)?;
        let xk = rep(HookPoint::KInput(l), kv, cx)?;
        let xv = rep(HookPoint::VInput(l), kv, cx)?;
        (
            per_head_linear(&xq, &a.q, dh)?,
            per_head_linear(&xk, &a.k, dh)?,
            per_head_linear(&xv, &a.v, dh)?,
        )
    } else {
        let x = norm(cfg, &w.ln1, resid, freeze)?;
        (
            lin(&x, &a.q)?.reshape((b, s, h, dh))?,
            lin(&x, &a.k)?.reshape((b, s, kv, dh))?,
            lin(&x, &a.v)?.reshape((b, s, kv, dh))?,
        )
    };
    let (mut q, mut k) = (q, k);
    if let Some(n) = &a.q_norm {
        q = norm(cfg, n, &q, freeze)?;
    }
    if let Some(n) = &a.k_norm {
        k = norm(cfg, n, &k, freeze)?;
    }
    if let Some(r) = rope {
        q = r.apply(&q)?;
        k = r.apply(&k)?;
    }
    let q = cx.hook(HookPoint::Q(l), q)?;
    let k = cx.hook(HookPoint::K(l), k)?;
    let v = cx.hook(HookPoint::V(l), v)?;
    let q = scale_grad(&q, cx.rules.q_scale.unwrap_or(1.0))?;
    let k = scale_grad(&k, cx.rules.k_scale.unwrap_or(1.0))?;
    let v = scale_grad(&v, cx.rules.v_scale.unwrap_or(1.0))?;
    let (k, v) = match cx.prefix.and_then(|p| p.kv.get(l)) {
        Some((pk, pv)) => {
            let o = pk.dim(1)?;
            let pk = pk.broadcast_as((b, o, kv, dh))?.to_dtype(k.dtype())?;
            let pv = pv.broadcast_as((b, o, kv, dh))?.to_dtype(v.dtype())?;
            (Tensor::cat(&[&pk, &k], 1)?, Tensor::cat(&[&pv, &v], 1)?)
        }
        None => (k, v),
    };
    // [b, heads, s, dh] (keys and values: the prefix's positions, then these); each key/value
    // head's query heads stacked as rows (`stack_groups`), so that a group's queries meet its keys
    // and values in one product and no copy repeats them
    let q = transpose::contiguous(&q.transpose(1, 2)?)?;
    let k = transpose::contiguous(&k.transpose(1, 2)?)?;
    let v = transpose::contiguous(&v.transpose(1, 2)?)?;
    let t = k.dim(2)?;
    let scores = matmul(&stack_groups(&q, kv)?, &k.t()?)?.reshape((b, h, s, t))?;
    let mut scores = kernels::affine(&scores, cfg.attn_scale, 0.0)?;
    if let Some(c) = cfg.attn_softcap {
        scores = ((scores / c)?.tanh()? * c)?;
    }
    let min = Tensor::new(min_value(scores.dtype()), &scores.device().clone())?
        .to_dtype(scores.dtype())?
        .broadcast_as(scores.shape())?;
    let scores = mask
        .broadcast_as(scores.shape())?
        .where_cond(&scores, &min)?;
    let scores = cx.hook(HookPoint::AttnScores(l), scores)?;
    let pattern = tempered_softmax(&scores, cx.rules.temperature())?;
    let pattern = cx.hook(HookPoint::Pattern(l), pattern)?;
    let z = matmul(&stack_groups(&pattern, kv)?, &v)?
        .reshape((b, h, s, dh))?
        .transpose(1, 2)?; // [b, s, h, dh]
    let z = cx.hook(HookPoint::Z(l), z)?;
    let z = transpose::contiguous(&z)?.reshape((b, s, h * dh))?;
    lin(&z, &a.o)
}
