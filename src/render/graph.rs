//! Circuit graphs drawn in layers: embeddings at the bottom, each layer's heads and MLP above,
//! logits at the top; edges weighted by |score| and coloured by sign.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::color::{Rgb, INK, MUTED};
use super::scene::{Align, Scene, Shape};
use super::text::{escape_missing, text_width};
use super::Figure;
use crate::error::{GimError, Result};

/// What a circuit node stands for; decides its row and fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    Embedding,
    Head,
    Mlp,
    Logit,
}

/// A node: `layer` is ignored for embeddings (bottom row) and logits (top row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitNode {
    pub id: String,
    /// Shown in the box, e.g. `L3H5`, `MLP2`, `emb "Paris"`.
    pub label: String,
    pub layer: usize,
    pub kind: NodeKind,
}

/// A directed edge `from` → `to` (node ids) with a signed score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitEdge {
    pub from: String,
    pub to: String,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitGraph {
    pub nodes: Vec<CircuitNode>,
    pub edges: Vec<CircuitEdge>,
    pub title: String,
}

/// Options of [`circuit_graph`].
#[derive(Debug, Clone, PartialEq)]
pub struct GraphOpts {
    /// Draw only the `top_k` edges by |score|.
    pub top_k: usize,
    /// Leave out nodes that no drawn edge touches.
    pub hide_isolated: bool,
}

impl Default for GraphOpts {
    fn default() -> Self {
        GraphOpts {
            top_k: 40,
            hide_isolated: true,
        }
    }
}

pub(crate) const POSITIVE: Rgb = Rgb(0xc0, 0x39, 0x2b);
pub(crate) const NEGATIVE: Rgb = Rgb(0x21, 0x66, 0xac);
/// Node outline (tests count nodes by it).
pub(crate) const NODE_BORDER: Rgb = Rgb(0x4a, 0x4a, 0x4a);
const MARGIN: f64 = 24.0;
const NODE_H: f64 = 24.0;
const NODE_GAP: f64 = 10.0;
const ROW_GAP: f64 = 58.0;
const LABEL_PX: f64 = 11.0;

fn fill(kind: NodeKind) -> Rgb {
    match kind {
        NodeKind::Embedding => Rgb(0xe3, 0xf1, 0xe1),
        NodeKind::Head => Rgb(0xe6, 0xe9, 0xf5),
        NodeKind::Mlp => Rgb(0xfd, 0xef, 0xd9),
        NodeKind::Logit => Rgb(0xf0, 0xe4, 0xf3),
    }
}

/// Row of a node counted from the bottom: embeddings 0, layer L's heads 2L+1, its MLP 2L+2, logits last.
fn rank(n: &CircuitNode) -> usize {
    match n.kind {
        NodeKind::Embedding => 0,
        NodeKind::Head => 2 * n.layer + 1,
        NodeKind::Mlp => 2 * n.layer + 2,
        NodeKind::Logit => usize::MAX,
    }
}

fn row_name(n: &CircuitNode) -> String {
    match n.kind {
        NodeKind::Embedding => "embed".into(),
        NodeKind::Head => format!("L{} attn", n.layer),
        NodeKind::Mlp => format!("L{} mlp", n.layer),
        NodeKind::Logit => "logits".into(),
    }
}

/// The layered drawing. Nodes in a row never overlap (the figure widens instead); within a row
/// nodes are ordered by a few barycentre sweeps to reduce crossings.
pub fn circuit_graph(g: &CircuitGraph, opts: &GraphOpts) -> Result<Figure> {
    let index: BTreeMap<&str, usize> = g
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    if index.len() != g.nodes.len() {
        return Err(GimError::input("circuit node ids must be unique"));
    }
    for e in &g.edges {
        for end in [&e.from, &e.to] {
            if !index.contains_key(end.as_str()) {
                return Err(GimError::input(format!(
                    "edge refers to unknown node `{end}`"
                )));
            }
        }
    }
    // Top-k edges by |score|, ties by (from, to) so the choice is stable.
    let mut edges: Vec<&CircuitEdge> = g.edges.iter().filter(|e| e.score.is_finite()).collect();
    edges.sort_by(|a, b| {
        b.score
            .abs()
            .total_cmp(&a.score.abs())
            .then_with(|| (&a.from, &a.to).cmp(&(&b.from, &b.to)))
    });
    edges.truncate(opts.top_k);
    let mut shown = vec![!opts.hide_isolated || edges.is_empty(); g.nodes.len()];
    for e in &edges {
        shown[index[e.from.as_str()]] = true;
        shown[index[e.to.as_str()]] = true;
    }

    // Rows bottom-up, each a list of node indices.
    let mut rows_map: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, n) in g.nodes.iter().enumerate().filter(|(i, _)| shown[*i]) {
        rows_map.entry(rank(n)).or_default().push(i);
    }
    let mut rows: Vec<Vec<usize>> = rows_map.into_values().collect();
    let labels: Vec<String> = g.nodes.iter().map(|n| escape_missing(&n.label)).collect();
    let widths: Vec<f64> = labels
        .iter()
        .map(|l| (text_width(l, LABEL_PX, false) + 16.0).max(44.0))
        .collect();

    let row_w = |r: &Vec<usize>| {
        r.iter().map(|i| widths[*i]).sum::<f64>() + NODE_GAP * (r.len().saturating_sub(1)) as f64
    };
    let content_w = rows.iter().map(row_w).fold(560.0, f64::max);
    let gutter = 70.0;
    let x0 = MARGIN + gutter;
    let mut pos = vec![0.0f64; g.nodes.len()];
    let place = |row: &Vec<usize>, pos: &mut Vec<f64>| {
        let n = row.len() as f64;
        let slot = content_w / n;
        if row.iter().all(|i| widths[*i] + NODE_GAP <= slot) {
            for (k, i) in row.iter().enumerate() {
                pos[*i] = x0 + slot * (k as f64 + 0.5);
            }
        } else {
            let mut x = x0 + (content_w - row_w(row)) / 2.0;
            for i in row {
                pos[*i] = x + widths[*i] / 2.0;
                x += widths[*i] + NODE_GAP;
            }
        }
    };
    for r in &rows {
        place(r, &mut pos);
    }
    // Barycentre sweeps: order each row by the mean x of its neighbours, then re-place.
    let mut nbrs: Vec<Vec<usize>> = vec![vec![]; g.nodes.len()];
    for e in &edges {
        let (a, b) = (index[e.from.as_str()], index[e.to.as_str()]);
        nbrs[a].push(b);
        nbrs[b].push(a);
    }
    for _ in 0..4 {
        for r in rows.iter_mut() {
            let key: Vec<(usize, f64)> = r
                .iter()
                .map(|i| {
                    let b = if nbrs[*i].is_empty() {
                        pos[*i]
                    } else {
                        nbrs[*i].iter().map(|j| pos[*j]).sum::<f64>() / nbrs[*i].len() as f64
                    };
                    (*i, b)
                })
                .collect();
            let mut sorted = key;
            sorted.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            *r = sorted.into_iter().map(|(i, _)| i).collect();
            place(r, &mut pos);
        }
    }

    let top = 78.0;
    let nrows = rows.len().max(1);
    let height = top + (nrows - 1) as f64 * ROW_GAP + NODE_H + 24.0;
    let width = x0 + content_w + MARGIN;
    let mut sc = Scene::new(width.ceil() as u32, height.ceil() as u32);
    let row_y = |r: usize| top + (nrows - 1 - r) as f64 * ROW_GAP;
    let mut ycen = vec![0.0f64; g.nodes.len()];
    for (r, row) in rows.iter().enumerate() {
        for i in row {
            ycen[*i] = row_y(r) + NODE_H / 2.0;
        }
    }

    sc.bold(MARGIN, 22.0, g.title.as_str(), 15.0, INK, Align::Left);
    sc.text(
        MARGIN,
        42.0,
        format!(
            "{} nodes · top {} of {} edges by |score| · width ∝ |score|",
            shown.iter().filter(|s| **s).count(),
            edges.len(),
            g.edges.len()
        ),
        11.0,
        MUTED,
        Align::Left,
    );
    // Legend, top right.
    let lx = width - MARGIN - 150.0;
    for (k, (c, name)) in [(POSITIVE, "positive edge"), (NEGATIVE, "negative edge")]
        .iter()
        .enumerate()
    {
        let y = 18.0 + 16.0 * k as f64;
        sc.line(vec![(lx, y), (lx + 24.0, y)], *c, 3);
        sc.text(lx + 30.0, y, *name, 10.0, MUTED, Align::Left);
    }
    for (r, row) in rows.iter().enumerate() {
        sc.text(
            MARGIN,
            row_y(r) + NODE_H / 2.0,
            row_name(&g.nodes[row[0]]),
            10.0,
            MUTED,
            Align::Left,
        );
    }

    // Edges, weakest first so strong ones lie on top; cubic curves from the top of the lower
    // node to the bottom of the upper one.
    let max = edges.first().map_or(1.0, |e| e.score.abs()).max(1e-12);
    for e in edges.iter().rev() {
        let (a, b) = (index[e.from.as_str()], index[e.to.as_str()]);
        let (lo, hi) = if ycen[a] >= ycen[b] { (a, b) } else { (b, a) };
        let (x1, y1) = (pos[lo], ycen[lo] - NODE_H / 2.0);
        let (x2, y2) = (pos[hi], ycen[hi] + NODE_H / 2.0);
        let dy = (y1 - y2).abs().max(1.0) * 0.5;
        let pts: Vec<(f64, f64)> = (0..=20)
            .map(|s| {
                let t = f64::from(s) / 20.0;
                let u = 1.0 - t;
                let x =
                    u * u * u * x1 + 3.0 * u * u * t * x1 + 3.0 * u * t * t * x2 + t * t * t * x2;
                let y = u * u * u * y1
                    + 3.0 * u * u * t * (y1 - dy)
                    + 3.0 * u * t * t * (y2 + dy)
                    + t * t * t * y2;
                (x, y)
            })
            .collect();
        let w = 1 + (5.0 * e.score.abs() / max).round() as u32;
        sc.shapes.push(Shape::Line {
            points: pts,
            color: if e.score >= 0.0 { POSITIVE } else { NEGATIVE },
            alpha: 0.75,
            width: w,
        });
    }
    for row in &rows {
        for i in row {
            let (w, x, y) = (widths[*i], pos[*i], ycen[*i]);
            sc.boxed(
                x - w / 2.0,
                y - NODE_H / 2.0,
                w,
                NODE_H,
                fill(g.nodes[*i].kind),
                NODE_BORDER,
            );
            sc.text(x, y, labels[*i].as_str(), LABEL_PX, INK, Align::Center);
        }
    }
    sc.render()
}
