//! Circuit results ([`crate::circuit`]) as text and graphs: edges → a [`CircuitGraph`], a
//! circuit report's summary and its figure; a data-set hunt's CPR/CMD table and curves.

use super::curves::{line_chart, Curve, LineChart};
use super::graph::{circuit_graph, CircuitEdge, CircuitGraph, CircuitNode, GraphOpts, NodeKind};
use super::Figure;
use crate::circuit::{CircuitReport, DatasetReport, Edge, Interval, Node};
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

fn interval(i: &Interval) -> String {
    if i.lo.is_finite() && i.hi.is_finite() {
        format!("{:.3} [{:.3}, {:.3}]", i.est, i.lo, i.hi)
    } else {
        format!("{:.3}", i.est)
    }
}

/// A data-set hunt as a markdown table: methods × CPR, CMD (95% bootstrap intervals), then
/// the faithfulness curves per edge fraction (the CLI's output and the magic's text).
pub fn dataset_table(r: &DatasetReport) -> String {
    let mut t = format!(
        "circuits over a data set: metric {}; {} edges; {} examples find, {} evaluate{} ({})\n\
         CPR = area under faithfulness (top-k by signed score, higher is better); CMD = area under |1 − faithfulness| (top-k by |score|, lower is better); 95% bootstrap intervals over {} resamples of the evaluation examples\n\n",
        r.metric,
        r.n_edges,
        r.n_find,
        r.n_eval,
        left_out(r.n_skipped),
        r.split,
        r.bootstrap
    );
    let first = r.methods.first().map(|m| m.method.as_str()).unwrap_or("");
    t.push_str(&format!(
        "| method | CPR ↑ | CMD ↓ | CPR − {first} (paired) | CMD − {first} (paired) | find s | eval s |\n|---|---|---|---|---|---|---|\n"
    ));
    let diff = |d: &Option<crate::circuit::Interval>| d.as_ref().map(interval).unwrap_or_default();
    for m in &r.methods {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.1} |\n",
            m.method,
            interval(&m.cpr),
            interval(&m.cmd),
            diff(&m.cpr_minus_first),
            diff(&m.cmd_minus_first),
            m.seconds_find,
            m.seconds_eval
        ));
    }
    t.push_str("\nfaithfulness by edge fraction (signed / |score| circuits)\n\n| method |");
    for f in &r.fractions {
        t.push_str(&format!(" {}% |", fmt_pct(f * 100.0)));
    }
    t.push_str("\n|---|");
    t.push_str(&"---|".repeat(r.fractions.len()));
    t.push('\n');
    for m in &r.methods {
        t.push_str(&format!("| {} |", m.method));
        for (s, a) in m.faithfulness_signed.iter().zip(&m.faithfulness_abs) {
            t.push_str(&format!(" {} / {} |", two(*s), two(*a)));
        }
        t.push('\n');
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    t.push_str(&format!(
        "\nmean m(full) = {:.4} (clean), mean m(∅) = {:.4} (corrupt); {:.1} s in all\n",
        mean(&r.metric_clean),
        mean(&r.metric_corrupt),
        r.seconds
    ));
    t
}

/// The data's lines that `--filter` or `--limit` left out, when there are any.
fn left_out(n: usize) -> String {
    match n {
        0 => String::new(),
        n => format!(", {n} lines left out by --filter/--limit"),
    }
}

/// Two decimals, without a sign on a value that rounds to zero (no `-0.00`).
fn two(x: f64) -> String {
    let s = format!("{x:.2}");
    if s == "-0.00" {
        "0.00".into()
    } else {
        s
    }
}

fn fmt_pct(p: f64) -> String {
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round() as i64)
    } else {
        format!("{p}")
    }
}

/// Faithfulness against the edge fraction (log x), one line per method (circuits by signed
/// score: the CPR curves).
pub fn dataset_chart(r: &DatasetReport) -> LineChart {
    LineChart {
        log_x: true,
        title: format!("faithfulness over {} examples · {}", r.n_eval, r.metric),
        x_label: "edges kept (% of all, top-k by signed score)".into(),
        y_label: "faithfulness".into(),
        curves: r
            .methods
            .iter()
            .map(|m| Curve {
                name: m.method.clone(),
                points: r
                    .fractions
                    .iter()
                    .zip(&m.faithfulness_signed)
                    .map(|(f, y)| (f * 100.0, *y))
                    .collect(),
            })
            .collect(),
    }
}

/// [`dataset_chart`] drawn.
pub fn dataset_figure(r: &DatasetReport) -> Result<Figure> {
    line_chart(&dataset_chart(r))
}
