//! Attention-pattern scores (previous-token and induction heads) and self-repair measurements.

use candle_core::{DType, IndexOp};
use serde::{Deserialize, Serialize};

use super::edge_patch::patch_edges;
use super::edges::Receiver;
use super::{corrupt_acts, metric_with, sender_acts, Node, Problem};
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::hooks::{Cache, HookPoint};
use crate::model::{ForwardOpts, Positions};

/// Per head: mean attention to the previous token, and to the token after the previous
/// occurrence of the current token (induction), on a prompt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadPatternScores {
    /// `[layer][head]`
    pub prev_token: Vec<Vec<f64>>,
    pub induction: Vec<Vec<f64>>,
}

/// The attention pattern `[s_q][s_k]` of one head on `ids`.
pub fn pattern(m: &LoadedModel, ids: &[u32], layer: usize, head: usize) -> Result<Vec<Vec<f64>>> {
    Node::Head { layer, head }.check(m)?;
    let mut cache = Cache::of(&[HookPoint::Pattern(layer)]);
    let e = m.model.embed_ids(&[ids.to_vec()])?;
    let mut o = ForwardOpts {
        hooks: Some(&mut cache),
        positions: Positions::Last,
        ..Default::default()
    };
    m.model.forward_hidden(&e, &mut o)?;
    Ok(cache
        .get(HookPoint::Pattern(layer))?
        .i((0, head))?
        .to_dtype(DType::F64)?
        .to_vec2()?)
}

/// Previous-token and induction scores of every head on `ids`.
pub fn head_pattern_scores(m: &LoadedModel, ids: &[u32]) -> Result<HeadPatternScores> {
    let cfg = &m.model.cfg;
    let points: Vec<HookPoint> = (0..cfg.n_layers).map(HookPoint::Pattern).collect();
    let mut cache = Cache::of(&points);
    let e = m.model.embed_ids(&[ids.to_vec()])?;
    let mut o = ForwardOpts {
        hooks: Some(&mut cache),
        positions: Positions::Last,
        ..Default::default()
    };
    m.model.forward_hidden(&e, &mut o)?;
    let s = ids.len();
    // for each query position, the keys right after an earlier occurrence of the same token
    let induction_keys: Vec<Vec<usize>> = (0..s)
        .map(|q| {
            (0..q)
                .filter(|&k| k + 1 < q && ids[k] == ids[q])
                .map(|k| k + 1)
                .collect()
        })
        .collect();
    let mut prev = vec![vec![0.0; cfg.n_heads]; cfg.n_layers];
    let mut ind = vec![vec![0.0; cfg.n_heads]; cfg.n_layers];
    for l in 0..cfg.n_layers {
        let p: Vec<Vec<Vec<f64>>> = cache
            .get(HookPoint::Pattern(l))?
            .i(0)?
            .to_dtype(DType::F64)?
            .to_vec3()?;
        for h in 0..cfg.n_heads {
            let pp: Vec<f64> = (1..s).map(|q| p[h][q][q - 1]).collect();
            prev[l][h] = pp.iter().sum::<f64>() / pp.len().max(1) as f64;
            let ii: Vec<f64> = (0..s)
                .filter(|&q| !induction_keys[q].is_empty())
                .map(|q| induction_keys[q].iter().map(|&k| p[h][q][k]).sum())
                .collect();
            ind[l][h] = ii.iter().sum::<f64>() / ii.len().max(1) as f64;
        }
    }
    Ok(HeadPatternScores {
        prev_token: prev,
        induction: ind,
    })
}

/// Self-repair of one head: the total effect of corrupting it against its direct effect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SelfRepairRow {
    pub node: Node,
    pub label: String,
    /// m(clean) − m(head corrupted): what the model really loses
    pub total_effect: f64,
    /// m(clean) − m(only the head → logits edge corrupted): what the head writes directly
    pub direct_effect: f64,
    /// direct − total: how much downstream components compensate
    pub self_repair: f64,
}

/// Direct vs total effect of every head (or the given ones).
pub fn self_repair(
    m: &LoadedModel,
    p: &Problem,
    heads: Option<&[Node]>,
) -> Result<Vec<SelfRepairRow>> {
    p.validate(m)?;
    let cfg = &m.model.cfg;
    let all: Vec<Node> = match heads {
        Some(h) => h.to_vec(),
        None => Node::all(cfg.n_layers, cfg.n_heads)
            .into_iter()
            .filter(|n| matches!(n, Node::Head { .. }))
            .collect(),
    };
    let clean = sender_acts(m, &p.clean)?;
    let corr = corrupt_acts(m, p, &clean)?;
    let base = metric_with(m, p, std::slice::from_ref(&p.clean), None, false)?[0];
    let mut rows = Vec::new();
    for n in all {
        crate::interrupt::check()?;
        if !matches!(n, Node::Head { .. }) {
            return Err(GimError::input(format!(
                "{} is not an attention head",
                n.label()
            )));
        }
        n.check(m)?;
        let mut hook = super::nodes::NodePatcher::new(m, &corr, &[vec![n]])?;
        let total =
            base - metric_with(m, p, std::slice::from_ref(&p.clean), Some(&mut hook), false)?[0];
        let direct = base - patch_edges(m, p, &corr, &[(n, Receiver::Logits)])?;
        rows.push(SelfRepairRow {
            node: n,
            label: n.label(),
            total_effect: total,
            direct_effect: direct,
            self_repair: direct - total,
        });
    }
    Ok(rows)
}
