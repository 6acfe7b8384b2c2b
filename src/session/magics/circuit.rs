//! `%gim circuit`: the top-k edge circuit, its graph, and its faithfulness curve checked by
//! really patching the model (GIM vs plain attribution patching vs random).

use super::attribute::pick;
use super::edges::graph;
use super::problem::{metric_name, ProblemArgs};
use super::Flow;
use crate::circuit::{default_sizes, edge_attribution, faithfulness_curve, Edge, FaithCurve};
use crate::error::GimError;
use crate::model::GimRules;
use crate::render::{self, Curve, GraphOpts, LineChart};
use crate::session::{MimeBundle, Output, Session};

pub const NAME: &str = "circuit";

/// Find a circuit: rank edges by GIM edge attribution, keep the top K (or the fewest edges that
/// reach a faithfulness target), and verify by running the model with every other edge patched
/// to its corrupted value. Draws the circuit and the faithfulness curves of GIM, plain
/// attribution patching and a random ranking.
#[derive(clap::Parser, Debug)]
pub struct Args {
    #[command(flatten)]
    pub problem: ProblemArgs,
    /// Keep this many edges.
    #[arg(long, conflicts_with = "faithfulness")]
    pub top: Option<usize>,
    /// Keep the fewest edges whose circuit reaches this faithfulness (default 0.9).
    #[arg(long)]
    pub faithfulness: Option<f64>,
    /// Seed of the random ranking.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long = "as")]
    pub var: Option<String>,
}

fn shuffled(edges: &[Edge], seed: u64) -> Vec<Edge> {
    let mut v = edges.to_vec();
    let mut rng = crate::train::rng::Rng::new(seed);
    for i in (1..v.len()).rev() {
        let j = rng.below(i + 1);
        v.swap(i, j);
    }
    v
}

/// Curves and the chosen circuit, shared with `gim circuit --json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CircuitReport {
    pub metric: String,
    pub metric_clean: f64,
    pub metric_corrupt: f64,
    pub n_edges: usize,
    pub threshold: f64,
    pub circuit: Vec<Edge>,
    pub circuit_faithfulness: f64,
    pub curves: Vec<FaithCurve>,
}

pub fn report(s: &Session, a: &Args) -> Result<CircuitReport, GimError> {
    let m = pick(s, &a.problem.model)?;
    let p = a.problem.problem(m)?;
    let threshold = a.faithfulness.unwrap_or(0.9);
    if !(threshold.is_finite() && threshold > 0.0 && threshold <= 1.5) {
        return Err(GimError::input(
            "--faithfulness must be a number in (0, 1.5]",
        ));
    }
    let gim = edge_attribution(m, &p, s.settings.rules)?;
    let plain = edge_attribution(m, &p, GimRules::off())?;
    let n = gim.edges.len();
    let sizes = default_sizes(n, 64);
    let (mc, mk) = (gim.metric_clean, gim.metric_corrupt);
    let rg = gim.ranked();
    let curves = vec![
        faithfulness_curve(m, &p, "gim", &rg, &sizes, threshold, mc, mk)?,
        faithfulness_curve(
            m,
            &p,
            "gradient",
            &plain.ranked(),
            &sizes,
            threshold,
            mc,
            mk,
        )?,
        faithfulness_curve(
            m,
            &p,
            "random",
            &shuffled(&gim.edges, a.seed),
            &sizes,
            threshold,
            mc,
            mk,
        )?,
    ];
    let k = match a.top {
        Some(k) => k.min(n),
        None => curves[0].edges_to_threshold.unwrap_or(n),
    };
    let fk = curves[0]
        .points
        .iter()
        .find(|p| p.edges >= k)
        .map(|p| p.faithfulness)
        .unwrap_or(f64::NAN);
    Ok(CircuitReport {
        metric: metric_name(m, &p),
        metric_clean: mc,
        metric_corrupt: mk,
        n_edges: n,
        threshold,
        circuit: rg[..k].to_vec(),
        circuit_faithfulness: fk,
        curves,
    })
}

/// Plain-text summary of a circuit report (the magic's text and the CLI's output).
pub fn summary(r: &CircuitReport) -> String {
    let mut text = format!(
        "circuit for {}: clean {:.4}, corrupt {:.4}; {} of {} edges kept, faithfulness {:.3}\n",
        r.metric,
        r.metric_clean,
        r.metric_corrupt,
        r.circuit.len(),
        r.n_edges,
        r.circuit_faithfulness
    );
    for c in &r.curves {
        let k = c
            .edges_to_threshold
            .map(|k| k.to_string())
            .unwrap_or_else(|| "never".into());
        text.push_str(&format!(
            "  {:<9} area under curve {:.3}; edges to faithfulness ≥ {}: {k}\n",
            c.name, c.area, r.threshold
        ));
    }
    text
}

/// The circuit graph of a report's kept edges.
pub fn circuit_figure(
    m: &crate::loader::LoadedModel,
    r: &CircuitReport,
) -> Result<render::Figure, GimError> {
    let title = format!(
        "circuit: {} edges, faithfulness {:.2}",
        r.circuit.len(),
        r.circuit_faithfulness
    );
    let g = graph(m, &r.circuit, title);
    render::circuit_graph(
        &g,
        &GraphOpts {
            top_k: r.circuit.len().clamp(1, 60),
            hide_isolated: true,
        },
    )
}

pub fn run(s: &mut Session, a: Args, out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let r = report(s, &a)?;
    let m = pick(s, &a.problem.model)?;
    let text = summary(&r);
    if let Ok(fig) = circuit_figure(m, &r) {
        out.display(
            render::bundle("circuit graph".into(), Some(&fig), None, None),
            None,
        );
    }
    let chart = LineChart {
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
    let json = serde_json::to_value(&r).unwrap_or_default();
    if let Some(v) = a.var {
        s.vars.insert(v, json.clone());
    }
    Ok(Some(crate::session::views::figure_then_text(
        out,
        fig.as_ref(),
        text,
        json,
    )))
}
