//! `%gim ablate L1H3 "<prompt>"`: zero- or mean-ablate components and see the prediction change.

use super::attribute::pick;
use super::Flow;
use crate::circuit::{patch_nodes, Corruption, Node, Problem};
use crate::error::GimError;
use crate::model::Positions;
use crate::session::{MimeBundle, Output, Session};

pub const NAME: &str = "ablate";

/// Ablate components (L1H3, MLP0, emb) on a prompt: the target's logit with and without them.
#[derive(clap::Parser, Debug)]
pub struct Args {
    /// Components to ablate, then the prompt last (quoted).
    #[arg(required = true, num_args = 2..)]
    pub items: Vec<String>,
    /// Target token text (default: the top prediction).
    #[arg(long)]
    pub target: Option<String>,
    /// Mean-ablate (over positions) instead of zero-ablating.
    #[arg(long)]
    pub mean: bool,
    #[arg(long)]
    pub model: Option<String>,
}

pub fn run(s: &mut Session, a: Args, _out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let m = pick(s, &a.model)?;
    let (prompt, comps) = a
        .items
        .split_last()
        .ok_or_else(|| GimError::input("give components and a prompt"))?;
    let nodes: Vec<Node> = comps
        .iter()
        .map(|n| Node::parse(n))
        .collect::<Result<_, _>>()?;
    let ids = m.tok.encode(prompt, true)?;
    let target = match &a.target {
        Some(t) => crate::attribution::target_text_ids(&m.tok, t, "target")?[0],
        None => m
            .model
            .logits(std::slice::from_ref(&ids), Positions::Last)?
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .argmax(0)?
            .to_scalar::<u32>()?,
    };
    let p = Problem {
        clean: ids,
        corrupt: if a.mean {
            Corruption::Mean
        } else {
            Corruption::Zero
        },
        target,
        foil: None,
    };
    let before = patch_nodes(m, &p, &[])?;
    let after = patch_nodes(m, &p, &nodes)?;
    let labels: Vec<String> = nodes.iter().map(|n| n.label()).collect();
    let text = format!(
        "logit({}) {before:.4} → {after:.4} with {} {}-ablated (change {:+.4})",
        m.tok.decode_one(target).trim(),
        labels.join(", "),
        if a.mean { "mean" } else { "zero" },
        after - before
    );
    let json =
        serde_json::json!({"nodes": labels, "target_id": target, "before": before, "after": after});
    Ok(Some(MimeBundle::text(text).with_result(json)))
}
