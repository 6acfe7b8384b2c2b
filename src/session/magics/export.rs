//! `%gim export VAR --to file.json`: write a kept result to disk.

use super::Flow;
use crate::error::GimError;
use crate::session::{MimeBundle, Output, Session};

pub const NAME: &str = "export";

/// Write a result kept with `--as VAR` to a JSON file.
#[derive(clap::Parser, Debug)]
pub struct Args {
    pub var: String,
    /// Output path (.json).
    #[arg(long)]
    pub to: String,
}

pub fn run(s: &mut Session, a: Args, _out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let v = s.vars.get(&a.var).ok_or_else(|| {
        GimError::input(format!(
            "no result named `{}` (kept: {}); keep one with `--as {}`",
            a.var,
            if s.vars.is_empty() {
                "none".into()
            } else {
                s.vars.keys().cloned().collect::<Vec<_>>().join(", ")
            },
            a.var
        ))
    })?;
    let text = serde_json::to_string_pretty(v).map_err(|e| GimError::Io(e.to_string()))?;
    std::fs::write(&a.to, text)
        .map_err(|e| GimError::input(format!("cannot write {}: {e}", a.to)))?;
    Ok(Some(MimeBundle::text(format!(
        "wrote {} to {}",
        a.var, a.to
    ))))
}
