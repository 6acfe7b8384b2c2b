//! Edge attribution: edge attribution patching with GIM gradients, every sender → receiver edge
//! scored from one clean forward, one corrupt forward and one backward pass.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::nodes::{clean_trace, corrupt_metric};
use super::{acts_from, corrupt_acts, Node, Problem, SenderActs};
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::backward::{Grads, Want};
use crate::model::GimRules;

/// Where an edge ends: a head's query/key/value input, an MLP's input, or the logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Receiver {
    Q {
        layer: usize,
        head: usize,
    },
    /// `head` is the key/value head index
    K {
        layer: usize,
        head: usize,
    },
    V {
        layer: usize,
        head: usize,
    },
    Mlp {
        layer: usize,
    },
    Logits,
}

impl Receiver {
    pub fn label(&self) -> String {
        match self {
            Receiver::Q { layer, head } => format!("L{layer}H{head}.q"),
            Receiver::K { layer, head } => format!("L{layer}H{head}.k"),
            Receiver::V { layer, head } => format!("L{layer}H{head}.v"),
            Receiver::Mlp { layer } => format!("MLP{layer}"),
            Receiver::Logits => "logits".into(),
        }
    }

    /// The node this receiver belongs to (`None` for the logits). K/V map to their first query head.
    pub fn node(&self, n_rep: usize) -> Option<Node> {
        match *self {
            Receiver::Q { layer, head } => Some(Node::Head { layer, head }),
            Receiver::K { layer, head } | Receiver::V { layer, head } => Some(Node::Head {
                layer,
                head: head * n_rep,
            }),
            Receiver::Mlp { layer } => Some(Node::Mlp { layer }),
            Receiver::Logits => None,
        }
    }

    fn layer(&self) -> usize {
        match *self {
            Receiver::Q { layer, .. }
            | Receiver::K { layer, .. }
            | Receiver::V { layer, .. }
            | Receiver::Mlp { layer } => layer,
            Receiver::Logits => usize::MAX,
        }
    }

    /// All receivers in forward order.
    pub fn all(n_layers: usize, n_heads: usize, n_kv: usize) -> Vec<Receiver> {
        let mut v = Vec::new();
        for l in 0..n_layers {
            v.extend((0..n_heads).map(|h| Receiver::Q { layer: l, head: h }));
            v.extend((0..n_kv).map(|h| Receiver::K { layer: l, head: h }));
            v.extend((0..n_kv).map(|h| Receiver::V { layer: l, head: h }));
            v.push(Receiver::Mlp { layer: l });
        }
        v.push(Receiver::Logits);
        v
    }
}

/// Every edge of a model's graph, in forward order (senders outer, receivers inner): the order
/// of [`EdgeAttribution::edges`].
pub fn all_edges(cfg: &crate::model::ModelConfig) -> Vec<(Node, Receiver)> {
    let receivers = Receiver::all(cfg.n_layers, cfg.n_heads, cfg.n_kv_heads);
    Node::all(cfg.n_layers, cfg.n_heads)
        .into_iter()
        .flat_map(|u| receivers.iter().map(move |&v| (u, v)))
        .filter(|&(u, v)| connects(u, v))
        .collect()
}

/// Whether the sender's output reaches the receiver's input directly through the residual stream.
pub fn connects(u: Node, v: Receiver) -> bool {
    match (u, v) {
        (_, Receiver::Logits) | (Node::Embed, _) => true,
        (Node::Head { layer, .. }, Receiver::Mlp { layer: lv }) => layer <= lv,
        (Node::Head { layer, .. }, r) => layer < r.layer(),
        (Node::Mlp { layer }, r) => layer < r.layer(),
    }
}

/// One scored edge.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub from: Node,
    pub to: Receiver,
    pub score: f64,
}

/// Scores of every edge: `Σ (a_clean[u] − a_corrupt[u]) · ∂m/∂(input of v)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeAttribution {
    pub edges: Vec<Edge>,
    pub metric_clean: f64,
    pub metric_corrupt: f64,
    pub rules: GimRules,
}

impl EdgeAttribution {
    /// Edges sorted by |score|, largest first (ties in forward order).
    pub fn ranked(&self) -> Vec<Edge> {
        let mut v = self.edges.clone();
        v.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()));
        v
    }
}

/// `[1, s, n, d]` per-head tensors as f64 rows `[n, s * d]`, one row per head.
fn head_rows(t: Tensor) -> Result<Tensor> {
    let (_, s, n, d) = t.dims4()?;
    Ok(t.squeeze(0)?
        .transpose(0, 1)?
        .to_dtype(DType::F64)?
        .contiguous()?
        .reshape((n, s * d))?)
}

/// A `[1, s, d]` tensor as one f64 row `[1, s * d]`.
fn row(t: Tensor) -> Result<Tensor> {
    let n = t.elem_count();
    Ok(t.to_dtype(DType::F64)?.reshape((1, n))?)
}

/// Sender deltas `a_clean − a_corrupt` as f64 blocks of rows `[n, s * d]`, in [`Node::all`]
/// order: the embeddings, then per layer its heads and its MLP. Consumes the activations so
/// that each layer's f32 copies are freed as its block is made (the 1B shape at 256 tokens
/// holds about 1 GB of head outputs per run).
fn sender_delta_blocks(clean: SenderActs, corr: SenderActs) -> Result<Vec<Tensor>> {
    let mut blocks = vec![row((clean.embed - corr.embed)?)?];
    let layers = clean
        .heads
        .into_iter()
        .zip(corr.heads)
        .zip(clean.mlps.into_iter().zip(corr.mlps));
    for ((hc, hk), (mc, mk)) in layers {
        blocks.push(head_rows((hc - hk)?)?);
        blocks.push(row((mc - mk)?)?);
    }
    Ok(blocks)
}

/// Score every edge from one clean forward, one corrupt forward and one backward pass.
///
/// Scores are reduced one receiver layer at a time against only the sender blocks that can
/// reach it, so memory holds the sender deltas plus one layer of receiver gradients.
pub fn edge_attribution(m: &LoadedModel, p: &Problem, rules: GimRules) -> Result<EdgeAttribution> {
    edge_attributions(m, p, &[rules])?
        .pop()
        .ok_or_else(|| GimError::input("internal: no edge attribution"))
}

/// [`edge_attribution`] under each of `rule_sets`, sharing the clean trace, the corrupt run
/// and the sender deltas: one backward pass per rule set.
pub fn edge_attributions(
    m: &LoadedModel,
    p: &Problem,
    rule_sets: &[GimRules],
) -> Result<Vec<EdgeAttribution>> {
    let Some(&first) = rule_sets.first() else {
        return Ok(Vec::new());
    };
    let (metric_clean, mut t, dh) = clean_trace(m, p, first)?;
    let clean = acts_from(m, &t.acts)?;
    let corr = corrupt_acts(m, p, &clean)?;
    let metric_corrupt = corrupt_metric(m, p, &corr)?;
    let blocks = sender_delta_blocks(clean, corr)?;
    let want = Want {
        nodes: false,
        receivers: true,
    };
    let mut out = Vec::with_capacity(rule_sets.len());
    for &rules in rule_sets {
        t.rules = rules;
        let g = m.model.backward(&t, &dh, want)?;
        out.push(EdgeAttribution {
            edges: score_blocks(m, &blocks, g)?,
            metric_clean,
            metric_corrupt,
            rules,
        });
    }
    Ok(out)
}

/// Every edge's `Σ (a_clean[u] − a_corrupt[u]) · g[v]` from the two runs' sender outputs and the
/// receiver gradients `g` (one-row batch).
pub(super) fn score_edges(
    m: &LoadedModel,
    clean: SenderActs,
    corr: SenderActs,
    g: Grads,
) -> Result<Vec<Edge>> {
    score_blocks(m, &sender_delta_blocks(clean, corr)?, g)
}

/// [`score_edges`] from the sender deltas as [`sender_delta_blocks`] makes them.
fn score_blocks(m: &LoadedModel, blocks: &[Tensor], g: Grads) -> Result<Vec<Edge>> {
    let cfg = &m.model.cfg;
    let senders = Node::all(cfg.n_layers, cfg.n_heads);
    let receivers = Receiver::all(cfg.n_layers, cfg.n_heads, cfg.n_kv_heads);
    // sender blocks and receiver layers are contiguous runs of these lists, in their order
    let logits_g = g
        .logits_input
        .ok_or_else(|| GimError::input("internal: no logits gradient"))?;
    let mut scores = vec![vec![0f64; receivers.len()]; senders.len()];
    // scores[sender][r0..] for one receiver block, against the sender blocks that reach it
    let mut r0 = 0;
    let mut score_block = |gl: Tensor| -> Result<()> {
        let nr = gl.dim(0)?;
        let gt = gl.t()?;
        let mut s0 = 0;
        for dmat in blocks {
            let ns = dmat.dim(0)?;
            if (r0..r0 + nr).any(|j| connects(senders[s0], receivers[j])) {
                let sc: Vec<Vec<f64>> = dmat.matmul(&gt)?.to_vec2()?;
                for (i, row) in sc.into_iter().enumerate() {
                    scores[s0 + i][r0..r0 + nr].copy_from_slice(&row);
                }
            }
            s0 += ns;
        }
        r0 += nr;
        Ok(())
    };
    let layers = g
        .q_input
        .into_iter()
        .zip(g.k_input)
        .zip(g.v_input.into_iter().zip(g.mlp_input));
    for ((q, k), (v, mi)) in layers {
        let heads = [head_rows(q)?, head_rows(k)?, head_rows(v)?, row(mi)?];
        score_block(Tensor::cat(&heads, 0)?)?;
    }
    score_block(row(logits_g)?)?;
    let mut edges = Vec::new();
    for (i, u) in senders.iter().enumerate() {
        for (j, v) in receivers.iter().enumerate() {
            if connects(*u, *v) {
                edges.push(Edge {
                    from: *u,
                    to: *v,
                    score: scores[i][j],
                });
            }
        }
    }
    Ok(edges)
}

#[cfg(test)]
mod tests {
    use super::super::nodes::clean_grads;
    use super::*;
    use crate::model::hooks::HookPoint;
    use crate::model::Positions;

    /// Summed over its senders, a receiver's edge scores must equal the change of the receiver's
    /// whole input (the residual stream it reads, clean − corrupt) times its gradient: the senders
    /// add up to the residual stream. This checks every score against traced activations, not
    /// against the sender decomposition the scores are built from.
    #[test]
    fn edge_scores_sum_to_the_receiver_input_change_times_its_gradient() {
        let cases = ["llama", "gpt2"]
            .into_iter()
            .flat_map(|a| [(a, GimRules::gim()), (a, GimRules::off())]);
        for (arch, rules) in cases {
            let dir = format!(
                "{}/../shared/fixtures/models/{arch}",
                env!("CARGO_MANIFEST_DIR")
            );
            let m = crate::load(&dir, &Default::default()).unwrap();
            let clean: Vec<u32> = vec![57, 260, 80, 372, 294, 340, 273, 84, 278, 11, 300];
            let mut corrupt = clean.clone();
            corrupt[3] = 101;
            corrupt[8] = 202;
            let p = Problem {
                clean: clean.clone(),
                corrupt: crate::circuit::Corruption::Prompt(corrupt.clone()),
                target: 372,
                foil: Some(340),
            };
            let ea = edge_attribution(&m, &p, rules).unwrap();
            let want = Want {
                nodes: false,
                receivers: true,
            };
            let (_, _, g) = clean_grads(&m, &p, rules, want).unwrap();
            let traced = |ids: &Vec<u32>| {
                let e = m.model.embed_ids(std::slice::from_ref(ids)).unwrap();
                let t = m
                    .model
                    .forward_traced(&e, GimRules::gim(), Positions::Last, None);
                t.unwrap().acts
            };
            let (c, k) = (traced(&clean), traced(&corrupt));
            let delta = |h: HookPoint| (&c[&h] - &k[&h]).unwrap().to_dtype(DType::F64).unwrap();
            let dot = |a: &Tensor, b: &Tensor| -> f64 {
                let b = b.to_dtype(DType::F64).unwrap();
                (a * b).unwrap().sum_all().unwrap().to_scalar().unwrap()
            };
            let cfg = &m.model.cfg;
            let mut expected: Vec<(Receiver, f64)> = Vec::new();
            for l in 0..cfg.n_layers {
                let d_pre = delta(HookPoint::ResidPre(l));
                for h in 0..cfg.n_heads {
                    let gq = g.q_input[l].narrow(2, h, 1).unwrap().squeeze(2).unwrap();
                    expected.push((Receiver::Q { layer: l, head: h }, dot(&d_pre, &gq)));
                }
                for h in 0..cfg.n_kv_heads {
                    let gk = g.k_input[l].narrow(2, h, 1).unwrap().squeeze(2).unwrap();
                    let gv = g.v_input[l].narrow(2, h, 1).unwrap().squeeze(2).unwrap();
                    expected.push((Receiver::K { layer: l, head: h }, dot(&d_pre, &gk)));
                    expected.push((Receiver::V { layer: l, head: h }, dot(&d_pre, &gv)));
                }
                let d_mid = delta(HookPoint::MlpIn(l));
                expected.push((Receiver::Mlp { layer: l }, dot(&d_mid, &g.mlp_input[l])));
            }
            let d_last = delta(HookPoint::ResidPost(cfg.n_layers - 1));
            let logits_g = g.logits_input.as_ref().unwrap();
            expected.push((Receiver::Logits, dot(&d_last, logits_g)));
            let scale = expected.iter().map(|(_, v)| v.abs()).fold(0.0, f64::max);
            assert!(scale > 1e-6, "{arch}: degenerate problem");
            for (r, want) in expected {
                let got: f64 = ea.edges.iter().filter(|e| e.to == r).map(|e| e.score).sum();
                assert!(
                    (got - want).abs() <= 1e-5 * scale,
                    "{arch} {rules:?} {}: Σ edge scores {got} vs Δinput·grad {want}",
                    r.label()
                );
            }
        }
    }
}
