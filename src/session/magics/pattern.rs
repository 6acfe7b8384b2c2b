//! `%gim pattern L1H3 "<prompt>"`: one head's attention pattern.

use super::attribute::pick;
use super::Flow;
use crate::circuit::{head_pattern_scores, pattern, Node};
use crate::error::GimError;
use crate::render::{self, AttentionPattern};
use crate::session::{MimeBundle, Output, Session};

pub const NAME: &str = "pattern";

/// Draw a head's attention pattern (query × key) on a prompt, with its previous-token and
/// induction scores.
#[derive(clap::Parser, Debug)]
pub struct Args {
    /// The head, e.g. L1H3.
    pub head: String,
    pub prompt: String,
    #[arg(long)]
    pub model: Option<String>,
}

pub fn run(s: &mut Session, a: Args, out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let m = pick(s, &a.model)?;
    let Node::Head { layer, head } = Node::parse(&a.head)? else {
        return Err(
            GimError::input(format!("`{}` is not a head (use L<layer>H<head>)", a.head)).into(),
        );
    };
    let ids = m.tok.encode(&a.prompt, true)?;
    let pat = pattern(m, &ids, layer, head)?;
    let sc = head_pattern_scores(m, &ids)?;
    let text = format!(
        "L{layer}H{head}: previous-token score {:.3}, induction score {:.3}",
        sc.prev_token[layer][head], sc.induction[layer][head]
    );
    let tokens: Vec<String> = ids.iter().map(|&i| m.tok.decode_one(i)).collect();
    let fig = render::attention_pattern(&AttentionPattern {
        tokens,
        pattern: pat.clone(),
        layer,
        head,
    })
    .ok();
    let json = serde_json::json!({"layer": layer, "head": head, "pattern": pat, "prev_token_score": sc.prev_token[layer][head], "induction_score": sc.induction[layer][head]});
    Ok(Some(crate::session::views::figure_then_text(
        out,
        fig.as_ref(),
        text,
        json,
    )))
}
