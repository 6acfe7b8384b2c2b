//! `%gim selfrepair`: direct vs total effect of every head — self-repair made visible.

use super::attribute::pick;
use super::problem::{metric_name, ProblemArgs};
use super::Flow;
use crate::circuit::self_repair;
use crate::render::{self, Curve, LineChart};
use crate::session::{MimeBundle, Output, Session};

pub const NAME: &str = "selfrepair";

/// For every head: the total effect of corrupting it (m(clean) − m(head patched)) against its
/// direct effect (only its edge to the logits patched). Direct − total is what the rest of the
/// network repairs — the phenomenon that makes plain gradients underestimate components.
#[derive(clap::Parser, Debug)]
pub struct Args {
    #[command(flatten)]
    pub problem: ProblemArgs,
    /// Rows to list.
    #[arg(long, default_value_t = 12)]
    pub top: usize,
}

pub fn run(s: &mut Session, a: Args, out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let m = pick(s, &a.problem.model)?;
    let p = a.problem.problem(m)?;
    let mut rows = self_repair(m, &p, None)?;
    rows.sort_by(|x, y| y.direct_effect.abs().total_cmp(&x.direct_effect.abs()));
    let mut text = format!("self-repair for {} (sorted by |direct effect|)\nhead      direct      total   self-repair\n", metric_name(m, &p));
    for r in rows.iter().take(a.top) {
        text.push_str(&format!(
            "{:<8} {:>+9.4}  {:>+9.4}  {:>+9.4}\n",
            r.label, r.direct_effect, r.total_effect, r.self_repair
        ));
    }
    let chart = LineChart {
        log_x: false,
        title: "direct (x) vs total (y) effect per head".into(),
        x_label: "rank by |direct effect|".into(),
        y_label: "effect on the metric".into(),
        curves: vec![
            Curve {
                name: "direct".into(),
                points: rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (i as f64, r.direct_effect))
                    .collect(),
            },
            Curve {
                name: "total".into(),
                points: rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (i as f64, r.total_effect))
                    .collect(),
            },
        ],
    };
    let fig = render::line_chart(&chart).ok();
    let json = serde_json::to_value(&rows).unwrap_or_default();
    Ok(Some(crate::session::views::figure_then_text(
        out,
        fig.as_ref(),
        text,
        json,
    )))
}
