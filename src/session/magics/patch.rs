//! `%gim patch`: run the model with chosen components set to their corrupted values.

use super::attribute::pick;
use super::problem::{metric_name, ProblemArgs};
use super::Flow;
use crate::circuit::{patch_nodes, Node};
use crate::session::{MimeBundle, Output, Session};

pub const NAME: &str = "patch";

/// Patch components (L1H3, MLP0, emb) of the clean run to their corrupted values and report
/// the metric: clean, patched, corrupt and the fraction of the effect recovered.
#[derive(clap::Parser, Debug)]
pub struct Args {
    /// Components to patch.
    #[arg(required = true)]
    pub nodes: Vec<String>,
    #[command(flatten)]
    pub problem: ProblemArgs,
}

pub fn run(s: &mut Session, a: Args, _out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let m = pick(s, &a.problem.model)?;
    let p = a.problem.problem(m)?;
    let nodes: Vec<Node> = a
        .nodes
        .iter()
        .map(|n| Node::parse(n))
        .collect::<Result<_, _>>()?;
    for n in &nodes {
        n.check(m)?;
    }
    let clean = patch_nodes(m, &p, &[])?;
    let patched = patch_nodes(m, &p, &nodes)?;
    let all = Node::all(m.model.cfg.n_layers, m.model.cfg.n_heads);
    let corrupt = patch_nodes(m, &p, &all)?;
    let frac = if (clean - corrupt).abs() > 1e-12 {
        (clean - patched) / (clean - corrupt)
    } else {
        f64::NAN
    };
    let labels: Vec<String> = nodes.iter().map(|n| n.label()).collect();
    let text = format!(
        "{}: clean {clean:.4} → with {} patched {patched:.4} (corrupt {corrupt:.4}); effect {:+.4}, {:.1}% of the full corruption",
        metric_name(m, &p),
        labels.join(", "),
        clean - patched,
        100.0 * frac
    );
    let json = serde_json::json!({"nodes": labels, "metric": metric_name(m, &p), "clean": clean, "patched": patched, "corrupt": corrupt, "effect": clean - patched, "fraction": frac});
    Ok(Some(MimeBundle::text(text).with_result(json)))
}
