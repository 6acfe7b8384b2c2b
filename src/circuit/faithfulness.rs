//! Faithfulness curves: the metric of the top-k circuits of a ranking, every other edge patched
//! to its corrupted value.

use serde::{Deserialize, Serialize};

use super::edge_patch::patch_edge_sets;
use super::edges::{Edge, Receiver};
use super::{corrupt_acts, Node, Problem};
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;

/// One point of a faithfulness curve.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct FaithPoint {
    pub edges: usize,
    pub metric: f64,
    pub faithfulness: f64,
}

/// Faithfulness of the top-k circuits of one ranking.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaithCurve {
    pub name: String,
    pub points: Vec<FaithPoint>,
    /// area under faithfulness vs fraction of edges kept (trapezoid)
    pub area: f64,
    /// fewest edges on the curve reaching the threshold asked for, if any
    pub edges_to_threshold: Option<usize>,
}

/// Sizes 0, 1, 2, … up to `dense`, then growing by ~25% up to `total`.
pub fn default_sizes(total: usize, dense: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..=dense.min(total)).collect();
    let mut k = dense.max(1) as f64;
    while (k as usize) < total {
        k *= 1.25;
        v.push((k as usize).min(total));
    }
    v.push(total);
    v.sort();
    v.dedup();
    v
}

#[allow(clippy::too_many_arguments)]
/// For each size k, keep the k highest-|score| edges of `ranking` and patch every other edge to
/// its corrupted value; faithfulness = (m(circuit) − m(corrupt)) / (m(clean) − m(corrupt)).
pub fn faithfulness_curve(
    m: &LoadedModel,
    p: &Problem,
    name: &str,
    ranking: &[Edge],
    sizes: &[usize],
    threshold: f64,
    m_clean: f64,
    m_corrupt: f64,
) -> Result<FaithCurve> {
    let clean = super::sender_acts(m, &p.clean)?;
    let corr = corrupt_acts(m, p, &clean)?;
    let total = ranking.len();
    let denom = m_clean - m_corrupt;
    if denom.abs() < 1e-9 {
        return Err(GimError::input(
            "the clean and corrupted metrics are equal, so faithfulness is undefined; choose a corruption that changes the prediction",
        ));
    }
    crate::interrupt::check()?;
    let outside: Vec<(Node, Receiver)> = ranking.iter().map(|e| (e.from, e.to)).collect();
    let ks: Vec<usize> = sizes.iter().map(|&k| k.min(total)).collect();
    let sets: Vec<&[(Node, Receiver)]> = ks.iter().map(|&k| &outside[k..]).collect();
    let ms = patch_edge_sets(m, p, &corr, &sets)?;
    let points: Vec<FaithPoint> = ks
        .iter()
        .zip(ms)
        .map(|(&k, mk)| FaithPoint {
            edges: k,
            metric: mk,
            faithfulness: (mk - m_corrupt) / denom,
        })
        .collect();
    let mut area = 0.0;
    for w in points.windows(2) {
        let dx = (w[1].edges - w[0].edges) as f64 / total.max(1) as f64;
        area += dx * 0.5 * (w[0].faithfulness + w[1].faithfulness);
    }
    let edges_to_threshold = points
        .iter()
        .find(|p| p.faithfulness >= threshold)
        .map(|p| p.edges);
    Ok(FaithCurve {
        name: name.into(),
        points,
        area,
        edges_to_threshold,
    })
}
