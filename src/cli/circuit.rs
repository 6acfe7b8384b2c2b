//! `gim circuit`: the `%gim circuit` analysis from the command line (JSON and pictures).
//! It takes the magic's own arguments; `--model` names a folder, .gguf file, toy, named model or repo id here.

use crate::args::{CircuitArgs, FigureArgs, LoadArgs};
use crate::circuit::circuit_report;
use crate::error::{GimError, Result};
use crate::model::GimRules;
use crate::render::{circuit_figure, circuit_summary};

#[derive(clap::Args, Debug)]
#[command(mut_arg("svg", |a| a.help("Write the circuit graph as SVG")))]
#[command(mut_arg("png", |a| a.help("Write the circuit graph as PNG")))]
pub struct Args {
    #[command(flatten)]
    pub circuit: CircuitArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub figures: FigureArgs,
}

pub fn run(mut a: Args) -> Result<()> {
    let spec = a.circuit.problem.model.take().ok_or_else(|| {
        GimError::input("give --model <folder|file.gguf|toy-ioi|smollm2-135m|org/name>")
    })?;
    let m = a.load.open(&spec)?;
    let p = a.circuit.problem.problem(&m)?;
    // The session's default rules (`%gim config` starts from GimRules::gim()).
    let c = &a.circuit;
    let r = circuit_report(&m, &p, GimRules::gim(), c.top, c.faithfulness, c.seed)?;
    if a.figures.wanted() {
        let fig = circuit_figure(&r, m.model.cfg.n_rep())?;
        a.figures.write(&fig.svg, &fig.png)?;
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
