//! Edge patching: a forward hook that gives chosen receivers the corrupted output of chosen
//! senders, and the metric with those edges patched. Many edge sets run as one batched forward
//! of the clean prompt, one batch row per set.
//!
//! How a receiver's input is patched: with `D_i = a_corrupt[i] − a_current[i]` for every sender
//! `i` that has run (its output in the residual stream of this row's own run), the receiver reads
//! `x + Σ_i M[i] · D_i`, where `M[i]` is 1 for the patched edges. The `D_i` are written once
//! into a buffer `[sets, senders, s · d]` as the senders run, and each receiver group (a layer's
//! queries, keys, values, its MLP, the logits) takes its sum as one batched product of its mask
//! `[sets, receivers, senders so far]` with the buffer.

use candle_core::{DType, Tensor};

use super::edges::{connects, Receiver};
use super::{head_results, metric_with, Node, Problem, SenderActs};
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::hooks::{Hook, HookPoint};

/// The most memory the sender buffer of one batched forward may take (sets are run in chunks).
const BUFFER_BYTES: usize = 512 << 20;

/// Index of a sender in [`Node::all`] order.
fn sender_index(n_heads: usize, u: Node) -> usize {
    match u {
        Node::Embed => 0,
        Node::Head { layer, head } => 1 + layer * (n_heads + 1) + head,
        Node::Mlp { layer } => 1 + layer * (n_heads + 1) + n_heads,
    }
}

/// A group of receivers that read the residual stream at one hook point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Q(usize),
    K(usize),
    V(usize),
    Mlp(usize),
    Logits,
}

/// Per group: its mask `[sets, receivers, senders before it]`, `None` where no set patches
/// any of its edges.
struct Masks {
    q: Vec<Option<Tensor>>,
    k: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
    mlp: Vec<Option<Tensor>>,
    logits: Option<Tensor>,
}

/// A forward hook that gives chosen receivers the corrupted output of chosen senders while
/// everything else stays as in the running (clean) forward; batch row `b` patches edge set `b`.
/// Needs the split-input forward.
pub struct EdgePatch<'m> {
    masks: Masks,
    corr: &'m SenderActs,
    /// `[sets, senders, s · d]`: corrupt − current output of every sender that has run
    buf: Option<Tensor>,
    sets: usize,
    n_senders: usize,
    n_layers: usize,
    n_heads: usize,
    model: &'m LoadedModel,
}

impl<'m> EdgePatch<'m> {
    /// Patch exactly `sets[b]` (pairs of sender, receiver) in batch row `b`.
    pub fn new(
        m: &'m LoadedModel,
        corr: &'m SenderActs,
        sets: &[&[(Node, Receiver)]],
    ) -> Result<Self> {
        let cfg = &m.model.cfg;
        let (nl, nh, nkv) = (cfg.n_layers, cfg.n_heads, cfg.n_kv_heads);
        let n_senders = 1 + nl * (nh + 1);
        let before_layer = |l: usize| 1 + l * (nh + 1);
        let group_of = |r: Receiver| -> Result<(Group, usize, usize, usize)> {
            // (group, row, rows, senders before it)
            Ok(match r {
                Receiver::Q { layer, head } if layer < nl && head < nh => {
                    (Group::Q(layer), head, nh, before_layer(layer))
                }
                Receiver::K { layer, head } if layer < nl && head < nkv => {
                    (Group::K(layer), head, nkv, before_layer(layer))
                }
                Receiver::V { layer, head } if layer < nl && head < nkv => {
                    (Group::V(layer), head, nkv, before_layer(layer))
                }
                Receiver::Mlp { layer } if layer < nl => {
                    (Group::Mlp(layer), 0, 1, before_layer(layer) + nh)
                }
                Receiver::Logits => (Group::Logits, 0, 1, n_senders),
                _ => return Err(GimError::input(format!("no receiver {}", r.label()))),
            })
        };
        let b = sets.len();
        // dense f32 masks per group, filled from the edge lists
        let mut dense: Vec<(Group, usize, usize, Vec<f32>, bool)> = Vec::new();
        let slot = |g: Group| -> usize {
            match g {
                Group::Q(l) => 4 * l,
                Group::K(l) => 4 * l + 1,
                Group::V(l) => 4 * l + 2,
                Group::Mlp(l) => 4 * l + 3,
                Group::Logits => 4 * nl,
            }
        };
        for gi in 0..=4 * nl {
            let (g, rows, n) = match (gi / 4, gi % 4) {
                (l, _) if l == nl => (Group::Logits, 1, n_senders),
                (l, 0) => (Group::Q(l), nh, before_layer(l)),
                (l, 1) => (Group::K(l), nkv, before_layer(l)),
                (l, 2) => (Group::V(l), nkv, before_layer(l)),
                (l, _) => (Group::Mlp(l), 1, before_layer(l) + nh),
            };
            dense.push((g, rows, n, Vec::new(), false));
        }
        for (bi, set) in sets.iter().enumerate() {
            for &(u, v) in set.iter() {
                u.check(m)?;
                if !connects(u, v) {
                    return Err(GimError::input(format!(
                        "{} does not feed {}",
                        u.label(),
                        v.label()
                    )));
                }
                let (g, row, rows, n) = group_of(v)?;
                let i = sender_index(nh, u);
                let entry = &mut dense[slot(g)];
                if entry.3.is_empty() {
                    entry.3 = vec![0f32; b * rows * n];
                }
                entry.3[(bi * rows + row) * n + i] = 1.0;
                entry.4 = true;
            }
        }
        let dev = corr.embed.device();
        let dtype = corr.embed.dtype();
        let mut tensors: Vec<Option<Tensor>> = Vec::with_capacity(dense.len());
        for (_, rows, n, v, any) in dense {
            tensors.push(if any {
                Some(Tensor::from_vec(v, (b, rows, n), dev)?.to_dtype(dtype)?)
            } else {
                None
            });
        }
        let logits = tensors.pop().flatten();
        let (mut q, mut k, mut vv, mut mlp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (gi, t) in tensors.into_iter().enumerate() {
            match gi % 4 {
                0 => q.push(t),
                1 => k.push(t),
                2 => vv.push(t),
                _ => mlp.push(t),
            }
        }
        Ok(EdgePatch {
            masks: Masks {
                q,
                k,
                v: vv,
                mlp,
                logits,
            },
            corr,
            buf: None,
            sets: b,
            n_senders,
            n_layers: nl,
            n_heads: nh,
            model: m,
        })
    }

    /// Write `corrupt − current` of senders `at..at + n` (`cur` `[sets, n, s · d]`).
    fn store(&mut self, at: usize, corr: &Tensor, cur: &Tensor) -> Result<()> {
        let d = corr.broadcast_sub(cur)?.contiguous()?;
        let buf = match &self.buf {
            Some(b) => b,
            None => {
                let (_, _, sd) = d.dims3()?;
                self.buf = Some(Tensor::zeros(
                    (self.sets, self.n_senders, sd),
                    d.dtype(),
                    d.device(),
                )?);
                self.buf
                    .as_ref()
                    .ok_or_else(|| GimError::input("internal: no buffer"))?
            }
        };
        buf.slice_set(&d, 1, at)?;
        Ok(())
    }

    /// `Σ_i M[b, r, i] · D_i[b]` for a group's mask → `[sets, receivers, s · d]`.
    fn delta(&self, mask: &Tensor) -> Result<Tensor> {
        let buf = self
            .buf
            .as_ref()
            .ok_or_else(|| GimError::input("internal: a receiver ran before the embeddings"))?;
        let n = mask.dim(2)?;
        Ok(crate::model::gemm::matmul(mask, &buf.narrow(1, 0, n)?)?)
    }
}

/// `[b, s, d]` as `[b, 1, s · d]`.
fn as_row(t: &Tensor) -> Result<Tensor> {
    let (b, s, d) = t.dims3()?;
    Ok(t.reshape((b, 1, s * d))?)
}

impl Hook for EdgePatch<'_> {
    fn wants(&self, p: HookPoint) -> bool {
        use HookPoint::*;
        match p {
            ResidPre(0) | Z(_) | MlpOut(_) | QInput(_) | KInput(_) | VInput(_) | MlpIn(_) => true,
            ResidPost(l) => l + 1 == self.n_layers,
            _ => false,
        }
    }

    fn apply(&mut self, p: HookPoint, x: Tensor) -> Result<Tensor> {
        use HookPoint::*;
        let nh = self.n_heads;
        let corr = self.corr;
        match p {
            ResidPre(0) => {
                self.store(0, &as_row(&corr.embed)?, &as_row(&x)?)?;
                Ok(x)
            }
            Z(l) => {
                let r = head_results(self.model, l, &x.contiguous()?)?; // [b, s, h, d]
                let rows = |t: &Tensor| -> Result<Tensor> {
                    let (b, s, h, d) = t.dims4()?;
                    Ok(t.permute((0, 2, 1, 3))?
                        .contiguous()?
                        .reshape((b, h, s * d))?)
                };
                let ck = corr
                    .heads
                    .get(l)
                    .ok_or_else(|| GimError::input("internal: no corrupt heads"))?;
                self.store(1 + l * (nh + 1), &rows(ck)?, &rows(&r)?)?;
                Ok(x)
            }
            MlpOut(l) => {
                let ck = corr
                    .mlps
                    .get(l)
                    .ok_or_else(|| GimError::input("internal: no corrupt MLP"))?;
                self.store(1 + l * (nh + 1) + nh, &as_row(ck)?, &as_row(&x)?)?;
                Ok(x)
            }
            QInput(l) | KInput(l) | VInput(l) => {
                let masks = match p {
                    QInput(_) => &self.masks.q,
                    KInput(_) => &self.masks.k,
                    _ => &self.masks.v,
                };
                let Some(mask) = masks.get(l).and_then(|m| m.as_ref()) else {
                    return Ok(x);
                };
                // x: [b, s, n, d]; the delta comes as [b, n, s · d]
                let (b, s, n, d) = x.dims4()?;
                let dl = self
                    .delta(mask)?
                    .reshape((b, n, s, d))?
                    .permute((0, 2, 1, 3))?;
                let dl = dl.to_dtype(x.dtype())?;
                Ok((x + dl)?)
            }
            MlpIn(_) | ResidPost(_) => {
                let mask = match p {
                    MlpIn(l) => self.masks.mlp.get(l).and_then(|m| m.as_ref()),
                    _ => self.masks.logits.as_ref(),
                };
                let Some(mask) = mask else {
                    return Ok(x);
                };
                let dl = self.delta(mask)?.reshape(x.shape())?;
                let dl = dl.to_dtype(x.dtype())?;
                Ok((x + dl)?)
            }
            _ => Ok(x),
        }
    }
}

/// The metric with each of `sets` patched (each receiver sees those senders' corrupted
/// outputs), in batched forwards of the clean prompt.
pub fn patch_edge_sets(
    m: &LoadedModel,
    p: &Problem,
    corr: &SenderActs,
    sets: &[&[(Node, Receiver)]],
) -> Result<Vec<f64>> {
    let cfg = &m.model.cfg;
    let n_senders = 1 + cfg.n_layers * (cfg.n_heads + 1);
    let bytes = match corr.embed.dtype() {
        DType::F64 => 8,
        DType::F32 => 4,
        _ => 2,
    };
    let per_set = n_senders * p.clean.len() * cfg.d_model * bytes;
    let chunk = (BUFFER_BYTES / per_set.max(1)).max(1);
    let mut out = Vec::with_capacity(sets.len());
    for part in sets.chunks(chunk) {
        crate::interrupt::check()?;
        let mut hook = EdgePatch::new(m, corr, part)?;
        let ids = vec![p.clean.clone(); part.len()];
        out.extend(metric_with(m, p, &ids, Some(&mut hook), true)?);
    }
    Ok(out)
}

/// The metric with `edges` patched (each receiver sees those senders' corrupted outputs).
pub fn patch_edges(
    m: &LoadedModel,
    p: &Problem,
    corr: &SenderActs,
    edges: &[(Node, Receiver)],
) -> Result<f64> {
    patch_edge_sets(m, p, corr, &[edges])?
        .first()
        .copied()
        .ok_or_else(|| GimError::input("internal: no metric"))
}
