//! `gim circuit`: the `%gim circuit` analysis from the command line (JSON and pictures).
//! It takes the magic's own arguments; `--model` names a folder, .gguf file, toy, named model or repo id here.

use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{CircuitArgs, FigureArgs, JsonArg, LoadArgs, RuleArgs};
use crate::circuit::{
    circuit_report, dataset_report, eval_part, find_part, merge_eval, DatasetReport, Part,
    Progress, Shard,
};
use crate::error::{GimError, Result};
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
    /// The rules of the `gim` method (softmax-t-only takes its temperature).
    #[command(flatten)]
    pub rules: RuleArgs,
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
        let opts = a.circuit.data.opts(a.rules.rules()?, a.circuit.seed)?;
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
        let d = &a.circuit.data;
        let shard = d.shard.as_deref().map(Shard::parse).transpose()?;
        let found = d.scores.as_deref().map(read_part).transpose()?;
        let found = match found {
            None => None,
            Some(Part::Scores(f)) => Some(f),
            Some(_) => {
                return Err(GimError::input(
                    "--scores takes the merged finding stage (`gim merge` of the --shard parts), not a part",
                ))
            }
        };
        let part = match (&found, shard) {
            (None, None) => None,
            (None, Some(sh)) => Some(Part::Find(find_part(&m, &split, &opts, sh, &mut on)?)),
            (Some(f), sh) => Some(Part::Eval(eval_part(
                &m,
                &split,
                f,
                sh.unwrap_or(Shard::whole()),
                &mut on,
            )?)),
        };
        let r = match part {
            None => dataset_report(&m, &split, &opts, &mut on),
            Some(p) if shard.is_some() => {
                bar.finish_and_clear();
                let out = d
                    .out
                    .as_deref()
                    .ok_or_else(|| GimError::input("give --out FILE"))?;
                return write_part(out, &p);
            }
            Some(Part::Eval(e)) => merge_eval(&[e]),
            Some(_) => Err(GimError::input("internal: a finding part without --shard")),
        };
        bar.finish_and_clear();
        return show_report(&r?, &a.json, &a.figures);
    }
    let p = a.circuit.problem.problem(&m)?;
    let c = &a.circuit;
    let r = circuit_report(&m, &p, a.rules.rules()?, c.top, c.faithfulness, c.seed)?;
    if a.figures.wanted() {
        let fig = circuit_figure(&r, m.model.cfg.n_rep())?;
        a.figures.write(&fig.svg, &fig.png)?;
    }
    if !a.json.print(&r)? {
        print!("{}", circuit_summary(&r));
    }
    Ok(())
}

/// A data-set report as text, JSON and figures (`gim circuit --data`, `gim merge`).
pub(super) fn show_report(r: &DatasetReport, json: &JsonArg, figures: &FigureArgs) -> Result<()> {
    if figures.wanted() {
        let fig = dataset_figure(r)?;
        figures.write(&fig.svg, &fig.png)?;
    }
    if !json.print(r)? {
        print!("{}", dataset_table(r));
    }
    Ok(())
}

/// Read a part file of a sharded hunt.
pub(super) fn read_part(path: &str) -> Result<Part> {
    use std::io::Read;
    // a regular file of bounded size: `/dev/zero` or a pipe must not hang the command
    const MAX: u64 = 4 << 30;
    let cannot = |e: std::io::Error| GimError::input(format!("cannot read {path}: {e}"));
    let f = std::fs::File::open(path).map_err(cannot)?;
    let meta = f.metadata().map_err(cannot)?;
    if !meta.is_file() || meta.len() > MAX {
        return Err(GimError::input(format!(
            "{path} is not a part file (a regular file of at most 4 GiB written by --shard … --out or gim merge)"
        )));
    }
    let mut text = String::new();
    f.take(MAX).read_to_string(&mut text).map_err(cannot)?;
    serde_json::from_str(&text).map_err(|e| {
        GimError::input(format!(
            "{path} is not a part of a sharded gim circuit run ({e}); give the files --shard … --out wrote, or gim merge's"
        ))
    })
}

/// Write a part file.
pub(super) fn write_part(path: &str, p: &Part) -> Result<()> {
    let text = serde_json::to_string(p)
        .map_err(|e| GimError::input(format!("internal: cannot encode the part: {e}")))?;
    std::fs::write(path, text).map_err(|e| GimError::input(format!("cannot write {path}: {e}")))
}
