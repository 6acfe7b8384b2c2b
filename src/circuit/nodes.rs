//! Node attribution (attribution patching with GIM gradients) and exact node patching.

use std::collections::HashMap;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::{acts_from, corrupt_acts, dot_per_pos, metric_with, Node, Problem, SenderActs};
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::backward::Want;
use crate::model::hooks::{Hook, HookPoint};
use crate::model::{GimRules, Positions};

/// Node scores `Σ (a_clean − a_corrupt) · ∂m/∂a` (an estimate of `m(clean) − m(node corrupted)`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeAttribution {
    pub nodes: Vec<Node>,
    pub labels: Vec<String>,
    /// summed over positions
    pub scores: Vec<f64>,
    /// per node, per position
    pub per_position: Vec<Vec<f64>>,
    pub metric_clean: f64,
    pub metric_corrupt: f64,
    pub rules: GimRules,
}

impl NodeAttribution {
    /// Head scores as `[layer][head]` and MLP scores per layer (for the layer × head map).
    pub fn grid(&self, n_layers: usize, n_heads: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
        let mut g = vec![vec![0.0; n_heads]; n_layers];
        let mut mlp = vec![0.0; n_layers];
        for (n, s) in self.nodes.iter().zip(&self.scores) {
            match *n {
                Node::Head { layer, head } => g[layer][head] = *s,
                Node::Mlp { layer } => mlp[layer] = *s,
                Node::Embed => {}
            }
        }
        (g, mlp)
    }

    /// Nodes sorted by |score|, largest first.
    pub fn ranked(&self) -> Vec<(Node, f64)> {
        let mut v: Vec<(Node, f64)> = self
            .nodes
            .iter()
            .copied()
            .zip(self.scores.iter().copied())
            .collect();
        v.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        v
    }
}

/// The clean run traced for backward passes: its metric, the trace and the metric's gradient at
/// the final hidden state. The forward is the same under every rule set (rules change only the
/// backward), so one trace serves each rule set: set `rules` on it before [`Transformer::backward`].
///
/// [`Transformer::backward`]: crate::model::Transformer::backward
pub(crate) fn clean_trace(
    m: &LoadedModel,
    p: &Problem,
    rules: GimRules,
) -> Result<(f64, crate::model::backward::Traced, Tensor)> {
    p.validate(m)?;
    let e = m.model.embed_ids(std::slice::from_ref(&p.clean))?;
    let t = m.model.forward_traced(&e, rules, Positions::Last, None)?;
    let hv = Var::from_tensor(&t.hidden)?;
    let val = p.metric_rows(m, hv.as_tensor())?;
    let metric = val.to_dtype(DType::F64)?.to_vec1::<f64>()?[0];
    let gs = val.sum_all()?.backward()?;
    let dh = gs
        .get(hv.as_tensor())
        .cloned()
        .ok_or_else(|| GimError::input("internal: no gradient at the final hidden state"))?;
    Ok((metric, t, dh))
}

/// Gradient of the metric at the clean run with `rules`: the trace, the gradients and the clean acts.
pub(crate) fn clean_grads(
    m: &LoadedModel,
    p: &Problem,
    rules: GimRules,
    want: Want,
) -> Result<(f64, SenderActs, crate::model::backward::Grads)> {
    let (metric, t, dh) = clean_trace(m, p, rules)?;
    let g = m.model.backward(&t, &dh, want)?;
    let acts = acts_from(m, &t.acts)?;
    Ok((metric, acts, g))
}

/// Metric of the corrupted run (the corrupt prompt, or every node ablated).
pub(crate) fn corrupt_metric(m: &LoadedModel, p: &Problem, corr: &SenderActs) -> Result<f64> {
    match &p.corrupt {
        // the corrupt prompt's own forward already ran (`sender_acts`), or runs now
        super::Corruption::Prompt(ids) => match corr.metric(m, p)? {
            Some(v) => Ok(v),
            None => Ok(metric_with(m, p, std::slice::from_ref(ids), None, false)?[0]),
        },
        _ => {
            let all = Node::all(m.model.cfg.n_layers, m.model.cfg.n_heads);
            let mut hook = NodePatcher::new(m, corr, &[all])?;
            Ok(metric_with(m, p, std::slice::from_ref(&p.clean), Some(&mut hook), false)?[0])
        }
    }
}

/// Attribute every node (embeddings, heads, MLPs) with the given backward rules
/// (`GimRules::gim()` for GIM, `GimRules::off()` for plain attribution patching).
pub fn node_attribution(m: &LoadedModel, p: &Problem, rules: GimRules) -> Result<NodeAttribution> {
    let (metric_clean, clean, g) = clean_grads(
        m,
        p,
        rules,
        Want {
            nodes: true,
            receivers: false,
        },
    )?;
    let corr = corrupt_acts(m, p, &clean)?;
    let metric_corrupt = corrupt_metric(m, p, &corr)?;
    let cfg = &m.model.cfg;
    let grad = |pt: HookPoint| -> Result<&Tensor> {
        g.at.get(&pt)
            .ok_or_else(|| GimError::input(format!("internal: no gradient at {pt}")))
    };
    let mut nodes = Vec::new();
    let mut per_position = Vec::new();
    nodes.push(Node::Embed);
    per_position.push(dot_per_pos(
        &(&clean.embed - &corr.embed)?,
        grad(HookPoint::ResidPre(0))?,
    )?);
    for l in 0..cfg.n_layers {
        let dz = (&clean.z[l] - &corr.z[l])?; // [1, s, h, dh]
        let gz = grad(HookPoint::Z(l))?;
        let per = (dz.to_dtype(DType::F64)? * gz.to_dtype(DType::F64)?)?
            .sum(3)?
            .squeeze(0)?; // [s, h]
        let per: Vec<Vec<f64>> = per.t()?.to_vec2()?; // [h][s]
        for (h, row) in per.into_iter().enumerate() {
            nodes.push(Node::Head { layer: l, head: h });
            per_position.push(row);
        }
        nodes.push(Node::Mlp { layer: l });
        per_position.push(dot_per_pos(
            &(&clean.mlps[l] - &corr.mlps[l])?,
            grad(HookPoint::MlpOut(l))?,
        )?);
    }
    Ok(NodeAttribution {
        labels: nodes.iter().map(|n| n.label()).collect(),
        scores: per_position.iter().map(|v| v.iter().sum()).collect(),
        nodes,
        per_position,
        metric_clean,
        metric_corrupt,
        rules,
    })
}

/// Patches node outputs to their corrupted values; row r of the batch patches `sets[r]`.
pub(crate) struct NodePatcher {
    points: HashMap<HookPoint, (Tensor, Tensor)>,
}

impl NodePatcher {
    pub(crate) fn new(m: &LoadedModel, corr: &SenderActs, sets: &[Vec<Node>]) -> Result<Self> {
        let cfg = &m.model.cfg;
        let b = sets.len();
        let (n, h) = (cfg.n_layers, cfg.n_heads);
        let mut emb = vec![0u8; b];
        let mut heads = vec![vec![0u8; b * h]; n];
        let mut mlps = vec![vec![0u8; b]; n];
        for (r, set) in sets.iter().enumerate() {
            for node in set {
                node.check(m)?;
                match *node {
                    Node::Embed => emb[r] = 1,
                    Node::Head { layer, head } => heads[layer][r * h + head] = 1,
                    Node::Mlp { layer } => mlps[layer][r] = 1,
                }
            }
        }
        let dev = &m.model.device;
        let mut points = HashMap::new();
        if emb.contains(&1) {
            points.insert(
                HookPoint::ResidPre(0),
                (corr.embed.clone(), Tensor::from_vec(emb, (b, 1, 1), dev)?),
            );
        }
        for l in 0..n {
            if heads[l].contains(&1) {
                let mk = Tensor::from_vec(heads[l].clone(), (b, 1, h, 1), dev)?;
                points.insert(HookPoint::Z(l), (corr.z[l].clone(), mk));
            }
            if mlps[l].contains(&1) {
                points.insert(
                    HookPoint::MlpOut(l),
                    (
                        corr.mlps[l].clone(),
                        Tensor::from_vec(mlps[l].clone(), (b, 1, 1), dev)?,
                    ),
                );
            }
        }
        Ok(NodePatcher { points })
    }
}

impl Hook for NodePatcher {
    fn wants(&self, p: HookPoint) -> bool {
        self.points.contains_key(&p)
    }
    fn apply(&mut self, p: HookPoint, x: Tensor) -> Result<Tensor> {
        let Some((v, mk)) = self.points.get(&p) else {
            return Ok(x);
        };
        let v = v.to_dtype(x.dtype())?.broadcast_as(x.shape())?;
        Ok(mk.broadcast_as(x.shape())?.where_cond(&v, &x)?)
    }
}

/// The metric with `nodes` patched to their corrupted values.
pub fn patch_nodes(m: &LoadedModel, p: &Problem, nodes: &[Node]) -> Result<f64> {
    p.validate(m)?;
    let clean = super::sender_acts(m, &p.clean)?;
    let corr = corrupt_acts(m, p, &clean)?;
    let mut hook = NodePatcher::new(m, &corr, &[nodes.to_vec()])?;
    Ok(metric_with(m, p, std::slice::from_ref(&p.clean), Some(&mut hook), false)?[0])
}

/// Ground truth: `m(clean) − m(node patched)` for every node, by really running the model
/// (batched, one row per node).
pub fn exact_node_effects(m: &LoadedModel, p: &Problem) -> Result<(Vec<Node>, Vec<f64>)> {
    p.validate(m)?;
    let clean = super::sender_acts(m, &p.clean)?;
    let corr = corrupt_acts(m, p, &clean)?;
    let base = metric_with(m, p, std::slice::from_ref(&p.clean), None, false)?[0];
    let nodes = Node::all(m.model.cfg.n_layers, m.model.cfg.n_heads);
    let mut effects = Vec::with_capacity(nodes.len());
    for chunk in nodes.chunks(32) {
        crate::interrupt::check()?;
        let sets: Vec<Vec<Node>> = chunk.iter().map(|n| vec![*n]).collect();
        let mut hook = NodePatcher::new(m, &corr, &sets)?;
        let rows = vec![p.clean.clone(); sets.len()];
        let v = metric_with(m, p, &rows, Some(&mut hook), false)?;
        effects.extend(v.iter().map(|x| base - x));
    }
    Ok((nodes, effects))
}
