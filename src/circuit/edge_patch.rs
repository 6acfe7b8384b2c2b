//! Edge patching: a forward hook that gives chosen receivers the corrupted output of chosen
//! senders, and the metric with those edges patched.

use candle_core::Tensor;

use super::edges::{connects, Receiver};
use super::{head_results, metric_with, Node, Problem, SenderActs};
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::hooks::{Hook, HookPoint};

/// A forward hook that gives chosen receivers the corrupted output of chosen senders while
/// everything else stays as in the running (clean) forward. Needs the split-input forward.
pub struct EdgePatch<'m> {
    senders: Vec<Node>,
    receivers: Vec<Receiver>,
    /// `[n_s]` corrupted outputs `[1, s, d]`
    corr: Vec<Tensor>,
    /// outputs of this run, filled as senders run
    cur: Vec<Option<Tensor>>,
    /// `patched[i][j]`: receiver j sees sender i's corrupted value
    patched: Vec<Vec<bool>>,
    n_layers: usize,
    model: &'m LoadedModel,
}

impl<'m> EdgePatch<'m> {
    /// Patch exactly `edges` (pairs of sender, receiver).
    pub fn new(m: &'m LoadedModel, corr: &SenderActs, edges: &[(Node, Receiver)]) -> Result<Self> {
        let cfg = &m.model.cfg;
        let senders = Node::all(cfg.n_layers, cfg.n_heads);
        let receivers = Receiver::all(cfg.n_layers, cfg.n_heads, cfg.n_kv_heads);
        let mut patched = vec![vec![false; receivers.len()]; senders.len()];
        for (u, v) in edges {
            let i = senders
                .iter()
                .position(|x| x == u)
                .ok_or_else(|| GimError::input(format!("no sender {}", u.label())))?;
            let j = receivers
                .iter()
                .position(|x| x == v)
                .ok_or_else(|| GimError::input(format!("no receiver {}", v.label())))?;
            if !connects(*u, *v) {
                return Err(GimError::input(format!(
                    "{} does not feed {}",
                    u.label(),
                    v.label()
                )));
            }
            patched[i][j] = true;
        }
        let corr_rows = {
            let mut v = vec![corr.embed.clone()];
            for l in 0..cfg.n_layers {
                for h in 0..cfg.n_heads {
                    v.push(corr.heads[l].narrow(2, h, 1)?.squeeze(2)?);
                }
                v.push(corr.mlps[l].clone());
            }
            v
        };
        Ok(EdgePatch {
            cur: vec![None; senders.len()],
            senders,
            receivers,
            corr: corr_rows,
            patched,
            n_layers: cfg.n_layers,
            model: m,
        })
    }

    fn sender_index(&self, n: Node) -> Option<usize> {
        self.senders.iter().position(|x| *x == n)
    }

    /// Σ over patched senders of (corrupt − current), for the receivers selected by `pick`,
    /// as `[n_recv, s, d]`.
    fn delta(&self, recvs: &[usize], like: &Tensor) -> Result<Option<Tensor>> {
        let mut rows: Vec<Tensor> = Vec::new();
        for &j in recvs {
            let mut acc: Option<Tensor> = None;
            for i in 0..self.senders.len() {
                if !self.patched[i][j] {
                    continue;
                }
                let cur = self.cur[i]
                    .as_ref()
                    .ok_or_else(|| GimError::input("internal: sender ran after its receiver"))?;
                let d = (self.corr[i].to_dtype(cur.dtype())? - cur)?;
                acc = Some(match acc {
                    Some(a) => (a + d)?,
                    None => d,
                });
            }
            rows.push(match acc {
                Some(a) => a.squeeze(0)?,
                None => like.zeros_like()?,
            });
        }
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(Tensor::stack(&rows, 0)?))
    }
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
        let m = self.model;
        let like = || -> Result<Tensor> { Ok(x.narrow(0, 0, 1)?.squeeze(0)?.zeros_like()?) };
        match p {
            ResidPre(0) => {
                self.cur[0] = Some(x.clone());
                Ok(x)
            }
            Z(l) => {
                let r = head_results(m, l, &x.contiguous()?)?; // [1, s, h, d]
                let h = m.model.cfg.n_heads;
                for hh in 0..h {
                    if let Some(i) = self.sender_index(Node::Head { layer: l, head: hh }) {
                        self.cur[i] = Some(r.narrow(2, hh, 1)?.squeeze(2)?);
                    }
                }
                Ok(x)
            }
            MlpOut(l) => {
                if let Some(i) = self.sender_index(Node::Mlp { layer: l }) {
                    self.cur[i] = Some(x.clone());
                }
                Ok(x)
            }
            QInput(l) | KInput(l) | VInput(l) => {
                let recvs: Vec<usize> = self
                    .receivers
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| match (p, r) {
                        (QInput(_), Receiver::Q { layer, .. })
                        | (KInput(_), Receiver::K { layer, .. })
                        | (VInput(_), Receiver::V { layer, .. }) => *layer == l,
                        _ => false,
                    })
                    .map(|(j, _)| j)
                    .collect();
                let s = x.dim(1)?;
                let d = x.dim(3)?;
                let zero = Tensor::zeros((s, d), x.dtype(), x.device())?;
                match self.delta(&recvs, &zero)? {
                    Some(dl) => Ok((x + dl.permute((1, 0, 2))?.unsqueeze(0)?)?),
                    None => Ok(x),
                }
            }
            MlpIn(l) => {
                let j = self
                    .receivers
                    .iter()
                    .position(|r| *r == Receiver::Mlp { layer: l });
                match j {
                    Some(j) => match self.delta(&[j], &like()?)? {
                        Some(dl) => Ok((x + dl)?),
                        None => Ok(x),
                    },
                    None => Ok(x),
                }
            }
            ResidPost(_) => {
                let j = self.receivers.len() - 1;
                match self.delta(&[j], &like()?)? {
                    Some(dl) => Ok((x + dl)?),
                    None => Ok(x),
                }
            }
            _ => Ok(x),
        }
    }
}

/// The metric with `edges` patched (each receiver sees those senders' corrupted outputs).
pub fn patch_edges(
    m: &LoadedModel,
    p: &Problem,
    corr: &SenderActs,
    edges: &[(Node, Receiver)],
) -> Result<f64> {
    let mut hook = EdgePatch::new(m, corr, edges)?;
    Ok(metric_with(m, p, std::slice::from_ref(&p.clean), Some(&mut hook), true)?[0])
}
