//! `%gim help [command]`: the magic reference, generated from each magic's clap doc.

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

/// The summary as Markdown: one line per magic, so notebooks wrap it like prose.
fn summary_markdown() -> String {
    let mut s = String::from(
        "**`%gim` magics** — `%gim help <command>` or `%gim <command> --help` for details.\n\n",
    );
    for m in all() {
        let cmd = (m.command)();
        let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
        s.push_str(&format!("- `{}` — {}\n", m.name, md_escape(&about)));
    }
    s.push_str(
        "\nA cell starting with `%%gim` holds one magic per line; other cells are Rust (evcxr).\n",
    );
    s
}

/// One magic's documentation as Markdown: what it does, its usage, one line per argument.
pub fn command_markdown(name: &str, mut cmd: clap::Command) -> String {
    let mut s = format!("### `%gim {name}`\n\n");
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        s.push_str(&format!("{}\n\n", md_escape(&about.to_string())));
    }
    let usage = cmd.render_usage().to_string().replace("Usage: ", "");
    s.push_str(&format!("```text\n{}\n```\n\n", usage.trim()));
    for a in cmd.get_arguments() {
        if a.is_hide_set() {
            continue;
        }
        let names = a.get_value_names().map(|v| {
            v.iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(" ")
        });
        let flag = match (a.get_long(), a.get_short()) {
            (Some(l), Some(c)) => format!("-{c}, --{l}"),
            (Some(l), None) => format!("--{l}"),
            (None, Some(c)) => format!("-{c}"),
            (None, None) => String::new(),
        };
        let shown = match (flag.is_empty(), names) {
            (true, Some(n)) => n,
            (true, None) => a.get_id().to_string(),
            (false, Some(n)) if a.get_action().takes_values() => format!("{flag} {n}"),
            (false, _) => flag,
        };
        let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        let defaults: Vec<String> = a
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().to_string())
            .collect();
        let default = if defaults.is_empty() {
            String::new()
        } else {
            format!(" (default: `{}`)", defaults.join(","))
        };
        s.push_str(&format!("- `{shown}` — {}{default}\n", md_escape(&help)));
    }
    s
}

/// Markdown-escape prose that may hold `*`, `_`, `<` (clap docs are plain text).
fn md_escape(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    for c in t.chars() {
        if matches!(c, '*' | '_' | '<' | '>' | '[' | ']' | '\\' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn run(_s: &mut Session, a: Args, _out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let (text, markdown) = match a.command {
        None => (summary(), summary_markdown()),
        Some(c) => {
            let m = find(&c).ok_or_else(|| {
                GimError::input(format!("no magic named `{c}`; `%gim help` lists them"))
            })?;
            let text = (m.command)().render_long_help().to_string();
            (text, command_markdown(m.name, (m.command)()))
        }
    };
    Ok(Some(MimeBundle::text(text).with("text/markdown", markdown)))
}
