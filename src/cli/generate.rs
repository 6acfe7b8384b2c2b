//! `gim generate`: greedy continuation of a prompt, printed as it grows.

use std::io::Write;

use crate::args::{JsonArg, ModelArgs};

#[derive(clap::Args, Debug)]
#[command(mut_arg("json", |a| a.help("Print the result as one JSON object instead of streaming text")))]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt.
    pub prompt: String,
    /// The most tokens to produce (fewer if the model ends its turn).
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

pub fn run(a: Args) -> crate::Result<()> {
    let m = a.model.open()?;
    let prompt = if a.chat {
        crate::chat::user_prompt(&m, &a.prompt)?
    } else {
        a.prompt.clone()
    };
    let stop_ids = crate::generate::eos_ids(&m);
    let mut printed = String::new();
    if !a.json.json {
        print!("{prompt}");
    }
    let g = crate::generate::continue_text(&m, &prompt, a.max_tokens, &stop_ids, |ids| {
        if !a.json.json {
            // print what the text gained; a token that completes a multi-byte character
            // may change the end, so print only when the text extends what was printed
            let text = crate::generate::decode(&m, ids, &stop_ids);
            if let Some(new) = text.strip_prefix(printed.as_str()) {
                print!("{new}");
                let _ = std::io::stdout().flush();
                printed = text;
            }
        }
        Ok(())
    })?;
    if !a.json.print(&g)? {
        if let Some(rest) = g.text.strip_prefix(printed.as_str()) {
            print!("{rest}");
        }
        println!();
    }
    Ok(())
}
