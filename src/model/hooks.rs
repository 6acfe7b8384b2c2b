//! Hook points (TransformerLens names) and the hooks that read or overwrite them.
//!
//! The model calls [`Hook::apply`] at every hook point with the tensor flowing there and continues
//! with whatever the hook returns, so a hook can cache a value, tap its gradient, or patch it
//! (per head and per position) without the model code knowing.

use std::collections::HashMap;
use std::fmt;

use candle_core::{DType, Tensor};

use super::ops::{grad_tap, GradSlot};
use crate::error::{GimError, Result};

/// A named place in the forward pass. Shapes (b = batch, s = positions, h = heads):
/// residual-stream points `[b, s, d_model]`; `q/k/v/z` `[b, s, heads, d_head]` (k and v have the
/// key/value heads); `attn_scores`/`pattern` `[b, h, s_q, s_k]`; `q/k/v_input` `[b, s, h, d_model]`
/// (only in split-input mode); `mlp.hook_pre/post` `[b, s, d_mlp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPoint {
    /// token embedding (after Gemma's scale), before positions are added
    Embed,
    /// GPT-2's learned position embedding
    PosEmbed,
    ResidPre(usize),
    /// per-head copy of the residual stream feeding head h's queries (split-input mode)
    QInput(usize),
    KInput(usize),
    VInput(usize),
    /// queries entering attention (after projection, q-norm and RoPE)
    Q(usize),
    K(usize),
    V(usize),
    /// scaled (and soft-capped) and masked scores, the softmax input
    AttnScores(usize),
    Pattern(usize),
    /// per-head attention output before the output projection
    Z(usize),
    /// attention output added to the residual stream (after any post-norm)
    AttnOut(usize),
    ResidMid(usize),
    /// residual stream entering the MLP's norm
    MlpIn(usize),
    /// MLP activation input (gate projection for gated MLPs)
    MlpPre(usize),
    /// gated MLPs: the up-projection output
    MlpUp(usize),
    /// MLP hidden after the activation (times up-projection for gated MLPs)
    MlpPost(usize),
    /// MLP output added to the residual stream (after any post-norm)
    MlpOut(usize),
    ResidPost(usize),
    /// final norm output at the positions that are unembedded
    LnFinal,
}

impl HookPoint {
    /// Layer index, if the point belongs to a block.
    pub fn layer(&self) -> Option<usize> {
        use HookPoint::*;
        match *self {
            Embed | PosEmbed | LnFinal => None,
            ResidPre(l) | QInput(l) | KInput(l) | VInput(l) | Q(l) | K(l) | V(l)
            | AttnScores(l) | Pattern(l) | Z(l) | AttnOut(l) | ResidMid(l) | MlpIn(l)
            | MlpPre(l) | MlpUp(l) | MlpPost(l) | MlpOut(l) | ResidPost(l) => Some(l),
        }
    }

    /// All hook points of a model with `n_layers` blocks, in forward order.
    pub fn all(n_layers: usize) -> Vec<HookPoint> {
        use HookPoint::*;
        let mut v = vec![Embed, PosEmbed];
        for l in 0..n_layers {
            v.extend([
                ResidPre(l),
                QInput(l),
                KInput(l),
                VInput(l),
                Q(l),
                K(l),
                V(l),
                AttnScores(l),
                Pattern(l),
                Z(l),
                AttnOut(l),
                ResidMid(l),
                MlpIn(l),
                MlpPre(l),
                MlpUp(l),
                MlpPost(l),
                MlpOut(l),
                ResidPost(l),
            ]);
        }
        v.push(LnFinal);
        v
    }

    /// Parse a TransformerLens-style name such as `blocks.3.attn.hook_z`.
    pub fn parse(name: &str) -> Result<HookPoint> {
        use HookPoint::*;
        let bad = || {
            GimError::input(format!(
                "unknown hook point `{name}` (e.g. hook_embed, blocks.0.hook_resid_pre, blocks.0.attn.hook_pattern)"
            ))
        };
        match name {
            "hook_embed" => return Ok(Embed),
            "hook_pos_embed" => return Ok(PosEmbed),
            "ln_final.hook_normalized" => return Ok(LnFinal),
            _ => {}
        }
        let rest = name.strip_prefix("blocks.").ok_or_else(bad)?;
        let (num, tail) = rest.split_once('.').ok_or_else(bad)?;
        let l: usize = num.parse().map_err(|_| bad())?;
        Ok(match tail {
            "hook_resid_pre" => ResidPre(l),
            "hook_q_input" => QInput(l),
            "hook_k_input" => KInput(l),
            "hook_v_input" => VInput(l),
            "attn.hook_q" => Q(l),
            "attn.hook_k" => K(l),
            "attn.hook_v" => V(l),
            "attn.hook_attn_scores" => AttnScores(l),
            "attn.hook_pattern" => Pattern(l),
            "attn.hook_z" => Z(l),
            "hook_attn_out" => AttnOut(l),
            "hook_resid_mid" => ResidMid(l),
            "hook_mlp_in" => MlpIn(l),
            "mlp.hook_pre" => MlpPre(l),
            "mlp.hook_up" => MlpUp(l),
            "mlp.hook_post" => MlpPost(l),
            "hook_mlp_out" => MlpOut(l),
            "hook_resid_post" => ResidPost(l),
            _ => return Err(bad()),
        })
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HookPoint::*;
        match self {
            Embed => write!(f, "hook_embed"),
            PosEmbed => write!(f, "hook_pos_embed"),
            LnFinal => write!(f, "ln_final.hook_normalized"),
            ResidPre(l) => write!(f, "blocks.{l}.hook_resid_pre"),
            QInput(l) => write!(f, "blocks.{l}.hook_q_input"),
            KInput(l) => write!(f, "blocks.{l}.hook_k_input"),
            VInput(l) => write!(f, "blocks.{l}.hook_v_input"),
            Q(l) => write!(f, "blocks.{l}.attn.hook_q"),
            K(l) => write!(f, "blocks.{l}.attn.hook_k"),
            V(l) => write!(f, "blocks.{l}.attn.hook_v"),
            AttnScores(l) => write!(f, "blocks.{l}.attn.hook_attn_scores"),
            Pattern(l) => write!(f, "blocks.{l}.attn.hook_pattern"),
            Z(l) => write!(f, "blocks.{l}.attn.hook_z"),
            AttnOut(l) => write!(f, "blocks.{l}.hook_attn_out"),
            ResidMid(l) => write!(f, "blocks.{l}.hook_resid_mid"),
            MlpIn(l) => write!(f, "blocks.{l}.hook_mlp_in"),
            MlpPre(l) => write!(f, "blocks.{l}.mlp.hook_pre"),
            MlpUp(l) => write!(f, "blocks.{l}.mlp.hook_up"),
            MlpPost(l) => write!(f, "blocks.{l}.mlp.hook_post"),
            MlpOut(l) => write!(f, "blocks.{l}.hook_mlp_out"),
            ResidPost(l) => write!(f, "blocks.{l}.hook_resid_post"),
        }
    }
}

/// Something that sees (and may replace) the tensor at hook points.
pub trait Hook {
    /// Whether this hook wants `point`; the model skips the call otherwise.
    fn wants(&self, point: HookPoint) -> bool;
    /// Returns the tensor the forward pass continues with.
    fn apply(&mut self, point: HookPoint, x: Tensor) -> Result<Tensor>;
}

/// No hooks: the plain forward pass.
pub struct NoHooks;

impl Hook for NoHooks {
    fn wants(&self, _: HookPoint) -> bool {
        false
    }
    fn apply(&mut self, _: HookPoint, x: Tensor) -> Result<Tensor> {
        Ok(x)
    }
}

/// Several hooks applied in order.
#[derive(Default)]
pub struct Hooks<'a>(pub Vec<&'a mut dyn Hook>);

impl Hook for Hooks<'_> {
    fn wants(&self, p: HookPoint) -> bool {
        self.0.iter().any(|h| h.wants(p))
    }
    fn apply(&mut self, p: HookPoint, mut x: Tensor) -> Result<Tensor> {
        for h in self.0.iter_mut() {
            if h.wants(p) {
                x = h.apply(p, x)?;
            }
        }
        Ok(x)
    }
}

/// Caches activations at chosen points and, optionally, the gradient that reaches them.
pub struct Cache {
    filter: Box<dyn Fn(HookPoint) -> bool + Send>,
    tap_grads: bool,
    pub acts: HashMap<HookPoint, Tensor>,
    slots: HashMap<HookPoint, GradSlot>,
}

impl Cache {
    /// Cache the points for which `filter` is true.
    pub fn new(filter: impl Fn(HookPoint) -> bool + Send + 'static) -> Self {
        Cache {
            filter: Box::new(filter),
            tap_grads: false,
            acts: HashMap::new(),
            slots: HashMap::new(),
        }
    }

    /// Cache exactly these points.
    pub fn of(points: &[HookPoint]) -> Self {
        let set: Vec<HookPoint> = points.to_vec();
        Self::new(move |p| set.contains(&p))
    }

    /// Also record the gradient reaching each cached point in the next backward pass.
    pub fn with_grads(mut self) -> Self {
        self.tap_grads = true;
        self
    }

    /// The cached activation (detached from the graph).
    pub fn get(&self, p: HookPoint) -> Result<&Tensor> {
        self.acts
            .get(&p)
            .ok_or_else(|| GimError::input(format!("hook point {p} was not cached")))
    }

    /// The gradient that reached `p` in the last backward pass.
    pub fn grad(&self, p: HookPoint) -> Result<Tensor> {
        let slot = self
            .slots
            .get(&p)
            .ok_or_else(|| GimError::input(format!("no gradient tap at {p}")))?;
        let g = slot
            .lock()
            .map_err(|_| GimError::input("gradient slot poisoned"))?
            .clone();
        match g {
            Some(g) => Ok(g),
            None => {
                let a = self.get(p)?;
                Ok(a.zeros_like()?)
            }
        }
    }
}

impl Hook for Cache {
    fn wants(&self, p: HookPoint) -> bool {
        (self.filter)(p)
    }
    fn apply(&mut self, p: HookPoint, x: Tensor) -> Result<Tensor> {
        self.acts.insert(p, x.detach());
        if self.tap_grads && x.track_op() {
            let (y, slot) = grad_tap(&x)?;
            self.slots.insert(p, slot);
            Ok(y)
        } else {
            Ok(x)
        }
    }
}

/// Overwrites a hook point with another value where `mask` is true (everywhere without a mask).
/// `mask` broadcasts to the point's shape, e.g. `[1, s, h, 1]` to patch chosen heads at chosen
/// positions of `hook_z`.
pub struct Patch {
    pub point: HookPoint,
    pub value: Tensor,
    pub mask: Option<Tensor>,
}

impl Hook for Patch {
    fn wants(&self, p: HookPoint) -> bool {
        p == self.point
    }
    fn apply(&mut self, _: HookPoint, x: Tensor) -> Result<Tensor> {
        let v = self.value.to_dtype(x.dtype())?;
        match &self.mask {
            None => Ok(v.broadcast_as(x.shape())?.contiguous()?),
            Some(m) => {
                let m = m.to_dtype(DType::U8)?.broadcast_as(x.shape())?;
                let v = v.broadcast_as(x.shape())?;
                Ok(m.where_cond(&v, &x)?)
            }
        }
    }
}

/// Adds a value (e.g. `corrupt − clean` of a sender) at a hook point.
pub struct AddDelta {
    pub point: HookPoint,
    pub delta: Tensor,
}

impl Hook for AddDelta {
    fn wants(&self, p: HookPoint) -> bool {
        p == self.point
    }
    fn apply(&mut self, _: HookPoint, x: Tensor) -> Result<Tensor> {
        Ok(x.broadcast_add(&self.delta.to_dtype(x.dtype())?)?)
    }
}
