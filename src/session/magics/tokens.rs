//! `%gim tokens "<text>"`: how the current model's tokenizer splits a text.

use super::attribute::pick;
use super::Flow;
use crate::session::{views, MimeBundle, Output, Session};

pub const NAME: &str = "tokens";

/// Show the token ids and pieces of a text (special tokens included, as attribution sees them).
#[derive(clap::Parser, Debug)]
pub struct Args {
    pub text: String,
    /// Leave out special tokens such as BOS.
    #[arg(long)]
    pub no_special: bool,
    #[arg(long)]
    pub model: Option<String>,
}

pub fn run(s: &mut Session, a: Args, _out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let m = pick(s, &a.model)?;
    let ids = m.tok.encode(&a.text, !a.no_special)?;
    let rows: Vec<(u32, String, String)> = ids
        .iter()
        .map(|&i| (i, m.tok.piece(i), m.tok.decode_one(i)))
        .collect();
    Ok(Some(views::tokens_bundle(&rows)))
}
