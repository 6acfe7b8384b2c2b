//! `gim circuit`: the `%gim circuit` analysis from the command line (JSON and pictures).
//! It takes the magic's own arguments; `--model` names a folder, .gguf file, toy, named model or repo id here.

use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{CircuitArgs, FigureArgs, JsonArg, LoadArgs};
use crate::circuit::{circuit_report, dataset_report, Progress};
use crate::error::{GimError, Result};
use crate::model::GimRules;
use crate::render::{circuit_figure, circuit_summary, dataset_figure, dataset_table};

#[derive(clap::Args, Debug)]
#[command(mut_arg("json", |a| a.help("Print the report as JSON")))]
#[command(mut_arg("svg", |a| a.help("Write the circuit graph as SVG (with --data: the faithfulness curves)")))]
#[command(mut_arg("png", |a| a.help("Write the circuit graph as PNG (with --data: the faithfulness curves)")))]
pub struct Args {
    #[command(flatten)]
    pub circuit: CircuitArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub json: JsonArg,
    #[command(flatten)]
    pub figures: FigureArgs,
}

pub fn run(mut a: Args) -> Result<()> {
    let spec = a.circuit.problem.model.take().ok_or_else(|| {
        GimError::input("give --model <folder|file.gguf|toy-ioi|smollm2-135m|org/name>")
    })?;
    let m = a.load.open(&spec)?;
    if let Some(split) = a.circuit.data.split(&m)? {
        let opts = a.circuit.data.opts(GimRules::gim(), a.circuit.seed)?;
        crate::interrupt::clear();
        crate::interrupt::on_ctrl_c();
        let bar = ProgressBar::new(0);
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>24} {bar:40} {pos}/{len} {elapsed} eta {eta}")
        {
            bar.set_style(style);
        }
        let mut on = |p: Progress| {
            bar.set_message(p.stage.to_string());
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
        };
        let r = dataset_report(&m, &split, &opts, &mut on);
        bar.finish_and_clear();
        let r = r?;
        if a.figures.wanted() {
            let fig = dataset_figure(&r)?;
            a.figures.write(&fig.svg, &fig.png)?;
        }
        if !a.json.print(&r)? {
            print!("{}", dataset_table(&r));
        }
        return Ok(());
    }
    let p = a.circuit.problem.problem(&m)?;
    // The session's default rules (`%gim config` starts from GimRules::gim()).
    let c = &a.circuit;
    let r = circuit_report(&m, &p, GimRules::gim(), c.top, c.faithfulness, c.seed)?;
    if a.figures.wanted() {
        let fig = circuit_figure(&r, m.model.cfg.n_rep())?;
        a.figures.write(&fig.svg, &fig.png)?;
    }
    if !a.json.print(&r)? {
        print!("{}", circuit_summary(&r));
    }
    Ok(())
}
