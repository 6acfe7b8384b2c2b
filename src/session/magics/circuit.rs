//! `%gim circuit`: the top-k edge circuit, its graph, and its faithfulness curve checked by
//! really patching the model (GIM vs plain attribution patching vs random).

use super::attribute::pick;
use super::Flow;
use crate::circuit::{circuit_report, dataset_report, CircuitReport};
use crate::error::GimError;
use crate::render::{self, Curve, LineChart};
use crate::session::{MimeBundle, Output, Session};

/// The magic's arguments live with the other shared groups (`gim circuit` takes them too).
pub use crate::args::CircuitArgs as Args;

pub const NAME: &str = "circuit";

/// The circuit of `a` on its model (default: the current one) under the session's GIM rules.
pub fn report(s: &Session, a: &Args) -> Result<CircuitReport, GimError> {
    let m = pick(s, &a.problem.model)?;
    let p = a.problem.problem(m)?;
    circuit_report(m, &p, s.settings.rules, a.top, a.faithfulness, a.seed)
}

/// `%gim circuit --data FILE`: every method's CPR and CMD over a data set (table + curves).
fn run_data(
    s: &mut Session,
    a: Args,
    split: crate::circuit::DataSplit,
    out: &mut dyn Output,
) -> Result<Option<MimeBundle>, Flow> {
    if a.data.shard.is_some() || a.data.scores.is_some() {
        return Err(GimError::input(
            "--shard and --scores are for `gim circuit` on the command line (an array job); here, run the whole set",
        )
        .into());
    }
    let m = pick(s, &a.problem.model)?;
    let opts = a.data.opts(s.settings.rules, a.seed)?;
    // progress as one line, updated in place
    let id = crate::render::new_display_id("circuit-progress");
    out.display(MimeBundle::text("circuit: starting"), Some(&id));
    let mut last = (String::new(), usize::MAX);
    let mut on = |p: crate::circuit::Progress| {
        if (p.stage, p.done) != (last.0.as_str(), last.1) {
            last = (p.stage.to_string(), p.done);
            let line = format!("circuit: {} {}/{} examples", p.stage, p.done, p.total);
            out.update_display(MimeBundle::text(line), &id);
        }
    };
    let r = dataset_report(m, &split, &opts, &mut on)?;
    let done = format!(
        "circuit: {} examples found the circuits, {} evaluated them, in {:.0} s",
        r.n_find, r.n_eval, r.seconds
    );
    out.update_display(MimeBundle::text(done), &id);
    let fig = render::dataset_figure(&r).ok();
    Ok(Some(finish(
        s,
        a.var,
        out,
        fig,
        render::dataset_table(&r),
        &r,
    )))
}

/// The cell's result: the figure, then the text, the report as JSON (kept as `--as VAR`).
fn finish(
    s: &mut Session,
    var: Option<String>,
    out: &mut dyn Output,
    fig: Option<render::Figure>,
    text: String,
    report: &impl serde::Serialize,
) -> MimeBundle {
    let json = serde_json::to_value(report).unwrap_or_default();
    if let Some(v) = var {
        s.vars.insert(v, json.clone());
    }
    crate::session::views::figure_then_text(out, fig.as_ref(), text, json)
}

pub fn run(s: &mut Session, a: Args, out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    if a.data.data.is_some() {
        let split = a.data.split(pick(s, &a.problem.model)?)?;
        if let Some(split) = split {
            return run_data(s, a, split, out);
        }
    }
    let r = report(s, &a)?;
    let m = pick(s, &a.problem.model)?;
    let text = render::circuit_summary(&r);
    if let Ok(fig) = render::circuit_figure(&r, m.model.cfg.n_rep()) {
        out.display(
            render::bundle("circuit graph".into(), Some(&fig), None, None),
            None,
        );
    }
    let chart = LineChart {
        log_x: false,
        title: format!("faithfulness · {}", r.metric),
        x_label: "edges kept".into(),
        y_label: "faithfulness".into(),
        curves: r
            .curves
            .iter()
            .map(|c| Curve {
                name: c.name.clone(),
                points: c
                    .points
                    .iter()
                    .map(|p| (p.edges as f64, p.faithfulness))
                    .collect(),
            })
            .collect(),
    };
    let fig = render::line_chart(&chart).ok();
    Ok(Some(finish(s, a.var, out, fig, text, &r)))
}
