//! `gim merge`: add up the parts of a sharded `gim circuit --data … --shard I/N` run.

use crate::args::{FigureArgs, JsonArg};
use crate::circuit::{merge_eval, merge_find, Part};
use crate::error::{GimError, Result};

use super::circuit::{read_part, show_report, write_part};

/// Merge the finding parts into the found scores (`--out`, for `gim circuit --scores`), or the
/// evaluation parts into the report (text, `--json`, figures). The result equals a single run's.
#[derive(clap::Args, Debug)]
#[command(mut_arg("json", |a| a.help("Print the merged report as JSON (evaluation parts)")))]
#[command(mut_arg("svg", |a| a.help("Write the merged report's faithfulness curves as SVG")))]
#[command(mut_arg("png", |a| a.help("Write the merged report's faithfulness curves as PNG")))]
pub struct Args {
    /// The part files, every shard of one stage (any order).
    #[arg(required = true)]
    pub parts: Vec<String>,
    /// Where the found scores go (finding parts); with evaluation parts, the report as JSON.
    #[arg(long, value_name = "FILE")]
    pub out: Option<String>,
    #[command(flatten)]
    pub json: JsonArg,
    #[command(flatten)]
    pub figures: FigureArgs,
}

pub fn run(a: Args) -> Result<()> {
    let parts = a
        .parts
        .iter()
        .map(|p| read_part(p))
        .collect::<Result<Vec<_>>>()?;
    let (mut finds, mut evals) = (Vec::new(), Vec::new());
    for (p, path) in parts.into_iter().zip(&a.parts) {
        match p {
            Part::Find(f) => finds.push(f),
            Part::Eval(e) => evals.push(e),
            Part::Scores(_) => {
                return Err(GimError::input(format!(
                    "{path} is already merged (found scores): give it to gim circuit --scores"
                )))
            }
        }
    }
    match (finds.is_empty(), evals.is_empty()) {
        (false, true) => {
            let out = a.out.as_deref().ok_or_else(|| {
                GimError::input(
                    "give --out FILE for the found scores (then gim circuit --scores FILE)",
                )
            })?;
            let found = merge_find(&finds)?;
            eprintln!(
                "merged {} finding parts ({} examples) into {out}",
                finds.len(),
                found.key.info.n_find
            );
            write_part(out, &Part::Scores(found))
        }
        (true, false) => {
            let r = merge_eval(&evals)?;
            if let Some(out) = &a.out {
                let text = serde_json::to_string_pretty(&r)
                    .map_err(|e| GimError::input(format!("internal: {e}")))?;
                std::fs::write(out, text)
                    .map_err(|e| GimError::input(format!("cannot write {out}: {e}")))?;
            }
            show_report(&r, &a.json, &a.figures)
        }
        _ => Err(GimError::input(
            "give the parts of one stage: the finding parts (then --out), or the evaluation parts",
        )),
    }
}
