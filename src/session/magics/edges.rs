//! `%gim edges`: edge attribution with GIM gradients, as a table and a circuit graph.

use super::attribute::pick;
use super::problem::{metric_name, ProblemArgs};
use super::Flow;
use crate::attribution::Method;
use crate::circuit::{edge_attribution, Edge, Receiver};
use crate::loader::LoadedModel;
use crate::render::{self, GraphOpts};
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

/// A circuit graph of edges on `m` (see [`render::edge_graph`]).
pub fn graph(m: &LoadedModel, edges: &[Edge], title: String) -> render::CircuitGraph {
    render::edge_graph(edges, m.model.cfg.n_rep(), title)
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
