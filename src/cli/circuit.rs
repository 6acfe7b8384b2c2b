//! `gim circuit`: the `%gim circuit` analysis from the command line (JSON and pictures).

use super::logits::open;
use crate::error::{GimError, Result};
use crate::render::{self, GraphOpts};
use crate::session::magics::circuit::{report, Args as MagicArgs};
use crate::session::magics::edges::graph;
use crate::session::magics::problem::ProblemArgs;
use crate::session::Session;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model folder, embedded toy name or Hugging Face repo id.
    #[arg(long)]
    pub model: String,
    #[arg(long)]
    pub clean: String,
    #[arg(long)]
    pub corrupt: Option<String>,
    #[arg(long, conflicts_with_all = ["corrupt", "mean"])]
    pub zero: bool,
    #[arg(long, conflicts_with = "corrupt")]
    pub mean: bool,
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long)]
    pub foil: Option<String>,
    /// Keep this many edges.
    #[arg(long, conflicts_with = "faithfulness")]
    pub top: Option<usize>,
    /// Keep the fewest edges reaching this faithfulness (default 0.9).
    #[arg(long)]
    pub faithfulness: Option<f64>,
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

pub fn run(a: Args) -> Result<()> {
    let m = open(&a.model, &a.dtype, &a.device)?;
    let mut s = Session::new();
    let name = m.name.clone();
    s.models.insert(name.clone(), m);
    s.current = Some(name);
    let ma = MagicArgs {
        problem: ProblemArgs {
            clean: a.clean.clone(),
            corrupt: a.corrupt.clone(),
            zero: a.zero,
            mean: a.mean,
            target: a.target.clone(),
            foil: a.foil.clone(),
            model: None,
        },
        top: a.top,
        faithfulness: a.faithfulness,
        seed: 0,
        var: None,
    };
    let r = report(&s, &ma)?;
    let m = s.model()?;
    if a.svg.is_some() || a.png.is_some() {
        let g = graph(
            m,
            &r.circuit,
            format!(
                "circuit: {} edges, faithfulness {:.2}",
                r.circuit.len(),
                r.circuit_faithfulness
            ),
        );
        let fig = render::circuit_graph(
            &g,
            &GraphOpts {
                top_k: r.circuit.len().clamp(1, 60),
                hide_isolated: true,
            },
        )?;
        if let Some(p) = &a.svg {
            std::fs::write(p, &fig.svg)
                .map_err(|e| GimError::input(format!("cannot write {p}: {e}")))?;
        }
        if let Some(p) = &a.png {
            std::fs::write(p, &fig.png)
                .map_err(|e| GimError::input(format!("cannot write {p}: {e}")))?;
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&r).map_err(|e| GimError::Io(e.to_string()))?
        );
    } else {
        println!(
            "circuit for {}: clean {:.4}, corrupt {:.4}; {} of {} edges, faithfulness {:.3}",
            r.metric,
            r.metric_clean,
            r.metric_corrupt,
            r.circuit.len(),
            r.n_edges,
            r.circuit_faithfulness
        );
        for c in &r.curves {
            println!(
                "  {:<9} area {:.3}; edges to faithfulness ≥ {}: {}",
                c.name,
                c.area,
                r.threshold,
                c.edges_to_threshold
                    .map(|k| k.to_string())
                    .unwrap_or_else(|| "never".into())
            );
        }
    }
    Ok(())
}
