//! `gim circuit`: the `%gim circuit` analysis from the command line (JSON and pictures).
//! It takes the magic's own arguments; `--model` names a folder, .gguf file, toy, named model or repo id here.

use super::logits::open;
use crate::args::CircuitArgs;
use crate::circuit::circuit_report;
use crate::error::{GimError, Result};
use crate::model::GimRules;
use crate::render::{circuit_figure, circuit_summary};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub circuit: CircuitArgs,
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the circuit graph as SVG.
    #[arg(long)]
    pub svg: Option<String>,
    /// Write the circuit graph as PNG.
    #[arg(long)]
    pub png: Option<String>,
}

pub fn run(mut a: Args) -> Result<()> {
    let spec = a.circuit.problem.model.take().ok_or_else(|| {
        GimError::input("give --model <folder|file.gguf|toy-ioi|smollm2-135m|org/name>")
    })?;
    let m = open(&spec, &a.dtype, &a.device)?;
    let p = a.circuit.problem.problem(&m)?;
    // The session's default rules (`%gim config` starts from GimRules::gim()).
    let c = &a.circuit;
    let r = circuit_report(&m, &p, GimRules::gim(), c.top, c.faithfulness, c.seed)?;
    if a.svg.is_some() || a.png.is_some() {
        let fig = circuit_figure(&r, m.model.cfg.n_rep())?;
        let write = |p: &String, bytes: &[u8]| {
            std::fs::write(p, bytes).map_err(|e| GimError::input(format!("cannot write {p}: {e}")))
        };
        if let Some(p) = &a.svg {
            write(p, fig.svg.as_bytes())?;
        }
        if let Some(p) = &a.png {
            write(p, &fig.png)?;
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&r).map_err(|e| GimError::Io(e.to_string()))?
        );
    } else {
        print!("{}", circuit_summary(&r));
    }
    Ok(())
}
