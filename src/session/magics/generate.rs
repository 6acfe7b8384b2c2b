//! `%gim generate "<prompt>"`: the model's own greedy continuation, streamed into the cell.

use super::attribute::pick;
use super::Flow;
use crate::generate::{self, Generation, Stop};
use crate::session::{views, MimeBundle, Output, Session};

pub const NAME: &str = "generate";

/// Continue a prompt greedily (deterministic: the same notebook gives the same text) with a
/// key/value cache; the text grows in the cell as it is produced.
#[derive(clap::Parser, Debug)]
pub struct Args {
    /// The prompt (quote it).
    pub prompt: String,
    /// The most tokens to produce (fewer if the model ends its turn).
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Model to use (default: the current one).
    #[arg(long)]
    pub model: Option<String>,
    /// Keep the result under this name (for `%gim export`).
    #[arg(long = "as")]
    pub var: Option<String>,
}

pub fn run(s: &mut Session, a: Args, out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let m = pick(s, &a.model)?;
    let prompt = if a.chat {
        crate::chat::user_prompt(m, &a.prompt)?
    } else {
        a.prompt.clone()
    };
    let id = crate::session::output::new_display_id("generate");
    let mut shown = Generation {
        prompt: prompt.clone(),
        prompt_ids: Vec::new(),
        ids: Vec::new(),
        tokens: Vec::new(),
        text: String::new(),
        stop: Stop::MaxTokens,
    };
    out.display(views::generation_bundle(&shown, false), Some(&id));
    let stop_ids = generate::eos_ids(m);
    let g = generate::continue_text(m, &prompt, a.max_tokens, &stop_ids, |ids| {
        if out.interrupted() {
            return Err(crate::error::GimError::Interrupted);
        }
        shown.text = generate::decode(m, ids, &stop_ids);
        out.update_display(views::generation_bundle(&shown, false), &id);
        Ok(())
    })?;
    out.update_display(views::generation_bundle(&g, true), &id);
    if let Some(v) = a.var {
        s.vars
            .insert(v, serde_json::to_value(&g).unwrap_or_default());
    }
    Ok(None)
}
