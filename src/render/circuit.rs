//! Circuit results ([`crate::circuit`]) as text and graphs: edges → a [`CircuitGraph`], a
//! circuit report's summary and its figure.

use super::graph::{circuit_graph, CircuitEdge, CircuitGraph, CircuitNode, GraphOpts, NodeKind};
use super::Figure;
use crate::circuit::{CircuitReport, Edge, Node};
use crate::error::Result;

fn node_id(n: Node) -> String {
    n.label()
}

/// A circuit graph of edges (node = the receiver's component; q/k/v shown on the edge label).
pub fn edge_graph(edges: &[Edge], rep: usize, title: String) -> CircuitGraph {
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

/// Plain-text summary of a circuit report (the magic's text and the CLI's output).
pub fn circuit_summary(r: &CircuitReport) -> String {
    let mut text = format!(
        "circuit for {}: clean {:.4}, corrupt {:.4}; {} of {} edges kept, faithfulness {:.3}\n",
        r.metric,
        r.metric_clean,
        r.metric_corrupt,
        r.circuit.len(),
        r.n_edges,
        r.circuit_faithfulness
    );
    for c in &r.curves {
        let k = c
            .edges_to_threshold
            .map(|k| k.to_string())
            .unwrap_or_else(|| "never".into());
        text.push_str(&format!(
            "  {:<9} area under curve {:.3}; edges to faithfulness ≥ {}: {k}\n",
            c.name, c.area, r.threshold
        ));
    }
    text
}

/// The circuit graph of a report's kept edges (`n_rep`: query heads per key/value head).
pub fn circuit_figure(r: &CircuitReport, n_rep: usize) -> Result<Figure> {
    let title = format!(
        "circuit: {} edges, faithfulness {:.2}",
        r.circuit.len(),
        r.circuit_faithfulness
    );
    let g = edge_graph(&r.circuit, n_rep, title);
    circuit_graph(
        &g,
        &GraphOpts {
            top_k: r.circuit.len().clamp(1, 60),
            hide_isolated: true,
        },
    )
}
