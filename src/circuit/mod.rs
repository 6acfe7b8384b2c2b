//! Circuit hunting: node and edge attribution with GIM gradients, real patching, faithfulness.
//!
//! Nodes are the token embeddings, every attention head's output and every MLP's output.
//! Receivers (edge targets) are each head's query, key and value inputs, each MLP's input and
//! the logits. A sender's activation is its output *in the residual stream* (for a head: its
//! slice of the output projection applied to its `hook_z`; under Gemma2's post-attention norm
//! with the norm's statistic of the same run).

mod dataset;
mod edge_patch;
mod edges;
mod edges_ig;
mod evaluate;
mod faithfulness;
mod mib;
mod nodes;
mod patterns;
mod report;
mod shard;

pub use dataset::{
    dataset_report, edge_sums, mean_edge_attribution, DataSplit, DatasetOpts, DatasetReport,
    EdgeSums, MethodScores, Progress, MIB_FRACTIONS,
};
pub use edge_patch::{patch_edge_sets, patch_edges, EdgePatch};
pub use edges::{
    all_edges, connects, edge_attribution, edge_attributions, Edge, EdgeAttribution, Receiver,
};
pub use edges_ig::edge_attribution_ig;
pub use evaluate::{assemble_report, evaluate_circuits, EvalRows, Rankings, StudyInfo};
pub use faithfulness::{default_sizes, faithfulness_curve, FaithCurve, FaithPoint};
pub use mib::{
    circuit_sizes, cpr_cmd, faithfulness_of, paired_difference, ranked_edges, trapezoid, Interval,
};
pub use nodes::{exact_node_effects, node_attribution, patch_nodes, NodeAttribution};
pub use patterns::{head_pattern_scores, pattern, self_repair, HeadPatternScores, SelfRepairRow};
pub use report::{circuit_report, metric_name, CircuitReport};
pub use shard::{
    eval_part, find_part, merge_eval, merge_find, EvalPart, FindPart, FoundScores, Part, Shard,
    StudyKey,
};

use candle_core::{DType, IndexOp, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::hooks::{Cache, Hook, HookPoint};
use crate::model::layers::norm;
use crate::model::{ForwardOpts, Positions};

/// A component whose output is added to the residual stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Node {
    Embed,
    Head { layer: usize, head: usize },
    Mlp { layer: usize },
}

impl Node {
    /// `emb`, `L3H5`, `MLP2`.
    pub fn label(&self) -> String {
        match self {
            Node::Embed => "emb".into(),
            Node::Head { layer, head } => format!("L{layer}H{head}"),
            Node::Mlp { layer } => format!("MLP{layer}"),
        }
    }

    /// Parse `L3H5`, `MLP2`, `emb`.
    pub fn parse(s: &str) -> Result<Node> {
        let t = s.trim();
        let bad = || {
            GimError::input(format!(
                "`{s}` is not a component (use L<layer>H<head>, MLP<layer> or emb)"
            ))
        };
        let lower = t.to_ascii_lowercase();
        if lower == "emb" || lower == "embed" {
            return Ok(Node::Embed);
        }
        if let Some(rest) = lower.strip_prefix("mlp") {
            return Ok(Node::Mlp {
                layer: rest.parse().map_err(|_| bad())?,
            });
        }
        if let Some(rest) = lower.strip_prefix('l') {
            let (l, h) = rest.split_once('h').ok_or_else(bad)?;
            return Ok(Node::Head {
                layer: l.parse().map_err(|_| bad())?,
                head: h.parse().map_err(|_| bad())?,
            });
        }
        Err(bad())
    }

    pub fn check(&self, m: &LoadedModel) -> Result<()> {
        let c = &m.model.cfg;
        match *self {
            Node::Head { layer, head } if layer >= c.n_layers || head >= c.n_heads => {
                Err(GimError::input(format!(
                    "{} does not exist: the model has {} layers × {} heads",
                    self.label(),
                    c.n_layers,
                    c.n_heads
                )))
            }
            Node::Mlp { layer } if layer >= c.n_layers => Err(GimError::input(format!(
                "{} does not exist: the model has {} layers",
                self.label(),
                c.n_layers
            ))),
            _ => Ok(()),
        }
    }

    /// All nodes of a model in forward order.
    pub fn all(n_layers: usize, n_heads: usize) -> Vec<Node> {
        let mut v = vec![Node::Embed];
        for l in 0..n_layers {
            v.extend((0..n_heads).map(|h| Node::Head { layer: l, head: h }));
            v.push(Node::Mlp { layer: l });
        }
        v
    }
}

/// What the corrupted activations are.
#[derive(Debug, Clone, PartialEq)]
pub enum Corruption {
    /// a counterfactual prompt of the same length
    Prompt(Vec<u32>),
    /// every node's output set to zero
    Zero,
    /// every node's output replaced by its mean over the clean prompt's positions
    Mean,
}

/// A clean prompt, its corruption and the metric `logit(target) − logit(foil)` at the last position.
#[derive(Debug, Clone)]
pub struct Problem {
    pub clean: Vec<u32>,
    pub corrupt: Corruption,
    pub target: u32,
    pub foil: Option<u32>,
}

impl Problem {
    pub fn validate(&self, m: &LoadedModel) -> Result<()> {
        let v = m.model.cfg.vocab_size as u32;
        if self.clean.is_empty() {
            return Err(GimError::input("the clean prompt is empty"));
        }
        if let Corruption::Prompt(c) = &self.corrupt {
            if c.len() != self.clean.len() {
                return Err(GimError::input(format!(
                    "clean and corrupted prompts must have the same number of tokens ({} vs {}); pick names/words that are single tokens",
                    self.clean.len(),
                    c.len()
                )));
            }
        }
        if self.target >= v || self.foil.map(|f| f >= v).unwrap_or(false) {
            return Err(GimError::input(format!(
                "target or foil id is outside the vocabulary (size {v})"
            )));
        }
        Ok(())
    }

    /// Metric from hidden states at the last position `[b, 1, d]` → one value per row.
    pub fn metric_rows(&self, m: &LoadedModel, h: &Tensor) -> Result<Tensor> {
        let mut rows = vec![self.target];
        rows.extend(self.foil);
        let l = m.model.unembed_rows(h, &rows)?; // [b, 1, k]
        let t = l.i((.., 0, 0))?;
        match self.foil {
            Some(_) => Ok((t - l.i((.., 0, 1))?)?),
            None => Ok(t),
        }
    }
}

/// Run rows of ids with a hook (and split q/k/v inputs if asked) → metric per row.
pub(crate) fn metric_with(
    m: &LoadedModel,
    p: &Problem,
    ids: &[Vec<u32>],
    hook: Option<&mut dyn Hook>,
    split: bool,
) -> Result<Vec<f64>> {
    let e = m.model.embed_ids(ids)?;
    let mut o = ForwardOpts {
        hooks: hook,
        positions: Positions::Last,
        split_qkv_input: split,
        ..Default::default()
    };
    let h = m.model.forward_hidden(&e, &mut o)?;
    Ok(p.metric_rows(m, &h)?.to_dtype(DType::F64)?.to_vec1()?)
}

impl SenderActs {
    /// The metric of `p` on this run, where it was a plain forward of a prompt (`hidden` kept):
    /// no second forward.
    pub(crate) fn metric(&self, m: &LoadedModel, p: &Problem) -> Result<Option<f64>> {
        let Some(h) = &self.hidden else {
            return Ok(None);
        };
        Ok(Some(
            p.metric_rows(m, h)?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?[0],
        ))
    }
}

/// Sender outputs of one run, in the residual stream.
#[derive(Debug, Clone)]
pub struct SenderActs {
    /// `[1, s, d]`: token (+ position) embeddings, i.e. `hook_resid_pre` of layer 0
    pub embed: Tensor,
    /// per layer `[1, s, h, dh]`
    pub z: Vec<Tensor>,
    /// per layer `[1, s, h, d]`: each head's contribution to the residual stream
    pub heads: Vec<Tensor>,
    /// per layer `[1, s, d]`
    pub mlps: Vec<Tensor>,
    /// final-norm output at the last position `[1, 1, d]`, where this run was a plain forward of
    /// a prompt (its metric needs no second forward)
    pub hidden: Option<Tensor>,
}

/// Each head's contribution to the residual stream from `z` `[b, s, h, dh]`: its slice of the
/// output projection, times the frozen post-norm scale where the family has one.
pub(crate) fn head_results(m: &LoadedModel, l: usize, z: &Tensor) -> Result<Tensor> {
    let cfg = &m.model.cfg;
    let w = &m.model.w.blocks[l];
    let (b, s, h, dh) = z.dims4()?;
    let d = cfg.d_model;
    let wo = w
        .attn
        .o
        .w
        .tensor()?
        .reshape((d, h, dh))?
        .permute((1, 2, 0))?
        .contiguous()?; // [h, dh, d]
    let zh = z
        .permute((2, 0, 1, 3))?
        .reshape((h, b * s, dh))?
        .contiguous()?;
    let r = zh
        .matmul(&wo)?
        .reshape((h, b, s, d))?
        .permute((1, 2, 0, 3))?
        .contiguous()?; // [b, s, h, d]
    match &w.attn_post {
        None => Ok(r),
        Some(nw) => {
            // post_norm(Σ_h r_h + bias) with its statistic frozen is linear: scale each r_h alike.
            let mut total = r.sum(2)?;
            if let Some(bias) = &w.attn.o.b {
                total = total.broadcast_add(bias)?;
            }
            let normed = norm(cfg, nw, &total, true)?;
            let scale = (normed.to_dtype(DType::F64)? / total.to_dtype(DType::F64)?)?;
            // guard exact zeros (0/0)
            let scale = scale.eq(&scale)?.where_cond(&scale, &scale.zeros_like()?)?;
            Ok(r.to_dtype(DType::F64)?
                .broadcast_mul(&scale.unsqueeze(2)?)?
                .to_dtype(r.dtype())?)
        }
    }
}

fn sender_points(n: usize) -> Vec<HookPoint> {
    let mut v = vec![HookPoint::ResidPre(0)];
    for l in 0..n {
        v.push(HookPoint::Z(l));
        v.push(HookPoint::MlpOut(l));
    }
    v
}

/// Run `ids` and collect every sender's output.
pub fn sender_acts(m: &LoadedModel, ids: &[u32]) -> Result<SenderActs> {
    let n = m.model.cfg.n_layers;
    let mut cache = Cache::of(&sender_points(n));
    let e = m.model.embed_ids(&[ids.to_vec()])?;
    let mut o = ForwardOpts {
        hooks: Some(&mut cache),
        positions: Positions::Last,
        ..Default::default()
    };
    let hidden = m.model.forward_hidden(&e, &mut o)?;
    Ok(SenderActs {
        hidden: Some(hidden),
        ..acts_from(m, &cache.acts)?
    })
}

pub(crate) fn acts_from(
    m: &LoadedModel,
    acts: &std::collections::HashMap<HookPoint, Tensor>,
) -> Result<SenderActs> {
    let n = m.model.cfg.n_layers;
    let get = |p: HookPoint| {
        acts.get(&p)
            .cloned()
            .ok_or_else(|| GimError::input(format!("internal: {p} missing")))
    };
    let mut z = Vec::new();
    let mut heads = Vec::new();
    let mut mlps = Vec::new();
    for l in 0..n {
        let zl = get(HookPoint::Z(l))?.contiguous()?;
        heads.push(head_results(m, l, &zl)?);
        z.push(zl);
        mlps.push(get(HookPoint::MlpOut(l))?);
    }
    Ok(SenderActs {
        embed: get(HookPoint::ResidPre(0))?,
        z,
        heads,
        mlps,
        hidden: None,
    })
}

impl SenderActs {
    fn map(&self, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<SenderActs> {
        Ok(SenderActs {
            embed: f(&self.embed)?,
            z: self.z.iter().map(&f).collect::<Result<_>>()?,
            heads: self.heads.iter().map(&f).collect::<Result<_>>()?,
            mlps: self.mlps.iter().map(&f).collect::<Result<_>>()?,
            hidden: None,
        })
    }
}

/// The corrupted sender outputs for a problem, given the clean ones.
pub fn corrupt_acts(m: &LoadedModel, p: &Problem, clean: &SenderActs) -> Result<SenderActs> {
    match &p.corrupt {
        Corruption::Prompt(ids) => sender_acts(m, ids),
        Corruption::Zero => clean.map(|t| Ok(t.zeros_like()?)),
        Corruption::Mean => {
            clean.map(|t| Ok(t.mean_keepdim(1)?.broadcast_as(t.shape())?.contiguous()?))
        }
    }
}

/// Per-position Σ over the last dim of a·b → `[s]`.
pub(crate) fn dot_per_pos(a: &Tensor, b: &Tensor) -> Result<Vec<f64>> {
    Ok((a.to_dtype(DType::F64)? * b.to_dtype(DType::F64)?)?
        .sum(D::Minus1)?
        .flatten_all()?
        .to_vec1()?)
}

/// Spearman rank correlation (average ranks for ties).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            let avg = (i + j) as f64 / 2.0;
            for k in i..=j {
                r[idx[k]] = avg;
            }
            i = j + 1;
        }
        r
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let ma = ra.iter().sum::<f64>() / n;
    let mb = rb.iter().sum::<f64>() / n;
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 {
        return 0.0;
    }
    cov / (va * vb).sqrt()
}

/// How many of the `k` largest-|a| indices are among the `k` largest-|b| indices.
pub fn top_k_overlap(a: &[f64], b: &[f64], k: usize) -> usize {
    let top = |v: &[f64]| -> Vec<usize> {
        let mut i: Vec<usize> = (0..v.len()).collect();
        i.sort_by(|&x, &y| v[y].abs().total_cmp(&v[x].abs()));
        i.truncate(k);
        i
    };
    let (ta, tb) = (top(a), top(b));
    ta.iter().filter(|x| tb.contains(x)).count()
}
