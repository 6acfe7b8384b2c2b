//! A whole circuit hunt (`%gim circuit`, `gim circuit`): edge attribution, the kept circuit and
//! faithfulness curves verified by patching, as one result.

use super::{default_sizes, edge_attribution, faithfulness_curve, Edge, FaithCurve, Problem};
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::GimRules;

fn shuffled(edges: &[Edge], seed: u64) -> Vec<Edge> {
    let mut v = edges.to_vec();
    let mut rng = crate::rng::Rng::new(seed);
    for i in (1..v.len()).rev() {
        let j = rng.below(i + 1);
        v.swap(i, j);
    }
    v
}

/// Curves and the chosen circuit, shared with `gim circuit --json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CircuitReport {
    pub metric: String,
    pub metric_clean: f64,
    pub metric_corrupt: f64,
    pub n_edges: usize,
    pub threshold: f64,
    pub circuit: Vec<Edge>,
    pub circuit_faithfulness: f64,
    pub curves: Vec<FaithCurve>,
}

/// Find a circuit on `p`: rank edges by edge attribution under `rules`, keep the top `top` (or
/// the fewest edges whose circuit reaches `faithfulness`, default 0.9), and verify by patching
/// (curves of GIM, plain attribution patching and a random ranking seeded by `seed`).
pub fn circuit_report(
    m: &LoadedModel,
    p: &Problem,
    rules: GimRules,
    top: Option<usize>,
    faithfulness: Option<f64>,
    seed: u64,
) -> Result<CircuitReport> {
    let threshold = faithfulness.unwrap_or(0.9);
    if !(threshold.is_finite() && threshold > 0.0 && threshold <= 1.5) {
        return Err(GimError::input(
            "--faithfulness must be a number in (0, 1.5]",
        ));
    }
    let gim = edge_attribution(m, p, rules)?;
    let plain = edge_attribution(m, p, GimRules::off())?;
    let n = gim.edges.len();
    let sizes = default_sizes(n, 64);
    let (mc, mk) = (gim.metric_clean, gim.metric_corrupt);
    let rg = gim.ranked();
    let curves = vec![
        faithfulness_curve(m, p, "gim", &rg, &sizes, threshold, mc, mk)?,
        faithfulness_curve(m, p, "gradient", &plain.ranked(), &sizes, threshold, mc, mk)?,
        faithfulness_curve(
            m,
            p,
            "random",
            &shuffled(&gim.edges, seed),
            &sizes,
            threshold,
            mc,
            mk,
        )?,
    ];
    let k = match top {
        Some(k) => k.min(n),
        None => curves[0].edges_to_threshold.unwrap_or(n),
    };
    let fk = curves[0]
        .points
        .iter()
        .find(|p| p.edges >= k)
        .map(|p| p.faithfulness)
        .unwrap_or(f64::NAN);
    Ok(CircuitReport {
        metric: metric_name(m, p),
        metric_clean: mc,
        metric_corrupt: mk,
        n_edges: n,
        threshold,
        circuit: rg[..k].to_vec(),
        circuit_faithfulness: fk,
        curves,
    })
}

/// "logit(Mary) − logit(John)" for titles.
pub fn metric_name(m: &LoadedModel, p: &Problem) -> String {
    match p.foil {
        Some(f) => format!(
            "logit({}) − logit({})",
            m.tok.decode_one(p.target).trim(),
            m.tok.decode_one(f).trim()
        ),
        None => format!("logit({})", m.tok.decode_one(p.target).trim()),
    }
}
