//! `%gim edges`: edge attribution with GIM gradients, as a table and a circuit graph.

use super::attribute::pick;
use super::problem::{metric_name, ProblemArgs};
use super::Flow;
use crate::attribution::Method;
use crate::circuit::{edge_attribution, Edge, Node, Receiver};
use crate::loader::LoadedModel;
use crate::render::{self, CircuitEdge, CircuitGraph, CircuitNode, GraphOpts, NodeKind};
use crate::session::{MimeBundle, Output, Session};

pub const NAME: &str = "edges";

/// Score every sender → receiver edge (receivers: each head's q, k, v input, each MLP input,
/// the logits) from one backward pass, and draw the top ones.
#[derive(clap::Parser, Debug)]
pub struct Args {
    #[command(flatten)]
    pub problem: ProblemArgs,
    /// gim (session rules) or gradient.
    #[arg(long, default_value = "gim")]
    pub method: String,
    /// Edges to list and draw.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    #[arg(long = "as")]
    pub var: Option<String>,
}

fn node_id(n: Node) -> String {
    n.label()
}

/// A circuit graph of edges (node = the receiver's component; q/k/v shown on the edge label).
pub fn graph(m: &LoadedModel, edges: &[Edge], title: String) -> CircuitGraph {
    let rep = m.model.cfg.n_rep();
    let mut nodes: Vec<CircuitNode> = Vec::new();
    let add =
        |id: String, label: String, layer: usize, kind: NodeKind, nodes: &mut Vec<CircuitNode>| {
            if !nodes.iter().any(|n| n.id == id) {
                nodes.push(CircuitNode {
                    id,
                    label,
                    layer,
                    kind,
                });
            }
        };
    let mut out_edges = Vec::new();
    for e in edges {
        let (fid, flayer, fkind) = match e.from {
            Node::Embed => ("emb".to_string(), 0, NodeKind::Embedding),
            Node::Head { layer, .. } => (node_id(e.from), layer, NodeKind::Head),
            Node::Mlp { layer } => (node_id(e.from), layer, NodeKind::Mlp),
        };
        add(fid.clone(), e.from.label(), flayer, fkind, &mut nodes);
        let (tid, tlayer, tkind) = match e.to.node(rep) {
            None => ("logits".to_string(), 0, NodeKind::Logit),
            Some(n @ Node::Head { layer, .. }) => (node_id(n), layer, NodeKind::Head),
            Some(n @ Node::Mlp { layer }) => (node_id(n), layer, NodeKind::Mlp),
            Some(Node::Embed) => ("emb".to_string(), 0, NodeKind::Embedding),
        };
        let tlabel = if tid == "logits" {
            "logits".to_string()
        } else {
            tid.clone()
        };
        add(tid.clone(), tlabel, tlayer, tkind, &mut nodes);
        out_edges.push(CircuitEdge {
            from: fid,
            to: tid,
            score: e.score,
        });
    }
    CircuitGraph {
        nodes,
        edges: out_edges,
        title,
    }
}

pub fn receiver_label(r: &Receiver) -> String {
    r.label()
}

pub fn run(s: &mut Session, a: Args, out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let m = pick(s, &a.problem.model)?;
    let p = a.problem.problem(m)?;
    let method = Method::parse(&a.method)?;
    let ea = edge_attribution(m, &p, method.rules(&s.settings.rules))?;
    let ranked = ea.ranked();
    let top: Vec<Edge> = ranked.iter().take(a.top).copied().collect();
    let mut text = format!(
        "{} edge scores for {} ({} edges): clean {:.4}, corrupt {:.4}\n",
        method.name(),
        metric_name(m, &p),
        ea.edges.len(),
        ea.metric_clean,
        ea.metric_corrupt
    );
    for (i, e) in top.iter().enumerate() {
        text.push_str(&format!(
            "{:>3}  {:<8} → {:<10} {:>+10.4}\n",
            i + 1,
            e.from.label(),
            receiver_label(&e.to),
            e.score
        ));
    }
    let g = graph(
        m,
        &top,
        format!("top {} edges · {}", top.len(), metric_name(m, &p)),
    );
    let fig = render::circuit_graph(
        &g,
        &GraphOpts {
            top_k: a.top,
            hide_isolated: true,
        },
    )
    .ok();
    let json = serde_json::to_value(&ea).unwrap_or_default();
    if let Some(v) = a.var {
        s.vars.insert(v, json.clone());
    }
    Ok(Some(crate::session::views::figure_then_text(
        out,
        fig.as_ref(),
        text,
        json,
    )))
}
