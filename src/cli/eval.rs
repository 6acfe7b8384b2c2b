//! `gim eval`: faithfulness (comprehensiveness, sufficiency) of attribution methods over a data set.

use std::io::Write;

use indicatif::{ProgressBar, ProgressStyle};

pub use crate::args::{filters, methods, EvalSet, EvalTask, RuleArgs};
use crate::args::{FigureArgs, JsonArg, ModelArgs};
use crate::attribution::{AttributeRequest, Baseline};
use crate::error::{GimError, Result};
use crate::eval::{evaluate, FaithfulnessOpts};
use crate::render::{faithfulness_chart, faithfulness_table};

#[derive(clap::Args, Debug)]
#[command(mut_arg("json", |a| a.help("Print the summary as JSON instead of a table")))]
#[command(mut_arg("svg", |a| a.help("Write the chart as SVG to this path")))]
#[command(mut_arg("png", |a| a.help("Write the chart as PNG to this path")))]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub set: EvalSet,
    /// Per-example results as JSONL (written as examples finish).
    #[arg(long)]
    pub out: Option<String>,
    #[command(flatten)]
    pub figures: FigureArgs,
    #[command(flatten)]
    pub json: JsonArg,
    /// Patched prompts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Baseline (replacement) token id (default: the " " token, else pad, else unk).
    #[arg(long, conflicts_with = "baseline")]
    pub baseline_id: Option<u32>,
    /// Baseline token text (must be one token).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Integrated-gradients steps.
    #[arg(long, default_value_t = 32)]
    pub steps: usize,
    /// Seed of the `random` method.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub rules: RuleArgs,
}

fn create(p: &str) -> Result<std::fs::File> {
    std::fs::File::create(p).map_err(|e| GimError::input(format!("cannot write {p}: {e}")))
}

pub fn run(a: Args) -> Result<()> {
    let methods = a.set.methods()?;
    let data = a.set.examples()?;
    let rules = a.rules.rules()?;
    let m = a.model.open()?;
    let mut proto = AttributeRequest::new(vec![]);
    proto.rules = rules;
    proto.ig_steps = a.steps;
    proto.seed = a.seed;
    proto.baseline = match (a.baseline_id, &a.baseline) {
        (Some(id), _) => Baseline::Id(id),
        (None, Some(t)) => Baseline::Text(t.clone()),
        _ => Baseline::Default,
    };
    let opts = FaithfulnessOpts {
        max_steps: a.set.max_steps,
        batch_size: a.batch_size.max(1),
        metric: a.set.metric,
        ..Default::default()
    };
    // Open the JSONL before the long run so a bad path fails at once.
    let mut sink = a.out.as_deref().map(create).transpose()?;
    crate::interrupt::clear();
    crate::interrupt::on_ctrl_c();
    let bar = ProgressBar::new(data.len() as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {pos}/{len} examples × {msg} methods {elapsed} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(methods.len().to_string());
    let run = evaluate(&m, &data, &methods, &proto, &opts, |rs| {
        if let (Some(f), Some(p)) = (sink.as_mut(), &a.out) {
            for r in rs {
                let line = serde_json::to_string(r).map_err(|e| GimError::Io(e.to_string()))?;
                writeln!(f, "{line}")
                    .map_err(|e| GimError::input(format!("cannot write {p}: {e}")))?;
            }
            f.flush().map_err(|e| GimError::Io(e.to_string()))?;
        }
        bar.inc(1);
        Ok(())
    })?;
    bar.finish_and_clear();
    if run.n_done > 0 && a.figures.wanted() {
        let title = format!(
            "Faithfulness on {} ({} examples, metric {})",
            crate::loader::default_name(&a.model.model),
            run.n_done,
            run.metric
        );
        let fig = faithfulness_chart(&run.summary, &title)?;
        a.figures.write(&fig.svg, &fig.png)?;
    }
    if a.json.json {
        // the summary: per-example results go to --out
        let mut v = serde_json::to_value(&run).map_err(|e| GimError::Io(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.remove("results");
        }
        a.json.print(&v)?;
    } else {
        print!("{}", faithfulness_table(&run));
        println!("{:.1} s", run.seconds);
    }
    if run.interrupted {
        eprintln!(
            "interrupted: the table covers the {} finished examples",
            run.n_done
        );
    }
    Ok(())
}
