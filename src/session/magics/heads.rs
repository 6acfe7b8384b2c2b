//! `%gim heads`: every head's and MLP's score for a clean/corrupt pair, as a layer × head map.

use super::attribute::pick;
use super::problem::{metric_name, ProblemArgs};
use super::Flow;
use crate::attribution::Method;
use crate::circuit::{exact_node_effects, node_attribution, spearman};
use crate::render;
use crate::session::{MimeBundle, Output, Session};

pub const NAME: &str = "heads";

/// Node attribution (attribution patching with GIM gradients): the estimated drop of the metric
/// when each head / MLP / the embeddings take their corrupted value. `--exact` also runs the
/// real patching of every node and reports the rank correlation.
#[derive(clap::Parser, Debug)]
pub struct Args {
    #[command(flatten)]
    pub problem: ProblemArgs,
    /// gim (session rules) or gradient (plain attribution patching).
    #[arg(long, default_value = "gim")]
    pub method: String,
    /// Also compute the exact per-node patching effects (one forward per node).
    #[arg(long)]
    pub exact: bool,
    /// Annotate this many top cells.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    #[arg(long = "as")]
    pub var: Option<String>,
}

pub fn run(s: &mut Session, a: Args, out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let m = pick(s, &a.problem.model)?;
    let p = a.problem.problem(m)?;
    let method = Method::parse(&a.method)?;
    let rules = method.rules(&s.settings.rules);
    let na = node_attribution(m, &p, rules)?;
    let cfg = &m.model.cfg;
    let (grid, mlp) = na.grid(cfg.n_layers, cfg.n_heads);
    let mut text = format!(
        "{} node scores for {}: clean {:.4}, corrupt {:.4}\n",
        method.name(),
        metric_name(m, &p),
        na.metric_clean,
        na.metric_corrupt
    );
    let exact = if a.exact {
        Some(exact_node_effects(m, &p)?.1)
    } else {
        None
    };
    for (i, (n, sc)) in na.ranked().iter().take(12).enumerate() {
        let ex = exact
            .as_ref()
            .and_then(|e| na.nodes.iter().position(|x| x == n).map(|j| e[j]));
        text.push_str(&format!(
            "{:>3}  {:<8} {:>+10.4}{}\n",
            i + 1,
            n.label(),
            sc,
            ex.map(|e| format!("   exact {e:>+10.4}"))
                .unwrap_or_default()
        ));
    }
    if let Some(e) = &exact {
        text.push_str(&format!(
            "Spearman ρ(scores, exact effects) = {:.3}\n",
            spearman(&na.scores, e)
        ));
    }
    let fig = render::head_heatmap(&render::HeadScores {
        scores: grid,
        mlp: Some(mlp),
        title: format!("{} node scores · {}", method.name(), metric_name(m, &p)),
        top_k: a.top,
    })
    .ok();
    let mut json = serde_json::to_value(&na).unwrap_or_default();
    if let Some(e) = exact {
        json["exact_effects"] = serde_json::json!(e);
    }
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
