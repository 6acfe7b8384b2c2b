//! `%gim help [command]`: the magic reference, generated from each magic's clap doc.

use clap::CommandFactory;

use super::{all, find, Flow};
use crate::error::GimError;
use crate::session::{MimeBundle, Output, Session};

pub const NAME: &str = "help";

/// Show all magics, or one magic's full documentation.
#[derive(clap::Parser, Debug)]
pub struct Args {
    /// A magic to document in full.
    pub command: Option<String>,
}

/// The whole reference as markdown (the README section is generated from this).
pub fn reference_markdown() -> String {
    let mut s = String::new();
    for m in all() {
        let mut cmd = (m.command)();
        s.push_str(&format!("### `%gim {}`\n\n", m.name));
        s.push_str(&format!(
            "```text\n{}\n```\n\n",
            cmd.render_long_help().to_string().trim_end()
        ));
    }
    s
}

fn summary() -> String {
    let mut s = String::from(
        "%gim magics (`%gim help <command>` or `%gim <command> --help` for details):\n\n",
    );
    for m in all() {
        let cmd = (m.command)();
        let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
        s.push_str(&format!("  {:<10} {}\n", m.name, about));
    }
    s.push_str(
        "\nA cell starting with %%gim holds one magic per line; other cells are Rust (evcxr).\n",
    );
    s
}

pub fn run(_s: &mut Session, a: Args, _out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let _ = Args::command();
    let text = match a.command {
        None => summary(),
        Some(c) => {
            let m = find(&c).ok_or_else(|| {
                GimError::input(format!("no magic named `{c}`; `%gim help` lists them"))
            })?;
            (m.command)().render_long_help().to_string()
        }
    };
    Ok(Some(
        MimeBundle::text(text.clone()).with("text/markdown", format!("```text\n{text}\n```")),
    ))
}
